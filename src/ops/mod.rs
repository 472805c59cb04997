//! Tensor operations burn lacks (MaxPool3d, trilinear interpolation, Dropout3d).

pub mod dropout;
pub mod pool;
pub mod trilinear;

pub use dropout::{Dropout3d, DropoutError, DropoutMode};
pub use pool::{PoolError, max_pool3d};
