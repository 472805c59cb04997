//! Exact Euclidean distance transform of a 3D mask with per-axis spacing.
//!
//! Separable algorithm of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled
//! Functions", 2012): one linear-time pass per axis, each pass computing the lower envelope of
//! parabolas along every line of the volume. The first pass (along the contiguous last axis)
//! only needs the distance to the nearest feature on the line, so it is a two-sweep scan; the two
//! remaining passes run the lower-envelope algorithm. Lines are independent: planes of lines run
//! in parallel with rayon, and strided lines are gathered in blocks so that each cache line
//! fetched is used whole.

use ndarray::{Array3, ArrayView3, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

/// Distance from every voxel to the nearest `true` voxel of `mask`, in the units of `spacing`
/// (the voxel size along `[axis 0, axis 1, axis 2]`; `[1.0; 3]` gives voxel units).
///
/// `true` voxels get 0. If `mask` has no `true` voxel, every distance is `f64::INFINITY`.
/// This is the convention of `scipy.ndimage.distance_transform_edt(~mask, sampling=spacing)`.
///
/// # Panics
/// If a spacing component is not finite and positive (a caller bug: validate spacings read from
/// files before they get here).
pub fn distance_transform(mask: ArrayView3<bool>, spacing: [f64; 3]) -> Array3<f64> {
    let mut distances = squared_distance_transform(mask, spacing);
    distances.par_mapv_inplace(f64::sqrt);
    distances
}

/// Squared Euclidean distance from every voxel to the nearest `true` voxel of `mask`; see
/// [`distance_transform`]. Cheaper when only a few distances are needed (take the square root of
/// those alone).
pub fn squared_distance_transform(mask: ArrayView3<bool>, spacing: [f64; 3]) -> Array3<f64> {
    assert!(
        spacing.iter().all(|s| s.is_finite() && *s > 0.0),
        "distance transform spacing must be finite and positive, got {spacing:?}"
    );
    let mut squared = Array3::<f64>::zeros(mask.raw_dim());
    Zip::from(squared.lanes_mut(Axis(2)))
        .and(mask.lanes(Axis(2)))
        .into_par_iter()
        .for_each(|(out, line)| nearest_on_line(line, spacing[2], out));
    for axis in [1, 0] {
        lower_envelope_pass(&mut squared, axis, spacing[axis]);
    }
    squared
}

/// Squared distance to the nearest `true` voxel on the same line (infinity if there is none).
fn nearest_on_line(line: ndarray::ArrayView1<bool>, spacing: f64, mut out: ArrayViewMut1<f64>) {
    let n = line.len();
    // Forward sweep: distance (in voxels) to the nearest feature at or before each index.
    let mut last_feature: Option<usize> = None;
    for index in 0..n {
        if line[index] {
            last_feature = Some(index);
        }
        out[index] = match last_feature {
            Some(feature) => (index - feature) as f64,
            None => f64::INFINITY,
        };
    }
    // Backward sweep: the nearest feature after each index may be closer.
    let mut next_feature: Option<usize> = None;
    for index in (0..n).rev() {
        if line[index] {
            next_feature = Some(index);
        }
        if let Some(feature) = next_feature {
            out[index] = out[index].min((feature - index) as f64);
        }
        let scaled = out[index] * spacing;
        out[index] = scaled * scaled;
    }
}

/// Lines transformed together: enough contiguous values per row to fill whole cache lines when
/// gathering strided lines (strides that are powers of two would otherwise thrash the caches).
const BLOCK: usize = 16;

/// Scratch buffers of one worker.
#[derive(Default)]
struct Scratch {
    /// Gathered lines, line-major: `lines[l * n + q]`.
    lines: Vec<f64>,
    transformed: Vec<f64>,
    vertices: Vec<usize>,
    boundaries: Vec<f64>,
}

/// Transforms every line along `axis` (0 or 1): planes across the other strided axis run in
/// parallel; within a plane, blocks of [`BLOCK`] lines along the contiguous last axis are
/// gathered into contiguous buffers, transformed and scattered back.
fn lower_envelope_pass(squared: &mut Array3<f64>, axis: usize, spacing: f64) {
    let across = 1 - axis;
    squared
        .axis_iter_mut(Axis(across))
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, plane| {
            transform_columns(plane, spacing, scratch)
        });
}

