//! Whole-file prediction: read → prepare as in training (normalise, resample) → sliding
//! window → optional largest-component clean-up → back to the input grid → write in the input's
//! format with the input's geometry.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::Array3;
use serde::Serialize;

use crate::data::dataset::UAMT_FILE;
use crate::data::{DataError, Preparation, SourceFormat, Volume, read_image, write_label};
use crate::inference::SlidingWindow;
use crate::inference::predictor::predict_case;
use crate::networks::{NetworkError, Specialist};

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(
        "{0}: no input volume found (expected .nii, .nii.gz, .h5 or .npy files, or UA-MT case folders)"
    )]
    NoInputs(PathBuf),
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
}

/// What a trained network expects of a volume: its run's preparation, window and classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInput {
    pub preparation: Preparation,
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
    let prepared = input.preparation.image(image)?;
    let window = SlidingWindow {
        window: input.window,
        stride: options.stride,
        batch: options.window_batch,
    };
    let prediction = predict_case(model, &prepared, input.classes, window, device, progress)?;
    let mut labels = prediction.labels;
    if options.largest_component {
        labels = super::postprocess::keep_largest_components(&labels, input.classes);
    }
    let labels = input.preparation.restore_label(&labels, image.shape());
    Ok(Volume {
        data: labels,
        geometry: image.geometry.clone(),
        source: image.source,
        path: image.path.clone(),
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
    Ok(jobs)
}

/// Predict one job and write its label map.
pub fn run_job(
    model: &Specialist,
    input: &ModelInput,
    job: &PredictionJob,
    options: PredictOptions,
    device: &Device,
    progress: impl FnMut(usize, usize),
) -> Result<PredictionSummary, InferenceError> {
    let tick = std::time::Instant::now();
    let image = read_image(&job.input)?;
    crate::data::validate::check_finite(&image)?;
    let labels = predict_volume(model, input, &image, options, device, progress)?;
    write_label(&labels, &job.output)?;
    Ok(PredictionSummary {
        case: job.case.clone(),
        input: job.input.clone(),
        output: job.output.clone(),
        shape: labels.shape(),
        voxels_per_class: class_counts(&labels.data, input.classes),
        seconds: tick.elapsed().as_secs_f64(),
    })
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

/// `("case", ".nii.gz")` for `case.nii.gz`.
fn split_extension(name: &str) -> (&str, &str) {
    let lower = name.to_lowercase();
    for ext in [".nii.gz", ".nii", ".h5", ".hdf5", ".npy"] {
        if lower.ends_with(ext) {
            return (
                &name[..name.len() - ext.len()],
                &name[name.len() - ext.len()..],
            );
        }
    }
    (name, "")
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
        assert!(err.ends_with("no input volume found (expected .nii, .nii.gz, .h5 or .npy files, or UA-MT case folders)"));
    }
}
