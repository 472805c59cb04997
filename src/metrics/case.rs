//! Metrics of one labelled case (prediction volume vs reference volume), per class.

use std::path::{Path, PathBuf};

use super::MetricsError;
use super::binary::{Hd95Convention, MaskMetrics, evaluate_masks, validate_spacing};
use crate::data::Volume;

/// Where distances get their scale from.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpacingSource {
    /// The spacing stored in the files (reference first, else prediction; both must agree when
    /// both have one): millimetres. Voxel units when neither file stores a spacing (UA-MT h5, npy).
    #[default]
    Files,
    /// Ignore stored spacings and report voxel units (the medpy calls of the UA-MT / SemiSAM test
    /// scripts, which pass no `voxelspacing`).
    Voxels,
    /// Use this spacing in mm for every case (e.g. 0.625 mm isotropic for LA h5 files).
    Override([f64; 3]),
}

/// The unit of HD95, ASD and ASSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DistanceUnit {
    #[serde(rename = "mm")]
    Millimetre,
    #[serde(rename = "voxel")]
    Voxel,
}

impl DistanceUnit {
    pub fn symbol(self) -> &'static str {
        match self {
            DistanceUnit::Millimetre => "mm",
            DistanceUnit::Voxel => "voxel",
        }
    }
}

/// Options of an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvaluationOptions {
    pub hd95: Hd95Convention,
    pub spacing: SpacingSource,
}

/// The metrics of one class of one case.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassMetrics {
    /// The label value evaluated (voxels equal to it form the binary masks).
    pub class: u8,
    #[serde(flatten)]
    pub metrics: MaskMetrics,
}

/// The metrics of one case over its classes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaseMetrics {
    /// Defaults to [`case_id_from_path`] of the reference; set it when the data layer knows the ID.
    pub case_id: String,
    pub prediction: PathBuf,
    pub reference: PathBuf,
    pub unit: DistanceUnit,
    /// The spacing distances were computed with (`[1, 1, 1]` in voxel units).
    pub spacing: [f64; 3],
    pub hd95_convention: Hd95Convention,
    pub classes: Vec<ClassMetrics>,
}

/// Evaluates `prediction` against `reference` for each label value in `classes`.
///
/// Errors: different shapes or different stored spacings (naming both files), an invalid spacing,
/// an empty class list.
pub fn evaluate_pair(
    prediction: &Volume<u8>,
    reference: &Volume<u8>,
    classes: &[u8],
    options: EvaluationOptions,
) -> Result<CaseMetrics, MetricsError> {
    if prediction.shape() != reference.shape() {
        return Err(MetricsError::ShapeMismatch {
            prediction: prediction.path.clone(),
            reference: reference.path.clone(),
            prediction_shape: prediction.shape(),
            reference_shape: reference.shape(),
        });
    }
    if classes.is_empty() {
        return Err(MetricsError::NoClasses {
            reference: reference.path.clone(),
        });
    }
    let (spacing, unit) = resolve_spacing(prediction, reference, options.spacing)?;
    // Same shape and spacing but moved or turned in space: the overlap would be meaningless.
    // A spacing given on the command line says the files' geometry is not to be trusted.
    if options.spacing == SpacingSource::Files
        && let Some(difference) =
            crate::data::validate::geometry_difference(&prediction.geometry, &reference.geometry)
    {
        return Err(MetricsError::GridMismatch {
            prediction: prediction.path.clone(),
            reference: reference.path.clone(),
            difference,
        });
    }
    let classes = classes
        .iter()
        .map(|&class| {
            let prediction_mask = prediction.data.mapv(|v| v == class);
            let reference_mask = reference.data.mapv(|v| v == class);
            let metrics = evaluate_masks(
                prediction_mask.view(),
                reference_mask.view(),
                spacing,
                options.hd95,
            )?;
            Ok(ClassMetrics { class, metrics })
        })
        .collect::<Result<Vec<_>, MetricsError>>()?;
    Ok(CaseMetrics {
        case_id: case_id_from_path(&reference.path),
        prediction: prediction.path.clone(),
        reference: reference.path.clone(),
        unit,
        spacing,
        hd95_convention: options.hd95,
        classes,
    })
}

/// Relative tolerance for two stored spacings to count as equal (NIfTI stores them as f32).
const SPACING_TOLERANCE: f64 = 1e-5;

