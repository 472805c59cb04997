//! A dataset's fingerprint, what the planner decides from (`fingerprint.json`): every training
//! image's shape and spacing, the intensities of the labeled foreground (as nnU-Net samples them),
//! the classes' volumes and the modality declared by `dataset.json`.
//!
//! Held-out test images are left out, so nothing about them steers the plan; unlabeled images
//! count for shapes and spacings but have no foreground to sample.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::modality::declared_modality;
use crate::data::normalize::percentile;
use crate::data::{Case, DataError, Dataset, read_image, try_map_in_order};

/// Foreground voxels sampled per labeled case for the intensity statistics (nnU-Net's 10 000),
/// so that large cases do not outweigh small ones.
const FOREGROUND_SAMPLES_PER_CASE: usize = 10_000;

/// One training image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFingerprint {
    pub id: String,
    pub labeled: bool,
    pub shape: [usize; 3],
    /// Voxel size (mm) along the array axes.
    pub spacing: [f64; 3],
    /// Labeled cases: how many slices across each axis hold foreground.
    pub foreground_slices: Option<[usize; 3]>,
}

/// Intensities of the labeled foreground, pooled over cases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityStatistics {
    pub mean: f64,
    pub std: f64,
    pub median: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

/// Mean size of one foreground class over the labeled cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassVolume {
    pub value: u8,
    pub name: String,
    pub mean_voxels: f64,
    pub mean_mm3: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub dataset: PathBuf,
    pub layout: String,
    /// `dataset.json`'s modality of channel 0 (`None` when the layout declares none).
    pub modality: Option<String>,
    pub channels: usize,
    pub labels: BTreeMap<u8, String>,
    pub cases: Vec<CaseFingerprint>,
    pub median_spacing: [f64; 3],
    pub median_shape: [f64; 3],
    /// `None` when no labeled case has foreground.
    pub foreground_intensity: Option<IntensityStatistics>,
    pub class_volumes: Vec<ClassVolume>,
}

impl Fingerprint {
    pub fn labeled_cases(&self) -> usize {
        self.cases.iter().filter(|c| c.labeled).count()
    }

    pub fn unlabeled_cases(&self) -> usize {
        self.cases.len() - self.labeled_cases()
    }

    /// Whether the modality is CT (whose intensities are calibrated, so dataset-wide statistics
    /// apply), by `dataset.json`'s name for it.
    pub fn is_ct(&self) -> bool {
        self.modality
            .as_deref()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("ct"))
    }

    /// Spacings along axis `d` of every case.
    pub fn spacings(&self, d: usize) -> Vec<f64> {
        self.cases.iter().map(|c| c.spacing[d]).collect()
    }

    /// The mean share of a labeled case's slices across `axis` that hold foreground (1 when no
    /// labeled case tells).
    pub fn foreground_slice_share(&self, axis: usize) -> f64 {
        let shares: Vec<f64> = self
            .cases
            .iter()
            .filter_map(|c| {
                c.foreground_slices
                    .map(|n| n[axis] as f64 / c.shape[axis].max(1) as f64)
            })
            .collect();
        if shares.is_empty() {
            1.0
        } else {
            shares.iter().sum::<f64>() / shares.len() as f64
        }
    }
}

/// What one case contributes before pooling.
struct CaseSample {
    case: CaseFingerprint,
    foreground: Vec<f32>,
    class_voxels: BTreeMap<u8, usize>,
}

