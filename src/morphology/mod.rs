//! Binary morphology on 3D masks: exact Euclidean distance transform with per-axis spacing,
//! object surfaces, bounding boxes and connected components.
//!
//! All functions take `ndarray` views indexed `[i, j, k]` like [`crate::data::Volume`]; spacings
//! are given in the same axis order.

mod bounding_box;
mod components;
mod distance;
mod surface;

pub use bounding_box::{bounding_box, union_box};
pub use components::{Connectivity, label_components, largest_component};
pub use distance::{distance_transform, squared_distance_transform};
pub use surface::surface;
