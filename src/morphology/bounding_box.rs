//! Axis-aligned bounding boxes of masks, used to restrict work to where objects are.

use std::ops::Range;

use ndarray::{ArrayView3, Axis};

/// The smallest box holding every `true` voxel of `mask`, as one index range per axis; `None`
/// for an empty mask.
pub fn bounding_box(mask: ArrayView3<bool>) -> Option<[Range<usize>; 3]> {
    let mut ranges: [Option<Range<usize>>; 3] = [None, None, None];
    for (axis, range) in ranges.iter_mut().enumerate() {
        let occupied = mask
            .axis_iter(Axis(axis))
            .map(|slice| slice.iter().any(|&v| v));
        let mut first = None;
        let mut last = 0;
        for (index, any) in occupied.enumerate() {
            if any {
                first.get_or_insert(index);
                last = index;
            }
        }
        *range = Some(first?..last + 1);
    }
    let [a, b, c] = ranges;
    Some([a?, b?, c?])
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
