//! CPU kernels for the convolutions that dominate a V-Net / 3D U-Net training step.
//!
//! They live in their own crate so that test builds optimise them like every dependency
//! (`[profile.dev.package.semisam-kernels]`): the kernels are written for the optimiser, and an
//! unoptimised build would be slower than the generic path they replace.
//!
//! Only plain `f32` slices cross this boundary; the burn glue (backends, autodiff) is in
//! `semisam::ops::conv3x3x3`.

pub mod batch_norm_relu;
pub mod conv3x3x3;
pub mod grid;
pub mod stride2;
