//! Checkpoints: one self-contained file per checkpoint, written atomically.
//!
//! Layout: the magic `SEMISAM-CKPT`, a little-endian `u32` format version, a little-endian `u64`
//! header length, the JSON [`CheckpointHeader`], then the binary sections the header lists, in
//! order (burnpack bytes of the student, the teacher and the optimizer), and last the SHA-256
//! of everything before it. One file rather than a folder, so that the rename of
//! `io_util::write_atomic_with` makes the whole checkpoint appear at once: an interrupted save
//! leaves the previous checkpoint intact. The checksum turns a file damaged after it was written
//! into an error instead of a model that silently predicts from damaged weights.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::batches::{RngState, SamplerState};

const MAGIC: &[u8; 12] = b"SEMISAM-CKPT";
/// Bumped whenever the layout or the meaning of a field changes.
pub const CHECKPOINT_FORMAT: u32 = 2;
/// Magic, format version and header length.
const PREFIX_LEN: u64 = 12 + 4 + 8;
const CHECKSUM_LEN: u64 = 32;
/// The JSON header holds the configuration and the sampler state: kilobytes, never this much.
const MAX_HEADER_LEN: u64 = 64 << 20;

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
        "{path}: checkpoint format {found} was written by an older semisam; this one reads format \
         {CHECKPOINT_FORMAT} only (checkpoints now carry a checksum): retrain the run, or use the \
         semisam version that wrote it"
    )]
    Outdated { path: PathBuf, found: u32 },
    #[error(
        "{path}: checkpoint format {found} is not supported by this semisam (format {CHECKPOINT_FORMAT}); update semisam"
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{path}: the checkpoint is corrupt: its contents do not match the SHA-256 recorded in it \
         (the file was damaged after it was written); use another checkpoint of the run or retrain"
    )]
    Corrupt { path: PathBuf },
    #[error("{path}: {message}")]
    Content { path: PathBuf, message: String },
}

/// Hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes every byte written through it.
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
            let mut hashed = HashingWriter {
                inner: w,
                hasher: Sha256::new(),
            };
            hashed.write_all(MAGIC)?;
            hashed.write_all(&CHECKPOINT_FORMAT.to_le_bytes())?;
            hashed.write_all(&(json.len() as u64).to_le_bytes())?;
            hashed.write_all(&json)?;
            for (_, bytes) in &self.sections {
                hashed.write_all(bytes)?;
            }
            let checksum = hashed.hasher.finalize();
            hashed.inner.write_all(&checksum)
        })
        .map_err(|e| CheckpointError::Io {
            path: e.path,
            source: e.source,
        })
    }

    /// Read and check a checkpoint file: every size it declares is checked against the file's
    /// length before anything is allocated, and its checksum before anything is returned.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |reason: String| CheckpointError::Format {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        let mut reader = HashingReader {
            inner: std::io::BufReader::new(file),
            hasher: Sha256::new(),
        };
        let mut magic = [0u8; 12];
        reader
            .read_exact(&mut magic)
            .map_err(|_| format("file too short".into()))?;
        if &magic != MAGIC {
            return Err(format("wrong magic bytes".into()));
        }
        let mut word = [0u8; 4];
        reader
            .read_exact(&mut word)
            .map_err(|_| format("file too short".into()))?;
        let found = u32::from_le_bytes(word);
        if found < CHECKPOINT_FORMAT {
            return Err(CheckpointError::Outdated {
                path: path.to_owned(),
                found,
            });
        }
        if found != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Version {
                path: path.to_owned(),
                found,
            });
        }
        // A damaged file is reported as damaged, whatever part of it the damage hit first.
        let structural = |reason: String| match checksum_matches(path) {
            Ok(false) => CheckpointError::Corrupt {
                path: path.to_owned(),
            },
            _ => format(reason),
        };
        let mut len = [0u8; 8];
        reader
            .read_exact(&mut len)
            .map_err(|_| format("file too short".into()))?;
        let header_len = u64::from_le_bytes(len);
        let body = length.saturating_sub(PREFIX_LEN + CHECKSUM_LEN);
        if header_len > MAX_HEADER_LEN.min(body) {
            return Err(structural(format!(
                "the header length {header_len} does not fit the {length}-byte file"
            )));
        }
        let mut json = vec![0u8; header_len as usize];
        reader.read_exact(&mut json).map_err(io)?;
        let header: CheckpointHeader = serde_json::from_slice(&json)
            .map_err(|e| structural(format!("unreadable header: {e}")))?;
        let declared = header
            .sections
            .iter()
            .try_fold(header_len, |acc, (_, size)| acc.checked_add(*size));
        match declared {
            Some(declared) if declared == body => {}
            Some(declared) if declared > body => {
                return Err(format(format!(
                    "the file is truncated: its header and sections take {declared} bytes, \
                     {body} are there"
                )));
            }
            _ => {
                return Err(structural(format!(
                    "the section sizes in the header do not add up to the file's {length} bytes"
                )));
            }
        }
        let mut sections = Vec::with_capacity(header.sections.len());
        for (name, size) in &header.sections {
            let mut bytes = vec![0u8; *size as usize];
            reader.read_exact(&mut bytes).map_err(io)?;
            sections.push((name.clone(), bytes));
        }
        let computed = reader.hasher.finalize();
        let mut recorded = [0u8; CHECKSUM_LEN as usize];
        reader.inner.read_exact(&mut recorded).map_err(io)?;
        if computed.as_slice() != recorded {
            return Err(CheckpointError::Corrupt {
                path: path.to_owned(),
            });
        }
        Ok(Checkpoint { header, sections })
    }
}

