//! Object surfaces: a mask minus its erosion by the 6-connected cross, the definition used by
//! medpy and MONAI for surface distances.

use ndarray::{Array3, ArrayView3, Axis, s};
use rayon::prelude::*;

/// The surface of `mask`: the `true` voxels with at least one face neighbour (±1 along one axis)
/// that is `false` or lies outside the volume (outside counts as background). Equivalently
/// `mask XOR erode(mask, 6-connected cross)` with a `false` border.
pub fn surface(mask: ArrayView3<bool>) -> Array3<bool> {
    let (ni, nj, nk) = mask.dim();
    let mut out = Array3::from_elem((ni, nj, nk), false);
    // Line by line along the last axis, comparing each line with its four neighbouring lines.
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut plane)| {
            for j in 0..nj {
                let line = mask.slice(s![i, j, ..]);
                let mut out_line = plane.row_mut(j);
                let neighbours = [
                    (i > 0).then(|| mask.slice(s![i - 1, j, ..])),
                    (i + 1 < ni).then(|| mask.slice(s![i + 1, j, ..])),
                    (j > 0).then(|| mask.slice(s![i, j - 1, ..])),
                    (j + 1 < nj).then(|| mask.slice(s![i, j + 1, ..])),
                ];
                let [Some(a), Some(b), Some(c), Some(d)] = neighbours else {
                    // A line on the volume border: every object voxel on it touches the outside.
                    out_line.assign(&line);
                    continue;
                };
                for k in 0..nk {
                    if line[k] {
                        let interior = k > 0
                            && k + 1 < nk
                            && line[k - 1]
                            && line[k + 1]
                            && a[k]
                            && b[k]
                            && c[k]
                            && d[k];
                        out_line[k] = !interior;
                    }
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solid_cube_keeps_only_its_shell() {
        let mut mask = Array3::from_elem((7, 7, 7), false);
        mask.slice_mut(s![1..6, 1..6, 1..6]).fill(true);
        let shell = surface(mask.view());
        // 5³ cube minus its 3³ interior.
        assert_eq!(shell.iter().filter(|&&v| v).count(), 125 - 27);
        assert!(!shell[[3, 3, 3]]);
        assert!(shell[[1, 3, 3]]);
    }

    #[test]
    fn volume_border_counts_as_background() {
        let mask = Array3::from_elem((3, 3, 3), true);
        let shell = surface(mask.view());
        assert_eq!(shell.iter().filter(|&&v| v).count(), 26);
        assert!(!shell[[1, 1, 1]]);
    }
}
