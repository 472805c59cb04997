//! Click placement for an interactive 3D generalist (the SemiSAM click loop), from masks only:
//! the target is the specialist's confident object, never a ground truth.
//!
//! The first click goes to the centre of the confident object; each further click goes to the
//! centre of the largest region where the generalist's current mask and the target disagree,
//! positive on a miss, negative on a false positive. "Centre" is the voxel farthest from the
//! region's outside (distance-transform maximum), so a click never sits on a thin rim where a
//! one-voxel shift would put it on the wrong side.

use ndarray::{ArrayView3, Zip};

use super::Point3;
use crate::morphology::{Connectivity, distance_transform, largest_component};

/// The voxel of `region` farthest from every voxel outside it (in the units of `spacing`; the
/// array border does not count as outside); ties go to the first in raster order. `None` for an
/// empty region.
pub fn region_centre(region: ArrayView3<bool>, spacing: [f64; 3]) -> Option<[usize; 3]> {
    let outside = region.mapv(|inside| !inside);
    let depth = distance_transform(outside.view(), spacing);
    let mut best: Option<([usize; 3], f64)> = None;
    Zip::indexed(&depth)
        .and(region)
        .for_each(|(i, j, k), &d, &inside| {
            if inside && best.is_none_or(|(_, b)| d > b) {
                best = Some(([i, j, k], d));
            }
        });
    best.map(|(at, _)| at)
}

