//! How a volume is prepared before a network sees it (normalised, then brought onto the run's
//! grid: resampled to a target spacing, or down-sampled by an integer factor), and how a label map
//! predicted on that grid goes back to the volume's own grid. Training, validation, inference and
//! the analyses share this, so a model always sees inputs prepared the same way.

use std::path::Path;

use ndarray::{Array3, Array4, Axis};

use super::downsample::{downsample_image, downsample_label, upsample_label, upsample_nearest};
use super::resample::{
    resample_image, resample_image_to_shape, resample_label, resample_label_to_shape,
    resampled_shape,
};
use super::{DataError, Geometry, Normalization, Volume, normalize};

/// The run's `data.normalization`, `data.target_spacing` / `data.downsample` and `data.spacing`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preparation {
    pub normalization: Normalization,
    /// Integer down-sampling factor (1 = none); only without `target_spacing`.
    pub downsample: usize,
    /// Voxel spacing (mm) every volume is resampled to; `None`: volumes keep their grid.
    pub target_spacing: Option<[f64; 3]>,
    /// Voxel spacing (mm) of files that store none (UA-MT h5).
    pub fallback_spacing: Option<[f64; 3]>,
}

/// A resampling from one voxel spacing to another (mm).
type SpacingChange = ([f64; 3], [f64; 3]);

/// Most voxels a resampled volume may have: 4 GiB as f32, beyond any scan a run can train on.
const MAX_RESAMPLED_VOXELS: f64 = (1u64 << 30) as f64;
/// Most a resampling may multiply a volume's voxels by (8 times finer along every axis): a
/// thick-slice scan made isotropic grows by its slice thickness over its pixel size (5 to 10
/// times), an outlier case of a planned dataset by its spacing over the median; a thousandfold
/// adds nothing the file holds and only costs memory and time.
const MAX_RESAMPLED_GROWTH: f64 = 512.0;

impl Preparation {
    /// The spacing a volume of `shape` is resampled from (its file's, else the fallback) and to;
    /// `None` when the run does not resample. A target so fine that the volume would not fit in
    /// memory, or would grow far past any detail the file holds, is an error naming the file.
    fn spacing_change(
        &self,
        geometry: &Geometry,
        shape: [usize; 3],
        path: &Path,
    ) -> Result<Option<SpacingChange>, DataError> {
        let Some(target) = self.target_spacing else {
            return Ok(None);
        };
        let spacing = geometry.spacing.or(self.fallback_spacing).ok_or_else(|| {
            DataError::invalid(
                path,
                "the file stores no voxel spacing and none is given (data.spacing for a run, \
                 --spacing for predict), so it cannot be resampled to data.target_spacing",
            )
        })?;
        let resampled = resampled_shape(shape, spacing, target);
        let voxels = |s: [usize; 3]| s.iter().map(|&n| n as f64).product::<f64>();
        let growth = voxels(resampled) / voxels(shape);
        if voxels(resampled) > MAX_RESAMPLED_VOXELS || growth > MAX_RESAMPLED_GROWTH {
            return Err(DataError::invalid(
                path,
                format!(
                    "resampling from its spacing {spacing:?} mm to data.target_spacing \
                     {target:?} mm would turn its {shape:?} voxels into {resampled:?} \
                     ({growth:.0} times as many; at most {MAX_RESAMPLED_GROWTH} times and \
                     {MAX_RESAMPLED_VOXELS:e} voxels): choose a coarser target spacing"
                ),
            ));
        }
        Ok(Some((spacing, target)))
    }

    /// The image normalised and brought onto the run's grid.
    pub fn image(&self, image: &Volume<f32>) -> Result<Array3<f32>, DataError> {
        let mut data = image.data.clone();
        normalize(&mut data, self.normalization)
            .map_err(|e| DataError::invalid(&image.path, e.to_string()))?;
        Ok(
            match self.spacing_change(&image.geometry, image.shape(), &image.path)? {
                Some((spacing, target)) => resample_image(data.view(), spacing, target),
                None => downsample_image(&data, self.downsample),
            },
        )
    }

