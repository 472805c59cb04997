//! Strict, key-by-key access to the LiteMedSAM `.pth` state_dict.
//!
//! Every tensor must be taken exactly once with the shape the model expects; whatever is left
//! at the end is an error, so a checkpoint for a different architecture never loads silently.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{DType, PytorchReader, Tensor as StoredTensor};
use burn::tensor::{Device, Tensor, TensorData};

use super::LiteMedSamError;

pub(crate) struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, StoredTensor>,
    device: Device,
}

impl Checkpoint {
    pub fn open(path: &Path, device: &Device) -> Result<Self, LiteMedSamError> {
        if let Some(problem) = crate::generalists::weights::not_a_file(path) {
            return Err(LiteMedSamError::Checkpoint {
                path: path.to_path_buf(),
                message: problem.into(),
            });
        }
        let reader = PytorchReader::new(path).map_err(|e| LiteMedSamError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors: reader.into_tensors(),
            device: device.clone(),
        })
    }

    fn error(&self, key: &str, message: String) -> LiteMedSamError {
        LiteMedSamError::Tensor {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        }
    }

    /// Remove `key` and return its float32 values, checking the shape.
    pub fn take_values(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, LiteMedSamError> {
        let stored = self
            .tensors
            .remove(key)
            .ok_or_else(|| self.error(key, "missing from the checkpoint".into()))?;
        if stored.shape() != shape {
            return Err(self.error(
                key,
                format!("shape {:?}, expected {shape:?}", stored.shape()),
            ));
        }
        if stored.dtype() != DType::F32 {
            return Err(self.error(key, format!("dtype {:?}, expected F32", stored.dtype())));
        }
        let bytes = stored
            .read()
            .map_err(|e| self.error(key, format!("unreadable: {e}")))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Remove `key` and return it as a tensor of rank `D` on the model's device.
    pub fn take<const D: usize>(
        &mut self,
        key: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, LiteMedSamError> {
        let values = self.take_values(key, &shape)?;
        Ok(self.tensor(values, shape))
    }

    /// Build a tensor on the model's device from values derived from the checkpoint.
    pub fn tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// Remove a training-only bookkeeping entry (BatchNorm's `num_batches_tracked`), checking
    /// that it is the int64 scalar it should be.
    pub fn discard_counter(&mut self, key: &str) -> Result<(), LiteMedSamError> {
        let stored = self
            .tensors
            .remove(key)
            .ok_or_else(|| self.error(key, "missing from the checkpoint".into()))?;
        if !stored.shape().is_empty() || stored.dtype() != DType::I64 {
            return Err(self.error(
                key,
                format!(
                    "expected an int64 scalar, found {:?} {:?}",
                    stored.dtype(),
                    stored.shape()
                ),
            ));
        }
        Ok(())
    }

    /// Fail if any tensor was not consumed by the model.
    pub fn finish(self) -> Result<(), LiteMedSamError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let extra: BTreeSet<String> = self.tensors.into_keys().collect();
        let shown: Vec<&str> = extra.iter().take(10).map(String::as_str).collect();
        Err(LiteMedSamError::Checkpoint {
            path: self.path,
            message: format!(
                "{} unexpected tensor(s) not used by LiteMedSAM: {}{}",
                extra.len(),
                shown.join(", "),
                if extra.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        })
    }
}
