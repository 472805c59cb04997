//! What `semisam inspect` reports about each case: its shape, spacing, label values,
//! intensity range, and every problem found. Bad cases are reported, never fatal.

use std::fmt;

use rayon::prelude::*;

use super::dataset::{Case, Dataset};
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
}

pub fn inspect_case(dataset: &Dataset, case: &Case) -> CaseReport {
    let mut report = CaseReport {
        id: case.id.clone(),
        shape: None,
        spacing: None,
        intensity: None,
        label_values: None,
        problems: Vec::new(),
        notes: Vec::new(),
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
            .map(|case| inspect_case(dataset, case))
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
        for problem in &self.problems {
            write!(f, "\n    PROBLEM: {problem}")?;
        }
        Ok(())
    }
}
