//! Batch normalisation with batch statistics followed by ReLU, fused, forward and backward.
//!
//! The generic path computes the statistics through channel-first permuted copies and applies
//! the normalisation, the affine map and the ReLU as separate passes, each over the whole
//! activation and each recorded for autodiff; at a V-Net's full resolution that cost more than
//! the convolution before it. Here the forward reads the input twice and writes once, the
//! backward reads twice and writes once.
//!
//! Layout: `items` x `channels` rows of `spatial` contiguous values (NC... order).
//!
//! The loops are plain Rust; each row runs compiled for the caller's [`KernelPath`] (512- or
//! 256-bit vectors, or the build target's). No path contracts a multiply and an add, so every
//! path gives the same bits.

use crate::path::KernelPath;
use rayon::prelude::*;

/// The per-channel statistics of one batch: mean and biased variance.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStatistics {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

/// Sizes of the activation.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub items: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl Layout {
    fn len(&self) -> usize {
        self.items * self.channels * self.spatial
    }

    fn count(&self) -> f64 {
        (self.items * self.spatial) as f64
    }
}

const LANES: usize = 16;

/// Sums of `f(value)` and `g(value)` over a row, in f32 lanes flushed to f64 every block so that
/// long rows keep f64 accuracy while the inner loop vectorises.
#[inline(always)]
fn row_sums(row: &[f32], other: Option<&[f32]>, f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    const BLOCK: usize = 1024;
    let (mut first, mut second) = (0.0f64, 0.0f64);
    for (index, block) in row.chunks(BLOCK).enumerate() {
        let other = other.map(|o| &o[index * BLOCK..][..block.len()]);
        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
        let whole = block.len() / LANES * LANES;
        for start in (0..whole).step_by(LANES) {
            for lane in 0..LANES {
                let y = other.map_or(0.0, |o| o[start + lane]);
                let (fa, fb) = f(block[start + lane], y);
                a[lane] += fa;
                b[lane] += fb;
            }
        }
        for position in whole..block.len() {
            let y = other.map_or(0.0, |o| o[position]);
            let (fa, fb) = f(block[position], y);
            a[0] += fa;
            b[0] += fb;
        }
        first += a.iter().map(|&v| v as f64).sum::<f64>();
        second += b.iter().map(|&v| v as f64).sum::<f64>();
    }
    (first, second)
}

/// Per-channel totals of per-row sums.
fn channel_totals(layout: Layout, rows: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut totals = vec![(0.0, 0.0); layout.channels];
    for (row, (a, b)) in rows.into_iter().enumerate() {
        let total = &mut totals[row % layout.channels];
        total.0 += a;
        total.1 += b;
    }
    totals
}

/// Mean and biased variance per channel. The variance is taken around a first estimate of the
/// mean (the per-row means of the first item) so that large offsets do not cancel.
pub fn statistics(path: KernelPath, x: &[f32], layout: Layout) -> BatchStatistics {
    path.assert_available();
    assert_eq!(x.len(), layout.len(), "statistics: input size");
    let shift: Vec<f32> = x
        .chunks(layout.spatial)
        .take(layout.channels)
        .map(|row| (row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64) as f32)
        .collect();
    let rows: Vec<(f64, f64)> = x
        .par_chunks(layout.spatial)
        .enumerate()
        .map(|(row, values)| {
            let s = shift[row % layout.channels];
            path.run(
                #[inline(always)]
                || {
                    row_sums(values, None, |v, _| {
                        let d = v - s;
                        (d, d * d)
                    })
                },
            )
        })
        .collect();
    let n = layout.count();
    let (mean, variance) = channel_totals(layout, rows)
        .into_iter()
        .zip(&shift)
        .map(|((sum, squares), &s)| {
            let centred = sum / n;
            (
                (s as f64 + centred) as f32,
                (squares / n - centred * centred).max(0.0) as f32,
            )
        })
        .unzip();
    BatchStatistics { mean, variance }
}

