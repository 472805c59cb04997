//! Whole-file prediction: read → prepare as in training (normalise, resample) → sliding
//! window (one model, or the mean of an ensemble's probabilities) → optional largest-component
//! clean-up → back to the input grid → write in the input's format with the input's geometry,
//! and optionally the class probabilities beside it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::{Array3, Array4};
use serde::Serialize;

use crate::data::dataset::UAMT_FILE;
use crate::data::{DataError, Preparation, SourceFormat, Volume, read_image, write_label};
use crate::inference::SlidingWindow;
use crate::inference::ensemble::{Ensemble, EnsembleError, EnsembleMember};
use crate::inference::mirror::MirrorAxes;
use crate::inference::probabilities::write_probabilities;
use crate::inference::window_weights::WindowWeighting;
use crate::networks::arrays::argmax_classes;
use crate::networks::{NetworkError, Specialist};

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Boxed: its paths and shapes would make every inference result large.
    #[error(transparent)]
    Ensemble(Box<EnsembleError>),
    #[error(
        "{0}: no input volume found (expected {extensions} files, or UA-MT case folders)",
        extensions = crate::data::volume_extensions_text()
    )]
    NoInputs(PathBuf),
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
}

impl From<EnsembleError> for InferenceError {
    fn from(error: EnsembleError) -> Self {
        InferenceError::Ensemble(Box::new(error))
    }
}

/// What a trained network expects of a volume: its run's preparation, input channels, window
/// and classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInput {
    pub preparation: Preparation,
    /// Input channels (modalities) per voxel.
    pub channels: usize,
    /// The sliding window (the training patch).
    pub window: [usize; 3],
    pub classes: usize,
}

/// Prediction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    pub stride: [usize; 3],
    /// Keep the largest connected component of each foreground class.
    pub largest_component: bool,
    /// Windows per forward pass.
    pub window_batch: usize,
    pub weighting: WindowWeighting,
    /// Mirror test-time augmentation (none: off).
    pub mirror: MirrorAxes,
}

impl PredictOptions {
    /// The sliding window for a model trained on patches of `patch`.
    pub fn sliding_window(&self, patch: [usize; 3]) -> SlidingWindow {
        SlidingWindow {
            window: patch,
            stride: self.stride,
            batch: self.window_batch,
            weighting: self.weighting,
            mirror: self.mirror,
        }
    }
}

/// A label map and the class probabilities `[C, x, y, z]` it was taken from, on the model's grid.
#[derive(Debug, Clone)]
pub struct VolumePrediction {
    pub labels: Volume<u8>,
    pub probabilities: Array4<f32>,
    /// How the model's grid was made from the input's, to go back.
    pub preparation: Preparation,
}

impl VolumePrediction {
    /// The probabilities on the input's grid (what `--save-probabilities` writes).
    pub fn probabilities_on_input_grid(&self) -> Array4<f32> {
        self.preparation
            .restore_probabilities(&self.probabilities, self.labels.shape())
    }
}

/// One input volume to predict and where its prediction goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionJob {
    pub case: String,
    pub input: PathBuf,
    pub output: PathBuf,
}

/// What was predicted for one input (written to `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionSummary {
    pub case: String,
    pub input: PathBuf,
    pub output: PathBuf,
    /// The saved class probabilities, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<PathBuf>,
    pub shape: [usize; 3],
    /// Voxels per class value 0..C.
    pub voxels_per_class: Vec<usize>,
    pub seconds: f64,
}

/// Label map of `image` on its own grid, with its geometry.
pub fn predict_volume(
    model: &Specialist,
    input: &ModelInput,
    image: &Volume<f32>,
    options: PredictOptions,
    device: &Device,
    progress: impl FnMut(usize, usize),
) -> Result<Volume<u8>, InferenceError> {
    let member = EnsembleMember {
        source: &image.path,
        input: *input,
        model,
        device,
        window: options.sliding_window(input.window),
    };
    let ensemble = Ensemble::new(vec![member])?;
    Ok(predict_with(&ensemble, image, options.largest_component, progress)?.labels)
}

