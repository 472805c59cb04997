//! Resampling volumes to another voxel spacing: images trilinearly, label maps by linear
//! interpolation of each class's indicator followed by an arg-max (nnU-Net's choice: nearest
//! neighbour loses thin structures when the grid coarsens and makes staircases when it refines).
//!
//! Grids are aligned on the volume's outer faces, not on the first and last voxel centres: output
//! voxel `o` of `m` along an axis of `n` input voxels sits at input coordinate
//! `(o + 0.5) · n / m − 0.5` (`align_corners = false`), so the field of view is kept and a grid of
//! the same shape maps onto itself exactly. Coordinates past the outer voxel centres take the
//! outer voxel's value.

use ndarray::{Array3, ArrayView3, Axis, Zip};

/// Number of voxels along each axis after resampling `shape` from `spacing` to `target` (mm),
/// rounded to the nearest integer and at least 1.
pub fn resampled_shape(shape: [usize; 3], spacing: [f64; 3], target: [f64; 3]) -> [usize; 3] {
    std::array::from_fn(|d| {
        let extent = shape[d] as f64 * spacing[d];
        ((extent / target[d]).round() as usize).max(1)
    })
}

/// Whether resampling from `spacing` to `target` changes nothing (spacings equal within 0.1 %).
pub fn same_spacing(spacing: [f64; 3], target: [f64; 3]) -> bool {
    spacing
        .iter()
        .zip(&target)
        .all(|(&a, &b)| (a - b).abs() <= 1e-3 * b.abs().max(a.abs()))
}

/// The two input neighbours and the weight of the upper one for each output position.
fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
            let lo = x.floor() as usize;
            let hi = (lo + 1).min(n_in - 1);
            (lo, hi, (x - lo as f64) as f32)
        })
        .collect()
}

/// Linear interpolation along one axis to `n_out` voxels.
fn resample_axis(input: ArrayView3<f32>, axis: usize, n_out: usize) -> Array3<f32> {
    let n_in = input.len_of(Axis(axis));
    if n_in == n_out {
        return input.to_owned();
    }
    let mut shape = [input.shape()[0], input.shape()[1], input.shape()[2]];
    shape[axis] = n_out;
    let mut output = Array3::<f32>::zeros(shape);
    for (o, (lo, hi, w)) in linear_taps(n_in, n_out).into_iter().enumerate() {
        let lower = input.index_axis(Axis(axis), lo);
        let upper = input.index_axis(Axis(axis), hi);
        Zip::from(output.index_axis_mut(Axis(axis), o))
            .and(lower)
            .and(upper)
            .for_each(|out, &a, &b| *out = a + w * (b - a));
    }
    output
}

/// Trilinear resampling of `image` to `shape`.
pub fn resample_image_to_shape(image: ArrayView3<f32>, shape: [usize; 3]) -> Array3<f32> {
    // Separable: one linear pass per axis, shrinking axes first keeps the intermediates small.
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| {
        let ratio = |d: usize| shape[d] as f64 / image.shape()[d] as f64;
        ratio(a).total_cmp(&ratio(b))
    });
    let mut current = image.to_owned();
    for axis in order {
        current = resample_axis(current.view(), axis, shape[axis]);
    }
    current
}

/// Trilinear resampling of `image` from `spacing` to `target` (mm).
pub fn resample_image(image: ArrayView3<f32>, spacing: [f64; 3], target: [f64; 3]) -> Array3<f32> {
    let shape = [image.shape()[0], image.shape()[1], image.shape()[2]];
    if same_spacing(spacing, target) {
        return image.to_owned();
    }
    resample_image_to_shape(image, resampled_shape(shape, spacing, target))
}

/// Label map resampled to `shape`: each class's indicator is interpolated trilinearly and every
/// voxel takes the class of largest weight (ties go to the smaller label value).
pub fn resample_label_to_shape(label: ArrayView3<u8>, shape: [usize; 3]) -> Array3<u8> {
    if label.shape() == shape {
        return label.to_owned();
    }
    let classes = label.iter().copied().max().unwrap_or(0);
    let mut best_weight = Array3::<f32>::from_elem(shape, -1.0);
    let mut best_class = Array3::<u8>::zeros(shape);
    for class in 0..=classes {
        if class > 0 && !label.iter().any(|&v| v == class) {
            continue;
        }
        let indicator = label.mapv(|v| f32::from(u8::from(v == class)));
        let weight = resample_image_to_shape(indicator.view(), shape);
        Zip::from(&mut best_weight)
            .and(&mut best_class)
            .and(&weight)
            .for_each(|best, best_c, &w| {
                if w > *best {
                    *best = w;
                    *best_c = class;
                }
            });
    }
    best_class
}

