//! What `semisam inspect` reports about each case: its shape, spacing, label values,
//! intensity range, and every problem found. Bad cases are reported, never fatal.

use std::fmt;

use ndarray::Array3;
use rayon::prelude::*;

use super::dataset::{Case, DATASET_JSON, Dataset, Layout, TRAIN_LIST};
use super::error::DataError;
use super::labels::values_present;
use super::validate::{case_problems, is_all_background};
use super::{read_image, read_label};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntensityStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// Statistics over the finite voxels (`None` when there are none).
pub fn intensity_stats<'a>(values: impl Iterator<Item = &'a f32>) -> Option<IntensityStats> {
    let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, 0usize);
    for &v in values.filter(|v| v.is_finite()) {
        let v = v as f64;
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    (n > 0).then(|| IntensityStats {
        min,
        max,
        mean: sum / n as f64,
    })
}

/// A dataset must list training cases to be trained on; the error names the file (or folder)
/// that should list them.
pub fn check_training_cases(dataset: &Dataset) -> Result<(), DataError> {
    if !dataset.training_ids.is_empty() {
        return Ok(());
    }
    let (path, what) = match dataset.layout {
        Layout::UaMt { .. } => (
            dataset.root.join(TRAIN_LIST),
            "lists no case (or is missing)",
        ),
        Layout::Msd => (
            dataset.root.join(DATASET_JSON),
            "has no `training` list (or an empty one)",
        ),
        Layout::NnUnetV2 { ref file_ending } => {
            let images = dataset.root.join("imagesTr");
            let what = nnunet_without_training_cases(dataset, &images, file_ending);
            return Err(DataError::invalid(
                &images,
                format!("{what}: the dataset has no training case"),
            ));
        }
    };
    Err(DataError::invalid(
        &path,
        format!("{what}: the dataset has no training case"),
    ))
}

/// Why an nnU-Net v2 `imagesTr` gave no labeled case: its images have no label, or none of its
/// files ends in the dataset's `file_ending`.
fn nnunet_without_training_cases(
    dataset: &Dataset,
    images: &std::path::Path,
    ending: &str,
) -> String {
    let unlabeled: Vec<&Case> = dataset
        .cases
        .iter()
        .filter(|case| case.label.is_none() && case.image.starts_with(images))
        .collect();
    if let Some(first) = unlabeled.first() {
        return format!(
            "none of its {} image(s) has a label (labelsTr/<ID>{ending}, e.g. labelsTr/{}{ending})",
            unlabeled.len(),
            first.id
        );
    }
    let other_endings: Vec<String> = std::fs::read_dir(images)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| super::split_volume_extension(name).is_some())
        .collect();
    match other_endings.iter().min() {
        Some(example) => format!(
            "holds no <ID>_0000{ending} image (dataset.json's file_ending) but {} file(s) with \
             another ending, e.g. {example}",
            other_endings.len()
        ),
        None => format!("holds no <ID>_0000{ending} image"),
    }
}

/// Which intensities an image holds, for what a warning may quote of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intensities {
    /// As the file stores them.
    AsStored,
    /// Normalised (and resampled) for the network: their values mean nothing to the user.
    Prepared,
}

/// What is legal but probably not meant in an image: every voxel the same (an all-zero volume),
/// or a shape smaller than the training patch along some axis (its patches are mostly padding).
pub fn image_warnings(
    image: &Array3<f32>,
    intensities: Intensities,
    patch: Option<[usize; 3]>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(&first) = image.iter().next()
        && image.iter().all(|&v| v == first)
    {
        let value = match intensities {
            Intensities::AsStored => format!("is {first}"),
            Intensities::Prepared => "has the same value".to_string(),
        };
        warnings.push(format!(
            "every voxel of the image {value}: it holds nothing to learn from or segment"
        ));
    }
    if let Some(patch) = patch {
        let shape = image.shape();
        let short: Vec<String> = (0..3)
            .filter(|&d| shape[d] < patch[d])
            .map(|d| format!("axis {d} ({} < {})", shape[d], patch[d]))
            .collect();
        if !short.is_empty() {
            warnings.push(format!(
                "the image ({}) is smaller than the training patch ({}) along {}: its patches are zero-padded",
                join(shape, "x"),
                join(&patch, "x"),
                short.join(", ")
            ));
        }
    }
    warnings
}