/// The ensemble's label map of `image` on its own grid, with its geometry, and the mean
/// probabilities behind it.
pub fn predict_with(
    ensemble: &Ensemble,
    image: &Volume<f32>,
    largest_component: bool,
    progress: impl FnMut(usize, usize),
) -> Result<VolumePrediction, InferenceError> {
    let probabilities = ensemble.probabilities(image, progress)?;
    let mut labels = argmax_classes(probabilities.view());
    if largest_component {
        labels = super::postprocess::keep_largest_components(&labels, ensemble.classes());
    }
    let preparation = ensemble.preparation();
    let labels = preparation.restore_label(&labels, image.shape());
    Ok(VolumePrediction {
        labels: Volume {
            data: labels,
            geometry: image.geometry.clone(),
            source: image.source,
            path: image.path.clone(),
        },
        probabilities,
        preparation,
    })
}

/// The volumes under `input` (a file, a folder of volume files, or a UA-MT folder of
/// `<ID>/mri_norm2.h5`) and their output paths in `output`: NIfTI and npy keep their file name
/// (without an nnU-Net `_0000` channel suffix), UA-MT cases become `<ID>.h5`.
pub fn list_jobs(input: &Path, output: &Path) -> Result<Vec<PredictionJob>, InferenceError> {
    let mut jobs = Vec::new();
    if input.is_file() {
        jobs.push(job_for_file(input, output));
    } else if input.join(UAMT_FILE).is_file() {
        jobs.push(uamt_job(input, output));
    } else if input.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| DataError::io(input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            if path.is_file() && is_volume_file(&path) {
                jobs.push(job_for_file(&path, output));
            } else if path.join(UAMT_FILE).is_file() {
                jobs.push(uamt_job(&path, output));
            }
        }
    } else {
        return Err(DataError::Missing {
            path: input.to_owned(),
        }
        .into());
    }
    if jobs.is_empty() {
        return Err(InferenceError::NoInputs(input.to_owned()));
    }
    check_outputs(&jobs)?;
    Ok(jobs)
}

/// Refuses jobs whose label maps would replace an input (the output folder is the input's) or
/// each other (two inputs of one case, e.g. `a.nii.gz` and `a_0000.nii.gz`).
fn check_outputs(jobs: &[PredictionJob]) -> Result<(), InferenceError> {
    // An output's folder may not exist yet; then nothing in it can be an input.
    let resolved = |path: &Path| -> Option<PathBuf> {
        let folder = std::fs::canonicalize(path.parent()?).ok()?;
        Some(folder.join(path.file_name()?))
    };
    let inputs: std::collections::HashSet<PathBuf> = jobs
        .iter()
        .filter_map(|job| std::fs::canonicalize(&job.input).ok())
        .collect();
    let mut outputs = std::collections::HashMap::new();
    let mut cases = std::collections::HashMap::new();
    for job in jobs {
        let output = resolved(&job.output).unwrap_or_else(|| job.output.clone());
        if inputs.contains(&output) {
            return Err(InferenceError::Output {
                path: job.output.clone(),
                message: "is one of the input volumes, which its prediction would overwrite: write to a folder apart from the inputs".into(),
            });
        }
        if let Some(other) = outputs.insert(output, &job.input) {
            return Err(InferenceError::Output {
                path: job.output.clone(),
                message: format!(
                    "would hold the predictions of both {} and {}: one case per output name",
                    other.display(),
                    job.input.display()
                ),
            });
        }
        // `evaluate` and `report` pair predictions with references by case ID: `a.nii` and
        // `a.nii.gz` would be one case twice.
        let name = job
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if let Some((id, _)) = name
            .as_deref()
            .and_then(crate::data::split_volume_extension)
            && let Some(other) = cases.insert(id.to_owned(), &job.input)
        {
            return Err(InferenceError::Output {
                path: job.output.clone(),
                message: format!(
                    "would be a second prediction of case {id}, from {} and from {}: keep one \
                     file per case in the input folder",
                    other.display(),
                    job.input.display()
                ),
            });
        }
    }
    Ok(())
}

/// What a job writes besides its label map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOutputs {
    /// Keep the largest connected component of each foreground class.
    pub largest_component: bool,
    /// Also write the class probabilities (`<case>.npz` beside the label map).
    pub save_probabilities: bool,
}