    /// A reference label map on the run's grid.
    pub fn label(&self, label: &Volume<u8>) -> Result<Array3<u8>, DataError> {
        Ok(
            match self.spacing_change(&label.geometry, label.shape(), &label.path)? {
                Some((spacing, target)) => resample_label(label.data.view(), spacing, target),
                None => downsample_label(&label.data, self.downsample),
            },
        )
    }

    /// A label map predicted on the run's grid, back on the original grid of `shape`.
    pub fn restore_label(&self, label: &Array3<u8>, shape: [usize; 3]) -> Array3<u8> {
        if self.target_spacing.is_some() {
            resample_label_to_shape(label.view(), shape)
        } else {
            upsample_label(label, self.downsample, shape)
        }
    }

    /// Class probabilities `[C, x, y, z]` predicted on the run's grid, back on the original grid
    /// of `shape`: each class resampled linearly (the probabilities still sum to one) after a
    /// resampling to a target spacing, repeated like the label map after a down-sampling.
    pub fn restore_probabilities(
        &self,
        probabilities: &Array4<f32>,
        shape: [usize; 3],
    ) -> Array4<f32> {
        let mut restored = Array4::zeros([probabilities.shape()[0], shape[0], shape[1], shape[2]]);
        for (mut out, class) in restored
            .axis_iter_mut(Axis(0))
            .zip(probabilities.axis_iter(Axis(0)))
        {
            out.assign(&if self.target_spacing.is_some() {
                resample_image_to_shape(class, shape)
            } else {
                upsample_nearest(&class.to_owned(), self.downsample, shape)
            });
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SourceFormat;

    fn volume<T>(data: Array3<T>, spacing: Option<[f64; 3]>) -> Volume<T> {
        let mut geometry = Geometry::unknown();
        geometry.spacing = spacing;
        Volume {
            data,
            geometry,
            source: SourceFormat::Npy,
            path: Path::new("a.nii").to_path_buf(),
        }
    }

    #[test]
    fn prepared_grid_and_back() {
        let preparation = Preparation {
            normalization: Normalization::ZScore,
            downsample: 2,
            target_spacing: None,
            fallback_spacing: None,
        };
        let image = Array3::from_shape_fn([4, 2, 3], |(i, _, _)| i as f32);
        let prepared = preparation.image(&volume(image, None)).unwrap();
        assert_eq!(prepared.shape(), &[2, 1, 2]);
        // z-scored 0..3 has mean 0: the two halves average to -c and +c
        assert!((prepared[[0, 0, 0]] + prepared[[1, 0, 0]]).abs() < 1e-6);
        assert!(prepared[[0, 0, 0]] < 0.0);
        let label = Array3::from_shape_fn([4, 2, 3], |(i, _, _)| u8::from(i >= 2));
        let small = preparation.label(&volume(label.clone(), None)).unwrap();
        assert_eq!(small.iter().copied().collect::<Vec<_>>(), [0, 0, 1, 1]);
        assert_eq!(preparation.restore_label(&small, [4, 2, 3]), label);
    }

    #[test]
    fn resampled_to_the_target_spacing_and_back() {
        let preparation = Preparation {
            normalization: Normalization::Identity,
            downsample: 1,
            target_spacing: Some([2.0, 1.0, 1.0]),
            fallback_spacing: Some([1.0, 1.0, 1.0]),
        };
        let label = Array3::from_shape_fn([8, 3, 3], |(i, _, _)| u8::from(i >= 4));
        // no spacing in the file: the fallback applies
        let coarse = preparation.label(&volume(label.clone(), None)).unwrap();
        assert_eq!(coarse.shape(), &[4, 3, 3]);
        assert_eq!(preparation.restore_label(&coarse, [8, 3, 3]), label);
        let image = preparation
            .image(&volume(label.mapv(f32::from), Some([1.0, 1.0, 1.0])))
            .unwrap();
        assert_eq!(image.shape(), &[4, 3, 3]);
    }

    #[test]
    fn a_target_spacing_far_finer_than_the_file_is_refused_before_resampling() {
        let finer = |target: f64| Preparation {
            normalization: Normalization::Identity,
            downsample: 1,
            target_spacing: Some([target; 3]),
            fallback_spacing: Some([1.0; 3]),
        };
        let image = Array3::<f32>::zeros([35, 51, 35]);
        // 8 times finer along every axis is the most
        assert_eq!(
            finer(0.125)
                .image(&volume(image.clone(), None))
                .unwrap()
                .shape(),
            &[280, 408, 280]
        );
        let err = finer(0.1)
            .image(&volume(image.clone(), None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "would turn its [35, 51, 35] voxels into [350, 510, 350] (1000 times as many;"
            ),
            "{err}"
        );
        assert!(err.ends_with("choose a coarser target spacing"), "{err}");
        // a large scan at a modest refinement passes the growth bound but not the size bound
        let large = Array3::<u8>::zeros([512, 512, 600]);
        let err = finer(0.5)
            .label(&volume(large, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("into [1024, 1024, 1200] (8 times as many;"),
            "{err}"
        );
    }

    #[test]
    fn probabilities_go_back_like_their_labels() {
        let p = Array4::from_shape_fn([2, 2, 1, 1], |(c, i, _, _)| (c * 10 + i) as f32);
        let downsampled = Preparation {
            normalization: Normalization::Identity,
            downsample: 2,
            target_spacing: None,
            fallback_spacing: None,
        };
        // Each voxel repeated over its 2 x 2 x 2 block, cropped to the input's shape.
        let up = downsampled.restore_probabilities(&p, [3, 2, 1]);
        assert_eq!(up.shape(), &[2, 3, 2, 1]);
        assert_eq!(up[[1, 0, 1, 0]], 10.0);
        assert_eq!(up[[1, 2, 0, 0]], 11.0);
        assert_eq!(up[[0, 1, 1, 0]], 0.0);

        let resampled = Preparation {
            target_spacing: Some([2.0, 1.0, 1.0]),
            downsample: 1,
            ..downsampled
        };
        // Two coarse voxels (p1 = 0.2, 0.6) to four fine ones at coordinates -0.25, 0.25, 0.75,
        // 1.25 of the coarse grid: 0.2, 0.3, 0.5, 0.6; each voxel still sums to one.
        let p = Array4::from_shape_fn([2, 2, 1, 1], |(c, i, _, _)| {
            let p1 = 0.2 + 0.4 * i as f32;
            if c == 1 { p1 } else { 1.0 - p1 }
        });
        let fine = resampled.restore_probabilities(&p, [4, 1, 1]);
        assert_eq!(fine.shape(), &[2, 4, 1, 1]);
        for (x, expected) in [0.2, 0.3, 0.5, 0.6].into_iter().enumerate() {
            assert!((fine[[1, x, 0, 0]] - expected).abs() < 1e-6, "x = {x}");
            assert!((fine[[0, x, 0, 0]] + fine[[1, x, 0, 0]] - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn resampling_without_a_spacing_names_the_file() {
        let preparation = Preparation {
            normalization: Normalization::Identity,
            downsample: 1,
            target_spacing: Some([1.0, 1.0, 1.0]),
            fallback_spacing: None,
        };
        let err = preparation
            .image(&volume(Array3::zeros([2, 2, 2]), None))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a.nii: ") && err.contains("spacing"),
            "{err}"
        );
    }

    #[test]
    fn a_normalisation_error_names_the_file() {
        let preparation = Preparation {
            normalization: Normalization::PercentileClip {
                lower: 90.0,
                upper: 10.0,
            },
            downsample: 1,
            target_spacing: None,
            fallback_spacing: None,
        };
        let err = preparation
            .image(&volume(Array3::from_elem([2, 2, 2], 3.0), None))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a.nii: "), "{err}");
    }
}
