//! Object surfaces: a mask minus its erosion by the 6-connected cross, the definition used by
//! medpy and MONAI for surface distances.

use ndarray::{Array3, ArrayView3, Zip};

/// The surface of `mask`: the `true` voxels with at least one face neighbour (±1 along one axis)
/// that is `false` or lies outside the volume (outside counts as background). Equivalently
/// `mask XOR erode(mask, 6-connected cross)` with a `false` border.
pub fn surface(mask: ArrayView3<bool>) -> Array3<bool> {
    let shape = mask.dim();
    let mut out = Array3::from_elem(shape, false);
    Zip::indexed(&mut out).par_for_each(|(i, j, k), out| {
        if mask[[i, j, k]] {
            *out = !interior(&mask, shape, [i, j, k]);
        }
    });
    out
}

/// Whether all six face neighbours of `at` exist and are `true`.
fn interior(mask: &ArrayView3<bool>, shape: (usize, usize, usize), at: [usize; 3]) -> bool {
    let [i, j, k] = at;
    let (ni, nj, nk) = shape;
    i > 0
        && j > 0
        && k > 0
        && i + 1 < ni
        && j + 1 < nj
        && k + 1 < nk
        && mask[[i - 1, j, k]]
        && mask[[i + 1, j, k]]
        && mask[[i, j - 1, k]]
        && mask[[i, j + 1, k]]
        && mask[[i, j, k - 1]]
        && mask[[i, j, k + 1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solid_cube_keeps_only_its_shell() {
        let mut mask = Array3::from_elem((7, 7, 7), false);
        mask.slice_mut(ndarray::s![1..6, 1..6, 1..6]).fill(true);
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