/// The next corrective click: the centre of the largest 26-connected error region between
/// `prediction` and `target`, counted only where `known` is set (voxels the target says nothing
/// about are never errors). A miss (target without prediction) gives a positive click, a false
/// positive a negative one; on equal sizes the miss wins. `None` when they agree everywhere known.
pub fn correction_click(
    prediction: ArrayView3<bool>,
    target: ArrayView3<bool>,
    known: ArrayView3<bool>,
    spacing: [f64; 3],
) -> Option<Point3> {
    let error = |positive: bool| {
        let mut wrong = target.to_owned();
        Zip::from(&mut wrong)
            .and(prediction)
            .and(target)
            .and(known)
            .for_each(|w, &p, &t, &k| *w = k && t == positive && p != positive);
        let region = largest_component(wrong.view(), Connectivity::Full);
        let size = region.iter().filter(|&&v| v).count();
        (region, size, positive)
    };
    let miss = error(true);
    let false_positive = error(false);
    let (region, size, positive) = if false_positive.1 > miss.1 {
        false_positive
    } else {
        miss
    };
    if size == 0 {
        return None;
    }
    region_centre(region.view(), spacing).map(|index| Point3 { index, positive })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn cube(shape: usize, lo: [usize; 3], hi: [usize; 3]) -> Array3<bool> {
        Array3::from_shape_fn((shape, shape, shape), |(i, j, k)| {
            (lo[0]..hi[0]).contains(&i)
                && (lo[1]..hi[1]).contains(&j)
                && (lo[2]..hi[2]).contains(&k)
        })
    }

    #[test]
    fn centre_of_an_odd_box_is_its_middle_voxel() {
        // box 5 x 7 x 9 at (1, 1, 1): the depth of a box voxel is its smallest distance to a face
        // outside, min(i, 6 - i, j, 8 - j, k, 10 - k); its maximum 3 needs i = 3 and 3 ≤ j ≤ 5,
        // 3 ≤ k ≤ 7: the first of those in raster order is (3, 3, 3).
        let region = cube(12, [1, 1, 1], [6, 8, 10]);
        assert_eq!(region_centre(region.view(), [1.0; 3]), Some([3, 3, 3]));
        // a cube 5³: one deepest voxel, its middle
        let region = cube(9, [2, 2, 2], [7, 7, 7]);
        assert_eq!(region_centre(region.view(), [1.0; 3]), Some([4, 4, 4]));
    }

    #[test]
    fn spacing_moves_the_centre_along_the_fine_axis() {
        // a 1 x 1 x 6 line: in voxel units every voxel is 1 away from outside (first one wins);
        // with the other axes 10 times coarser the line's own axis decides: voxels k = 3 and 4 are
        // 3 away from the ends (k = 0 and k = 7 outside), k = 3 comes first.
        let region = Array3::from_shape_fn((3, 3, 8), |(i, j, k)| {
            i == 1 && j == 1 && (1..7).contains(&k)
        });
        assert_eq!(region_centre(region.view(), [1.0; 3]), Some([1, 1, 1]));
        assert_eq!(
            region_centre(region.view(), [10.0, 10.0, 1.0]),
            Some([1, 1, 3])
        );
    }

    #[test]
    fn empty_region_has_no_centre() {
        let region = Array3::from_elem((4, 4, 4), false);
        assert_eq!(region_centre(region.view(), [1.0; 3]), None);
    }

    #[test]
    fn a_large_miss_gives_a_positive_click_at_its_centre() {
        // target: cube [1, 8)³; prediction: its part with k < 4, plus a false-positive 2³ corner.
        // The miss is the slab [1, 8) x [1, 8) x [4, 8) (196 voxels) against 8 false positives.
        // Depth in the slab is min over axes of the distance to its outside: along k it is
        // 1, 2, 2, 1 for k = 4..7 (k = 3 is predicted, k = 8 outside the target), along i and j
        // at least 2 for 2 ≤ i, j ≤ 6. First voxel at depth 2 in raster order: (2, 2, 5).
        let target = cube(10, [1, 1, 1], [8, 8, 8]);
        let mut prediction = cube(10, [1, 1, 1], [8, 8, 4]);
        prediction |= &cube(10, [8, 8, 8], [10, 10, 10]);
        let known = Array3::from_elem((10, 10, 10), true);
        let click = correction_click(prediction.view(), target.view(), known.view(), [1.0; 3]);
        assert_eq!(
            click,
            Some(Point3 {
                index: [2, 2, 5],
                positive: true
            })
        );
    }

    #[test]
    fn a_larger_false_positive_gives_a_negative_click() {
        // target: 2³ cube at the origin, predicted exactly; prediction adds a 5³ cube at [4, 9)³,
        // whose centre is its middle voxel (6, 6, 6).
        let target = cube(10, [0, 0, 0], [2, 2, 2]);
        let prediction = &target | &cube(10, [4, 4, 4], [9, 9, 9]);
        let known = Array3::from_elem((10, 10, 10), true);
        let click = correction_click(prediction.view(), target.view(), known.view(), [1.0; 3]);
        assert_eq!(
            click,
            Some(Point3 {
                index: [6, 6, 6],
                positive: false
            })
        );
    }

    #[test]
    fn errors_where_the_target_is_unknown_do_not_count() {
        // the same false positive as above, but outside the known part: the remaining error is a
        // 1 x 1 x 2 miss at (0, 0, 0..2) (the prediction lost two voxels of the target), first
        // voxel (0, 0, 0) is the centre (both at depth 1).
        let target = cube(10, [0, 0, 0], [2, 2, 2]);
        let mut prediction = &target | &cube(10, [4, 4, 4], [9, 9, 9]);
        prediction[[0, 0, 0]] = false;
        prediction[[0, 0, 1]] = false;
        let known = cube(10, [0, 0, 0], [4, 10, 10]);
        let click = correction_click(prediction.view(), target.view(), known.view(), [1.0; 3]);
        assert_eq!(
            click,
            Some(Point3 {
                index: [0, 0, 0],
                positive: true
            })
        );
    }

    #[test]
    fn agreement_gives_no_click() {
        let target = cube(6, [1, 1, 1], [4, 4, 4]);
        let mut prediction = target.clone();
        prediction[[5, 5, 5]] = true; // disagreement where the target is unknown
        let known = cube(6, [0, 0, 0], [5, 6, 6]);
        assert_eq!(
            correction_click(prediction.view(), target.view(), known.view(), [1.0; 3]),
            None
        );
    }
}
