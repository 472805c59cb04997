//! The one in-memory volume type shared by the whole pipeline.
//!
//! Axis convention: `data` is indexed `[i, j, k]` in the file's own voxel axis order (x, y, z for
//! UA-MT h5; the NIfTI voxel axes i, j, k), stored in standard (C, last axis fastest) layout.

use ndarray::Array3;
use std::path::PathBuf;

/// Where a volume came from; predictions are written back in the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// UA-MT `mri_norm2.h5` (datasets `image`, `label`).
    H5,
    /// NIfTI-1, `.nii` or `.nii.gz`.
    Nifti,
    /// NumPy `.npy`.
    Npy,
    /// A 2D PNG slice, read as `H x W x 1`.
    Png,
}

/// Voxel geometry. `spacing` is `None` when the file stores none (UA-MT h5, npy, PNG): metrics are then
/// reported in voxels unless the user supplies a spacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Voxel size in mm along `[i, j, k]`.
    pub spacing: Option<[f64; 3]>,
    /// Voxel index → world (RAS+ mm) transform; identity-scaled by spacing when unknown.
    pub affine: [[f64; 4]; 4],
    /// The NIfTI header the volume was read with, kept so that outputs carry it unchanged.
    pub nifti_header: Option<Box<nifti::NiftiHeader>>,
}

impl Geometry {
    /// Geometry of an array with no stored geometry.
    pub fn unknown() -> Self {
        let mut affine = [[0.0; 4]; 4];
        for (d, row) in affine.iter_mut().enumerate() {
            row[d] = 1.0;
        }
        Geometry {
            spacing: None,
            affine,
            nifti_header: None,
        }
    }
}

/// A 3D volume with its geometry and origin.
#[derive(Debug, Clone)]
pub struct Volume<T> {
    pub data: Array3<T>,
    pub geometry: Geometry,
    pub source: SourceFormat,
    /// The file the volume was read from (for error messages and output naming).
    pub path: PathBuf,
}

impl<T> Volume<T> {
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }
}
