//! Connected-component labelling of 3D masks (two raster passes with union-find).

use ndarray::{Array3, ArrayView3};

/// Which voxels touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    /// Voxels sharing a face (6 neighbours).
    Face,
    /// Voxels sharing a face, an edge or a corner (26 neighbours). This is the default of
    /// `skimage.measure.label` in 3D, used by the SemiSAM / UA-MT largest-component step.
    Full,
}

impl Connectivity {
    /// The neighbour offsets that come earlier in raster order (half of the neighbourhood).
    fn backward_offsets(self) -> &'static [[isize; 3]] {
        const FACE: [[isize; 3]; 3] = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]];
        const FULL: [[isize; 3]; 13] = [
            [-1, -1, -1],
            [-1, -1, 0],
            [-1, -1, 1],
            [-1, 0, -1],
            [-1, 0, 0],
            [-1, 0, 1],
            [-1, 1, -1],
            [-1, 1, 0],
            [-1, 1, 1],
            [0, -1, -1],
            [0, -1, 0],
            [0, -1, 1],
            [0, 0, -1],
        ];
        match self {
            Connectivity::Face => &FACE,
            Connectivity::Full => &FULL,
        }
    }
}

/// Labels the connected components of `mask`.
///
/// Returns the label volume (0 = background, components numbered 1, 2, … in the raster order of
/// their first voxel) and the component sizes in voxels: `sizes[l - 1]` is the size of label `l`.
pub fn label_components(
    mask: ArrayView3<bool>,
    connectivity: Connectivity,
) -> (Array3<u32>, Vec<usize>) {
    let (ni, nj, nk) = mask.dim();
    let mut labels = Array3::<u32>::zeros((ni, nj, nk));
    // parents[0] is unused so that provisional labels start at 1.
    let mut parents: Vec<u32> = vec![0];
    for i in 0..ni {
        for j in 0..nj {
            for k in 0..nk {
                if !mask[[i, j, k]] {
                    continue;
                }
                let mut current = 0u32;
                for offset in connectivity.backward_offsets() {
                    let Some(neighbour) = shifted([i, j, k], *offset, [ni, nj, nk]) else {
                        continue;
                    };
                    let label = labels[neighbour];
                    if label == 0 {
                        continue;
                    }
                    current = if current == 0 {
                        find(&mut parents, label)
                    } else {
                        union(&mut parents, current, label)
                    };
                }
                if current == 0 {
                    current =
                        u32::try_from(parents.len()).expect("fewer than 2³² provisional labels");
                    parents.push(current);
                }
                labels[[i, j, k]] = current;
            }
        }
    }
    // Second pass: resolve to roots and renumber roots in order of first appearance.
    let mut final_label = vec![0u32; parents.len()];
    let mut sizes = Vec::new();
    for label in labels.iter_mut().filter(|l| **l != 0) {
        let root = find(&mut parents, *label) as usize;
        if final_label[root] == 0 {
            sizes.push(0);
            final_label[root] = sizes.len() as u32;
        }
        *label = final_label[root];
        sizes[*label as usize - 1] += 1;
    }
    (labels, sizes)
}

/// The largest connected component of `mask` (ties: the one whose first voxel comes first in
/// raster order). An empty mask gives an empty mask.
pub fn largest_component(mask: ArrayView3<bool>, connectivity: Connectivity) -> Array3<bool> {
    let (labels, sizes) = label_components(mask, connectivity);
    let largest = sizes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(index, _)| index as u32 + 1);
    match largest {
        Some(keep) => labels.mapv(|l| l == keep),
        None => Array3::from_elem(mask.raw_dim(), false),
    }
}

fn shifted(at: [usize; 3], offset: [isize; 3], shape: [usize; 3]) -> Option<[usize; 3]> {
    let mut out = [0; 3];
    for d in 0..3 {
        let moved = at[d].checked_add_signed(offset[d])?;
        if moved >= shape[d] {
            return None;
        }
        out[d] = moved;
    }
    Some(out)
}

fn find(parents: &mut [u32], mut label: u32) -> u32 {
    let mut root = label;
    while parents[root as usize] != root {
        root = parents[root as usize];
    }
    while parents[label as usize] != root {
        let next = parents[label as usize];
        parents[label as usize] = root;
        label = next;
    }
    root
}

/// Merges the sets of `a` and `b`; returns the surviving root (the smaller one).
fn union(parents: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parents, a), find(parents, b));
    let (keep, drop) = if ra <= rb { (ra, rb) } else { (rb, ra) };
    parents[drop as usize] = keep;
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(points: &[[usize; 3]]) -> Array3<bool> {
        let mut mask = Array3::from_elem((4, 4, 4), false);
        for p in points {
            mask[*p] = true;
        }
        mask
    }

    #[test]
    fn diagonal_neighbours_join_only_with_full_connectivity() {
        let mask = mask_with(&[[0, 0, 0], [1, 1, 1], [3, 3, 3], [3, 3, 2]]);
        let (labels, sizes) = label_components(mask.view(), Connectivity::Face);
        assert_eq!(sizes, vec![1, 1, 2]);
        assert_eq!(
            (
                labels[[0, 0, 0]],
                labels[[1, 1, 1]],
                labels[[3, 3, 2]],
                labels[[3, 3, 3]]
            ),
            (1, 2, 3, 3)
        );
        let (labels, sizes) = label_components(mask.view(), Connectivity::Full);
        assert_eq!(sizes, vec![2, 2]);
        assert_eq!(labels[[1, 1, 1]], 1);
    }

    #[test]
    fn u_shape_merges_two_provisional_labels() {
        // Two arms that only meet at the bottom row, reached after both arms got labels.
        let mask = mask_with(&[
            [0, 0, 0],
            [0, 0, 2],
            [0, 1, 0],
            [0, 1, 2],
            [0, 2, 0],
            [0, 2, 1],
            [0, 2, 2],
        ]);
        let (_, sizes) = label_components(mask.view(), Connectivity::Face);
        assert_eq!(sizes, vec![7]);
    }

    #[test]
    fn largest_component_keeps_the_biggest_object() {
        let mask = mask_with(&[[0, 0, 0], [2, 2, 2], [2, 2, 3], [2, 3, 3]]);
        let kept = largest_component(mask.view(), Connectivity::Face);
        assert_eq!(kept.iter().filter(|&&v| v).count(), 3);
        assert!(!kept[[0, 0, 0]]);
        assert!(
            largest_component(
                Array3::from_elem((2, 2, 2), false).view(),
                Connectivity::Full
            )
            .iter()
            .all(|v| !v)
        );
    }
}
