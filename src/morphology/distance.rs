//! Exact Euclidean distance transform of a 3D mask with per-axis spacing.
//!
//! Separable algorithm of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled
//! Functions", 2012): one linear-time pass per axis, each pass computing the lower envelope of
//! parabolas along every line of the volume. The first pass (along the contiguous last axis)
//! only needs the distance to the nearest feature on the line, so it is a two-sweep scan; the two
//! remaining passes run the lower-envelope algorithm. Lines are independent and processed in
//! parallel with rayon.

use ndarray::{Array3, ArrayView3, ArrayViewMut1, Axis, Zip};
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

/// Scratch buffers of one worker for [`lower_envelope_1d`].
#[derive(Default)]
struct EnvelopeScratch {
    values: Vec<f64>,
    vertices: Vec<usize>,
    boundaries: Vec<f64>,
}

fn lower_envelope_pass(squared: &mut Array3<f64>, axis: usize, spacing: f64) {
    Zip::from(squared.lanes_mut(Axis(axis)))
        .into_par_iter()
        .for_each_init(EnvelopeScratch::default, |scratch, (mut lane,)| {
            scratch.values.clear();
            scratch.values.extend(lane.iter().copied());
            lower_envelope_1d(scratch, spacing, |index, value| lane[index] = value);
        });
}

/// One-dimensional squared distance transform of the sampled function `scratch.values` on a grid of
/// step `spacing`: `out(q) = min_p (spacing·(q − p))² + values[p]`. Infinite samples carry no
/// parabola; if all samples are infinite, every output is infinite.
fn lower_envelope_1d(
    scratch: &mut EnvelopeScratch,
    spacing: f64,
    mut write: impl FnMut(usize, f64),
) {
    let EnvelopeScratch {
        values,
        vertices,
        boundaries,
    } = scratch;
    let n = values.len();
    let step2 = spacing * spacing;
    vertices.clear();
    boundaries.clear();
    // `vertices[k]` is the apex index of the k-th envelope parabola; it is lowest on
    // [boundaries[k], boundaries[k + 1]) (in index units).
    for q in 0..n {
        let fq = values[q];
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
        (0..n).for_each(|q| write(q, f64::INFINITY));
        return;
    }
    let mut k = 0;
    for q in 0..n {
        let qf = q as f64;
        while k + 1 < vertices.len() && boundaries[k + 1] < qf {
            k += 1;
        }
        let p = vertices[k];
        let offset = spacing * (qf - p as f64);
        write(q, offset * offset + values[p]);
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
        let mut scratch = EnvelopeScratch {
            values: vec![
                9.0,
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                0.0,
            ],
            ..Default::default()
        };
        let mut out = vec![0.0; 6];
        lower_envelope_1d(&mut scratch, 1.0, |q, v| out[q] = v);
        assert_eq!(out, vec![9.0, 10.0, 9.0, 4.0, 1.0, 0.0]);
    }
}
