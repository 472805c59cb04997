//! Checks on loaded volumes. Each check returns the first problem it finds as a [`DataError`]
//! naming the file; [`case_problems`] runs them all so that `inspect` can list every problem.

use ndarray::Array3;

use super::error::DataError;
use super::labels::values_present;
use super::volume::{Geometry, Volume};

/// Largest difference (mm, per affine entry) two files may have and still share one grid; NIfTI
/// stores the affine in float32, so exact equality is too strict.
pub const AFFINE_TOLERANCE_MM: f64 = 1e-3;
/// Largest relative difference between two spacings on one grid.
pub const SPACING_TOLERANCE: f64 = 1e-4;

/// No NaN or infinite voxel.
pub fn check_finite(volume: &Volume<f32>) -> Result<(), DataError> {
    let mut count = 0usize;
    let mut first = None;
    for (index, v) in volume.data.indexed_iter() {
        if !v.is_finite() {
            count += 1;
            first.get_or_insert([index.0, index.1, index.2]);
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(DataError::NonFinite {
            path: volume.path.clone(),
            count,
            first,
        }),
    }
}

/// Every label value is one of `declared`.
pub fn check_label_values(label: &Volume<u8>, declared: &[u8]) -> Result<(), DataError> {
    let unexpected: Vec<u8> = values_present(&label.data)
        .into_iter()
        .filter(|v| !declared.contains(v))
        .collect();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(DataError::LabelOutOfSet {
            path: label.path.clone(),
            unexpected,
            declared: declared.to_vec(),
        })
    }
}

/// How two files' grids differ (spacing, then affine entries), or `None` when they agree or one
/// of them stores no geometry.
pub fn geometry_difference(image: &Geometry, label: &Geometry) -> Option<String> {
    let stored = |g: &Geometry| g.nifti_header.is_some() || g.spacing.is_some();
    if !stored(image) || !stored(label) {
        // A file without geometry (h5, npy) is taken to lie on the other file's grid.
        return None;
    }
    match (image.spacing, label.spacing) {
        (Some(a), Some(b)) => {
            let differs = a
                .iter()
                .zip(&b)
                .any(|(x, y)| (x - y).abs() > SPACING_TOLERANCE * x.abs().max(y.abs()));
            if differs {
                return Some(format!("spacing {a:?} vs {b:?}"));
            }
        }
        (a, b) if a.is_some() != b.is_some() => return Some(format!("spacing {a:?} vs {b:?}")),
        _ => {}
    }
    for r in 0..3 {
        for c in 0..4 {
            let (a, b) = (image.affine[r][c], label.affine[r][c]);
            if (a - b).abs() > AFFINE_TOLERANCE_MM {
                return Some(format!("affine entry [{r}][{c}] is {a} vs {b}"));
            }
        }
    }
    None
}

/// Image and label lie on the same voxel grid: same shape, and (when both store one) the same
/// spacing and affine.
pub fn check_pair(case: &str, image: &Volume<f32>, label: &Volume<u8>) -> Result<(), DataError> {
    if image.shape() != label.shape() {
        return Err(DataError::ShapeMismatch {
            case: case.to_string(),
            image: image.path.clone(),
            label: label.path.clone(),
            image_shape: image.shape().to_vec(),
            label_shape: label.shape().to_vec(),
        });
    }
    if let Some(detail) = geometry_difference(&image.geometry, &label.geometry) {
        return Err(DataError::GeometryMismatch {
            case: case.to_string(),
            image: image.path.clone(),
            label: label.path.clone(),
            detail,
        });
    }
    Ok(())
}

/// Every problem of a loaded case, in a fixed order (image values, then pairing, then labels).
pub fn case_problems(
    case: &str,
    image: &Volume<f32>,
    label: Option<&Volume<u8>>,
    declared: &[u8],
) -> Vec<DataError> {
    let mut problems = Vec::new();
    problems.extend(check_finite(image).err());
    if let Some(label) = label {
        problems.extend(check_pair(case, image, label).err());
        problems.extend(check_label_values(label, declared).err());
    }
    problems
}

/// True when the label holds no foreground at all (legitimate for some cases, so reported as a
/// note, not a problem).
pub fn is_all_background(label: &Array3<u8>) -> bool {
    label.iter().all(|&v| v == 0)
}
