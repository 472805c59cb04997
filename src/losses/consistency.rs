//! Consistency losses between two probability maps (student vs teacher, student vs SAM).

use burn::tensor::Tensor;

use super::{LossError, check_same_shape};

/// Mean over all elements of `(a - b)²` (the "softmax MSE" of Mean Teacher when `a` and `b`
/// are softmax outputs).
pub fn squared_error_mean(a: Tensor<5>, b: Tensor<5>) -> Result<Tensor<1>, LossError> {
    check_same_shape("squared_error_mean", ("a", &a.dims()), ("b", &b.dims()))?;
    Ok((a - b).square().mean())
}

/// `Σ mask · (a - b)² / (C · Σ mask + 1e-16)` for `a`, `b` `[N, C, X, Y, Z]` and a voxel mask
/// `[N, 1, X, Y, Z]` of 0/1 broadcast over the C channels: the mean squared error over the
/// voxels the mask keeps (UA-MT's masked consistency; 0 when the mask is empty).
pub fn masked_squared_error(
    a: Tensor<5>,
    b: Tensor<5>,
    mask: Tensor<5>,
) -> Result<Tensor<1>, LossError> {
    check_same_shape("masked_squared_error", ("a", &a.dims()), ("b", &b.dims()))?;
    let [n, channels, x, y, z] = a.dims();
    check_same_shape(
        "masked_squared_error",
        ("mask", &mask.dims()),
        ("a with one channel", &[n, 1, x, y, z]),
    )?;
    let masked = ((a - b).square() * mask.clone()).sum();
    let kept = mask.sum().mul_scalar(channels as f64).add_scalar(1e-16);
    Ok(masked / kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use burn::tensor::{Device, TensorData};

    /// `[1, 2, 1, 1, 2]` from per-voxel (channel 0, channel 1) pairs.
    fn probs(voxels: [[f32; 2]; 2], device: &Device) -> Tensor<5> {
        let data = vec![voxels[0][0], voxels[1][0], voxels[0][1], voxels[1][1]];
        Tensor::from_data(TensorData::new(data, [1, 2, 1, 1, 2]), device)
    }

    #[test]
    fn squared_error_mean_hand_value() {
        let device = Device::default();
        let a = probs([[0.9, 0.1], [0.4, 0.6]], &device);
        let b = probs([[0.6, 0.4], [0.5, 0.5]], &device);
        // (0.09 + 0.09 + 0.01 + 0.01) / 4
        let mse = squared_error_mean(a, b).unwrap().into_scalar::<f32>();
        assert_relative_eq!(mse, 0.05, epsilon = 1e-6);
    }

    #[test]
    fn masked_error_is_normalised_by_the_kept_voxels_times_channels() {
        let device = Device::default();
        let a = probs([[0.9, 0.1], [0.4, 0.6]], &device);
        let b = probs([[0.6, 0.4], [0.5, 0.5]], &device);
        let keep_first =
            Tensor::<5>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 1, 1, 1, 2]), &device);
        // Only voxel 0 counts: (0.09 + 0.09) / (2 channels · 1 voxel).
        let masked = masked_squared_error(a.clone(), b.clone(), keep_first).unwrap();
        assert_relative_eq!(masked.into_scalar::<f32>(), 0.09, epsilon = 1e-6);
        let keep_none = Tensor::<5>::zeros([1, 1, 1, 1, 2], &device);
        let empty = masked_squared_error(a.clone(), b.clone(), keep_none).unwrap();
        assert_eq!(empty.into_scalar::<f32>(), 0.0);
        let keep_all = Tensor::<5>::ones([1, 1, 1, 1, 2], &device);
        let all = masked_squared_error(a, b, keep_all).unwrap();
        assert_relative_eq!(all.into_scalar::<f32>(), 0.05, epsilon = 1e-6);
    }

    #[test]
    fn masked_error_rejects_a_mask_with_channels() {
        let device = Device::default();
        let a = probs([[0.9, 0.1], [0.4, 0.6]], &device);
        let mask = Tensor::<5>::ones([1, 2, 1, 1, 2], &device);
        let err = masked_squared_error(a.clone(), a, mask).unwrap_err();
        assert_eq!(
            err.to_string(),
            "masked_squared_error: shape mismatch, mask is [1, 2, 1, 1, 2] but a with one channel is [1, 1, 1, 1, 2]"
        );
    }
}
