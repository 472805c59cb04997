//! Building the low-resolution mask prompt from a full-size mask as SemiSAM does:
//! `F.interpolate(mask, size=M^3)` with the default legacy `nearest` mode, which takes the
//! voxel `floor(dst · in / out)` (the first voxel of each block when shrinking by an integer
//! factor): not a mean, not `nearest-exact`.

use burn::tensor::{Int, Tensor, TensorData};

/// Legacy-nearest resize of a `[N, C, D, H, W]` tensor to `size`.
pub fn nearest_resize(x: Tensor<5>, size: [usize; 3]) -> Tensor<5> {
    let device = x.device();
    let mut x = x;
    for (axis, &out_len) in (2..5).zip(size.iter()) {
        let in_len = x.dims()[axis];
        if in_len == out_len {
            continue;
        }
        // PyTorch computes the scale and the product in f32.
        let scale = in_len as f32 / out_len as f32;
        let index: Vec<i64> = (0..out_len)
            .map(|dst| ((dst as f32 * scale).floor() as usize).min(in_len - 1) as i64)
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [out_len]), &device);
        x = x.select(axis, index);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use ndarray::ArrayD;
    use ndarray_npy::ReadNpyExt;

    fn fixture(name: &str) -> ArrayD<f32> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sammed3d/interp")
            .join(name);
        ArrayD::<f32>::read_npy(std::fs::File::open(&path).unwrap()).unwrap()
    }

    #[test]
    fn shrinking_by_four_matches_pytorch_bit_for_bit() {
        let input = fixture("nearest_in_32.npy");
        let values: Vec<f32> = input.iter().copied().collect();
        let x = Tensor::<5>::from_data(
            TensorData::new(values, [1, 1, 32, 32, 32]),
            &Device::default(),
        );
        let out = nearest_resize(x, [8, 8, 8]);
        assert_eq!(out.dims(), [1, 1, 8, 8, 8]);
        let expected: Vec<f32> = fixture("nearest_down4_out_8.npy").iter().copied().collect();
        assert_eq!(out.into_data().try_to_vec::<f32>().unwrap(), expected);
    }

    #[test]
    fn picks_floor_of_the_scaled_index() {
        // 5 -> 2: scale 2.5, sources floor(0) = 0 and floor(2.5) = 2.
        let x = Tensor::<5>::from_data(
            TensorData::new(vec![10.0f32, 11.0, 12.0, 13.0, 14.0], [1, 1, 1, 1, 5]),
            &Device::default(),
        );
        let out = nearest_resize(x, [1, 1, 2]);
        assert_eq!(
            out.into_data().try_to_vec::<f32>().unwrap(),
            vec![10.0, 12.0]
        );
    }
}
