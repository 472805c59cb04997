//! Sliding-window inference over a whole volume, as UA-MT's `test_single_case`:
//! - an axis shorter than the window is zero-padded to the window (`pad // 2` before, the rest
//!   after), and the padding is cropped off the result;
//! - along each axis there are `ceil((size - window) / stride) + 1` windows starting at
//!   `min(stride · n, size - window)`, so the last one ends exactly at the border;
//! - class probabilities are averaged over all windows covering a voxel, each voxel of a window
//!   weighted by its [`WindowWeighting`] (uniform: UA-MT's plain mean; Gaussian: nnU-Net's
//!   centre-heavy mean); the label is the first class of highest averaged probability;
//! - with [`MirrorAxes`], each batch of windows is also predicted mirrored (test-time
//!   augmentation) before it is accumulated.
//!
//! The model is abstracted as a `predictor` that maps a batch of windows `[n, 1, X, Y, Z]` to
//! class probabilities `[n, C, X, Y, Z]`, so the algorithm is tested with closures whose output is
//! known exactly.

use ndarray::{Array3, Array4, Array5, ArrayView3, ArrayView5, Axis, Zip, s};

use super::mirror::{MirrorAxes, mirrored_mean};
use super::window_weights::WindowWeighting;

use crate::networks::arrays::argmax_classes;

/// Window geometry and how many windows go through the model at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    pub window: [usize; 3],
    pub stride: [usize; 3],
    /// Windows per predictor call (memory versus overhead).
    pub batch: usize,
    pub weighting: WindowWeighting,
    /// Test-time mirroring (none: each window is predicted once).
    pub mirror: MirrorAxes,
}

/// Averaged probabilities `[C, X, Y, Z]` and the argmax label map, on the input's grid.
#[derive(Debug, Clone)]
pub struct WindowPrediction {
    pub probabilities: Array4<f32>,
    pub labels: Array3<u8>,
}

/// A predictor returned an array of the wrong shape, or failed.
#[derive(Debug, thiserror::Error)]
pub enum SlidingWindowError<E> {
    #[error("the model returned shape {got:?} for {windows} window(s); expected {expected:?}")]
    Shape {
        got: Vec<usize>,
        expected: Vec<usize>,
        windows: usize,
    },
    #[error("window {window:?} and stride {stride:?} must be positive, with at most 256 classes")]
    Geometry {
        window: [usize; 3],
        stride: [usize; 3],
    },
    #[error(transparent)]
    Predictor(E),
}

/// A stride longer than the window along an axis would leave voxels between two windows that
/// no window sees.
pub fn check_stride(stride: [usize; 3], window: [usize; 3]) -> Result<(), String> {
    match (0..3).find(|&d| stride[d] > window[d]) {
        Some(d) => Err(format!(
            "stride {stride:?} is longer than the window {window:?} along axis {d}: voxels between windows would go unpredicted (at most the window; half of it is the default)"
        )),
        None => Ok(()),
    }
}

impl SlidingWindow {
    pub fn new(window: [usize; 3], stride: [usize; 3]) -> Self {
        SlidingWindow {
            window,
            stride,
            batch: 1,
            weighting: WindowWeighting::default(),
            mirror: MirrorAxes::NONE,
        }
    }

    /// Padding `(before, after)` per axis for a volume of `shape`.
    pub fn padding(&self, shape: [usize; 3]) -> [(usize, usize); 3] {
        std::array::from_fn(|d| {
            let pad = self.window[d].saturating_sub(shape[d]);
            (pad / 2, pad - pad / 2)
        })
    }

    /// Window start positions along each axis of the padded volume.
    pub fn starts(&self, padded: [usize; 3]) -> [Vec<usize>; 3] {
        std::array::from_fn(|d| {
            let room = padded[d] - self.window[d];
            let n = room.div_ceil(self.stride[d]) + 1;
            (0..n).map(|i| (self.stride[d] * i).min(room)).collect()
        })
    }

