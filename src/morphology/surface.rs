//! Object surfaces: a mask minus its erosion by the 6-connected cross, the definition used by
//! medpy and MONAI for surface distances.

use ndarray::{Array3, ArrayView3, Axis, s};
use rayon::prelude::*;

/// The surface of `mask`: the `true` voxels with at least one face neighbour (±1 along one of the
/// `spatial` axes) that is `false` or lies outside the volume (outside counts as background).
/// Equivalently `mask XOR erode(mask, cross)` with a `false` border, the cross spanning the
/// `spatial` axes only.
///
/// An axis left out is one the image does not have: a 2-D image held as a one-slice volume is
/// outlined in its plane, as medpy and MONAI outline a 2-D array, instead of every pixel counting
/// as surface because the slices above and below it are "outside".
pub fn surface(mask: ArrayView3<bool>, spatial: [bool; 3]) -> Array3<bool> {
    let (ni, nj, nk) = mask.dim();
    let mut out = Array3::from_elem((ni, nj, nk), false);
    // Line by line along the last axis, comparing each line with its neighbouring lines.
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut plane)| {
            for j in 0..nj {
                let line = mask.slice(s![i, j, ..]);
                let mut out_line = plane.row_mut(j);
                // A missing neighbour line (`None`) is the outside. An axis the image lacks has
                // no neighbours: the line stands in for them, so it never decides.
                let neighbour = |along: bool, exists: bool, at: (usize, usize)| {
                    if !along {
                        Some(line)
                    } else {
                        exists.then(|| mask.slice(s![at.0, at.1, ..]))
                    }
                };
                let neighbours = [
                    neighbour(spatial[0], i > 0, (i.wrapping_sub(1), j)),
                    neighbour(spatial[0], i + 1 < ni, (i + 1, j)),
                    neighbour(spatial[1], j > 0, (i, j.wrapping_sub(1))),
                    neighbour(spatial[1], j + 1 < nj, (i, j + 1)),
                ];
                let [Some(a), Some(b), Some(c), Some(d)] = neighbours else {
                    // A line on the volume border: every object voxel on it touches the outside.
                    out_line.assign(&line);
                    continue;
                };
                for k in 0..nk {
                    if line[k] {
                        let along_line =
                            !spatial[2] || (k > 0 && k + 1 < nk && line[k - 1] && line[k + 1]);
                        let interior = along_line && a[k] && b[k] && c[k] && d[k];
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
        let shell = surface(mask.view(), [true; 3]);
        // 5³ cube minus its 3³ interior.
        assert_eq!(shell.iter().filter(|&&v| v).count(), 125 - 27);
        assert!(!shell[[3, 3, 3]]);
        assert!(shell[[1, 3, 3]]);
    }

    #[test]
    fn volume_border_counts_as_background() {
        let mask = Array3::from_elem((3, 3, 3), true);
        let shell = surface(mask.view(), [true; 3]);
        assert_eq!(shell.iter().filter(|&&v| v).count(), 26);
        assert!(!shell[[1, 1, 1]]);
    }

    #[test]
    fn a_missing_axis_outlines_the_plane() {
        // A 5x5 square on a one-slice image: in its plane only the 16 border pixels are surface.
        let mut mask = Array3::from_elem((7, 7, 1), false);
        mask.slice_mut(s![1..6, 1..6, ..]).fill(true);
        let outline = surface(mask.view(), [true, true, false]);
        assert_eq!(outline.iter().filter(|&&v| v).count(), 16);
        assert!(!outline[[3, 3, 0]]);
        // Seen as a 3-D volume one voxel thick, every pixel touches the outside.
        let shell = surface(mask.view(), [true; 3]);
        assert_eq!(shell.iter().filter(|&&v| v).count(), 25);
        // The same for a one-voxel first axis.
        let mut mask = Array3::from_elem((1, 7, 7), false);
        mask.slice_mut(s![.., 1..6, 1..6]).fill(true);
        let outline = surface(mask.view(), [false, true, true]);
        assert_eq!(outline.iter().filter(|&&v| v).count(), 16);
    }
}
