//! The LiteMedSAM `.pth` state_dict, read through the strict loader both ports share.
//!
//! Every tensor must be taken exactly once with the shape the model expects; missing,
//! mis-shaped and left-over tensors are reported together when loading ends, so a checkpoint for
//! a different architecture never loads silently and one error lists everything that is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::PytorchReader;
use burn::tensor::{Device, Tensor, TensorData};

use super::LiteMedSamError;
use crate::generalists::param_loader::{ParamLoader, ParamSource, StoredTensor};

pub(crate) struct Checkpoint {
    path: PathBuf,
    params: ParamLoader,
    device: Device,
}

impl Checkpoint {
    pub fn open(path: &Path, device: &Device) -> Result<Self, LiteMedSamError> {
        if let Some(problem) = crate::generalists::weights_cache::not_a_file(path) {
            return Err(LiteMedSamError::Checkpoint {
                path: path.to_path_buf(),
                message: problem.into(),
            });
        }
        let reader = PytorchReader::new(path).map_err(|e| LiteMedSamError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a readable PyTorch checkpoint: {e}"),
        })?;
        let tensors: HashMap<String, StoredTensor> = reader
            .into_tensors()
            .into_iter()
            .map(|(key, tensor)| (key, StoredTensor::File(tensor)))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            params: ParamLoader::new(ParamSource::Checkpoint(tensors), device),
            device: device.clone(),
        })
    }

    /// The float values of `key`, which must have `shape`.
    pub fn take_values(&mut self, key: &str, shape: &[usize]) -> Vec<f32> {
        self.params.values(key, shape)
    }

    /// `key` as a tensor of rank `D` on the model's device.
    pub fn take<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Tensor<D> {
        self.params.tensor(key, shape)
    }

    /// The loader the shared layers take their parameters from.
    pub fn params(&mut self) -> &mut ParamLoader {
        &mut self.params
    }

    /// Build a tensor on the model's device from values derived from the checkpoint.
    pub fn tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// Consume a BatchNorm's `num_batches_tracked`.
    pub fn discard_counter(&mut self, key: &str) {
        self.params.discard_counter(key);
    }

    /// Every problem found while loading (missing, mis-shaped, unreadable or unused tensors).
    pub fn finish(self) -> Result<(), LiteMedSamError> {
        let (_, problems) = self.params.finish();
        if problems.is_empty() {
            return Ok(());
        }
        Err(LiteMedSamError::Checkpoint {
            path: self.path,
            message: format!("does not fit LiteMedSAM: {}", problems.summary()),
        })
    }
}
