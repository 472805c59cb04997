//! Integer down-sampling of volumes for the reduced-cost (CPU) profiles, and the matching
//! up-sampling of predicted label maps back to the input grid.
//!
//! Images are averaged over `f x f x f` blocks; label maps take the most frequent value of each
//! block (ties go to the larger label value, so thin foreground survives). A trailing partial
//! block (size not divisible by `f`) is kept and averaged / voted over the voxels it has.

use ndarray::{Array3, s};

/// Output size of down-sampling a side of `n` voxels by `factor`.
fn reduced(n: usize, factor: usize) -> usize {
    n.div_ceil(factor)
}

/// Block mean.
pub fn downsample_image(image: &Array3<f32>, factor: usize) -> Array3<f32> {
    if factor <= 1 {
        return image.clone();
    }
    let shape = image.shape();
    let out_shape = [
        reduced(shape[0], factor),
        reduced(shape[1], factor),
        reduced(shape[2], factor),
    ];
    Array3::from_shape_fn(out_shape, |(i, j, k)| {
        let block = image.slice(s![
            i * factor..((i + 1) * factor).min(shape[0]),
            j * factor..((j + 1) * factor).min(shape[1]),
            k * factor..((k + 1) * factor).min(shape[2])
        ]);
        (block.iter().map(|&v| f64::from(v)).sum::<f64>() / block.len() as f64) as f32
    })
}

/// Block majority vote.
pub fn downsample_label(label: &Array3<u8>, factor: usize) -> Array3<u8> {
    if factor <= 1 {
        return label.clone();
    }
    let shape = label.shape();
    let out_shape = [
        reduced(shape[0], factor),
        reduced(shape[1], factor),
        reduced(shape[2], factor),
    ];
    Array3::from_shape_fn(out_shape, |(i, j, k)| {
        let block = label.slice(s![
            i * factor..((i + 1) * factor).min(shape[0]),
            j * factor..((j + 1) * factor).min(shape[1]),
            k * factor..((k + 1) * factor).min(shape[2])
        ]);
        let mut counts = [0u32; 256];
        for &v in block.iter() {
            counts[v as usize] += 1;
        }
        // max_by_key keeps the last maximum: the larger label value wins ties.
        (0..=255u8)
            .max_by_key(|&v| counts[v as usize])
            .expect("non-empty range")
    })
}

/// Nearest-neighbour up-sampling of a label map computed on the down-sampled grid, cropped to
/// the original `shape`.
pub fn upsample_label(label: &Array3<u8>, factor: usize, shape: [usize; 3]) -> Array3<u8> {
    upsample_nearest(label, factor, shape)
}

/// Nearest-neighbour up-sampling of any per-voxel value (labels, class probabilities), cropped to
/// `shape`.
pub fn upsample_nearest<T: Clone>(
    values: &Array3<T>,
    factor: usize,
    shape: [usize; 3],
) -> Array3<T> {
    if factor <= 1 {
        return values.clone();
    }
    Array3::from_shape_fn(shape, |(i, j, k)| {
        values[[i / factor, j / factor, k / factor]].clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_mean_and_partial_blocks() {
        let image = Array3::from_shape_fn([3, 2, 2], |(i, j, k)| (i * 4 + j * 2 + k) as f32);
        let small = downsample_image(&image, 2);
        assert_eq!(small.shape(), &[2, 1, 1]);
        // Block 0: values 0..8, mean 3.5; block 1 (partial, i = 2): values 8..12, mean 9.5.
        assert_eq!(small[[0, 0, 0]], 3.5);
        assert_eq!(small[[1, 0, 0]], 9.5);
    }

    #[test]
    fn majority_vote_with_ties_to_the_larger_label() {
        let mut label = Array3::<u8>::zeros([2, 2, 4]);
        // First block: five 1s out of 8 → 1.
        for (n, v) in label.slice_mut(s![.., .., 0..2]).iter_mut().enumerate() {
            *v = u8::from(n < 5);
        }
        // Second block: four 0s and four 2s → tie → 2.
        for (n, v) in label.slice_mut(s![.., .., 2..4]).iter_mut().enumerate() {
            *v = if n % 2 == 0 { 2 } else { 0 };
        }
        let small = downsample_label(&label, 2);
        assert_eq!(small.iter().copied().collect::<Vec<_>>(), [1, 2]);
        let back = upsample_label(&small, 2, [2, 2, 3]);
        assert_eq!(back.shape(), &[2, 2, 3]);
        assert_eq!(back[[1, 1, 1]], 1);
        assert_eq!(back[[0, 0, 2]], 2);
    }
}
