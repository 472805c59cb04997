//! Post-processing of predicted label maps.

use ndarray::Array3;

use crate::morphology::{Connectivity, largest_component};

/// Keep, for each foreground class, only its largest 26-connected component (UA-MT / SemiSAM's
/// `getLargestCC`, which uses scikit-image's default full connectivity in 3D); voxels of the
/// dropped components become background.
pub fn keep_largest_components(labels: &Array3<u8>, classes: usize) -> Array3<u8> {
    let mut out = Array3::<u8>::zeros(labels.raw_dim());
    for class in 1..classes.min(256) {
        let class = class as u8;
        let mask = labels.mapv(|v| v == class);
        if !mask.iter().any(|&m| m) {
            continue;
        }
        let kept = largest_component(mask.view(), Connectivity::Full);
        out.zip_mut_with(&kept, |o, &k| {
            if k {
                *o = class;
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_keeps_its_largest_component() {
        let mut labels = Array3::<u8>::zeros([6, 3, 3]);
        labels[[0, 0, 0]] = 1; // a single voxel of class 1
        for i in 2..5 {
            labels[[i, 1, 1]] = 1; // three voxels of class 1
        }
        labels[[1, 1, 1]] = 2; // one voxel of class 2
        labels[[5, 2, 2]] = 2;
        labels[[4, 2, 2]] = 2; // two voxels of class 2, face-connected
        let out = keep_largest_components(&labels, 3);
        assert_eq!(out[[0, 0, 0]], 0, "small class-1 component removed");
        assert!((2..5).all(|i| out[[i, 1, 1]] == 1));
        assert_eq!(out[[1, 1, 1]], 0, "single class-2 voxel removed");
        assert_eq!((out[[4, 2, 2]], out[[5, 2, 2]]), (2, 2));
    }

    #[test]
    fn diagonal_neighbours_count_as_connected() {
        let mut labels = Array3::<u8>::zeros([3, 3, 3]);
        labels[[0, 0, 0]] = 1;
        labels[[1, 1, 1]] = 1;
        labels[[2, 2, 2]] = 1;
        assert_eq!(keep_largest_components(&labels, 2), labels);
    }
}
