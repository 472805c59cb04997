//! Segmentation metrics (docs/method.md §7): Dice, Jaccard, HD95 (medpy or MONAI convention),
//! ASD and ASSD, per case and per class, with surface distances from the exact Euclidean distance
//! transform of [`crate::morphology`] and an explicit empty-mask policy ([`EMPTY_MASK_POLICY`]).
//!
//! Layers: [`evaluate_masks`] (one binary pair) → [`evaluate_pair`] (one labelled case, several
//! classes) → [`write_evaluation_report`] (CSV + JSON + Markdown over cases).

mod binary;
mod case;
mod report;
mod statistics;

pub use binary::{
    EMPTY_MASK_POLICY, Hd95Convention, MaskMetrics, SurfaceDistances, dice_from_counts,
    evaluate_masks, image_diagonal,
};
pub use case::{
    CaseMetrics, ClassMetrics, DistanceUnit, EvaluationOptions, SpacingSource, case_id_from_path,
    evaluate_pair, spacings_agree,
};
pub use report::{MetricSummary, ReportPaths, write_evaluation_report};
pub use statistics::{mean, percentile, population_std};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "prediction {prediction} has shape {prediction_shape:?} but reference {reference} has shape {reference_shape:?}"
    )]
    ShapeMismatch {
        prediction: PathBuf,
        reference: PathBuf,
        prediction_shape: [usize; 3],
        reference_shape: [usize; 3],
    },
    #[error(
        "prediction {prediction} has voxel spacing {prediction_spacing:?} but reference {reference} has {reference_spacing:?}"
    )]
    SpacingMismatch {
        prediction: PathBuf,
        reference: PathBuf,
        prediction_spacing: [f64; 3],
        reference_spacing: [f64; 3],
    },
    #[error(
        "prediction {prediction} does not lie on the grid of reference {reference} ({difference}): it was written for another image"
    )]
    GridMismatch {
        prediction: PathBuf,
        reference: PathBuf,
        difference: String,
    },
    #[error("{path}: voxel spacing {spacing:?} is not finite and positive")]
    InvalidFileSpacing { path: PathBuf, spacing: [f64; 3] },
    #[error("voxel spacing {spacing:?} is not finite and positive")]
    InvalidSpacing { spacing: [f64; 3] },
    #[error("prediction mask has shape {prediction:?} but reference mask has shape {reference:?}")]
    MaskShapeMismatch {
        prediction: Vec<usize>,
        reference: Vec<usize>,
    },
    #[error("no classes to evaluate for {reference}")]
    NoClasses { reference: PathBuf },
    #[error("evaluation report in {dir}: {message}")]
    Report { dir: PathBuf, message: String },
}