/// Predict one job with a model or an ensemble and write its label map (and probabilities).
pub fn run_job(
    ensemble: &Ensemble,
    job: &PredictionJob,
    outputs: JobOutputs,
    progress: impl FnMut(usize, usize),
) -> Result<PredictionSummary, InferenceError> {
    let tick = std::time::Instant::now();
    let image = read_image(&job.input)?;
    crate::data::validate::check_finite(&image)?;
    let prediction = predict_with(ensemble, &image, outputs.largest_component, progress)?;
    write_label(&prediction.labels, &job.output)?;
    let probabilities = if outputs.save_probabilities {
        let path = job.probabilities_path();
        write_probabilities(&prediction.probabilities_on_input_grid(), &path)?;
        Some(path)
    } else {
        None
    };
    let labels = &prediction.labels;
    Ok(PredictionSummary {
        case: job.case.clone(),
        input: job.input.clone(),
        output: job.output.clone(),
        probabilities,
        shape: labels.shape(),
        voxels_per_class: class_counts(&labels.data, ensemble.classes()),
        seconds: tick.elapsed().as_secs_f64(),
    })
}

impl PredictionJob {
    /// Where `--save-probabilities` writes: `<case>.npz` beside the label map.
    pub fn probabilities_path(&self) -> PathBuf {
        self.output.with_file_name(format!("{}.npz", self.case))
    }
}

fn class_counts(labels: &Array3<u8>, classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes.max(1)];
    for &v in labels {
        if let Some(c) = counts.get_mut(usize::from(v)) {
            *c += 1;
        }
    }
    counts
}

/// A UA-MT case folder `<ID>/mri_norm2.h5` predicts to `<ID>.h5`.
fn uamt_job(folder: &Path, output: &Path) -> PredictionJob {
    let case = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    PredictionJob {
        output: output.join(format!("{case}.h5")),
        input: folder.join(UAMT_FILE),
        case,
    }
}

fn is_volume_file(path: &Path) -> bool {
    crate::data::format_of(path).is_ok()
}

fn job_for_file(path: &Path, output: &Path) -> PredictionJob {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, extension) = split_extension(&name);
    let case = stem
        .strip_suffix(crate::data::dataset::CHANNEL_SUFFIX)
        .unwrap_or(stem)
        .to_owned();
    let extension = match crate::data::format_of(path) {
        Ok(SourceFormat::H5) => ".h5",
        _ => extension,
    };
    PredictionJob {
        output: output.join(format!("{case}{extension}")),
        input: path.to_owned(),
        case,
    }
}

/// `("case", ".nii.gz")` for `case.nii.gz`; `(name, "")` without a volume extension.
fn split_extension(name: &str) -> (&str, &str) {
    crate::data::split_volume_extension(name).unwrap_or((name, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_follow_the_input() {
        let out = Path::new("out");
        let job = job_for_file(Path::new("imagesTs/hippo_001_0000.nii.gz"), out);
        assert_eq!(job.case, "hippo_001");
        assert_eq!(job.output, Path::new("out/hippo_001.nii.gz"));
        assert_eq!(
            job_for_file(Path::new("x/a.npy"), out).output,
            Path::new("out/a.npy")
        );
        assert_eq!(split_extension("A.NII"), ("A", ".NII"));
    }

    #[test]
    fn folders_list_volumes_and_uamt_cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.nii.gz"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        std::fs::create_dir(dir.path().join("CASE1")).unwrap();
        std::fs::write(dir.path().join("CASE1").join(UAMT_FILE), b"").unwrap();
        let jobs = list_jobs(dir.path(), Path::new("o")).unwrap();
        let names: Vec<_> = jobs
            .iter()
            .map(|j| (j.case.as_str(), j.output.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("CASE1", PathBuf::from("o/CASE1.h5")),
                ("b", PathBuf::from("o/b.nii.gz"))
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        let err = list_jobs(empty.path(), Path::new("o"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with(
            "no input volume found (expected .nii.gz, .nii, .hdf5, .h5, .npy or .png files, \
             or UA-MT case folders)"
        ));
    }
}
