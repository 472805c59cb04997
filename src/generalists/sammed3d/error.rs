//! Errors of the SAM-Med3D port: configuration, checkpoint and input problems.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SamMed3dError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SAM-Med3D model config {origin}: {message}")]
    Config { origin: String, message: String },
    #[error("SAM-Med3D checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("SAM-Med3D checkpoint {path} does not fit the configured architecture: {summary}")]
    WeightsMismatch { path: PathBuf, summary: String },
    #[error("SAM-Med3D input: {0}")]
    Input(String),
}

pub type Result<T, E = SamMed3dError> = std::result::Result<T, E>;
