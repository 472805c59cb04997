//! The cube a 3D generalist sees: a `side`³ crop of the case image centred on the confident
//! object, optionally resampled (one crop voxel = `voxel_size` image voxels along every axis) and
//! re-normalised, and the way back from the crop's mask logits to the training patch's region.
//!
//! Geometry: image voxel `i` covers `[i, i + 1)`. The crop's low edge is the integer image
//! position `start`; crop voxel `m` samples the image at index `start + (m + 0.5)·v − 0.5`, so
//! with `v = 1` crop voxels are image voxels, copied without interpolation. Like SAM-Med3D's
//! `CropOrPad`, the cube is centred on the object's bounding box (`start = ⌊centre − side·v/2⌋`)
//! and image parts outside the volume are zero padding.

use std::ops::Range;

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

/// Intensity normalisation of the crop before it enters the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CropNormalization {
    /// Keep the training pipeline's normalisation (SemiSAM feeds the patch as it is).
    #[default]
    None,
    /// z-score over the whole crop (unbiased standard deviation).
    Zscore,
    /// SAM-Med3D's `ZNormalization`: statistics over the crop voxels above 0 (unbiased standard
    /// deviation), applied to every voxel.
    PositiveZscore,
}

/// Two crop voxels and their interpolation weights along one axis.
type PasteTaps = [(usize, f64); 2];

/// A cube of `side`³ voxels placed in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CubeCrop {
    /// Image position of the cube's low corner (voxel edge).
    pub start: [i64; 3],
    pub side: usize,
    /// Image voxels per crop voxel.
    pub voxel_size: f64,
}

/// Linear interpolation weights of one sample along an axis: `(index, weight)` pairs whose
/// indices may lie outside the image (the caller treats those as padding).
fn linear_taps(position: f64) -> [(i64, f64); 2] {
    let low = position.floor();
    let fraction = position - low;
    [(low as i64, 1.0 - fraction), (low as i64 + 1, fraction)]
}

impl CubeCrop {
    /// The cube centred on the image box `bbox` (exclusive upper bounds).
    pub fn around(bbox: &[Range<usize>; 3], side: usize, voxel_size: f64) -> Self {
        let extent = side as f64 * voxel_size;
        let start = std::array::from_fn(|a| {
            let centre = (bbox[a].start + bbox[a].end) as f64 / 2.0;
            (centre - extent / 2.0).floor() as i64
        });
        CubeCrop {
            start,
            side,
            voxel_size,
        }
    }

    /// Image index sampled by crop voxel `m` along axis `axis`.
    fn image_position(&self, axis: usize, m: usize) -> f64 {
        self.start[axis] as f64 + (m as f64 + 0.5) * self.voxel_size - 0.5
    }

    /// Crop position (continuous voxel index) of image voxel `i` along `axis`.
    fn crop_position(&self, axis: usize, i: usize) -> f64 {
        (i as f64 + 0.5 - self.start[axis] as f64) / self.voxel_size - 0.5
    }

    /// The crop voxel nearest to image voxel `index`, if the cube covers it.
    pub fn crop_index(&self, index: [usize; 3]) -> Option<[usize; 3]> {
        let mut out = [0; 3];
        for (a, slot) in out.iter_mut().enumerate() {
            let m = self.crop_position(a, index[a]).round();
            if m < 0.0 || m >= self.side as f64 {
                return None;
            }
            *slot = m as usize;
        }
        Some(out)
    }

    /// The image inside the cube, trilinearly resampled, zero outside the volume.
    pub fn extract(&self, image: ArrayView3<f32>) -> Array3<f32> {
        let shape = image.shape();
        let taps: Vec<Vec<[(i64, f64); 2]>> = (0..3)
            .map(|a| {
                (0..self.side)
                    .map(|m| linear_taps(self.image_position(a, m)))
                    .collect()
            })
            .collect();
        let value = |i: i64, j: i64, k: i64| -> f64 {
            let inside = [i, j, k]
                .iter()
                .zip(shape)
                .all(|(&x, &n)| x >= 0 && (x as usize) < n);
            if inside {
                f64::from(image[[i as usize, j as usize, k as usize]])
            } else {
                0.0
            }
        };
        Array3::from_shape_fn((self.side, self.side, self.side), |(a, b, c)| {
            let mut sum = 0.0;
            for &(i, wi) in &taps[0][a] {
                for &(j, wj) in &taps[1][b] {
                    for &(k, wk) in &taps[2][c] {
                        let w = wi * wj * wk;
                        if w != 0.0 {
                            sum += w * value(i, j, k);
                        }
                    }
                }
            }
            sum as f32
        })
    }

