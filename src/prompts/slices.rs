//! Box (and point) prompts for a 2D generalist applied slice by slice.

use ndarray::{Array3, ArrayView2, ArrayView3, Axis};
use serde::{Deserialize, Serialize};

use super::{PromptConfig, confident_background, confident_object, spread_maxima};
use crate::morphology::distance_transform;

/// A point on a slice, in pixel coordinates: `x` = column, `y` = row (SAM's convention).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point2 {
    pub x: f32,
    pub y: f32,
    /// `true` for a positive (foreground) click.
    pub positive: bool,
}

/// The prompt for one slice. Rows are the first remaining axis after removing the slicing axis,
/// columns the second (for axis 2 of an (x, y, z) volume: rows = x, columns = y).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlicePrompt {
    /// Index along the slicing axis.
    pub slice: usize,
    /// `[x0, y0, x1, y1]`, inclusive pixel coordinates, margin included, clamped to the slice.
    pub bbox: [f32; 4],
    pub points: Vec<Point2>,
    /// Voxels of the confident object on this slice.
    pub area: usize,
}

/// One prompt per slice along `axis` that the confident object crosses with at least
/// `min_slice_area` voxels. Empty when `prob` has no confident foreground.
pub fn slice_prompts(
    prob: ArrayView3<f32>,
    axis: usize,
    config: &PromptConfig,
) -> Vec<SlicePrompt> {
    let Some(object) = confident_object(prob, config.threshold) else {
        return Vec::new();
    };
    let background = confident_background(prob, config.threshold);
    let mut prompts = Vec::new();
    for (slice, object_slice) in object.axis_iter(Axis(axis)).enumerate() {
        let area = object_slice.iter().filter(|&&v| v).count();
        if area == 0 || area < config.min_slice_area {
            continue;
        }
        let bbox = bounding_box(object_slice, config.box_margin);
        let mut points = Vec::new();
        if config.positive_points > 0 {
            points.extend(interior_points(object_slice, config.positive_points));
        }
        if config.negative_points > 0 {
            let background_slice = background.index_axis(Axis(axis), slice);
            points.extend(negative_points(
                object_slice,
                background_slice,
                &bbox,
                config.negative_points,
            ));
        }
        prompts.push(SlicePrompt {
            slice,
            bbox,
            points,
            area,
        });
    }
    smooth_boxes(&mut prompts, config.box_smoothing);
    prompts
}

/// Each box side replaced by its median over the prompts whose slices lie within `radius` of
/// the box's own (fewer at the object's ends). The object is one connected component, so its
/// prompted slices are consecutive unless `min_slice_area` skipped some.
fn smooth_boxes(prompts: &mut [SlicePrompt], radius: usize) {
    if radius == 0 {
        return;
    }
    let boxes: Vec<[f32; 4]> = prompts.iter().map(|p| p.bbox).collect();
    let slices: Vec<usize> = prompts.iter().map(|p| p.slice).collect();
    for prompt in prompts.iter_mut() {
        let near: Vec<&[f32; 4]> = slices
            .iter()
            .zip(&boxes)
            .filter(|(slice, _)| slice.abs_diff(prompt.slice) <= radius)
            .map(|(_, bbox)| bbox)
            .collect();
        for side in 0..4 {
            let mut values: Vec<f32> = near.iter().map(|bbox| bbox[side]).collect();
            values.sort_by(f32::total_cmp);
            let mid = values.len() / 2;
            prompt.bbox[side] = if values.len() % 2 == 1 {
                values[mid]
            } else {
                0.5 * (values[mid - 1] + values[mid])
            };
        }
    }
}

fn bounding_box(mask: ArrayView2<bool>, margin: f32) -> [f32; 4] {
    let (rows, cols) = mask.dim();
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for ((r, c), &v) in mask.indexed_iter() {
        if v {
            r0 = r0.min(r);
            r1 = r1.max(r);
            c0 = c0.min(c);
            c1 = c1.max(c);
        }
    }
    let clamp = |v: f32, len: usize| v.clamp(0.0, (len - 1) as f32);
    [
        clamp(c0 as f32 - margin, cols),
        clamp(r0 as f32 - margin, rows),
        clamp(c1 as f32 + margin, cols),
        clamp(r1 as f32 + margin, rows),
    ]
}

fn as_volume(mask: ArrayView2<bool>) -> Array3<bool> {
    mask.to_owned().insert_axis(Axis(2))
}

fn to_point(index: [usize; 3], positive: bool) -> Point2 {
    Point2 {
        x: index[1] as f32,
        y: index[0] as f32,
        positive,
    }
}

/// The most interior object pixels, spread out: each pick excludes a disc of its own depth.
fn interior_points(object: ArrayView2<bool>, count: usize) -> Vec<Point2> {
    let outside = as_volume(object).mapv(|v| !v);
    let depth = distance_transform(outside.view(), [1.0; 3]);
    let score = depth.mapv(|d| {
        if d > 0.0 {
            d.min(f64::MAX)
        } else {
            f64::NEG_INFINITY
        }
    });
    spread_maxima(score, count, [1.0; 3], |at| depth[at].max(1.0))
        .into_iter()
        .map(|at| to_point(at, true))
        .collect()
}