/// Label map resampled from `spacing` to `target` (mm).
pub fn resample_label(label: ArrayView3<u8>, spacing: [f64; 3], target: [f64; 3]) -> Array3<u8> {
    let shape = [label.shape()[0], label.shape()[1], label.shape()[2]];
    if same_spacing(spacing, target) {
        return label.to_owned();
    }
    resample_label_to_shape(label, resampled_shape(shape, spacing, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::s;

    #[test]
    fn shapes_keep_the_physical_extent() {
        assert_eq!(
            resampled_shape([35, 50, 36], [1.0, 1.0, 1.0], [1.0, 1.0, 2.5]),
            [35, 50, 14]
        );
        assert_eq!(
            resampled_shape([35, 50, 14], [1.0, 1.0, 2.5], [1.0, 1.0, 1.0]),
            [35, 50, 35]
        );
        assert_eq!(resampled_shape([1, 1, 1], [1.0; 3], [10.0; 3]), [1, 1, 1]);
    }

    #[test]
    fn the_same_grid_is_the_identity() {
        let image = Array3::from_shape_fn([4, 5, 6], |(i, j, k)| (i * 31 + j * 7 + k) as f32);
        assert_eq!(resample_image(image.view(), [1.0; 3], [1.0; 3]), image);
        assert_eq!(resample_image_to_shape(image.view(), [4, 5, 6]), image);
        let label = image.mapv(|v| (v as u8) % 3);
        assert_eq!(resample_label_to_shape(label.view(), [4, 5, 6]), label);
    }

    #[test]
    fn linear_ramps_stay_linear_inside_the_volume() {
        // A ramp along z sampled at voxel centres: halving the spacing must interpolate it.
        let image = Array3::from_shape_fn([2, 2, 4], |(_, _, k)| k as f32 * 2.0);
        let fine = resample_image(image.view(), [1.0, 1.0, 2.0], [1.0, 1.0, 1.0]);
        assert_eq!(fine.shape(), &[2, 2, 8]);
        // Output voxel o sits at input coordinate (o + 0.5) / 2 - 0.5.
        for k in 0..8 {
            let x: f32 = ((k as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, 3.0);
            assert_abs_diff_eq!(fine[[1, 0, k]], x * 2.0, epsilon = 1e-6);
        }
        assert_eq!(fine[[0, 1, 0]], 0.0);
        assert_eq!(fine[[0, 1, 7]], 6.0);
    }

    #[test]
    fn down_then_up_round_trip_keeps_a_smooth_image_close() {
        let image = Array3::from_shape_fn([20, 20, 30], |(i, j, k)| {
            ((i as f32) * 0.2).sin() + ((j as f32) * 0.15).cos() + (k as f32) * 0.05
        });
        let coarse = resample_image(image.view(), [1.0, 1.0, 1.0], [1.0, 1.0, 2.5]);
        assert_eq!(coarse.shape(), &[20, 20, 12]);
        let back = resample_image_to_shape(coarse.view(), [20, 20, 30]);
        let worst = Zip::from(&image)
            .and(&back)
            .fold(0f32, |m, &a, &b| m.max((a - b).abs()));
        assert!(worst < 0.1, "largest round-trip error {worst}");
    }

    #[test]
    fn labels_round_trip_through_a_coarser_grid() {
        // Two boxes of classes 1 and 2 in a background of 0, 3 voxels thick along the coarsened
        // axis: linear interpolation of the indicators keeps them where nearest neighbour would
        // snap their faces to the coarse grid.
        let mut label = Array3::<u8>::zeros([16, 16, 30]);
        label.slice_mut(s![2..8, 3..12, 5..20]).fill(1);
        label.slice_mut(s![9..14, 3..12, 10..25]).fill(2);
        let coarse = resample_label(label.view(), [1.0, 1.0, 1.0], [1.0, 1.0, 2.5]);
        assert_eq!(coarse.shape(), &[16, 16, 12]);
        let values: std::collections::BTreeSet<u8> = coarse.iter().copied().collect();
        assert_eq!(values.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
        let back = resample_label_to_shape(coarse.view(), [16, 16, 30]);
        for class in 1..=2u8 {
            let (mut both, mut either) = (0usize, 0usize);
            Zip::from(&label).and(&back).for_each(|&a, &b| {
                both += usize::from(a == class && b == class);
                either += usize::from(a == class || b == class);
            });
            let overlap = both as f64 / either as f64;
            assert!(overlap > 0.85, "class {class}: Jaccard {overlap}");
        }
    }
}