/// Transforms each column (axis 0) of `plane`.
fn transform_columns(mut plane: ArrayViewMut2<f64>, spacing: f64, scratch: &mut Scratch) {
    let (n, width) = plane.dim();
    scratch.lines.resize(n * BLOCK, 0.0);
    scratch.transformed.resize(n * BLOCK, 0.0);
    for first in (0..width).step_by(BLOCK) {
        let count = BLOCK.min(width - first);
        for (q, row) in plane.rows().into_iter().enumerate() {
            for line in 0..count {
                scratch.lines[line * n + q] = row[first + line];
            }
        }
        for line in 0..count {
            let range = line * n..(line + 1) * n;
            lower_envelope_1d(
                &scratch.lines[range.clone()],
                spacing,
                &mut scratch.vertices,
                &mut scratch.boundaries,
                &mut scratch.transformed[range],
            );
        }
        for (q, mut row) in plane.rows_mut().into_iter().enumerate() {
            for line in 0..count {
                row[first + line] = scratch.transformed[line * n + q];
            }
        }
    }
}

/// One-dimensional squared distance transform of the sampled function `values` on a grid of
/// step `spacing`: `out[q] = min_p (spacing·(q − p))² + values[p]`. Infinite samples carry no
/// parabola; if all samples are infinite, every output is infinite.
fn lower_envelope_1d(
    values: &[f64],
    spacing: f64,
    vertices: &mut Vec<usize>,
    boundaries: &mut Vec<f64>,
    out: &mut [f64],
) {
    let step2 = spacing * spacing;
    vertices.clear();
    boundaries.clear();
    // `vertices[k]` is the apex index of the k-th envelope parabola; it is lowest on
    // [boundaries[k], boundaries[k + 1]) (in index units).
    for (q, &fq) in values.iter().enumerate() {
        if fq.is_infinite() {
            continue;
        }
        let qf = q as f64;
        loop {
            let Some(&p) = vertices.last() else {
                vertices.push(q);
                boundaries.push(f64::NEG_INFINITY);
                break;
            };
            let pf = p as f64;
            let crossing = ((fq + step2 * qf * qf) - (values[p] + step2 * pf * pf))
                / (2.0 * step2 * (qf - pf));
            if crossing <= *boundaries.last().expect("one boundary per vertex") {
                vertices.pop();
                boundaries.pop();
            } else {
                vertices.push(q);
                boundaries.push(crossing);
                break;
            }
        }
    }
    if vertices.is_empty() {
        out.fill(f64::INFINITY);
        return;
    }
    let mut k = 0;
    for (q, out) in out.iter_mut().enumerate() {
        let qf = q as f64;
        while k + 1 < vertices.len() && boundaries[k + 1] < qf {
            k += 1;
        }
        let p = vertices[k];
        let offset = spacing * (qf - p as f64);
        *out = offset * offset + values[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn single_feature_gives_scaled_euclidean_distance() {
        let mut mask = Array3::from_elem((4, 5, 6), false);
        mask[[1, 2, 3]] = true;
        let d = distance_transform(mask.view(), [2.0, 0.5, 1.5]);
        let expected =
            ((2.0f64 * 2.0).powi(2) + (2.0f64 * 0.5).powi(2) + (3.0f64 * 1.5).powi(2)).sqrt();
        assert!(
            (d[[3, 4, 0]] - expected).abs() < 1e-12,
            "{} vs {expected}",
            d[[3, 4, 0]]
        );
        assert_eq!(d[[1, 2, 3]], 0.0);
    }

    #[test]
    fn empty_mask_is_infinitely_far() {
        let mask = Array3::from_elem((3, 2, 4), false);
        let d = distance_transform(mask.view(), [1.0; 3]);
        assert!(d.iter().all(|v| v.is_infinite()));
    }

    #[test]
    fn envelope_picks_the_lower_of_two_parabolas() {
        // Features at 0 (value 9) and 5 (value 0), unit spacing: at index 1, 1 + 9 = 10 vs 16.
        let inf = f64::INFINITY;
        let values = [9.0, inf, inf, inf, inf, 0.0];
        let mut out = [0.0; 6];
        lower_envelope_1d(&values, 1.0, &mut Vec::new(), &mut Vec::new(), &mut out);
        assert_eq!(out, [9.0, 10.0, 9.0, 4.0, 1.0, 0.0]);
    }

    #[test]
    fn blocked_passes_handle_widths_that_are_not_block_multiples() {
        let mut mask = Array3::from_elem((3, 5, BLOCK + 3), false);
        mask[[2, 4, BLOCK + 2]] = true;
        let d = squared_distance_transform(mask.view(), [1.0, 2.0, 1.0]);
        // From [0, 0, 0]: 2² + (4·2)² + (BLOCK + 2)².
        let expected = 4.0 + 64.0 + ((BLOCK + 2) as f64).powi(2);
        assert_eq!(d[[0, 0, 0]], expected);
    }
}
