//! Metrics of one binary prediction mask against one binary reference mask, including the
//! empty-mask policy (docs/method.md §7).

use ndarray::{ArrayView3, Zip};

use super::MetricsError;
use super::statistics::{mean, percentile};
use crate::morphology::{bounding_box, squared_distance_transform, surface, union_box};

/// Dice from the overlap and the two mask sizes, with the empty-mask policy's "both empty → 1"
/// (for counts gathered in a pass that does more than score).
pub fn dice_from_counts(overlap: usize, a: usize, b: usize) -> f64 {
    if a + b == 0 {
        1.0
    } else {
        2.0 * overlap as f64 / (a + b) as f64
    }
}

/// How HD95 combines the two directions of surface distances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hd95Convention {
    /// medpy `hd95`: the 95th percentile of the pooled distances of both directions.
    #[default]
    Medpy,
    /// MONAI `compute_hausdorff_distance(percentile=95)`: the larger of the two directed 95th
    /// percentiles.
    Monai,
}

impl Hd95Convention {
    /// One-line definition, written into evaluation reports.
    pub fn definition(self) -> &'static str {
        match self {
            Hd95Convention::Medpy => {
                "medpy: 95th percentile (linear interpolation) of the pooled surface distances of both directions"
            }
            Hd95Convention::Monai => {
                "MONAI: maximum of the two directed 95th percentiles (linear interpolation) of surface distances"
            }
        }
    }
}

/// The empty-mask policy, written into evaluation reports.
pub const EMPTY_MASK_POLICY: &str = "both masks empty: Dice 1, Jaccard 1, HD95/ASD/ASSD 0; \
     exactly one mask empty: Dice 0, Jaccard 0, HD95/ASD/ASSD = the image diagonal \
     sqrt(sum_d (shape_d * spacing_d)^2) over the axes longer than one voxel, in the distance unit";

/// Metrics of one binary mask pair. Distances are in the unit of the spacing they were computed
/// with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskMetrics {
    pub dice: f64,
    pub jaccard: f64,
    pub hd95: f64,
    /// Average surface distance, prediction → reference (medpy `asd`, directed).
    pub asd: f64,
    /// Average symmetric surface distance: the mean of the pooled distances of both directions
    /// (medpy ≥ 0.5 `assd`, MONAI `compute_average_surface_distance(symmetric=True)`).
    pub assd: f64,
    pub prediction_empty: bool,
    pub reference_empty: bool,
}

/// Surface distances between two non-empty masks, one per surface voxel (both lists non-empty).
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceDistances {
    prediction_to_reference: Vec<f64>,
    reference_to_prediction: Vec<f64>,
}

impl SurfaceDistances {
    /// Surfaces as in [`crate::morphology::surface`], distances by exact Euclidean distance
    /// transform with `spacing`. Only the bounding box of both masks is transformed: every
    /// surface voxel lies inside it, so the distances are those of the whole volume. `None` if a
    /// mask is empty.
    pub fn compute(
        prediction: ArrayView3<bool>,
        reference: ArrayView3<bool>,
        spacing: [f64; 3],
    ) -> Option<Self> {
        let spatial = spatial_axes(prediction.shape());
        let region = union_box(bounding_box(prediction), bounding_box(reference))?;
        let [a, b, c] = region;
        let window = ndarray::s![a, b, c];
        // Voxels outside the box are background in both masks, so cropping keeps surfaces exact.
        let prediction_surface = surface(prediction.slice(window), spatial);
        let reference_surface = surface(reference.slice(window), spatial);
        if !prediction_surface.iter().any(|&v| v) || !reference_surface.iter().any(|&v| v) {
            return None;
        }
        let (to_reference, to_prediction) = rayon::join(
            || squared_distance_transform(reference_surface.view(), spacing),
            || squared_distance_transform(prediction_surface.view(), spacing),
        );
        Some(SurfaceDistances {
            prediction_to_reference: sample_at(prediction_surface.view(), &to_reference),
            reference_to_prediction: sample_at(reference_surface.view(), &to_prediction),
        })
    }

    /// For each prediction surface voxel (in memory order), the distance to the nearest reference
    /// surface voxel.
    pub fn prediction_to_reference(&self) -> &[f64] {
        &self.prediction_to_reference
    }

    /// For each reference surface voxel (in memory order), the distance to the nearest prediction
    /// surface voxel.
    pub fn reference_to_prediction(&self) -> &[f64] {
        &self.reference_to_prediction
    }

    /// HD95 under `convention`.
    pub fn hd95(&self, convention: Hd95Convention) -> f64 {
        let directed = |distances: &[f64]| {
            percentile(&mut distances.to_vec(), 95.0).expect("non-empty surface")
        };
        match convention {
            Hd95Convention::Medpy => {
                let mut pooled = [
                    self.prediction_to_reference.as_slice(),
                    self.reference_to_prediction.as_slice(),
                ]
                .concat();
                percentile(&mut pooled, 95.0).expect("non-empty surfaces")
            }
            Hd95Convention::Monai => {
                directed(&self.prediction_to_reference).max(directed(&self.reference_to_prediction))
            }
        }
    }

    /// Mean distance prediction → reference (medpy `asd`).
    pub fn asd(&self) -> f64 {
        mean(&self.prediction_to_reference).expect("non-empty surface")
    }

