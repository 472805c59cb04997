//! Checkpoints: one self-contained file per checkpoint, written atomically.
//!
//! Layout: the magic `SEMISAM-CKPT`, a little-endian `u32` format version, a little-endian `u64`
//! header length, the JSON [`CheckpointHeader`], then the binary sections the header lists, in
//! order (burnpack bytes of the student, the teacher and the optimizer). One file rather than a
//! folder, so that the rename of `io_util::write_atomic_with` makes the whole checkpoint appear at
//! once: an interrupted save leaves the previous checkpoint intact.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::batches::{RngState, SamplerState};

const MAGIC: &[u8; 12] = b"SEMISAM-CKPT";
/// Bumped whenever the layout or the meaning of a field changes.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// A checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a semisam checkpoint ({reason})")]
    Format { path: PathBuf, reason: String },
    #[error(
        "{path}: checkpoint format {found} is not supported by this semisam (format {CHECKPOINT_FORMAT})"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
}

/// Where training stood when the checkpoint was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub semisam_version: String,
    /// Iterations completed (the next iteration to run has this index).
    pub step: usize,
    /// The resolved configuration of the run, as TOML.
    pub config: String,
    pub sampler: SamplerState,
    /// The generator of dropout and teacher noise.
    pub model_rng: RngState,
    /// Best validation mean foreground Dice so far and its step.
    pub best: Option<BestScore>,
    /// `(name, byte length)` of each binary section, in file order.
    pub sections: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestScore {
    pub dice: f64,
    pub step: usize,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub sections: Vec<(String, Vec<u8>)>,
}

impl Checkpoint {
    /// The bytes of section `name`.
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut header = self.header.clone();
        header.sections = self
            .sections
            .iter()
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect();
        let json = serde_json::to_vec(&header).expect("the header is plain data");
        crate::io_util::write_atomic_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&CHECKPOINT_FORMAT.to_le_bytes())?;
            w.write_all(&(json.len() as u64).to_le_bytes())?;
            w.write_all(&json)?;
            for (_, bytes) in &self.sections {
                w.write_all(bytes)?;
            }
            Ok(())
        })
        .map_err(|e| CheckpointError::Io {
            path: e.path,
            source: e.source,
        })
    }

    /// Read and check a checkpoint file.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |reason: &str| CheckpointError::Format {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut magic = [0u8; 12];
        file.read_exact(&mut magic)
            .map_err(|_| format("file too short"))?;
        if &magic != MAGIC {
            return Err(format("wrong magic bytes"));
        }
        let mut word = [0u8; 4];
        file.read_exact(&mut word)
            .map_err(|_| format("file too short"))?;
        let found = u32::from_le_bytes(word);
        if found != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Version {
                path: path.to_owned(),
                found,
            });
        }
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .map_err(|_| format("file too short"))?;
        let len = u64::from_le_bytes(len);
        if len > 64 << 20 {
            return Err(format("implausible header length"));
        }
        let mut json = vec![0u8; len as usize];
        file.read_exact(&mut json)
            .map_err(|_| format("truncated header"))?;
        let header: CheckpointHeader = serde_json::from_slice(&json)
            .map_err(|e| format(&format!("unreadable header: {e}")))?;
        let mut sections = Vec::with_capacity(header.sections.len());
        for (name, size) in &header.sections {
            let mut bytes = Vec::new();
            (&mut file)
                .take(*size)
                .read_to_end(&mut bytes)
                .map_err(io)?;
            if bytes.len() as u64 != *size {
                return Err(format(&format!("section {name} is truncated")));
            }
            sections.push((name.clone(), bytes));
        }
        if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err(format("trailing bytes after the last section"));
        }
        Ok(Checkpoint { header, sections })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batches::{BatchOptions, BatchSampler, LabeledCase, TrainingPool};
    use rand::SeedableRng;

    fn sample() -> Checkpoint {
        let pool = TrainingPool {
            labeled: vec![LabeledCase {
                id: "a".into(),
                image: ndarray::Array3::zeros([4, 4, 4]),
                label: ndarray::Array3::zeros([4, 4, 4]),
            }],
            unlabeled: vec![],
        };
        let options = BatchOptions {
            batch_size: 1,
            labeled_bs: 1,
            patch: [2, 2, 2],
            augment: Default::default(),
        };
        let sampler = BatchSampler::new(options, &pool, 5).unwrap();
        Checkpoint {
            header: CheckpointHeader {
                semisam_version: "0.1.0".into(),
                step: 42,
                config: "[training]\n".into(),
                sampler: sampler.state(),
                model_rng: RngState::capture(&rand_chacha::ChaCha8Rng::seed_from_u64(9)),
                best: Some(BestScore {
                    dice: 0.5,
                    step: 40,
                }),
                sections: vec![],
            },
            sections: vec![
                ("student".into(), vec![1, 2, 3]),
                ("optimizer".into(), vec![]),
            ],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let ckpt = sample();
        ckpt.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.header.step, 42);
        assert_eq!(back.header.sampler, ckpt.header.sampler);
        assert_eq!(
            back.header.sections,
            [("student".to_string(), 3), ("optimizer".to_string(), 0)]
        );
        assert_eq!(back.section("student"), Some(&[1u8, 2, 3][..]));
        assert_eq!(back.section("teacher"), None);
    }

    #[test]
    fn damaged_files_are_rejected_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        sample().save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("not a semisam checkpoint (section student is truncated)"),
            "{err}"
        );

        let mut newer = bytes.clone();
        newer[12..16].copy_from_slice(&99u32.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("checkpoint format 99 is not supported by this semisam (format 1)"),
            "{err}"
        );

        std::fs::write(&path, b"PK\x03\x04 a zip file").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("last.ckpt: not a semisam checkpoint (wrong magic bytes)"),
            "{err}"
        );
    }
}
