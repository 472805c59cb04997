//! Slice embeddings kept on disk between runs (`[sam] embedding_dir`).
//!
//! Encoding a slice is the generalist's costly step, and every run on the same unlabeled cases
//! encodes the same slices again. A file's name is the SHA-256 of the model identity, the slicing
//! axis, the slice's shape and its pixel values, so the same slice under other preprocessing
//! (down-sampling, normalisation) or other weights never matches. Files are written atomically.
//!
//! A file is `semisam-embedding-<format>\n`, then (format 2) the payload's length as a
//! little-endian u64 and the payload. Format 1 (no length; the model's f32 layout) is handed to
//! the model as such ([`Stored::Format1`]): a model that still reads it converts it, otherwise
//! the slice is encoded again; either way the file is rewritten in the current format. A file of
//! a newer format, a file that is not an embedding file at all, and a truncated file are errors
//! naming the file: they mean a foreign or damaged folder, which encoding over it would hide.

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use sha2::{Digest, Sha256};

use crate::generalists::GeneralistError;

const MAGIC: &[u8] = b"semisam-embedding-";
/// The format this build writes.
pub const FORMAT: u32 = 2;

/// What a store file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No file yet.
    Absent,
    /// A format 1 file's payload (the model's f32 layout of that format; no length was stored,
    /// so a truncated one shows only as a payload of the wrong size).
    Format1(Vec<u8>),
    /// The payload the model wrote.
    Payload(Vec<u8>),
}

/// A folder of encoded slices.
#[derive(Debug, Clone)]
pub struct EmbeddingStore {
    dir: PathBuf,
}

/// An error about one store file, naming it.
pub fn file_error(path: &Path, problem: impl std::fmt::Display) -> GeneralistError {
    GeneralistError::Model(format!(
        "embedding store file {}: {problem}",
        path.display()
    ))
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

    /// What the file at `path` holds; an error naming it when it is not a complete embedding
    /// file this build can read.
    pub fn load(&self, path: &Path) -> Result<Stored, GeneralistError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::Absent),
            Err(e) => return Err(file_error(path, e)),
        };
        let foreign = || {
            file_error(
                path,
                "not a semisam embedding file (delete it, or choose another [sam] embedding_dir)",
            )
        };
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(foreign)?;
        let line_end = rest
            .iter()
            .take(10)
            .position(|&b| b == b'\n')
            .ok_or_else(foreign)?;
        let format: u32 = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(foreign)?;
        let body = &rest[line_end + 1..];
        match format {
            1 => Ok(Stored::Format1(body.to_vec())),
            FORMAT => {
                let (length, payload) = body.split_first_chunk::<8>().ok_or_else(|| {
                    file_error(path, "truncated before the payload length (delete it)")
                })?;
                let length = u64::from_le_bytes(*length);
                if payload.len() as u64 != length {
                    return Err(file_error(
                        path,
                        format!(
                            "{} payload bytes where the header says {length}: truncated or \
                             damaged (delete it to encode the slice again)",
                            payload.len()
                        ),
                    ));
                }
                Ok(Stored::Payload(payload.to_vec()))
            }
            newer => Err(file_error(
                path,
                format!(
                    "format {newer} was written by a newer semisam (this one reads formats \
                     1 to {FORMAT})"
                ),
            )),
        }
    }

    pub fn store(&self, path: &Path, payload: &[u8]) -> Result<(), GeneralistError> {
        crate::io_util::write_atomic_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(format!("{FORMAT}\n").as_bytes())?;
            w.write_all(&(payload.len() as u64).to_le_bytes())?;
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

    fn stored_path() -> (tempfile::TempDir, EmbeddingStore, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddingStore::new(dir.path());
        let path = store.path_for("m", 0, Array2::<f32>::zeros((2, 2)).view());
        (dir, store, path)
    }

    #[test]
    fn payloads_round_trip_with_their_format_and_length() {
        let (_dir, store, path) = stored_path();
        assert_eq!(store.load(&path).unwrap(), Stored::Absent);
        store.store(&path, b"payload").unwrap();
        let mut expected = b"semisam-embedding-2\n".to_vec();
        expected.extend(7u64.to_le_bytes());
        expected.extend(b"payload");
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert_eq!(
            store.load(&path).unwrap(),
            Stored::Payload(b"payload".to_vec())
        );
        // an empty payload is a payload too
        store.store(&path, b"").unwrap();
        assert_eq!(store.load(&path).unwrap(), Stored::Payload(Vec::new()));
    }

    #[test]
    fn format_one_files_hand_over_their_payload() {
        let (_dir, store, path) = stored_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // what the f32 store wrote: the header line, then the payload without a length
        let mut old = b"semisam-embedding-1\n".to_vec();
        old.extend([0u8; 40]);
        std::fs::write(&path, old).unwrap();
        assert_eq!(store.load(&path).unwrap(), Stored::Format1(vec![0u8; 40]));
        store.store(&path, b"new").unwrap();
        assert_eq!(store.load(&path).unwrap(), Stored::Payload(b"new".to_vec()));
    }

    #[test]
    fn foreign_newer_and_truncated_files_are_errors_naming_the_file() {
        let (_dir, store, path) = stored_path();
        store.store(&path, &[7u8; 64]).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let named = path.display().to_string();
        let error = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let message = store.load(&path).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("embedding store file {named}: ")),
                "{message}"
            );
            message
        };
        assert!(
            error(&whole[..whole.len() - 1])
                .ends_with("63 payload bytes where the header says 64: truncated or damaged (delete it to encode the slice again)")
        );
        assert!(error(&whole[..25]).ends_with("truncated before the payload length (delete it)"));
        assert!(error(&[whole.as_slice(), b"x"].concat()).contains("65 payload bytes"));
        assert!(error(b"not an embedding").contains("not a semisam embedding file"));
        assert!(error(b"semisam-embedding-x\n").contains("not a semisam embedding file"));
        assert!(error(b"semisam-embedding-").contains("not a semisam embedding file"));
        assert!(
            error(b"semisam-embedding-3\n\x00\x00").ends_with(
                "format 3 was written by a newer semisam (this one reads formats 1 to 2)"
            )
        );
    }
}
