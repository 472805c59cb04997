//! The strict checkpoint loader of both model ports: hands out the model's parameters by
//! checkpoint key, either from a loaded state dict or randomly initialised, and records every
//! key and shape the model asks for. Problems (missing, mis-shaped, unreadable tensors) are
//! collected rather than returned one at a time, so an error lists all of them; keys the model
//! never asked for are "unexpected".

use burn::store::pytorch_reader::{DType, Tensor as CheckpointTensor};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use std::collections::HashMap;

/// A tensor of a state dict: still in the checkpoint file, or given in memory.
#[derive(Clone)]
pub enum StoredTensor {
    File(CheckpointTensor),
    Memory { shape: Vec<usize>, values: Vec<f32> },
}

impl StoredTensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            StoredTensor::File(t) => t.shape(),
            StoredTensor::Memory { shape, .. } => shape,
        }
    }

    fn values(&self) -> Result<Vec<f32>, String> {
        match self {
            StoredTensor::File(t) => read_f32(t),
            StoredTensor::Memory { values, .. } => Ok(values.clone()),
        }
    }
}

pub(crate) enum ParamSource {
    Checkpoint(HashMap<String, StoredTensor>),
    /// Normal(0, std) everywhere: for shape checks and speed measurements only.
    Random {
        std: f64,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParamProblems {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (key, shape in the checkpoint, shape the model needs)
    pub mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// (key, reason)
    pub unreadable: Vec<(String, String)>,
}

impl ParamProblems {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mis_shaped.is_empty()
            && self.unreadable.is_empty()
    }

    /// One line per kind of problem, naming up to five keys each.
    pub fn summary(&self) -> String {
        fn listed(what: &str, items: Vec<String>) -> Option<String> {
            if items.is_empty() {
                return None;
            }
            let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
            let more = items.len().saturating_sub(5);
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            Some(format!(
                "{} {what}: {}{tail}",
                items.len(),
                shown.join(", ")
            ))
        }
        [
            listed("missing", self.missing.clone()),
            listed("unexpected", self.unexpected.clone()),
            listed(
                "mis-shaped",
                self.mis_shaped
                    .iter()
                    .map(|(k, found, want)| format!("{k} (file {found:?}, model {want:?})"))
                    .collect(),
            ),
            listed(
                "unreadable",
                self.unreadable
                    .iter()
                    .map(|(k, why)| format!("{k} ({why})"))
                    .collect(),
            ),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
    }
}

pub(crate) struct ParamLoader {
    source: ParamSource,
    device: Device,
    requested: Vec<(String, Vec<usize>)>,
    problems: ParamProblems,
}

impl ParamLoader {
    pub fn new(source: ParamSource, device: &Device) -> Self {
        Self {
            source,
            device: device.clone(),
            requested: Vec::new(),
            problems: Default::default(),
        }
    }

    /// The tensor stored under `key`; on a problem it is recorded and zeros stand in, so
    /// that building can go on and report every problem at once.
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Tensor<D> {
        if let ParamSource::Random { std } = self.source {
            self.requested.push((key.to_string(), shape.to_vec()));
            return Tensor::random(shape, Distribution::Normal(0.0, std), &self.device);
        }
        Tensor::from_data(
            TensorData::new(self.values(key, &shape), shape),
            &self.device,
        )
    }

    /// The values stored under `key` (row-major), for parameters the model transforms before
    /// use; problems are recorded as by [`ParamLoader::tensor`].
    pub fn values(&mut self, key: &str, shape: &[usize]) -> Vec<f32> {
        self.requested.push((key.to_string(), shape.to_vec()));
        let zeros = vec![0.0; shape.iter().product()];
        let tensors = match &mut self.source {
            ParamSource::Random { std } => {
                let random = Tensor::<1>::random(
                    [zeros.len()],
                    Distribution::Normal(0.0, *std),
                    &self.device,
                );
                return random
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("f32 values");
            }
            ParamSource::Checkpoint(tensors) => tensors,
        };
        let Some(stored) = tensors.remove(key) else {
            self.problems.missing.push(key.to_string());
            return zeros;
        };
        if stored.shape() != shape {
            self.problems.mis_shaped.push((
                key.to_string(),
                stored.shape().to_vec(),
                shape.to_vec(),
            ));
            return zeros;
        }
        stored.values().unwrap_or_else(|why| {
            self.problems.unreadable.push((key.to_string(), why));
            zeros
        })
    }

    /// Consume a training-only counter (BatchNorm's `num_batches_tracked`), which must be the
    /// int64 scalar it is in PyTorch; the model has no use for its value.
    pub fn discard_counter(&mut self, key: &str) {
        let ParamSource::Checkpoint(tensors) = &mut self.source else {
            return;
        };
        match tensors.remove(key) {
            None => self.problems.missing.push(key.to_string()),
            Some(StoredTensor::File(t)) if t.shape().is_empty() && t.dtype() == DType::I64 => {}
            Some(other) => self.problems.unreadable.push((
                key.to_string(),
                format!(
                    "expected an int64 scalar counter, found shape {:?}",
                    other.shape()
                ),
            )),
        }
    }

    /// Every key and shape requested, in request order, and the problems found (keys left
    /// over in a checkpoint count as unexpected).
    pub fn finish(self) -> (Vec<(String, Vec<usize>)>, ParamProblems) {
        let mut problems = self.problems;
        if let ParamSource::Checkpoint(rest) = self.source {
            let mut unexpected: Vec<String> = rest.into_keys().collect();
            unexpected.sort();
            problems.unexpected = unexpected;
        }
        (self.requested, problems)
    }
}

fn read_f32(tensor: &CheckpointTensor) -> Result<Vec<f32>, String> {
    let bytes = tensor.read().map_err(|e| e.to_string())?;
    match tensor.dtype() {
        DType::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        DType::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect()),
        other => Err(format!("dtype {other:?}, expected float32")),
    }
}
