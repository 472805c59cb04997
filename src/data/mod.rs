//! Data: medical volumes (UA-MT h5, NIfTI, npy), dataset layouts, case lists and splits.

pub mod augment;
pub mod batches;
pub mod volume;

pub use volume::{Geometry, SourceFormat, Volume};

use std::path::PathBuf;

/// Everything that can be wrong with input data. Every variant names the file or case.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}
