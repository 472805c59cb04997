//! Tensor operations burn lacks (MaxPool3d, trilinear interpolation, Dropout3d), and the
//! networks' hot layers on hand-written kernels.

pub mod batch_norm_relu;
pub mod channel_softmax;
pub mod conv3x3x3;
#[cfg(feature = "flex")]
mod direct_layer;
pub mod dropout;
#[cfg(feature = "flex")]
mod flex_primitives;
#[cfg(test)]
mod layer_parity;
pub mod pool;
pub mod stride2;
pub mod trilinear;

pub use batch_norm_relu::batch_norm_relu;
pub use channel_softmax::{channel_log_softmax, channel_softmax};
pub use conv3x3x3::conv3x3x3;
pub use dropout::{Dropout3d, DropoutError, DropoutMode};
pub use pool::{PoolError, max_pool3d};
pub use stride2::{down_conv, up_conv};

pub use semisam_kernels::KernelPath;
pub use semisam_kernels::path::KernelChoiceError;

/// The kernel path the hand-written layers use in this process, or the error when
/// `SEMISAM_KERNELS` asks for one this CPU lacks (the layers themselves would warn and take the
/// best path instead). For callers that must not measure or report the wrong path.
pub fn kernel_path() -> Result<KernelPath, KernelChoiceError> {
    semisam_kernels::path::requested()?;
    Ok(semisam_kernels::path::selected())
}

/// The kernel path the hand-written layers use in this process (`SEMISAM_KERNELS`, or the best
/// the CPU has when it asks for none or for one the CPU lacks).
pub fn selected_kernel_path() -> KernelPath {
    semisam_kernels::path::selected()
}
