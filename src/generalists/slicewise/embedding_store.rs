//! Slice embeddings kept on disk between runs (`[sam] embedding_dir`).
//!
//! Encoding a slice is the generalist's costly step, and every run on the same unlabeled cases
//! encodes the same slices again. A file's name is the SHA-256 of the model identity, the slicing
//! axis, the slice's shape and its pixel values, so the same slice under other preprocessing
//! (down-sampling, normalisation) or other weights never matches. Files are written atomically;
//! a file that does not read back as an embedding is encoded again and replaced.

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use sha2::{Digest, Sha256};

use crate::generalists::GeneralistError;

const MAGIC: &[u8] = b"semisam-embedding-1\n";

/// A folder of encoded slices.
#[derive(Debug, Clone)]
pub struct EmbeddingStore {
    dir: PathBuf,
}

impl EmbeddingStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddingStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an embedding of `slice` by `model` along `axis` lives in.
    pub fn path_for(&self, model: &str, axis: usize, slice: ArrayView2<f32>) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update((model.len() as u64).to_le_bytes());
        hasher.update(model.as_bytes());
        hasher.update((axis as u64).to_le_bytes());
        for side in slice.shape() {
            hasher.update((*side as u64).to_le_bytes());
        }
        for value in slice.iter() {
            hasher.update(value.to_le_bytes());
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(&digest[..2]).join(format!("{digest}.emb"))
    }

    /// The stored payload, `None` when absent or not a complete embedding file.
    pub fn load(&self, path: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path).ok()?;
        bytes.strip_prefix(MAGIC).map(<[u8]>::to_vec)
    }

    pub fn store(&self, path: &Path, payload: &[u8]) -> Result<(), GeneralistError> {
        crate::io_util::write_atomic_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(payload)
        })
        .map_err(|e| GeneralistError::Model(format!("embedding store {}: {e}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn the_file_name_follows_model_axis_and_pixels() {
        let store = EmbeddingStore::new("/tmp/store");
        let slice = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        let path = store.path_for("m", 2, slice.view());
        assert_eq!(path, store.path_for("m", 2, slice.view()));
        assert_ne!(path, store.path_for("other", 2, slice.view()));
        assert_ne!(path, store.path_for("m", 1, slice.view()));
        let mut changed = slice.clone();
        changed[[2, 3]] += 0.5;
        assert_ne!(path, store.path_for("m", 2, changed.view()));
        let reshaped = slice.clone().into_shape_with_order((4, 3)).unwrap();
        assert_ne!(path, store.path_for("m", 2, reshaped.view()));
        assert!(path.starts_with("/tmp/store"));
        assert!(path.to_string_lossy().ends_with(".emb"));
    }

    #[test]
    fn payloads_round_trip_and_foreign_files_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(dir.path());
        let path = store.path_for("m", 0, Array2::<f32>::zeros((2, 2)).view());
        assert_eq!(store.load(&path), None);
        store.store(&path, b"payload").unwrap();
        assert_eq!(store.load(&path).as_deref(), Some(&b"payload"[..]));
        std::fs::write(&path, b"not an embedding").unwrap();
        assert_eq!(store.load(&path), None);
    }
}
