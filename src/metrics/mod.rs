//! Segmentation metrics (SPEC §7): Dice, Jaccard, HD95, ASD, ASSD, with an exact Euclidean
//! distance transform honouring per-axis spacing.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}
