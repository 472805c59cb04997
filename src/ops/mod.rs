//! Tensor operations burn lacks (MaxPool3d, trilinear interpolation, Dropout3d).
pub mod trilinear;
