//! Label maps are stored as u8 everywhere in semisam; files may store them in wider or floating
//! types (some MSD labels are float32 holding exactly 0/1/2). Those are accepted only when every
//! value is an integer that fits in u8.

use std::path::Path;

use ndarray::Array3;

use super::error::DataError;

/// Convert stored label values to u8, rejecting fractional, negative, too large or non-finite ones.
pub fn labels_from_f64(path: &Path, values: &[f64]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(values.len());
    for (index, &v) in values.iter().enumerate() {
        if !(v.is_finite() && v.fract() == 0.0 && (0.0..=255.0).contains(&v)) {
            let count = values
                .iter()
                .filter(|v| !(v.is_finite() && v.fract() == 0.0 && (0.0..=255.0).contains(*v)))
                .count();
            return Err(DataError::NonIntegralLabel {
                path: path.to_path_buf(),
                message: format!(
                    "label values must be integers in 0..=255, but {count} voxel(s) are not (first: {v} at flat index {index})"
                ),
            });
        }
        out.push(v as u8);
    }
    Ok(out)
}

/// The distinct values present in a label map, ascending.
pub fn values_present(label: &Array3<u8>) -> Vec<u8> {
    let mut seen = [false; 256];
    for &v in label.iter() {
        seen[v as usize] = true;
    }
    (0..=255u8).filter(|&v| seen[v as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_labels_and_fractions_are_rejected() {
        let path = Path::new("lbl.nii.gz");
        assert_eq!(
            labels_from_f64(path, &[0.0, 1.0, 2.0, 255.0]).unwrap(),
            vec![0, 1, 2, 255]
        );
        let err = labels_from_f64(path, &[0.0, 1.5, 2.0, 0.25])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lbl.nii.gz") && err.contains("2 voxel(s)") && err.contains("1.5"),
            "{err}"
        );
        assert!(labels_from_f64(path, &[-1.0]).is_err());
        assert!(labels_from_f64(path, &[256.0]).is_err());
        assert!(labels_from_f64(path, &[f64::NAN]).is_err());
    }

    #[test]
    fn values_present_lists_each_value_once_in_order() {
        let label = Array3::from_shape_vec([1, 2, 3], vec![2, 0, 2, 7, 0, 0]).unwrap();
        assert_eq!(values_present(&label), vec![0, 2, 7]);
    }
}