    /// Mean of the pooled distances of both directions (medpy `assd`). Weighting each surface voxel
    /// equally, not each direction: the larger surface counts more.
    pub fn assd(&self) -> f64 {
        let total: f64 = self
            .prediction_to_reference
            .iter()
            .chain(&self.reference_to_prediction)
            .sum();
        total / (self.prediction_to_reference.len() + self.reference_to_prediction.len()) as f64
    }
}

fn sample_at(points: ArrayView3<bool>, squared: &ndarray::Array3<f64>) -> Vec<f64> {
    Zip::from(points)
        .and(squared)
        .fold(Vec::new(), |mut acc, &at, &d2| {
            if at {
                acc.push(d2.sqrt());
            }
            acc
        })
}

/// Dice, Jaccard, HD95, ASD and ASSD of `prediction` against `reference`, distances in the unit
/// of `spacing`. Empty masks follow [`EMPTY_MASK_POLICY`].
pub fn evaluate_masks(
    prediction: ArrayView3<bool>,
    reference: ArrayView3<bool>,
    spacing: [f64; 3],
    convention: Hd95Convention,
) -> Result<MaskMetrics, MetricsError> {
    if prediction.dim() != reference.dim() {
        return Err(MetricsError::MaskShapeMismatch {
            prediction: prediction.shape().to_vec(),
            reference: reference.shape().to_vec(),
        });
    }
    validate_spacing(spacing)?;
    let counts = Zip::from(prediction)
        .and(reference)
        .fold([0usize; 3], |[both, p, r], &a, &b| {
            [
                both + usize::from(a && b),
                p + usize::from(a),
                r + usize::from(b),
            ]
        });
    let [intersection, prediction_size, reference_size] = counts.map(|c| c as f64);
    let prediction_empty = counts[1] == 0;
    let reference_empty = counts[2] == 0;
    let distances = SurfaceDistances::compute(prediction, reference, spacing);
    let metrics = match distances {
        Some(distances) => MaskMetrics {
            dice: 2.0 * intersection / (prediction_size + reference_size),
            jaccard: intersection / (prediction_size + reference_size - intersection),
            hd95: distances.hd95(convention),
            asd: distances.asd(),
            assd: distances.assd(),
            prediction_empty,
            reference_empty,
        },
        None if prediction_empty && reference_empty => MaskMetrics {
            dice: 1.0,
            jaccard: 1.0,
            hd95: 0.0,
            asd: 0.0,
            assd: 0.0,
            prediction_empty,
            reference_empty,
        },
        None => {
            let diagonal = image_diagonal(prediction.shape(), spacing);
            MaskMetrics {
                dice: 0.0,
                jaccard: 0.0,
                hd95: diagonal,
                asd: diagonal,
                assd: diagonal,
                prediction_empty,
                reference_empty,
            }
        }
    };
    Ok(metrics)
}

/// The physical extent of the image, `sqrt(Σ (shape_d · spacing_d)²)` over the axes it has (see
/// [`spatial_axes`]): larger than any distance between two voxels, so a missed or hallucinated
/// object always scores worse than any found one.
pub fn image_diagonal(shape: &[usize], spacing: [f64; 3]) -> f64 {
    let spatial = spatial_axes(shape);
    shape
        .iter()
        .zip(spacing)
        .zip(spatial)
        .filter(|(_, along)| *along)
        .map(|((&n, s), _)| (n as f64 * s).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The axes an image extends along: those longer than one voxel. A 2-D image (a PNG, a NIfTI with
/// two dimensions, or a volume of one slice) is scored in its plane, where the voxels of a one-voxel
/// axis have no neighbours; a single voxel keeps all three axes.
pub fn spatial_axes(shape: &[usize]) -> [bool; 3] {
    let mut along = [false; 3];
    for (axis, &n) in shape.iter().take(3).enumerate() {
        along[axis] = n > 1;
    }
    if along.iter().any(|&a| a) {
        along
    } else {
        [true; 3]
    }
}

pub(super) fn validate_spacing(spacing: [f64; 3]) -> Result<(), MetricsError> {
    if spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
        Ok(())
    } else {
        Err(MetricsError::InvalidSpacing { spacing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn two_single_voxels_are_one_distance_apart_in_every_metric() {
        let mut prediction = Array3::from_elem((6, 5, 2), false);
        let mut reference = prediction.clone();
        prediction[[0, 0, 1]] = true;
        reference[[3, 4, 1]] = true;
        // Offsets (3, 4, 0) voxels with spacing (1, 1.5, 9) mm: sqrt(3² + 6²) = sqrt(45).
        let m = evaluate_masks(
            prediction.view(),
            reference.view(),
            [1.0, 1.5, 9.0],
            Hd95Convention::Medpy,
        )
        .unwrap();
        let expected = 45f64.sqrt();
        assert_eq!((m.dice, m.jaccard), (0.0, 0.0));
        for value in [m.hd95, m.asd, m.assd] {
            assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
        }
    }

    #[test]
    fn shape_mismatch_and_bad_spacing_are_errors() {
        let a = Array3::from_elem((2, 2, 2), true);
        let b = Array3::from_elem((2, 2, 3), true);
        let error =
            evaluate_masks(a.view(), b.view(), [1.0; 3], Hd95Convention::Medpy).unwrap_err();
        assert_eq!(
            error.to_string(),
            "prediction mask has shape [2, 2, 2] but reference mask has shape [2, 2, 3]"
        );
        let error = evaluate_masks(
            a.view(),
            a.view(),
            [1.0, f64::NAN, 1.0],
            Hd95Convention::Medpy,
        );
        assert!(matches!(error, Err(MetricsError::InvalidSpacing { .. })));
    }
}