    /// Predict a whole volume. `progress(done, total)` is called after each predictor call.
    pub fn predict<E>(
        &self,
        image: ArrayView3<f32>,
        classes: usize,
        mut predictor: impl FnMut(ArrayView5<f32>) -> Result<Array5<f32>, E>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<WindowPrediction, SlidingWindowError<E>> {
        if self.window.contains(&0) || self.stride.contains(&0) || classes == 0 || classes > 256 {
            return Err(SlidingWindowError::Geometry {
                window: self.window,
                stride: self.stride,
            });
        }
        let shape = [image.shape()[0], image.shape()[1], image.shape()[2]];
        let pad = self.padding(shape);
        let padded: [usize; 3] = std::array::from_fn(|d| shape[d] + pad[d].0 + pad[d].1);
        let mut volume = Array3::<f32>::zeros(padded);
        volume
            .slice_mut(s![
                pad[0].0..pad[0].0 + shape[0],
                pad[1].0..pad[1].0 + shape[1],
                pad[2].0..pad[2].0 + shape[2]
            ])
            .assign(&image);

        let [xs, ys, zs] = self.starts(padded);
        let mut positions = Vec::with_capacity(xs.len() * ys.len() * zs.len());
        for &x in &xs {
            for &y in &ys {
                for &z in &zs {
                    positions.push([x, y, z]);
                }
            }
        }
        let [wx, wy, wz] = self.window;
        let weights = self.weighting.map(self.window);
        let mut scores = Array4::<f32>::zeros([classes, padded[0], padded[1], padded[2]]);
        let mut weight_sums = Array3::<f32>::zeros(padded);
        let total = positions.len();
        for (done, chunk) in positions.chunks(self.batch.max(1)).enumerate() {
            let mut windows = Array5::<f32>::zeros([chunk.len(), 1, wx, wy, wz]);
            for (n, &[x, y, z]) in chunk.iter().enumerate() {
                windows
                    .slice_mut(s![n, 0, .., .., ..])
                    .assign(&volume.slice(s![x..x + wx, y..y + wy, z..z + wz]));
            }
            let expected = [chunk.len(), classes, wx, wy, wz];
            let checked = |w: ArrayView5<f32>| {
                let probabilities = predictor(w).map_err(SlidingWindowError::Predictor)?;
                if probabilities.shape() != expected {
                    return Err(SlidingWindowError::Shape {
                        got: probabilities.shape().to_vec(),
                        expected: expected.to_vec(),
                        windows: chunk.len(),
                    });
                }
                Ok(probabilities)
            };
            let probabilities = mirrored_mean(windows.view(), self.mirror, checked)?;
            for (n, &[x, y, z]) in chunk.iter().enumerate() {
                let window_probabilities = probabilities.index_axis(Axis(0), n);
                let mut target = scores.slice_mut(s![.., x..x + wx, y..y + wy, z..z + wz]);
                for (mut class_scores, class_probabilities) in target
                    .axis_iter_mut(Axis(0))
                    .zip(window_probabilities.axis_iter(Axis(0)))
                {
                    Zip::from(&mut class_scores)
                        .and(&class_probabilities)
                        .and(&weights)
                        .for_each(|score, &p, &w| *score += p * w);
                }
                let mut sums = weight_sums.slice_mut(s![x..x + wx, y..y + wy, z..z + wz]);
                sums += &weights;
            }
            progress((done * self.batch.max(1) + chunk.len()).min(total), total);
        }

        let crop = s![
            ..,
            pad[0].0..pad[0].0 + shape[0],
            pad[1].0..pad[1].0 + shape[1],
            pad[2].0..pad[2].0 + shape[2]
        ];
        let mut probabilities = scores.slice(crop).to_owned();
        let weight_sums = weight_sums.slice(s![
            pad[0].0..pad[0].0 + shape[0],
            pad[1].0..pad[1].0 + shape[1],
            pad[2].0..pad[2].0 + shape[2]
        ]);
        for mut class in probabilities.axis_iter_mut(Axis(0)) {
            class /= &weight_sums;
        }
        let labels = argmax_classes(probabilities.view());
        Ok(WindowPrediction {
            probabilities,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A "model" that gives the whole window the foreground probability `first voxel / 100`.
    fn window_tag_model(windows: ArrayView5<f32>) -> Result<Array5<f32>, Infallible> {
        let [n, _, x, y, z] = [0, 1, 2, 3, 4].map(|d| windows.shape()[d]);
        let mut out = Array5::<f32>::zeros([n, 2, x, y, z]);
        for b in 0..n {
            let p = windows[[b, 0, 0, 0, 0]] / 100.0;
            out.slice_mut(s![b, 1, .., .., ..]).fill(p);
            out.slice_mut(s![b, 0, .., .., ..]).fill(1.0 - p);
        }
        Ok(out)
    }

    #[test]
    fn starts_follow_ua_mt_formula() {
        let sw = SlidingWindow::new([4, 4, 4], [3, 4, 2]);
        // x: ceil((10 - 4) / 3) + 1 = 3 windows at 0, 3, 6; y: size 4 → one window;
        // z: ceil((9 - 4) / 2) + 1 = 4 windows at 0, 2, 4, min(6, 5) = 5.
        assert_eq!(
            sw.starts([10, 4, 9]),
            [vec![0, 3, 6], vec![0], vec![0, 2, 4, 5]]
        );
        assert_eq!(sw.padding([2, 4, 1]), [(1, 1), (0, 0), (1, 2)]);
    }

    #[test]
    fn uniform_weighting_averages_overlapping_windows_exactly() {
        // Along x (size 10, window 4, stride 3) the windows start at 0, 3, 6; the image value at a
        // window's first voxel is 10 · its x start, so the windows say p = 0.0, 0.3, 0.6.
        let image = Array3::from_shape_fn([10, 1, 1], |(i, _, _)| 10.0 * i as f32);
        let sw = SlidingWindow {
            window: [4, 1, 1],
            stride: [3, 1, 1],
            batch: 2,
            weighting: WindowWeighting::Uniform,
            mirror: MirrorAxes::NONE,
        };
        let mut calls = Vec::new();
        let out = sw
            .predict(image.view(), 2, window_tag_model, |d, t| calls.push((d, t)))
            .unwrap();
        let expected = [0.0, 0.0, 0.0, 0.15, 0.3, 0.3, 0.45, 0.6, 0.6, 0.6];
        for (x, e) in expected.iter().enumerate() {
            assert!((out.probabilities[[1, x, 0, 0]] - e).abs() < 1e-6, "x={x}");
            assert!(
                (out.probabilities[[0, x, 0, 0]] - (1.0 - e)).abs() < 1e-6,
                "x={x}"
            );
        }
        assert_eq!(
            out.labels.iter().copied().collect::<Vec<_>>(),
            [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
        );
        assert_eq!(calls, [(2, 3), (3, 3)]);
    }

    #[test]
    fn gaussian_weighting_favours_window_centres_and_stays_normalised() {
        // Windows of 4 along x at 0, 2, 4, 6 saying p = 0.0, 0.2, 0.4, 0.6. The Gaussian of a
        // side of 4 (centre 1.5, σ = 0.5) weighs the two inner voxels 1 and the outer ones
        // exp(-4.5) / exp(-0.5) = exp(-4).
        let image = Array3::from_shape_fn([10, 1, 1], |(i, _, _)| 10.0 * i as f32);
        let gaussian = SlidingWindow {
            window: [4, 1, 1],
            stride: [2, 1, 1],
            batch: 3,
            weighting: WindowWeighting::Gaussian,
            mirror: MirrorAxes::NONE,
        };
        let out = gaussian
            .predict(image.view(), 2, window_tag_model, |_, _| {})
            .unwrap();
        let edge = (-4.0f32).exp();
        // x = 2: the inner voxel of window 0 (p 0) and the outer voxel of window 1 (p 0.2).
        let expected = 0.2 * edge / (1.0 + edge);
        assert!((out.probabilities[[1, 2, 0, 0]] - expected).abs() < 1e-6);
        // x = 0 and x = 9 are each covered by one outer voxel only: the window's own answer.
        assert!(out.probabilities[[1, 0, 0, 0]].abs() < 1e-7);
        assert!((out.probabilities[[1, 9, 0, 0]] - 0.6).abs() < 1e-6);
        for x in 0..10 {
            let total = out.probabilities[[0, x, 0, 0]] + out.probabilities[[1, x, 0, 0]];
            assert!((total - 1.0).abs() < 1e-6, "x={x}: {total}");
        }
        let uniform = SlidingWindow {
            weighting: WindowWeighting::Uniform,
            ..gaussian
        }
        .predict(image.view(), 2, window_tag_model, |_, _| {})
        .unwrap();
        assert!((uniform.probabilities[[1, 2, 0, 0]] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn mirrored_windows_average_into_the_volume() {
        // A model whose answer depends on the window's first voxel: mirrored along x, the first
        // voxel is the window's last. With one window covering the volume, TTA over x is the
        // mean of both answers.
        let image = Array3::from_shape_fn([4, 1, 1], |(i, _, _)| 10.0 + 20.0 * i as f32);
        let sw = SlidingWindow {
            mirror: MirrorAxes([true, false, false]),
            ..SlidingWindow::new([4, 1, 1], [4, 1, 1])
        };
        let out = sw
            .predict(image.view(), 2, window_tag_model, |_, _| {})
            .unwrap();
        assert!(
            out.probabilities
                .slice(s![1, .., .., ..])
                .iter()
                .all(|&p| (p - (0.1 + 0.7) / 2.0).abs() < 1e-6)
        );
    }

    #[test]
    fn padded_axes_are_cropped_back() {
        // y has 2 voxels for a window of 4: padded with one zero row each side, so every window's
        // first voxel is padding (0) except that x varies; the result keeps the input shape.
        let image = Array3::from_shape_fn([3, 2, 2], |(i, _, _)| 50.0 + i as f32);
        let sw = SlidingWindow::new([2, 4, 2], [1, 1, 1]);
        let out = sw
            .predict(image.view(), 2, window_tag_model, |_, _| {})
            .unwrap();
        assert_eq!(out.probabilities.shape(), &[2, 3, 2, 2]);
        assert!(out.probabilities.iter().all(|&p| p == 0.0 || p == 1.0));
        assert!(out.labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn wrong_model_output_shape_is_reported() {
        let image = Array3::<f32>::zeros([4, 4, 4]);
        let sw = SlidingWindow::new([4, 4, 4], [2, 2, 2]);
        let err = sw
            .predict(image.view(), 3, window_tag_model, |_, _| {})
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the model returned shape [1, 2, 4, 4, 4] for 1 window(s); expected [1, 3, 4, 4, 4]"
        );
    }
}
