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
