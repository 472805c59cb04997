//! Prompts for the generalist, made from the specialist's (student's) foreground probability —
//! never from a ground truth (docs/method.md §1, §5).
//!
//! The confident object is the largest connected component of `p > threshold`. A 2D generalist
//! used slice by slice gets one box per slice that the object crosses (plus optional interior
//! positive and nearby negative points); a 3D generalist gets points. An item with no confident
//! foreground yields no prompt at all: the caller records it and skips the SAM term.

mod clicks;
mod points;
mod slices;

pub use clicks::{correction_click, region_centre};
pub use points::{Point3, points_3d};
pub use slices::{Point2, SlicePrompt, slice_prompts};

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::morphology::{Connectivity, largest_component};

/// How prompts are derived from a probability map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    /// Foreground is `p > threshold`.
    pub threshold: f32,
    /// Voxels added on every side of a slice's bounding box (fractions allowed).
    pub box_margin: f32,
    /// Slices whose part of the object has fewer voxels than this get no box.
    pub min_slice_area: usize,
    /// Interior positive points per slice (2D) or per object (3D).
    pub positive_points: usize,
    /// Confident-background negative points per slice (2D) or per object (3D).
    pub negative_points: usize,
    /// 2D: each box side becomes the median of that side over the slices within this many of
    /// its own (0: off), so that one slice's stray protrusion does not widen its box alone.
    pub box_smoothing: usize,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            threshold: 0.5,
            box_margin: 1.0,
            min_slice_area: 1,
            positive_points: 0,
            negative_points: 0,
            box_smoothing: 0,
        }
    }
}

/// The largest 26-connected component of `prob > threshold`, or `None` when nothing is confident.
pub fn confident_object(prob: ArrayView3<f32>, threshold: f32) -> Option<Array3<bool>> {
    let foreground = prob.mapv(|p| p > threshold);
    if !foreground.iter().any(|&v| v) {
        return None;
    }
    Some(largest_component(foreground.view(), Connectivity::Full))
}

/// Up to `count` positions of the largest finite scores, each pick excluding a ball (radius from
/// `radius_at`, in the units of `spacing`) around itself so that the picks spread out.
fn spread_maxima(
    mut score: Array3<f64>,
    count: usize,
    spacing: [f64; 3],
    radius_at: impl Fn([usize; 3]) -> f64,
) -> Vec<[usize; 3]> {
    let mut picks = Vec::with_capacity(count);
    for _ in 0..count {
        let mut best: Option<([usize; 3], f64)> = None;
        for ((i, j, k), &v) in score.indexed_iter() {
            if v.is_finite() && best.is_none_or(|(_, b)| v > b) {
                best = Some(([i, j, k], v));
            }
        }
        let Some((centre, _)) = best else { break };
        picks.push(centre);
        exclude_ball(&mut score, centre, spacing, radius_at(centre));
    }
    picks
}

fn exclude_ball(score: &mut Array3<f64>, centre: [usize; 3], spacing: [f64; 3], radius: f64) {
    let shape = score.shape().to_vec();
    let lo: Vec<usize> = (0..3)
        .map(|a| centre[a].saturating_sub((radius / spacing[a]).ceil() as usize))
        .collect();
    let hi: Vec<usize> = (0..3)
        .map(|a| {
            centre[a]
                .saturating_add((radius / spacing[a]).ceil() as usize)
                .min(shape[a] - 1)
        })
        .collect();
    for i in lo[0]..=hi[0] {
        for j in lo[1]..=hi[1] {
            for k in lo[2]..=hi[2] {
                let squared: f64 = [i, j, k]
                    .iter()
                    .zip(centre)
                    .zip(spacing)
                    .map(|((&v, c), s)| ((v as f64 - c as f64) * s).powi(2))
                    .sum();
                if squared.sqrt() <= radius {
                    score[[i, j, k]] = f64::NEG_INFINITY;
                }
            }
        }
    }
}

/// Confident background: `p < 1 - threshold` (the symmetric counterpart of foreground).
fn confident_background(prob: ArrayView3<f32>, threshold: f32) -> Array3<bool> {
    prob.mapv(|p| p < 1.0 - threshold)
}
