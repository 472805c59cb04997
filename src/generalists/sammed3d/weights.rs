//! Reading SAM-Med3D checkpoints: the official nesting (`{'model_state_dict': ...}` in a
//! PyTorch zip archive, possibly next to optimizer state) or a bare state dict, with an
//! optional `module.` prefix from DataParallel training.

use super::config::ModelConfig;
use super::error::{Result, SamMed3dError};
use crate::generalists::param_loader::{ParamLoader, ParamProblems, ParamSource, StoredTensor};
use burn::store::pytorch_reader::PytorchReader;
use burn::tensor::Device;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The top-level key under which SAM-Med3D's trainer and MedIM store the model.
pub const NESTING_KEY: &str = "model_state_dict";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// `{'model_state_dict': state_dict, ...}`
    ModelStateDict,
    /// The state dict itself at the top level.
    Bare,
}

/// A model state dict by key.
#[derive(Clone)]
pub struct StateDict {
    pub path: PathBuf,
    pub nesting: Nesting,
    tensors: HashMap<String, StoredTensor>,
}

impl StateDict {
    /// Reads the keys and shapes of a checkpoint; tensor data is read when the model is built.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(problem) = crate::generalists::weights_cache::not_a_file(path) {
            return Err(SamMed3dError::Checkpoint {
                path: path.to_path_buf(),
                message: problem.into(),
            });
        }
        let reader = PytorchReader::new(path).map_err(|e| SamMed3dError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        let all = reader.into_tensors();
        let prefix = format!("{NESTING_KEY}.");
        let nested = all.keys().any(|k| k.starts_with(&prefix));
        let nesting = if nested {
            Nesting::ModelStateDict
        } else {
            Nesting::Bare
        };
        let tensors: HashMap<String, StoredTensor> = all
            .into_iter()
            .filter_map(|(key, tensor)| {
                let key = if nested {
                    key.strip_prefix(&prefix)?.to_string()
                } else {
                    key
                };
                let key = key
                    .strip_prefix("module.")
                    .map(str::to_string)
                    .unwrap_or(key);
                Some((key, StoredTensor::File(tensor)))
            })
            .collect();
        if tensors.is_empty() {
            return Err(SamMed3dError::Checkpoint {
                path: path.to_path_buf(),
                message: "holds no tensors".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            nesting,
            tensors,
        })
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(StoredTensor::shape)
    }

    /// Number of float values over all tensors.
    pub fn num_values(&self) -> usize {
        self.tensors
            .values()
            .map(|t| {
                t.shape()
                    .iter()
                    .fold(1usize, |acc, &d| acc.saturating_mul(d))
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Replaces (or adds) one tensor, e.g. to try a variant of a checkpoint.
    pub fn insert(&mut self, key: &str, shape: Vec<usize>, values: Vec<f32>) -> Result<()> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(SamMed3dError::Input(format!(
                "tensor {key}: shape {shape:?} does not hold {} values",
                values.len()
            )));
        }
        self.tensors
            .insert(key.to_string(), StoredTensor::Memory { shape, values });
        Ok(())
    }

    pub(crate) fn into_loader(self, device: &Device) -> ParamLoader {
        ParamLoader::new(ParamSource::Checkpoint(self.tensors), device)
    }
}

/// What `weights check` reports about a SAM-Med3D checkpoint.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: PathBuf,
    pub nesting: Nesting,
    pub tensors: usize,
    /// Float values stored (parameters plus the Fourier-feature buffer).
    pub values: usize,
    /// Key-by-key comparison with the configured architecture; empty when it fits.
    pub problems: ParamProblems,
}

impl Report {
    pub fn fits(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nesting = match self.nesting {
            Nesting::ModelStateDict => "state dict nested under 'model_state_dict'",
            Nesting::Bare => "bare state dict",
        };
        writeln!(
            f,
            "{}: SAM-Med3D checkpoint, {nesting}",
            self.path.display()
        )?;
        writeln!(f, "  {} tensors, {} values", self.tensors, self.values)?;
        if self.fits() {
            write!(f, "  every key and shape fits the architecture")
        } else {
            write!(
                f,
                "  does not fit the architecture: {}",
                self.problems.summary()
            )
        }
    }
}

/// Checks a checkpoint against `vit_b_ori` (see [`check_checkpoint_with_config`]).
pub fn check_checkpoint(path: &Path) -> Result<Report> {
    check_checkpoint_with_config(path, &ModelConfig::vit_b_ori())
}

/// Reads every tensor of the checkpoint into the model `config` describes and reports what
/// was found; an unreadable file is an error, a mismatching one a report listing the keys.
pub fn check_checkpoint_with_config(path: &Path, config: &ModelConfig) -> Result<Report> {
    let state = StateDict::open(path)?;
    let (nesting, tensors, values) = (state.nesting, state.len(), state.num_values());
    let device = Device::default();
    let (_, problems) = super::SamMed3d::build(config, state.into_loader(&device));
    Ok(Report {
        path: path.to_path_buf(),
        nesting,
        tensors,
        values,
        problems,
    })
}
