//! Several trained models as one predictor: the mean of their class probabilities (nnU-Net's
//! ensembling of folds). Each member predicts with its own run's preparation (normalisation) and
//! window; they must agree on what they predict (classes, input channels) and on the grid they
//! predict on (the down-sampling factor), so that their probabilities can be averaged voxel by
//! voxel.

use std::path::PathBuf;

use burn::tensor::Device;
use ndarray::{Array3, Array4};

use super::SlidingWindow;
use crate::data::Volume;
use crate::networks::Specialist;
use crate::training::RunConfig;
use crate::training::dataset::prepare_image;
use crate::training::validation::predict_case;

use super::pipeline::InferenceError;

/// One trained model and how it predicts.
#[derive(Debug, Clone, Copy)]
pub struct EnsembleMember<'a> {
    /// Where the model came from (its checkpoint), for error messages.
    pub source: &'a std::path::Path,
    pub config: &'a RunConfig,
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
        "{other} cannot be ensembled with {first}: its network.{key} is {other_value}, not {first_value}"
    )]
    Mismatch {
        first: PathBuf,
        other: PathBuf,
        key: &'static str,
        first_value: usize,
        other_value: usize,
    },
}

impl<'a> Ensemble<'a> {
    /// Check that the members predict the same classes from the same channels on one grid.
    pub fn new(members: Vec<EnsembleMember<'a>>) -> Result<Self, EnsembleError> {
        let first = members.first().ok_or(EnsembleError::Empty)?;
        let shared = |c: &RunConfig| {
            [
                ("num_classes", c.network.num_classes),
                ("in_channels", c.network.in_channels),
                ("downsample (data.downsample)", c.data.downsample),
            ]
        };
        for member in &members[1..] {
            for ((key, first_value), (_, other_value)) in
                shared(first.config).into_iter().zip(shared(member.config))
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
        self.members[0].config.network.num_classes
    }

    /// The factor from the input grid to the grid the members predict on.
    pub fn downsample(&self) -> usize {
        self.members[0].config.data.downsample
    }

    /// Mean class probabilities `[C, X, Y, Z]` of `image` on the members' grid.
    /// `progress(done, total)` counts windows over all members.
    pub fn probabilities(
        &self,
        image: &Volume<f32>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Array4<f32>, InferenceError> {
        let count = self.members.len();
        let mut sum: Option<Array4<f32>> = None;
        for (n, member) in self.members.iter().enumerate() {
            let prepared: Array3<f32> =
                prepare_image(image.data.clone(), member.config, &image.path)?;
            let prediction = predict_case(
                member.model,
                &prepared,
                self.classes(),
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
