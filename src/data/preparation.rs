//! How a volume is prepared before a network sees it (normalised, then down-sampled), and how a
//! label map predicted on the prepared grid goes back to the volume's own grid. Training,
//! validation, inference and the analyses share this, so a model always sees inputs prepared
//! the same way.

use std::path::Path;

use ndarray::Array3;

use super::resample::{downsample_image, downsample_label, upsample_label};
use super::{DataError, Normalization, normalize};

/// The run's `data.normalization` and `data.downsample`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preparation {
    pub normalization: Normalization,
    /// Integer down-sampling factor (1 = none).
    pub downsample: usize,
}

impl Preparation {
    /// The image normalised and down-sampled; `path` names the file in errors.
    pub fn image(&self, mut image: Array3<f32>, path: &Path) -> Result<Array3<f32>, DataError> {
        normalize(&mut image, self.normalization)
            .map_err(|e| DataError::invalid(path, e.to_string()))?;
        Ok(downsample_image(&image, self.downsample))
    }

    /// A reference label map on the prepared grid.
    pub fn label(&self, label: &Array3<u8>) -> Array3<u8> {
        downsample_label(label, self.downsample)
    }

    /// A label map predicted on the prepared grid, back on the original grid of `shape`.
    pub fn restore_label(&self, label: &Array3<u8>, shape: [usize; 3]) -> Array3<u8> {
        upsample_label(label, self.downsample, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_grid_and_back() {
        let preparation = Preparation {
            normalization: Normalization::ZScore,
            downsample: 2,
        };
        let image = Array3::from_shape_fn([4, 2, 3], |(i, _, _)| i as f32);
        let prepared = preparation.image(image, Path::new("a.nii")).unwrap();
        assert_eq!(prepared.shape(), &[2, 1, 2]);
        // z-scored 0..3 has mean 0: the two halves average to -c and +c
        assert!((prepared[[0, 0, 0]] + prepared[[1, 0, 0]]).abs() < 1e-6);
        assert!(prepared[[0, 0, 0]] < 0.0);
        let label = Array3::from_shape_fn([4, 2, 3], |(i, _, _)| u8::from(i >= 2));
        let small = preparation.label(&label);
        assert_eq!(small.iter().copied().collect::<Vec<_>>(), [0, 0, 1, 1]);
        assert_eq!(preparation.restore_label(&small, [4, 2, 3]), label);
    }

    #[test]
    fn a_normalisation_error_names_the_file() {
        let preparation = Preparation {
            normalization: Normalization::PercentileClip {
                lower: 90.0,
                upper: 10.0,
            },
            downsample: 1,
        };
        let err = preparation
            .image(Array3::from_elem([2, 2, 2], 3.0), Path::new("flat.nii.gz"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("flat.nii.gz: "), "{err}");
    }
}
