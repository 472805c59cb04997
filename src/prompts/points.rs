//! Point prompts for a 3D generalist (SAM-Med3D style).

use ndarray::{Array3, ArrayView3};
use serde::{Deserialize, Serialize};

use super::{PromptConfig, confident_background, confident_object, spread_maxima};
use crate::morphology::distance_transform;

/// A voxel click `[i, j, k]` in the array's axis order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point3 {
    pub index: [usize; 3],
    pub positive: bool,
}

/// Positive points deep inside the confident object (at least one) and negative points in confident
/// background just outside it (2 to `box_margin + 2` voxels away). Empty when nothing is confident.
pub fn points_3d(prob: ArrayView3<f32>, spacing: [f64; 3], config: &PromptConfig) -> Vec<Point3> {
    let Some(object) = confident_object(prob, config.threshold) else {
        return Vec::new();
    };
    let outside = object.mapv(|v| !v);
    let depth = distance_transform(outside.view(), spacing);
    let interior = depth.mapv(|d| {
        if d > 0.0 {
            d.min(f64::MAX)
        } else {
            f64::NEG_INFINITY
        }
    });
    let positives = spread_maxima(interior, config.positive_points.max(1), spacing, |at| {
        depth[at]
    });

    let background = confident_background(prob, config.threshold);
    let distance = distance_transform(object.view(), spacing);
    let step = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let (nearest, farthest) = (2.0 * step, (f64::from(config.box_margin) + 2.0) * step);
    let shell = Array3::from_shape_fn(distance.dim(), |at| {
        let d = distance[at];
        if background[at] && d >= nearest && d <= farthest {
            -d
        } else {
            f64::NEG_INFINITY
        }
    });
    let negatives = spread_maxima(shell, config.negative_points, spacing, |at| {
        distance[at].max(step)
    });

    let positives = positives.into_iter().map(|index| Point3 {
        index,
        positive: true,
    });
    positives
        .chain(negatives.into_iter().map(|index| Point3 {
            index,
            positive: false,
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_point_at_the_centre_negative_point_just_outside() {
        let prob = Array3::from_shape_fn((15, 15, 15), |(i, j, k)| {
            let inside = (4..11).contains(&i) && (4..11).contains(&j) && (4..11).contains(&k);
            if inside { 0.9 } else { 0.05 }
        });
        let config = PromptConfig {
            positive_points: 1,
            negative_points: 1,
            box_margin: 1.0,
            ..Default::default()
        };
        let points = points_3d(prob.view(), [1.0; 3], &config);
        assert_eq!(
            points[0],
            Point3 {
                index: [7, 7, 7],
                positive: true
            }
        );
        let negative = points[1];
        assert!(!negative.positive);
        assert!(prob[negative.index] < 0.5);
        // first voxel in scan order at distance exactly 2 from the cube: i = 2, j and k on the face
        assert_eq!(negative.index, [2, 4, 4]);
    }

    #[test]
    fn nothing_confident_means_no_points() {
        let prob = Array3::from_elem((6, 6, 6), 0.3f32);
        assert!(points_3d(prob.view(), [1.0; 3], &PromptConfig::default()).is_empty());
    }
}