#[derive(Debug)]
pub struct CaseReport {
    pub id: String,
    pub shape: Option<[usize; 3]>,
    pub spacing: Option<[f64; 3]>,
    pub intensity: Option<IntensityStats>,
    /// Distinct label values found (`None` when the case has no readable label).
    pub label_values: Option<Vec<u8>>,
    pub problems: Vec<DataError>,
    /// Observations that are not errors (e.g. a label without foreground).
    pub notes: Vec<String>,
    /// Legal but suspicious (see [`image_warnings`]).
    pub warnings: Vec<String>,
}

/// Inspect one case; `patch` (the training patch, if known) adds a warning when the image is
/// smaller than it.
pub fn inspect_case(dataset: &Dataset, case: &Case, patch: Option<[usize; 3]>) -> CaseReport {
    let mut report = CaseReport {
        id: case.id.clone(),
        shape: None,
        spacing: None,
        intensity: None,
        label_values: None,
        problems: Vec::new(),
        notes: Vec::new(),
        warnings: Vec::new(),
    };
    let image = read_image(&case.image);
    // UA-MT keeps image and label in one file: a failure of the file itself is reported once.
    let same_file_failed = case.label.as_ref() == Some(&case.image)
        && matches!(&image, Err(e) if !matches!(e, DataError::MissingKey { .. }));
    let image = image.map_err(|e| report.problems.push(e)).ok();
    let label = match &case.label {
        Some(_) if same_file_failed => None,
        Some(path) => read_label(path).map_err(|e| report.problems.push(e)).ok(),
        None if dataset.is_label_free(&case.id) => {
            report.notes.push("unlabeled: no label".into());
            None
        }
        None => {
            report.notes.push("no label".into());
            None
        }
    };
    if let Some(label) = &label {
        report.label_values = Some(values_present(&label.data));
        if is_all_background(&label.data) {
            report.notes.push("label has no foreground voxel".into());
        }
    }
    if let Some(image) = &image {
        report.shape = Some(image.shape());
        report.spacing = image.geometry.spacing;
        report.intensity = intensity_stats(image.data.iter());
        report.warnings = image_warnings(&image.data, Intensities::AsStored, patch);
        report.problems.extend(case_problems(
            &case.id,
            image,
            label.as_ref(),
            &dataset.label_values(),
        ));
    } else if let Some(label) = &label {
        report.shape = Some(label.shape());
        report.spacing = label.geometry.spacing;
        if let Err(e) = super::validate::check_label_values(label, &dataset.label_values()) {
            report.problems.push(e);
        }
    }
    report
}

/// Inspect every case, `jobs` at a time (all cores when `None`), in dataset order.
pub fn inspect_dataset(
    dataset: &Dataset,
    jobs: Option<usize>,
    patch: Option<[usize; 3]>,
) -> Result<Vec<CaseReport>, DataError> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = jobs {
        builder = builder.num_threads(jobs.max(1));
    }
    let pool = builder.build().map_err(|e| {
        DataError::invalid(&dataset.root, format!("cannot start worker threads: {e}"))
    })?;
    Ok(pool.install(|| {
        dataset
            .cases
            .par_iter()
            .map(|case| inspect_case(dataset, case, patch))
            .collect()
    }))
}

fn join<T: fmt::Display>(values: &[T], sep: &str) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        match self.shape {
            Some(shape) => {
                write!(f, "  shape {}", join(&shape, "x"))?;
                match self.spacing {
                    Some(s) => write!(
                        f,
                        "  spacing {} mm",
                        join(&s.map(|v| format!("{v:.4}")), "x")
                    )?,
                    None => write!(f, "  spacing none stored")?,
                }
            }
            None => write!(f, "  (unreadable)")?,
        }
        if let Some(values) = &self.label_values {
            write!(f, "  labels {{{}}}", join(values, ", "))?;
        }
        if let Some(s) = self.intensity {
            write!(
                f,
                "  intensity min {:.4} max {:.4} mean {:.4}",
                s.min, s.max, s.mean
            )?;
        }
        for note in &self.notes {
            write!(f, "\n    note: {note}")?;
        }
        for warning in &self.warnings {
            write!(f, "\n    WARNING: {warning}")?;
        }
        for problem in &self.problems {
            write!(f, "\n    PROBLEM: {problem}")?;
        }
        Ok(())
    }
}
