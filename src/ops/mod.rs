//! Tensor operations burn lacks (MaxPool3d, trilinear interpolation, Dropout3d).

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