    /// A region-shaped mask carried into the cube (nearest voxel): the mask where the cube sees
    /// the region, and which crop voxels see the region at all.
    pub fn carry_in(
        &self,
        mask: ArrayView3<bool>,
        region: &[Range<usize>; 3],
    ) -> (Array3<bool>, Array3<bool>) {
        let shape = (self.side, self.side, self.side);
        let mut inside = Array3::from_elem(shape, false);
        let mut known = Array3::from_elem(shape, false);
        let nearest: Vec<Vec<Option<usize>>> = (0..3)
            .map(|a| {
                (0..self.side)
                    .map(|m| {
                        let at = self.image_position(a, m).round();
                        let range = &region[a];
                        (at >= range.start as f64 && at < range.end as f64)
                            .then(|| at as usize - range.start)
                    })
                    .collect()
            })
            .collect();
        for ((a, b, c), k) in known.indexed_iter_mut() {
            if let (Some(i), Some(j), Some(l)) = (nearest[0][a], nearest[1][b], nearest[2][c]) {
                *k = true;
                inside[[a, b, c]] = mask[[i, j, l]];
            }
        }
        (inside, known)
    }

    /// Per axis and region index, the two cube voxels (and weights) a region voxel reads from;
    /// `None` beyond half a crop voxel outside the cube.
    fn paste_taps(&self, region: &[Range<usize>; 3]) -> Vec<Vec<Option<PasteTaps>>> {
        let last = self.side as f64 - 1.0;
        (0..3)
            .map(|a| {
                region[a]
                    .clone()
                    .map(|i| {
                        let u = self.crop_position(a, i);
                        if u < -0.5 || u >= last + 0.5 {
                            return None;
                        }
                        let [(lo, wl), (hi, wh)] = linear_taps(u.clamp(0.0, last));
                        Some([(lo as usize, wl), ((hi as usize).min(self.side - 1), wh)])
                    })
                    .collect()
            })
            .collect()
    }

    /// The region voxels [`CubeCrop::paste`] takes from the cube (the rest it cannot know).
    pub fn covers(&self, region: &[Range<usize>; 3]) -> Array3<bool> {
        let taps = self.paste_taps(region);
        let shape = (region[0].len(), region[1].len(), region[2].len());
        Array3::from_shape_fn(shape, |(a, b, c)| {
            taps[0][a].is_some() && taps[1][b].is_some() && taps[2][c].is_some()
        })
    }

    /// The cube's logits brought back onto `region` (trilinear, edge values held up to half a
    /// crop voxel beyond the cube) and thresholded; region voxels the cube does not cover are
    /// background (and not [`CubeCrop::covers`]ed).
    pub fn paste(
        &self,
        logits: ArrayView3<f32>,
        region: &[Range<usize>; 3],
        threshold: f32,
    ) -> Array3<bool> {
        let taps = self.paste_taps(region);
        let shape = (region[0].len(), region[1].len(), region[2].len());
        Array3::from_shape_fn(shape, |(a, b, c)| {
            let (Some(ta), Some(tb), Some(tc)) = (taps[0][a], taps[1][b], taps[2][c]) else {
                return false;
            };
            let mut sum = 0.0;
            for (i, wi) in ta {
                for (j, wj) in tb {
                    for (k, wk) in tc {
                        let w = wi * wj * wk;
                        if w != 0.0 {
                            sum += w * f64::from(logits[[i, j, k]]);
                        }
                    }
                }
            }
            sum > f64::from(threshold)
        })
    }
}