/// Confident-background pixels inside the box that lie closest to the object, but at least two
/// pixels away (its boundary is where the specialist is least sure), spread out.
fn negative_points(
    object: ArrayView2<bool>,
    background: ArrayView2<bool>,
    bbox: &[f32; 4],
    count: usize,
) -> Vec<Point2> {
    let distance = distance_transform(as_volume(object).view(), [1.0; 3]);
    let in_box = |r: usize, c: usize| {
        (c as f32) >= bbox[0]
            && (c as f32) <= bbox[2]
            && (r as f32) >= bbox[1]
            && (r as f32) <= bbox[3]
    };
    let score = Array3::from_shape_fn(distance.dim(), |(r, c, z)| {
        let d = distance[[r, c, z]];
        if background[[r, c]] && in_box(r, c) && d >= 2.0 {
            -d
        } else {
            f64::NEG_INFINITY
        }
    });
    spread_maxima(score, count, [1.0; 3], |at| distance[at].max(1.0))
        .into_iter()
        .map(|at| to_point(at, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn prob_with_cube(
        shape: (usize, usize, usize),
        lo: [usize; 3],
        hi: [usize; 3],
        p: f32,
    ) -> Array3<f32> {
        Array3::from_shape_fn(shape, |(i, j, k)| {
            let inside = (lo[0]..hi[0]).contains(&i)
                && (lo[1]..hi[1]).contains(&j)
                && (lo[2]..hi[2]).contains(&k);
            if inside { p } else { 0.0 }
        })
    }

    #[test]
    fn one_box_per_crossed_slice_with_margin_and_clamping() {
        let prob = prob_with_cube((10, 12, 6), [0, 3, 2], [4, 8, 5], 0.9);
        let config = PromptConfig {
            box_margin: 1.0,
            ..PromptConfig::default()
        };
        let prompts = slice_prompts(prob.view(), 2, &config);
        assert_eq!(
            prompts.iter().map(|p| p.slice).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        for p in &prompts {
            // rows = axis 0 (0..=3, clamped at 0), columns = axis 1 (3..=7)
            assert_eq!(p.bbox, [2.0, 0.0, 8.0, 4.0]);
            assert_eq!(p.area, 4 * 5);
            assert!(p.points.is_empty());
        }
    }

    #[test]
    fn smoothing_takes_each_side_s_median_over_nearby_slices() {
        // a 4x4 square on slices 0..5, with a protrusion to row 9 on slice 2 only
        let mut prob = prob_with_cube((12, 12, 5), [2, 2, 0], [6, 6, 5], 0.9);
        prob.slice_mut(ndarray::s![6..10, 3..4, 2..3]).fill(0.9);
        let boxes = |box_smoothing: usize| -> Vec<[f32; 4]> {
            let config = PromptConfig {
                box_margin: 0.0,
                box_smoothing,
                ..PromptConfig::default()
            };
            slice_prompts(prob.view(), 2, &config)
                .iter()
                .map(|p| p.bbox)
                .collect()
        };
        let square = [2.0, 2.0, 5.0, 5.0];
        let raw = boxes(0);
        assert_eq!(raw[2], [2.0, 2.0, 5.0, 9.0]);
        assert!(raw.iter().enumerate().all(|(k, b)| k == 2 || *b == square));
        // radius 1: the protrusion is one value of three in slice 2's window (slices 1..=3) and
        // in its neighbours' windows, so every median drops it
        assert_eq!(boxes(1), vec![square; 5]);
        // two slices out of three carry it where the window is smaller at the object's end
        let mut tall = prob.clone();
        tall.slice_mut(ndarray::s![6..10, 3..4, 0..2]).fill(0.9);
        let config = PromptConfig {
            box_margin: 0.0,
            box_smoothing: 1,
            ..PromptConfig::default()
        };
        let smoothed: Vec<f32> = slice_prompts(tall.view(), 2, &config)
            .iter()
            .map(|p| p.bbox[3])
            .collect();
        assert_eq!(smoothed, vec![9.0, 9.0, 9.0, 5.0, 5.0]);
    }

    #[test]
    fn no_confident_foreground_gives_no_prompt() {
        let prob = prob_with_cube((8, 8, 8), [2, 2, 2], [5, 5, 5], 0.5);
        assert!(slice_prompts(prob.view(), 2, &PromptConfig::default()).is_empty());
    }

    #[test]
    fn only_the_largest_component_is_prompted() {
        let mut prob = prob_with_cube((12, 12, 4), [0, 0, 0], [2, 2, 4], 0.9);
        prob.slice_mut(ndarray::s![5..10, 5..10, 1..3]).fill(0.8);
        let prompts = slice_prompts(
            prob.view(),
            2,
            &PromptConfig {
                box_margin: 0.0,
                ..Default::default()
            },
        );
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].bbox, [5.0, 5.0, 9.0, 9.0]);
    }

    #[test]
    fn interior_point_is_the_deepest_pixel_and_negative_point_is_outside() {
        let prob = prob_with_cube((11, 11, 1), [2, 2, 0], [9, 9, 1], 0.95);
        let config = PromptConfig {
            box_margin: 3.0,
            positive_points: 1,
            negative_points: 1,
            ..Default::default()
        };
        let prompts = slice_prompts(prob.view(), 2, &config);
        assert_eq!(prompts.len(), 1);
        let points = &prompts[0].points;
        assert_eq!(
            points[0],
            Point2 {
                x: 5.0,
                y: 5.0,
                positive: true
            }
        );
        let negative = points[1];
        assert!(!negative.positive);
        let (r, c) = (negative.y as usize, negative.x as usize);
        assert!(prob[[r, c, 0]] < 0.5, "negative point on foreground");
        // exactly two pixels away from the 7x7 square: row 0 or 10, or column 0 or 10
        assert!(r == 0 || r == 10 || c == 0 || c == 10, "({r},{c})");
    }
}