/// Per-channel scale and shift of the fused affine map `x * scale + shift`.
fn affine(
    statistics: &BatchStatistics,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Vec<(f32, f32, f32)> {
    statistics
        .mean
        .iter()
        .zip(&statistics.variance)
        .zip(gamma.iter().zip(beta))
        .map(|((&mean, &variance), (&gamma, &beta))| {
            let inv_std = 1.0 / (variance as f64 + epsilon).sqrt();
            let scale = gamma as f64 * inv_std;
            (
                scale as f32,
                (beta as f64 - mean as f64 * scale) as f32,
                inv_std as f32,
            )
        })
        .collect()
}

/// `relu(gamma * (x - mean) / sqrt(variance + epsilon) + beta)`.
pub fn forward(
    path: KernelPath,
    x: &[f32],
    layout: Layout,
    statistics: &BatchStatistics,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Vec<f32> {
    path.assert_available();
    assert_eq!(x.len(), layout.len(), "forward: input size");
    let affine = affine(statistics, gamma, beta, epsilon);
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(layout.spatial)
        .zip(x.par_chunks(layout.spatial))
        .enumerate()
        .for_each(|(row, (y, x))| {
            let (scale, shift, _) = affine[row % layout.channels];
            path.run(
                #[inline(always)]
                || {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = (x * scale + shift).max(0.0);
                    }
                },
            )
        });
    y
}

/// Gradients of [`forward`] with respect to the input, `gamma` and `beta`, the statistics being
/// those of the batch (so they depend on the input too).
pub struct Gradients {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
pub fn backward(
    path: KernelPath,
    x: &[f32],
    output_gradient: &[f32],
    layout: Layout,
    statistics: &BatchStatistics,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> Gradients {
    path.assert_available();
    assert_eq!(x.len(), layout.len(), "backward: input size");
    assert_eq!(
        output_gradient.len(),
        layout.len(),
        "backward: gradient size"
    );
    let affine = affine(statistics, gamma, beta, epsilon);
    let mean = &statistics.mean;
    // Gradient reaching the normalised value: the output gradient where the ReLU passed.
    let rows: Vec<(f64, f64)> = x
        .par_chunks(layout.spatial)
        .zip(output_gradient.par_chunks(layout.spatial))
        .enumerate()
        .map(|(row, (x, dy))| {
            let channel = row % layout.channels;
            let (scale, shift, inv_std) = affine[channel];
            let m = mean[channel];
            path.run(
                #[inline(always)]
                || {
                    row_sums(x, Some(dy), |x, dy| {
                        let g = if x * scale + shift > 0.0 { dy } else { 0.0 };
                        (g, g * (x - m) * inv_std)
                    })
                },
            )
        })
        .collect();
    let totals = channel_totals(layout, rows);
    let n = layout.count();
    let beta_gradient: Vec<f32> = totals.iter().map(|t| t.0 as f32).collect();
    let gamma_gradient: Vec<f32> = totals.iter().map(|t| t.1 as f32).collect();
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(layout.spatial)
        .zip(
            x.par_chunks(layout.spatial)
                .zip(output_gradient.par_chunks(layout.spatial)),
        )
        .enumerate()
        .for_each(|(row, (dx, (x, dy)))| {
            let channel = row % layout.channels;
            let (scale, shift, inv_std) = affine[channel];
            let m = mean[channel];
            let mean_g = (totals[channel].0 / n) as f32;
            let mean_g_xhat = (totals[channel].1 / n) as f32;
            path.run(
                #[inline(always)]
                || {
                    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                        let g = if x * scale + shift > 0.0 { dy } else { 0.0 };
                        let xhat = (x - m) * inv_std;
                        *dx = scale * (g - mean_g - xhat * mean_g_xhat);
                    }
                },
            )
        });
    Gradients {
        x: dx,
        gamma: gamma_gradient,
        beta: beta_gradient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_the_per_channel_mean_and_biased_variance() {
        // 2 items, 2 channels, 3 values: channel 0 holds 1,2,3,5,7,9; channel 1 holds 1e4 + 0..6.
        let x = [
            1.0,
            2.0,
            3.0,
            1e4,
            1e4 + 1.0,
            1e4 + 2.0,
            5.0,
            7.0,
            9.0,
            1e4 + 3.0,
            1e4 + 4.0,
            1e4 + 5.0,
        ];
        let layout = Layout {
            items: 2,
            channels: 2,
            spatial: 3,
        };
        let s = statistics(KernelPath::Generic, &x, layout);
        assert!((s.mean[0] - 27.0 / 6.0).abs() < 1e-6);
        let var0 = [1.0f64, 2.0, 3.0, 5.0, 7.0, 9.0]
            .iter()
            .map(|v| (v - 4.5) * (v - 4.5))
            .sum::<f64>()
            / 6.0;
        assert!((s.variance[0] as f64 - var0).abs() < 1e-5);
        assert!((s.mean[1] - (1e4 + 2.5)).abs() < 1e-3);
        assert!(
            (s.variance[1] as f64 - 35.0 / 12.0).abs() < 1e-4,
            "{}",
            s.variance[1]
        );
    }

    /// Every path computes the same bits: the statistics, the forward and all three gradients,
    /// on rows long enough for several vector blocks and a ragged tail.
    #[test]
    fn every_path_gives_the_generic_paths_bits() {
        let layout = Layout {
            items: 3,
            channels: 4,
            spatial: 2 * 1024 + 37,
        };
        let x: Vec<f32> = (0..layout.len())
            .map(|i| ((i * 7919 % 1009) as f32 - 480.0) / 97.0)
            .collect();
        let dy: Vec<f32> = (0..layout.len())
            .map(|i| ((i * 104729 % 997) as f32 - 500.0) / 313.0)
            .collect();
        let (gamma, beta) = ([1.2f32, -0.4, 0.7, 2.0], [0.1f32, -0.2, 0.3, 0.0]);
        let run = |path| {
            let s = statistics(path, &x, layout);
            let y = forward(path, &x, layout, &s, &gamma, &beta, 1e-5);
            let g = backward(path, &x, &dy, layout, &s, &gamma, &beta, 1e-5);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            [s.mean, s.variance, y, g.x, g.gamma, g.beta].map(|v| bits(&v))
        };
        let generic = run(KernelPath::Generic);
        assert!(generic[2].contains(&0) && generic[2].iter().any(|&y| y != 0));
        for path in KernelPath::available() {
            assert!(run(path) == generic, "{} differs", path.name());
        }
    }

    /// The backward against central differences of a scalar loss through the forward, with the
    /// statistics recomputed from the perturbed input.
    #[test]
    fn backward_matches_finite_differences() {
        let layout = Layout {
            items: 2,
            channels: 3,
            spatial: 5,
        };
        let x: Vec<f32> = (0..30)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let weights: Vec<f32> = (0..30)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let gamma = [1.3f32, -0.7, 0.9];
        let beta = [0.2f32, 0.1, -0.3];
        let epsilon = 1e-5;
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let s = statistics(KernelPath::best(), x, layout);
            forward(KernelPath::best(), x, layout, &s, gamma, beta, epsilon)
                .iter()
                .zip(&weights)
                .map(|(y, w)| *y as f64 * *w as f64)
                .sum()
        };
        let s = statistics(KernelPath::best(), &x, layout);
        let g = backward(
            KernelPath::best(),
            &x,
            &weights,
            layout,
            &s,
            &gamma,
            &beta,
            epsilon,
        );
        // The step must not cross a ReLU kink: no pre-activation lies within it of zero.
        let h = 1e-3f32;
        let affine = affine(&s, &gamma, &beta, epsilon);
        for (row, values) in x.chunks(layout.spatial).enumerate() {
            let (scale, shift, _) = affine[row % layout.channels];
            assert!(values.iter().all(|v| (v * scale + shift).abs() > 4.0 * h));
        }
        let numeric = |bump: &dyn Fn(f32) -> f64| (bump(h) - bump(-h)) / (2.0 * h as f64);
        for i in 0..x.len() {
            let d = numeric(&|delta| {
                let mut x = x.clone();
                x[i] += delta;
                loss(&x, &gamma, &beta)
            });
            assert!(
                (d - g.x[i] as f64).abs() < 1e-2,
                "x[{i}]: {d} vs {}",
                g.x[i]
            );
        }
        for c in 0..3 {
            let d = numeric(&|delta| {
                let mut gamma = gamma;
                gamma[c] += delta;
                loss(&x, &gamma, &beta)
            });
            assert!(
                (d - g.gamma[c] as f64).abs() < 1e-2,
                "gamma[{c}]: {d} vs {}",
                g.gamma[c]
            );
            let d = numeric(&|delta| {
                let mut beta = beta;
                beta[c] += delta;
                loss(&x, &gamma, &beta)
            });
            assert!(
                (d - g.beta[c] as f64).abs() < 1e-2,
                "beta[{c}]: {d} vs {}",
                g.beta[c]
            );
        }
    }
}
