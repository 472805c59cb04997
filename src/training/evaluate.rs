//! End-of-run evaluation: predict held-out cases at their original resolution with a trained
//! model, write the predictions into the run folder and score them against the references
//! (Dice, Jaccard, HD95, ASD, ASSD per class; the metrics module's report files).

use std::path::Path;

use burn::tensor::Device;

use super::config::RunConfig;
use crate::data::{DataError, Dataset, SourceFormat, write_label};
use crate::inference::pipeline::{InferenceError, PredictOptions, predict_volume};
use crate::metrics::{
    CaseMetrics, EvaluationOptions, SpacingSource, evaluate_pair, write_evaluation_report,
};
use crate::networks::Specialist;

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Report(#[from] crate::Error),
    #[error("case {0} has no reference label to evaluate against")]
    NoReference(String),
}

/// The spacing metrics use: the configured one (for files that store none), else the files'.
pub fn evaluation_options(config: &RunConfig) -> EvaluationOptions {
    EvaluationOptions {
        spacing: config
            .data
            .spacing
            .map_or(SpacingSource::Files, SpacingSource::Override),
        ..EvaluationOptions::default()
    }
}

/// Predict and score the cases `ids` of `dataset`; predictions go to `predictions_dir` (named
/// `<id>` plus the input's extension) and the report to `metrics_dir`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_cases(
    model: &Specialist,
    config: &RunConfig,
    dataset: &Dataset,
    ids: &[String],
    options: PredictOptions,
    device: &Device,
    predictions_dir: &Path,
    metrics_dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Vec<CaseMetrics>, EvaluationError> {
    let classes: Vec<u8> = (1..config.network.num_classes as u8).collect();
    let metric_options = evaluation_options(config);
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        progress(id);
        let case = dataset.case(id).ok_or_else(|| {
            DataError::invalid(&dataset.root, format!("case {id} is not in the dataset"))
        })?;
        let loaded = dataset.load_case(case)?;
        let reference = loaded
            .label
            .ok_or_else(|| EvaluationError::NoReference(id.clone()))?;
        let mut prediction = predict_volume(
            model,
            &config.model_input(),
            &loaded.image,
            options,
            device,
            |_, _| {},
        )?;
        let extension = match loaded.image.source {
            SourceFormat::H5 => "h5",
            SourceFormat::Nifti => "nii.gz",
            SourceFormat::Npy => "npy",
            SourceFormat::Png => "png",
        };
        prediction.path = predictions_dir.join(format!("{id}.{extension}"));
        write_label(&prediction, &prediction.path)?;
        let mut metrics = evaluate_pair(&prediction, &reference, &classes, metric_options)?;
        metrics.case_id = id.clone();
        results.push(metrics);
    }
    if !results.is_empty() {
        write_evaluation_report(metrics_dir, &results, &metric_options)?;
    }
    Ok(results)
}