/// Normalises the crop in place; a crop without spread (or without voxels above 0 for
/// [`CropNormalization::PositiveZscore`]) is an error, as in SAM-Med3D.
pub fn normalize_crop(crop: &mut Array3<f32>, method: CropNormalization) -> Result<(), String> {
    let selected: Vec<f64> = match method {
        CropNormalization::None => return Ok(()),
        CropNormalization::Zscore => crop.iter().map(|&v| f64::from(v)).collect(),
        CropNormalization::PositiveZscore => crop
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| f64::from(v))
            .collect(),
    };
    let n = selected.len() as f64;
    if selected.len() < 2 {
        return Err(format!(
            "{method:?} normalisation needs at least 2 voxels, the crop has {}",
            selected.len()
        ));
    }
    let mean = selected.iter().sum::<f64>() / n;
    let std = (selected.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    if std == 0.0 || !std.is_finite() {
        return Err(format!(
            "{method:?} normalisation: the crop's intensities have no spread (std {std})"
        ));
    }
    crop.mapv_inplace(|v| ((f64::from(v) - mean) / std) as f32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: (usize, usize, usize)) -> Array3<f32> {
        Array3::from_shape_fn(shape, |(i, j, k)| (100 * i + 10 * j + k) as f32)
    }

    #[test]
    fn unit_voxels_copy_the_image_and_pad_with_zero() {
        // object box [2, 4) x [3, 6) x [0, 1): centres 3, 4.5, 0.5; side 4 → starts
        // ⌊3 - 2⌋ = 1, ⌊4.5 - 2⌋ = 2, ⌊0.5 - 2⌋ = -2 (SAM-Med3D's CropOrPad gives the same)
        let crop = CubeCrop::around(&[2..4, 3..6, 0..1], 4, 1.0);
        assert_eq!(crop.start, [1, 2, -2]);
        let image = ramp((6, 7, 5));
        let cube = crop.extract(image.view());
        assert_eq!(cube[[0, 0, 2]], image[[1, 2, 0]]);
        assert_eq!(cube[[3, 3, 3]], image[[4, 5, 1]]);
        assert_eq!(cube[[2, 1, 1]], 0.0); // k = -1 is outside the image
    }

    #[test]
    fn coarser_voxels_average_neighbouring_image_voxels() {
        // voxel size 2, start 0: crop voxel m samples image index 2m + 0.5, i.e. the mean of
        // voxels 2m and 2m + 1 along each axis; a linear ramp makes that the ramp at 2m + 0.5.
        let crop = CubeCrop {
            start: [0, 0, 0],
            side: 2,
            voxel_size: 2.0,
        };
        let cube = crop.extract(ramp((4, 4, 4)).view());
        assert!((cube[[1, 0, 1]] - (100.0 * 2.5 + 10.0 * 0.5 + 2.5)).abs() < 1e-4);
    }

    #[test]
    fn carry_in_and_paste_are_inverse_with_unit_voxels() {
        let region = [3..7, 1..4, 0..5];
        let mask = Array3::from_shape_fn((4, 3, 5), |(i, j, k)| (i + j + k) % 3 == 0);
        let crop = CubeCrop {
            start: [2, 0, -2],
            side: 6,
            voxel_size: 1.0,
        };
        let (inside, known) = crop.carry_in(mask.view(), &region);
        // crop voxel (1, 1, 2) is image (3, 1, 0) = region (0, 0, 0)
        assert!(known[[1, 1, 2]] && inside[[1, 1, 2]] == mask[[0, 0, 0]]);
        assert!(!known[[0, 1, 2]]); // image i = 2 is outside the region
        assert_eq!(known.iter().filter(|&&k| k).count(), 4 * 3 * 4); // k = 4 lies beyond the cube
        let logits = inside.mapv(|v| if v { 3.0f32 } else { -3.0 });
        let pasted = crop.paste(logits.view(), &region, 0.0);
        for ((i, j, k), &p) in pasted.indexed_iter() {
            // region k = 4 is image k = 4, crop k = 6: outside the cube, so background
            let expected = k < 4 && mask[[i, j, k]];
            assert_eq!(p, expected, "at {:?}", (i, j, k));
        }
        // the cube (image k from -2 to 3, half a voxel more) covers region k 0..4, not k = 4
        let covered = crop.covers(&region);
        assert_eq!(covered, Array3::from_shape_fn((4, 3, 5), |(_, _, k)| k < 4));
    }

    #[test]
    fn crop_index_maps_image_voxels_into_the_cube() {
        let crop = CubeCrop {
            start: [-1, 2, 0],
            side: 4,
            voxel_size: 1.0,
        };
        assert_eq!(crop.crop_index([0, 2, 3]), Some([1, 0, 3]));
        assert_eq!(crop.crop_index([0, 1, 3]), None);
        let coarse = CubeCrop {
            voxel_size: 2.0,
            ..crop
        };
        // image i = 4 → (4.5 + 1) / 2 - 0.5 = 2.25 → 2
        assert_eq!(coarse.crop_index([4, 2, 0]), Some([2, 0, 0]));
    }

    #[test]
    fn positive_zscore_uses_voxels_above_zero_only() {
        let mut crop = Array3::from_shape_vec((1, 1, 4), vec![0.0, 2.0, 4.0, 0.0]).unwrap();
        normalize_crop(&mut crop, CropNormalization::PositiveZscore).unwrap();
        // mean 3, unbiased std sqrt(2)
        let s = 2f32.sqrt();
        let expected = [-3.0 / s, -1.0 / s, 1.0 / s, -3.0 / s];
        for (v, e) in crop.iter().zip(expected) {
            assert!((v - e).abs() < 1e-6, "{v} vs {e}");
        }
        let mut flat = Array3::from_elem((2, 2, 2), 1.5f32);
        let err = normalize_crop(&mut flat, CropNormalization::Zscore).unwrap_err();
        assert!(err.contains("no spread"), "{err}");
    }
}
