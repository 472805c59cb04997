//! Mirror test-time augmentation: a batch of windows is predicted as it is and mirrored along
//! every combination of the chosen axes, each prediction is mirrored back, and the class
//! probabilities are averaged (nnU-Net's mirroring). Only axes the training augmented by flips
//! help: along the others the network never saw mirrored anatomy.

use ndarray::{Array5, ArrayView5, Axis};
use serde::{Deserialize, Serialize};

/// Spatial axes (0 = x, 1 = y, 2 = z) to mirror along; none means no test-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorAxes(pub [bool; 3]);

impl MirrorAxes {
    pub const NONE: MirrorAxes = MirrorAxes([false; 3]);

    /// The axes in `list` (each in 0..3).
    pub fn from_list(list: &[usize]) -> Result<Self, String> {
        let mut axes = [false; 3];
        for &axis in list {
            if axis > 2 {
                return Err(format!(
                    "mirror axis {axis} is not a spatial axis (0, 1 or 2)"
                ));
            }
            axes[axis] = true;
        }
        Ok(MirrorAxes(axes))
    }

    pub fn is_empty(self) -> bool {
        self.0 == [false; 3]
    }

    /// The indices of the mirrored axes.
    pub fn list(self) -> Vec<usize> {
        (0..3).filter(|&a| self.0[a]).collect()
    }

    /// Every subset of the axes (the empty one first): the `2^k` passes of the augmentation.
    pub fn combinations(self) -> Vec<[bool; 3]> {
        let axes = self.list();
        (0..1usize << axes.len())
            .map(|bits| {
                let mut flip = [false; 3];
                for (n, &axis) in axes.iter().enumerate() {
                    flip[axis] = bits & (1 << n) != 0;
                }
                flip
            })
            .collect()
    }
}

/// `[n, C, X, Y, Z]` mirrored along the spatial axes set in `flip`.
pub fn mirror_windows(windows: ArrayView5<f32>, flip: [bool; 3]) -> Array5<f32> {
    let mut view = windows;
    for (axis, &f) in flip.iter().enumerate() {
        if f {
            view.invert_axis(Axis(2 + axis));
        }
    }
    view.as_standard_layout().into_owned()
}

/// The mean of `predict` over every mirror combination of `axes`, each mirrored back.
/// `predict` sees only standard-layout windows and must return `[n, C, X, Y, Z]` (the caller
/// checks the shape, which every pass shares).
pub fn mirrored_mean<E>(
    windows: ArrayView5<f32>,
    axes: MirrorAxes,
    mut predict: impl FnMut(ArrayView5<f32>) -> Result<Array5<f32>, E>,
) -> Result<Array5<f32>, E> {
    let combinations = axes.combinations();
    let mut sum = predict(windows)?;
    for &flip in &combinations[1..] {
        let mirrored = mirror_windows(windows, flip);
        let prediction = predict(mirrored.view())?;
        sum += &mirror_windows(prediction.view(), flip);
    }
    let passes = combinations.len() as f32;
    if passes > 1.0 {
        sum.mapv_inplace(|p| p / passes);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn combinations_cover_every_subset_once() {
        assert_eq!(MirrorAxes::NONE.combinations(), [[false; 3]]);
        let xy = MirrorAxes::from_list(&[1, 0]).unwrap();
        assert_eq!(
            xy.combinations(),
            [
                [false, false, false],
                [true, false, false],
                [false, true, false],
                [true, true, false]
            ]
        );
        assert_eq!(
            MirrorAxes::from_list(&[0, 1, 2])
                .unwrap()
                .combinations()
                .len(),
            8
        );
        assert_eq!(
            MirrorAxes::from_list(&[3]).unwrap_err(),
            "mirror axis 3 is not a spatial axis (0, 1 or 2)"
        );
    }

    #[test]
    fn mirrored_mean_equals_the_mean_of_explicitly_mirrored_predictions() {
        // A position-dependent "model": class 1 = sigmoid(voxel value + 0.1 · x − 0.2 · y), so
        // mirroring changes its answer and the average is not the plain prediction.
        let model = |w: ArrayView5<f32>| -> Result<Array5<f32>, Infallible> {
            let [n, _, x, y, z] = [0, 1, 2, 3, 4].map(|d| w.shape()[d]);
            Ok(Array5::from_shape_fn([n, 2, x, y, z], |(b, c, i, j, k)| {
                let s = w[[b, 0, i, j, k]] + 0.1 * i as f32 - 0.2 * j as f32;
                let p = 1.0 / (1.0 + (-s).exp());
                if c == 1 { p } else { 1.0 - p }
            }))
        };
        let windows = Array5::from_shape_fn([2, 1, 4, 3, 2], |(b, _, i, j, k)| {
            ((b * 7 + i * 5 + j * 3 + k) % 11) as f32 / 5.0 - 1.0
        });
        let axes = MirrorAxes::from_list(&[0, 1]).unwrap();
        let tta = mirrored_mean(windows.view(), axes, model).unwrap();

        let mut expected = Array5::<f32>::zeros([2, 2, 4, 3, 2]);
        for flip in [
            [false; 3],
            [true, false, false],
            [false, true, false],
            [true, true, false],
        ] {
            let mut input = windows.clone();
            for (a, &f) in flip.iter().enumerate() {
                if f {
                    input.invert_axis(Axis(2 + a));
                }
            }
            let mut out = model(input.as_standard_layout().view()).unwrap();
            for (a, &f) in flip.iter().enumerate() {
                if f {
                    out.invert_axis(Axis(2 + a));
                }
            }
            expected += &out;
        }
        expected /= 4.0;
        let plain = model(windows.view()).unwrap();
        assert!(tta.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3));
        for (a, b) in tta.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let none = mirrored_mean(windows.view(), MirrorAxes::NONE, model).unwrap();
        assert_eq!(none, plain);
    }
}
