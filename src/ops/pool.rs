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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn ramp(shape: [usize; 5], device: &Device) -> Tensor<5> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    #[test]
    fn pools_2x2x2_windows_of_a_ramp() {
        let device = Device::default();
        // A 4x4x4 ramp: value = 16x + 4y + z; the window max is at (2i+1, 2j+1, 2k+1).
        let out = max_pool3d(ramp([1, 1, 4, 4, 4], &device), [2, 2, 2]).unwrap();
        assert_eq!(out.dims(), [1, 1, 2, 2, 2]);
        let values = out.into_data().try_to_vec::<f32>().unwrap();
        let expected: Vec<f32> = [0, 1]
            .iter()
            .flat_map(|&i| [0, 1].map(move |j| (i, j)))
            .flat_map(|(i, j)| {
                [0, 1].map(move |k| (16 * (2 * i + 1) + 4 * (2 * j + 1) + 2 * k + 1) as f32)
            })
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn keeps_channels_apart_and_drops_incomplete_windows() {
        let device = Device::default();
        // [1, 2, 3, 2, 2]: the third X plane does not fill a window and is ignored (floor mode).
        let out = max_pool3d(ramp([1, 2, 3, 2, 2], &device), [2, 2, 2]).unwrap();
        assert_eq!(out.dims(), [1, 2, 1, 1, 1]);
        // Channel c holds 12c + 4x + 2y + z; the max over x<2 is at (1, 1, 1) = 12c + 7.
        assert_eq!(
            out.into_data().try_to_vec::<f32>().unwrap(),
            vec![7.0, 19.0]
        );
    }

    #[test]
    fn anisotropic_kernel_and_errors() {
        let device = Device::default();
        let out = max_pool3d(ramp([1, 1, 2, 2, 2], &device), [1, 2, 1]).unwrap();
        assert_eq!(out.dims(), [1, 1, 2, 1, 2]);
        assert_eq!(
            out.into_data().try_to_vec::<f32>().unwrap(),
            vec![2.0, 3.0, 6.0, 7.0]
        );
        let err = max_pool3d(ramp([1, 1, 1, 2, 2], &device), [2, 2, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_pool3d: input spatial shape [1, 2, 2] is smaller than the kernel [2, 2, 2]"
        );
        assert_eq!(
            max_pool3d(ramp([1, 1, 2, 2, 2], &device), [0, 2, 2]).unwrap_err(),
            PoolError::ZeroKernel { kernel: [0, 2, 2] }
        );
    }

    #[test]
    fn gradient_reaches_only_the_window_maxima() {
        let device = Device::default().autodiff();
        let x = ramp([1, 1, 2, 2, 2], &device).require_grad();
        let grads = max_pool3d(x.clone(), [2, 2, 2]).unwrap().sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(grad, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