fn resolve_spacing(
    prediction: &Volume<u8>,
    reference: &Volume<u8>,
    source: SpacingSource,
) -> Result<([f64; 3], DistanceUnit), MetricsError> {
    match source {
        SpacingSource::Voxels => Ok(([1.0; 3], DistanceUnit::Voxel)),
        SpacingSource::Override(spacing) => {
            validate_spacing(spacing)?;
            Ok((spacing, DistanceUnit::Millimetre))
        }
        SpacingSource::Files => {
            for volume in [prediction, reference] {
                if let Some(spacing) = volume.geometry.spacing {
                    validate_spacing(spacing).map_err(|_| MetricsError::InvalidFileSpacing {
                        path: volume.path.clone(),
                        spacing,
                    })?;
                }
            }
            match (prediction.geometry.spacing, reference.geometry.spacing) {
                (Some(p), Some(r)) if !spacings_agree(p, r) => Err(MetricsError::SpacingMismatch {
                    prediction: prediction.path.clone(),
                    reference: reference.path.clone(),
                    prediction_spacing: p,
                    reference_spacing: r,
                }),
                (_, Some(spacing)) | (Some(spacing), None) => {
                    Ok((spacing, DistanceUnit::Millimetre))
                }
                (None, None) => Ok(([1.0; 3], DistanceUnit::Voxel)),
            }
        }
    }
}

/// Whether two spacings are equal up to the float32 rounding of NIfTI headers.
pub fn spacings_agree(a: [f64; 3], b: [f64; 3]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= SPACING_TOLERANCE * x.abs().max(y.abs()))
}

/// A case ID from a file path: the file name without `.nii.gz`, `.nii`, `.h5` or `.npy`; for
/// UA-MT files (`<ID>/mri_norm2.h5`) the folder name; an nnU-Net channel suffix `_0000` is kept
/// (labels carry none).
pub fn case_id_from_path(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "mri_norm2.h5"
        && let Some(folder) = path.parent().and_then(Path::file_name)
    {
        return folder.to_string_lossy().into_owned();
    }
    match crate::data::split_volume_extension(&name) {
        Some((stem, _)) => stem.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Geometry, SourceFormat};
    use ndarray::Array3;

    fn volume(path: &str, data: Array3<u8>, spacing: Option<[f64; 3]>) -> Volume<u8> {
        let mut geometry = Geometry::unknown();
        geometry.spacing = spacing;
        Volume {
            data,
            geometry,
            source: SourceFormat::Nifti,
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn shape_mismatch_names_both_files() {
        let prediction = volume("pred/case_1.nii.gz", Array3::zeros((2, 3, 4)), None);
        let reference = volume("ref/case_1.nii.gz", Array3::zeros((2, 3, 5)), None);
        let error = evaluate_pair(&prediction, &reference, &[1], EvaluationOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "prediction pred/case_1.nii.gz has shape [2, 3, 4] but reference ref/case_1.nii.gz has shape [2, 3, 5]"
        );
    }

    #[test]
    fn spacing_mismatch_names_both_files() {
        let prediction = volume("p.nii", Array3::zeros((2, 2, 2)), Some([1.0, 1.0, 2.0]));
        let reference = volume("r.nii", Array3::zeros((2, 2, 2)), Some([1.0, 1.0, 2.5]));
        let error = evaluate_pair(&prediction, &reference, &[1], EvaluationOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("p.nii") && error.contains("r.nii") && error.contains("2.5"),
            "{error}"
        );
    }

    #[test]
    fn unit_follows_the_spacing_source() {
        let mut data = Array3::zeros((4, 4, 4));
        data[[1, 1, 1]] = 1;
        let prediction = volume("p.h5", data.clone(), None);
        let reference = volume("r.nii", data, Some([0.5, 0.5, 2.0]));
        let files =
            evaluate_pair(&prediction, &reference, &[1], EvaluationOptions::default()).unwrap();
        assert_eq!(
            (files.unit, files.spacing),
            (DistanceUnit::Millimetre, [0.5, 0.5, 2.0])
        );
        let voxels = EvaluationOptions {
            spacing: SpacingSource::Voxels,
            ..Default::default()
        };
        assert_eq!(
            evaluate_pair(&prediction, &reference, &[1], voxels)
                .unwrap()
                .unit,
            DistanceUnit::Voxel
        );
        let bad = EvaluationOptions {
            spacing: SpacingSource::Override([0.0, 1.0, 1.0]),
            ..Default::default()
        };
        assert!(evaluate_pair(&prediction, &reference, &[1], bad).is_err());
    }

    #[test]
    fn case_ids_strip_known_extensions() {
        assert_eq!(
            case_id_from_path(Path::new("a/hippocampus_001.nii.gz")),
            "hippocampus_001"
        );
        assert_eq!(
            case_id_from_path(Path::new("LA/06SR5RBREL16DQ6M8LWS/mri_norm2.h5")),
            "06SR5RBREL16DQ6M8LWS"
        );
        assert_eq!(case_id_from_path(Path::new("x/case.npy")), "case");
    }
}
