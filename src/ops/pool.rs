//! 3D max pooling, which burn 0.22 lacks (tracel-ai/burn#4213).
//!
//! Only non-overlapping windows (stride = kernel) are supported: that is what the 3D U-Net's
//! `MaxPool3d(2)` needs, and it maps onto burn's optimised 2D pooling plus one reduction, so it
//! stays fast and differentiable on every backend.

use burn::tensor::Tensor;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("max_pool3d: kernel {kernel:?} has a zero side")]
    ZeroKernel { kernel: [usize; 3] },
    #[error("max_pool3d: input spatial shape {spatial:?} is smaller than the kernel {kernel:?}")]
    InputSmallerThanKernel {
        spatial: [usize; 3],
        kernel: [usize; 3],
    },
}

/// Max pooling over non-overlapping `kernel` windows of a `[N, C, X, Y, Z]` tensor.
///
/// Like PyTorch's `MaxPool3d(kernel)` (stride = kernel, no padding, floor mode): trailing
/// voxels that do not fill a whole window are dropped.
pub fn max_pool3d(input: Tensor<5>, kernel: [usize; 3]) -> Result<Tensor<5>, PoolError> {
    if kernel.contains(&0) {
        return Err(PoolError::ZeroKernel { kernel });
    }
    let [n, c, x, y, z] = input.dims();
    let spatial = [x, y, z];
    if (0..3).any(|axis| spatial[axis] < kernel[axis]) {
        return Err(PoolError::InputSmallerThanKernel { spatial, kernel });
    }
    let [kx, ky, kz] = kernel;
    let (out_x, out_y, out_z) = (x / kx, y / ky, z / kz);

    // Pool (Y, Z) with the 2D kernel, folding X into the channel axis.
    let planes = input
        .narrow(2, 0, out_x * kx)
        .reshape([n, c * out_x * kx, y, z]);
    let pooled_yz = max_pool2d(planes, MaxPoolOptions::new([ky, kz]));
    // Then reduce the kx consecutive planes of each window along X.
    let pooled = pooled_yz
        .reshape([n * c * out_x, kx, out_y * out_z])
        .max_dim(1);
    Ok(pooled.reshape([n, c, out_x, out_y, out_z]))
}
