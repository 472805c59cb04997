//! Several trained models as one predictor: the mean of their class probabilities (nnU-Net's
//! ensembling of folds). Each member predicts with its own run's normalisation and window; they
//! must agree on what they predict (classes, input channels) and on the grid they predict on
//! (target spacing or down-sampling factor), so that their probabilities can be averaged voxel by
//! voxel and brought back to the input's grid one way.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::Array4;

use super::SlidingWindow;
use super::pipeline::{InferenceError, ModelInput};
use super::predictor::predict_case;
use crate::data::{Preparation, Volume};
use crate::networks::Specialist;

/// One trained model and how it predicts.
#[derive(Debug, Clone, Copy)]
pub struct EnsembleMember<'a> {
    /// Where the model came from (its checkpoint), for error messages.
    pub source: &'a Path,
    pub input: ModelInput,
    pub model: &'a Specialist,
    pub device: &'a Device,
    pub window: SlidingWindow,
}

/// Models whose probabilities are averaged.
#[derive(Debug, Clone)]
pub struct Ensemble<'a> {
    members: Vec<EnsembleMember<'a>>,
}

/// Members that cannot be averaged.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    #[error("an ensemble needs at least one checkpoint")]
    Empty,
    #[error(
        "{other} cannot be ensembled with {first}: its {key} is {other_value}, not {first_value}"
    )]
    Mismatch {
        first: PathBuf,
        other: PathBuf,
        key: &'static str,
        first_value: String,
        other_value: String,
    },
    #[error(
        "{other} cannot be ensembled with {first}: it prepares {input} on a grid of {other_shape:?} voxels, {first} on {first_shape:?}"
    )]
    Grid {
        first: PathBuf,
        other: PathBuf,
        input: PathBuf,
        first_shape: Vec<usize>,
        other_shape: Vec<usize>,
    },
}

/// What members must share, by configuration key.
fn shared_settings(input: &ModelInput) -> [(&'static str, String); 4] {
    let spacing = |s: Option<[f64; 3]>| s.map_or_else(|| "unset".to_owned(), |s| format!("{s:?}"));
    [
        ("network.num_classes", input.classes.to_string()),
        ("network.in_channels", input.channels.to_string()),
        (
            "data.target_spacing",
            spacing(input.preparation.target_spacing),
        ),
        ("data.downsample", input.preparation.downsample.to_string()),
    ]
}

impl<'a> Ensemble<'a> {
    /// Check that the members predict the same classes from the same channels on one grid.
    pub fn new(members: Vec<EnsembleMember<'a>>) -> Result<Self, EnsembleError> {
        let first = members.first().ok_or(EnsembleError::Empty)?;
        for member in &members[1..] {
            for ((key, first_value), (_, other_value)) in shared_settings(&first.input)
                .into_iter()
                .zip(shared_settings(&member.input))
            {
                if first_value != other_value {
                    return Err(EnsembleError::Mismatch {
                        first: first.source.to_owned(),
                        other: member.source.to_owned(),
                        key,
                        first_value,
                        other_value,
                    });
                }
            }
        }
        Ok(Ensemble { members })
    }

    pub fn members(&self) -> &[EnsembleMember<'a>] {
        &self.members
    }

    pub fn classes(&self) -> usize {
        self.members[0].input.classes
    }

    /// How the input's grid becomes the members' grid (the first member's normalisation).
    pub fn preparation(&self) -> Preparation {
        self.members[0].input.preparation
    }

    /// Mean class probabilities `[C, X, Y, Z]` of `image` on the members' grid.
    /// `progress(done, total)` counts windows over all members.
    pub fn probabilities(
        &self,
        image: &Volume<f32>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Array4<f32>, InferenceError> {
        let count = self.members.len();
        let first = &self.members[0];
        let mut sum: Option<Array4<f32>> = None;
        for (n, member) in self.members.iter().enumerate() {
            let prepared = member.input.preparation.image(image)?;
            if let Some(sum) = &sum
                && sum.shape()[1..] != *prepared.shape()
            {
                // Members resampling to one spacing still differ when they assume different
                // spacings for files that store none (data.spacing).
                return Err(EnsembleError::Grid {
                    first: first.source.to_owned(),
                    other: member.source.to_owned(),
                    input: image.path.clone(),
                    first_shape: sum.shape()[1..].to_vec(),
                    other_shape: prepared.shape().to_vec(),
                }
                .into());
            }
            let prediction = predict_case(
                member.model,
                &prepared,
                member.input.classes,
                member.window,
                member.device,
                |done, total| progress(n * total + done, count * total),
            )?;
            match sum.as_mut() {
                None => sum = Some(prediction.probabilities),
                Some(sum) => *sum += &prediction.probabilities,
            }
        }
        let mut mean = sum.expect("an ensemble has at least one member");
        if count > 1 {
            mean.mapv_inplace(|p| p / count as f32);
        }
        Ok(mean)
    }
}
