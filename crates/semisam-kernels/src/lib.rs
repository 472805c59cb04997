//! CPU kernels for the convolutions that dominate a V-Net / 3D U-Net training step.
//!
//! They live in their own crate so that test builds optimise them like every dependency
//! (`[profile.dev.package.semisam-kernels]`): the kernels are written for the optimiser, and an
//! unoptimised build would be slower than the generic path they replace. Each kernel runs on the
//! [`KernelPath`] its caller passes (AVX-512F, AVX2 + FMA or portable Rust);
//! [`path::selected`] is the one the CPU and `SEMISAM_KERNELS` choose.
//!
//! Only plain `f32` slices cross this boundary; the burn glue (backends, autodiff) is in
//! `semisam::ops`.

pub mod batch_norm_relu;
pub mod conv3x3x3;
pub mod grid;
pub mod math;
pub mod matmul;
pub mod path;
pub mod prompt_attention;
pub mod stride2;
pub mod tokens;

pub use path::KernelPath;

/// Deterministic test inputs in [-1, 1] (xorshift), shared by the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// `Σ softmax(scores)_i · values_i` in f64: the reference the attention kernels' tests compare
/// against.
#[cfg(test)]
pub(crate) fn softmax_weighted_sum(scores: &[f64], values: &[&[f32]]) -> Vec<f64> {
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    (0..values[0].len())
        .map(|c| {
            weights
                .iter()
                .zip(values)
                .map(|(w, v)| w * v[c] as f64)
                .sum::<f64>()
                / total
        })
        .collect()
}