/// Read every training image of `dataset` (labels of labeled cases too) and fingerprint them.
/// `fallback_spacing` is used for files that store no spacing (UA-MT h5, npy); without it such a
/// file is an error.
pub fn fingerprint(
    dataset: &Dataset,
    fallback_spacing: Option<[f64; 3]>,
) -> Result<Fingerprint, DataError> {
    let (modality, channels) = declared_modality(&dataset.root)?;
    let cases: Vec<&Case> = dataset
        .cases
        .iter()
        .filter(|c| !dataset.test_ids.contains(&c.id))
        .collect();
    if cases.is_empty() {
        return Err(DataError::invalid(
            &dataset.root,
            "no training image to plan from",
        ));
    }
    let samples: Vec<CaseSample> =
        try_map_in_order(&cases, |case| sample_case(dataset, case, fallback_spacing))?;

    let median_of = |values: Vec<f64>| median(values);
    let median_spacing =
        std::array::from_fn(|d| median_of(samples.iter().map(|s| s.case.spacing[d]).collect()));
    let median_shape = std::array::from_fn(|d| {
        median_of(samples.iter().map(|s| s.case.shape[d] as f64).collect())
    });
    let mut foreground: Vec<f32> = samples
        .iter()
        .flat_map(|s| s.foreground.iter().copied())
        .collect();
    let foreground_intensity = intensity_statistics(&mut foreground);
    let labeled: Vec<&CaseSample> = samples.iter().filter(|s| s.case.labeled).collect();
    let class_volumes = dataset
        .labels
        .iter()
        .filter(|(value, _)| **value > 0)
        .map(|(&value, name)| {
            let n = labeled.len().max(1) as f64;
            let voxels: Vec<(usize, f64)> = labeled
                .iter()
                .map(|s| {
                    let count = s.class_voxels.get(&value).copied().unwrap_or(0);
                    (count, s.case.spacing.iter().product::<f64>())
                })
                .collect();
            ClassVolume {
                value,
                name: name.clone(),
                mean_voxels: voxels.iter().map(|(c, _)| *c as f64).sum::<f64>() / n,
                mean_mm3: voxels.iter().map(|(c, v)| *c as f64 * v).sum::<f64>() / n,
            }
        })
        .collect();
    Ok(Fingerprint {
        dataset: dataset.root.clone(),
        layout: dataset.layout.name().to_owned(),
        modality,
        channels,
        labels: dataset.labels.clone(),
        cases: samples.into_iter().map(|s| s.case).collect(),
        median_spacing,
        median_shape,
        foreground_intensity,
        class_volumes,
    })
}

fn sample_case(
    dataset: &Dataset,
    case: &Case,
    fallback_spacing: Option<[f64; 3]>,
) -> Result<CaseSample, DataError> {
    let (image, label) = if case.label.is_some() {
        let loaded = dataset.load_case(case)?;
        (loaded.image, loaded.label)
    } else {
        (read_image(&case.image)?, None)
    };
    crate::data::validate::check_finite(&image)?;
    let spacing = image.geometry.spacing.or(fallback_spacing).ok_or_else(|| {
        DataError::invalid(
            &image.path,
            "the file stores no voxel spacing: give the dataset's spacing (plan --spacing x,y,z)",
        )
    })?;
    let mut class_voxels = BTreeMap::new();
    let mut foreground = Vec::new();
    let foreground_slices = label.as_ref().map(|label| {
        std::array::from_fn(|axis| {
            label
                .data
                .axis_iter(ndarray::Axis(axis))
                .filter(|slice| slice.iter().any(|&v| v > 0))
                .count()
        })
    });
    if let Some(label) = &label {
        for (&l, &v) in label.data.iter().zip(image.data.iter()) {
            if l > 0 {
                *class_voxels.entry(l).or_insert(0) += 1;
                foreground.push(v);
            }
        }
        // An evenly spaced subsample is deterministic and spans the whole object.
        if foreground.len() > FOREGROUND_SAMPLES_PER_CASE {
            let step = foreground.len() as f64 / FOREGROUND_SAMPLES_PER_CASE as f64;
            foreground = (0..FOREGROUND_SAMPLES_PER_CASE)
                .map(|i| foreground[(i as f64 * step) as usize])
                .collect();
        }
    }
    Ok(CaseSample {
        case: CaseFingerprint {
            id: case.id.clone(),
            labeled: label.is_some(),
            shape: image.shape(),
            spacing,
            foreground_slices,
        },
        foreground,
        class_voxels,
    })
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn intensity_statistics(values: &mut [f32]) -> Option<IntensityStatistics> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(f64::from(v)), hi.max(f64::from(v)))
        });
    Some(IntensityStatistics {
        mean,
        std: var.sqrt(),
        median: percentile(values, 50.0),
        percentile_00_5: percentile(values, 0.5),
        percentile_99_5: percentile(values, 99.5),
        min,
        max,
        samples: values.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_known_sample() {
        let mut values: Vec<f32> = (0..=200).map(|v| v as f32).collect();
        let stats = intensity_statistics(&mut values).unwrap();
        assert_eq!(stats.mean, 100.0);
        assert_eq!(stats.median, 100.0);
        assert_eq!(stats.percentile_00_5, 1.0);
        assert_eq!(stats.percentile_99_5, 199.0);
        assert_eq!((stats.min, stats.max, stats.samples), (0.0, 200.0, 201));
        assert!(intensity_statistics(&mut []).is_none());
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
