//! The trainer's last SAM pseudo-labels of a few unlabeled cases, kept in the run folder so that
//! the report can show what the generalist taught the student.
//!
//! `pseudo_labels/<case>.npy` holds a `u8` class map on the grid the case was trained on (after
//! `data.downsample`); voxels outside the region the label covers are 0. `pseudo_labels/index.json`
//! lists the cases with that region, the grid and the iteration each label was made at.

use std::path::{Path, PathBuf};

use ndarray::{Array3, s};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

use crate::frameworks::sam_assist::PseudoLabelView;
use crate::io_util::WriteError;

pub const PSEUDO_LABELS_DIR: &str = "pseudo_labels";
pub const INDEX_FILE: &str = "index.json";
/// Cases saved at most (the first ones by identifier): enough to judge the labels, small on disk.
pub const SAVED_CASES: usize = 4;

/// One saved pseudo-label, as `index.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PseudoLabelEntry {
    pub case_id: String,
    /// File name inside `pseudo_labels/`.
    pub file: String,
    /// Iteration (0-based) the label was computed at.
    pub step: usize,
    /// Shape of the training grid.
    pub grid: [usize; 3],
    /// `[start, end)` per axis of the covered region.
    pub region: [[usize; 2]; 3],
    /// `data.downsample` of the run: the grid is the original one divided by it.
    pub downsample: usize,
}

/// A saved pseudo-label file that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PseudoLabelFileError {
    pub path: PathBuf,
    pub message: String,
}

impl PseudoLabelFileError {
    fn new(path: &Path, message: impl std::fmt::Display) -> Self {
        PseudoLabelFileError {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

pub fn dir(run_root: &Path) -> PathBuf {
    run_root.join(PSEUDO_LABELS_DIR)
}

/// Save up to [`SAVED_CASES`] of `labels` into `run_root/pseudo_labels/` (replacing earlier
/// ones).
pub fn save(
    run_root: &Path,
    labels: &[PseudoLabelView<'_>],
    downsample: usize,
) -> Result<(), WriteError> {
    let dir = dir(run_root);
    let mut index = Vec::new();
    for label in labels.iter().take(SAVED_CASES) {
        let mut grid = Array3::<u8>::zeros(label.grid);
        let r = label.region;
        grid.slice_mut(s![r[0].clone(), r[1].clone(), r[2].clone()])
            .assign(&label.classes);
        let file = format!("{}.npy", label.case_id);
        crate::io_util::write_atomic_with(&dir.join(&file), |w| {
            grid.write_npy(w).map_err(std::io::Error::other)
        })?;
        index.push(PseudoLabelEntry {
            case_id: label.case_id.to_owned(),
            file,
            step: label.step,
            grid: label.grid,
            region: [0, 1, 2].map(|d| [r[d].start, r[d].end]),
            downsample,
        });
    }
    if !index.is_empty() {
        let json = serde_json::to_vec_pretty(&index).expect("plain data");
        crate::io_util::write_atomic(&dir.join(INDEX_FILE), &json)?;
    }
    Ok(())
}

/// The saved pseudo-labels of a run folder (none when it has no `pseudo_labels/index.json`).
pub fn load(run_root: &Path) -> Result<Vec<(PseudoLabelEntry, Array3<u8>)>, PseudoLabelFileError> {
    let dir = dir(run_root);
    let index_path = dir.join(INDEX_FILE);
    if !index_path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&index_path)
        .map_err(|e| PseudoLabelFileError::new(&index_path, e))?;
    let entries: Vec<PseudoLabelEntry> =
        serde_json::from_str(&text).map_err(|e| PseudoLabelFileError::new(&index_path, e))?;
    entries
        .into_iter()
        .map(|entry| {
            let path = dir.join(&entry.file);
            crate::data::npy::check_file(&path).map_err(|e| PseudoLabelFileError::new(&path, e))?;
            let file =
                std::fs::File::open(&path).map_err(|e| PseudoLabelFileError::new(&path, e))?;
            let grid = Array3::<u8>::read_npy(std::io::BufReader::new(file)).map_err(|e| {
                PseudoLabelFileError::new(&path, format!("not a 3D u8 .npy array: {e}"))
            })?;
            if grid.shape() != entry.grid {
                return Err(PseudoLabelFileError::new(
                    &path,
                    format!(
                        "shape {:?} but {INDEX_FILE} says {:?}",
                        grid.shape(),
                        entry.grid
                    ),
                ));
            }
            Ok((entry, grid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    #[test]
    fn saved_labels_load_back_on_their_grid() {
        let dir = tempfile::tempdir().unwrap();
        let classes = Array3::from_shape_fn((2, 3, 1), |(i, j, _)| (i + j) as u8 % 3);
        let region: [Range<usize>; 3] = [1..3, 0..3, 2..3];
        let view = PseudoLabelView {
            case_id: "case_7",
            step: 41,
            grid: [4, 3, 5],
            region: &region,
            classes: classes.view(),
        };
        save(dir.path(), &[view], 2).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        let (entry, grid) = &loaded[0];
        assert_eq!(
            entry,
            &PseudoLabelEntry {
                case_id: "case_7".into(),
                file: "case_7.npy".into(),
                step: 41,
                grid: [4, 3, 5],
                region: [[1, 3], [0, 3], [2, 3]],
                downsample: 2,
            }
        );
        assert_eq!(grid.slice(s![1..3, .., 2..3]), classes);
        assert_eq!(
            grid.iter().map(|&v| usize::from(v)).sum::<usize>(),
            classes.iter().map(|&v| usize::from(v)).sum::<usize>()
        );

        // A damaged file is named in the error.
        std::fs::write(dir.path().join("pseudo_labels/case_7.npy"), b"junk").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("case_7.npy: not a 3D u8 .npy array"), "{err}");
        assert!(load(&dir.path().join("elsewhere")).unwrap().is_empty());
    }
}
