//! Axis-aligned bounding boxes of masks, used to restrict work to where objects are.

use std::ops::Range;

use ndarray::ArrayView3;

/// The smallest box holding every `true` voxel of `mask`, as one index range per axis; `None`
/// for an empty mask. One pass in memory order.
pub fn bounding_box(mask: ArrayView3<bool>) -> Option<[Range<usize>; 3]> {
    let mut lower = [usize::MAX; 3];
    let mut upper = [0usize; 3];
    for (i, plane) in mask.outer_iter().enumerate() {
        for (j, line) in plane.outer_iter().enumerate() {
            let Some(first) = line.iter().position(|&v| v) else {
                continue;
            };
            let last = line.iter().rposition(|&v| v).unwrap_or(first);
            for (d, (start, end)) in [(i, i), (j, j), (first, last)].into_iter().enumerate() {
                lower[d] = lower[d].min(start);
                upper[d] = upper[d].max(end + 1);
            }
        }
    }
    (lower[0] != usize::MAX).then(|| std::array::from_fn(|d| lower[d]..upper[d]))
}

/// The union of two optional boxes (the smallest box holding both).
pub fn union_box(
    a: Option<[Range<usize>; 3]>,
    b: Option<[Range<usize>; 3]>,
) -> Option<[Range<usize>; 3]> {
    match (a, b) {
        (None, other) | (other, None) => other,
        (Some(a), Some(b)) => Some(std::array::from_fn(|d| {
            a[d].start.min(b[d].start)..a[d].end.max(b[d].end)
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn box_spans_extreme_voxels() {
        let mut mask = Array3::from_elem((5, 6, 7), false);
        mask[[1, 4, 2]] = true;
        mask[[3, 0, 6]] = true;
        assert_eq!(bounding_box(mask.view()), Some([1..4, 0..5, 2..7]));
        assert_eq!(
            bounding_box(Array3::from_elem((2, 2, 2), false).view()),
            None
        );
        assert_eq!(
            union_box(Some([0..1, 2..3, 4..5]), Some([1..2, 0..1, 4..6])),
            Some([0..2, 0..3, 4..6])
        );
    }
}