/// Whether the file's trailing SHA-256 matches the bytes before it (streamed, not loaded).
fn checksum_matches(path: &Path) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    if length < PREFIX_LEN + CHECKSUM_LEN {
        return Ok(false);
    }
    let mut hasher = Sha256::new();
    std::io::copy(
        &mut (&mut file).take(length - CHECKSUM_LEN),
        &mut HashingSink(&mut hasher),
    )?;
    let mut recorded = [0u8; CHECKSUM_LEN as usize];
    file.read_exact(&mut recorded)?;
    Ok(hasher.finalize().as_slice() == recorded)
}

/// Feeds written bytes to a hasher.
struct HashingSink<'a>(&'a mut Sha256);

impl Write for HashingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
                // A value that JSON without exact float parsing reads back one ulp lower.
                best: Some(BestScore {
                    dice: 0.198_877_132_368_818_82,
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
        // Bit for bit: a resumed run compares later validations against this best score.
        assert_eq!(
            back.header.best.map(|b| b.dice.to_bits()),
            Some(0.198_877_132_368_818_82f64.to_bits())
        );
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
            err.contains("last.ckpt: not a semisam checkpoint (the file is truncated"),
            "{err}"
        );

        let mut newer = bytes.clone();
        newer[12..16].copy_from_slice(&99u32.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "checkpoint format 99 is not supported by this semisam (format 2); update semisam"
            ),
            "{err}"
        );

        std::fs::write(&path, b"PK\x03\x04 a zip file").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("last.ckpt: not a semisam checkpoint (wrong magic bytes)"),
            "{err}"
        );
    }

    /// The sample saved as `name`, then its bytes edited in place.
    fn saved_and_edited(
        name: &str,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        sample().save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        edit(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn inverted_weight_bytes_fail_the_checksum() {
        let (_dir, path) = saved_and_edited("final.ckpt", |bytes| {
            let header_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
            let student = PREFIX_LEN as usize + header_len;
            for b in &mut bytes[student..student + 3] {
                *b = !*b;
            }
        });
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(
                "final.ckpt: the checkpoint is corrupt: its contents do not match the SHA-256"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_damaged_header_is_reported_as_corruption() {
        // The header's opening brace: the JSON no longer parses, and the checksum tells why.
        let (_dir, path) = saved_and_edited("best.ckpt", |bytes| {
            bytes[PREFIX_LEN as usize] ^= 0x55;
        });
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn format_1_checkpoints_are_refused_with_what_to_do() {
        let (_dir, path) = saved_and_edited("old.ckpt", |bytes| {
            bytes[12..16].copy_from_slice(&1u32.to_le_bytes());
            bytes.truncate(bytes.len() - CHECKSUM_LEN as usize);
        });
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("old.ckpt: checkpoint format 1 was written by an older semisam")
                && err.contains("retrain the run, or use the semisam version that wrote it"),
            "{err}"
        );
    }

    #[test]
    fn declared_sizes_beyond_the_file_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.ckpt");
        let mut header = sample().header;
        header.sections = vec![
            ("student".into(), u64::MAX / 2),
            ("teacher".into(), 1 << 50),
        ];
        let json = serde_json::to_vec(&header).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&CHECKPOINT_FORMAT.to_le_bytes());
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(&[0; 32]);
        std::fs::write(&path, &bytes).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("huge.ckpt: not a semisam checkpoint (the file is truncated"),
            "{err}"
        );

        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("huge.ckpt: the checkpoint is corrupt"),
            "{err}"
        );
    }
}
