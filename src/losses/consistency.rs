//! Consistency losses between the student and a target (teacher probabilities, SAM's one-hot
//! pseudo-label), over the voxels a mask or per-voxel weights keep.

use burn::tensor::Tensor;

use super::supervised::DICE_SMOOTH;
use super::{LossError, check_same_shape};
use crate::ops::channel_log_softmax;

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

/// Cross-entropy plus foreground Dice of the student against a one-hot target, weighted per
/// voxel: for logits and `target` `[N, C, X, Y, Z]` and weights `[N, 1, X, Y, Z]` (0 leaves a
/// voxel out),
/// `CE = -Σ w Σ_c t_c log softmax_c / Σ w` and
/// `Dice = mean over c ≥ 1 of 1 - (2 Σ w p_c t_c + s) / (Σ w p_c² + Σ w t_c² + s)`,
/// s = 1e-5 (the supervised loss's V-Net Dice); returns `CE + Dice`.
pub fn weighted_dice_cross_entropy(
    logits: Tensor<5>,
    target: Tensor<5>,
    weights: Tensor<5>,
) -> Result<Tensor<1>, LossError> {
    check_same_shape(
        "weighted_dice_cross_entropy",
        ("logits", &logits.dims()),
        ("target", &target.dims()),
    )?;
    let [n, classes, x, y, z] = logits.dims();
    check_same_shape(
        "weighted_dice_cross_entropy",
        ("weights", &weights.dims()),
        ("logits with one channel", &[n, 1, x, y, z]),
    )?;
    if classes < 2 {
        return Err(LossError::TooFewClasses {
            loss: "weighted_dice_cross_entropy",
            min: 2,
            got: classes,
        });
    }
    let log_probabilities = channel_log_softmax(logits);
    let probabilities = log_probabilities.clone().exp();
    let picked = (log_probabilities * target.clone()).sum_dim(1) * weights.clone();
    let cross_entropy = picked.sum().neg() / weights.clone().sum().add_scalar(1e-16);
    let foreground = |t: Tensor<5>| t.narrow(1, 1, classes - 1);
    let (p, t) = (foreground(probabilities), foreground(target));
    let sum_per_class = |v: Tensor<5>| {
        (v * weights.clone())
            .swap_dims(0, 1)
            .reshape([classes - 1, n * x * y * z])
            .sum_dim(1)
            .reshape([classes - 1])
    };
    let intersection = sum_per_class(p.clone() * t.clone());
    let denominator = sum_per_class(p.square()) + sum_per_class(t.square());
    let ratio =
        intersection.mul_scalar(2.0).add_scalar(DICE_SMOOTH) / denominator.add_scalar(DICE_SMOOTH);
    let dice = ratio.neg().add_scalar(1.0).mean();
    Ok(cross_entropy + dice)
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
    fn weighted_dice_cross_entropy_hand_value() {
        let device = Device::default();
        // Logits (0, ln 3) and (0, 0): softmax (1/4, 3/4) and (1/2, 1/2); targets class 1, 0.
        let logits = Tensor::<5>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3f32.ln(), 0.0], [1, 2, 1, 1, 2]),
            &device,
        );
        let target = probs([[0.0, 1.0], [1.0, 0.0]], &device);
        let weights =
            Tensor::<5>::from_data(TensorData::new(vec![1.0f32, 0.5], [1, 1, 1, 1, 2]), &device);
        let value = weighted_dice_cross_entropy(logits, target, weights)
            .unwrap()
            .into_scalar::<f32>();
        // CE = -(1 · ln 3/4 + 0.5 · ln 1/2) / 1.5
        let ce = -((0.75f64).ln() + 0.5 * (0.5f64).ln()) / 1.5;
        // foreground p = (3/4, 1/2), t = (1, 0), w = (1, 0.5):
        // Dice = 1 - (2 · 0.75 + s) / (0.5625 + 0.5 · 0.25 + 1 + s)
        let s = 1e-5;
        let dice = 1.0 - (1.5 + s) / (0.5625 + 0.125 + 1.0 + s);
        assert_relative_eq!(f64::from(value), ce + dice, epsilon = 1e-6);
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
