//! Uncertainty-aware Mean Teacher (Yu et al., MICCAI 2019; UA-MT
//! `train_LA_meanteacher_certainty_unlabel.py`): the Mean Teacher consistency restricted to
//! the voxels where the teacher's Monte Carlo entropy is below a rising threshold.

use crate::ops::channel_softmax;
use burn::tensor::Tensor;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::mean_teacher::{TeacherConfig, teacher_probabilities};
use super::noise::add_clamped_gaussian_noise;
use super::schedule::{ema_decay, uncertainty_threshold};
use super::supervised::check_weight;
use super::{Framework, FrameworkError, LossTerms, StepContext};
use crate::losses::masked_squared_error;
use crate::networks::Specialist;

/// Inside the entropy's logarithm, as in UA-MT.
pub const ENTROPY_EPSILON: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UncertaintyAwareMeanTeacherConfig {
    /// Scale of CE + Dice (0.5 in UA-MT).
    pub supervised_weight: f64,
    pub teacher: TeacherConfig,
    /// T, the number of stochastic teacher passes (8).
    pub mc_passes: usize,
    /// The unlabeled items are repeated this many times per forward pass, so that T passes
    /// cost T / repeat forwards (UA-MT: 2, i.e. 4 forwards over the doubled batch; batch-norm
    /// statistics are taken over the repeated batch as there).
    pub mc_batch_repeat: usize,
}

impl Default for UncertaintyAwareMeanTeacherConfig {
    fn default() -> Self {
        Self {
            supervised_weight: 0.5,
            teacher: TeacherConfig::default(),
            mc_passes: 8,
            mc_batch_repeat: 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UncertaintyAwareMeanTeacher {
    config: UncertaintyAwareMeanTeacherConfig,
}

impl UncertaintyAwareMeanTeacher {
    pub fn new(config: UncertaintyAwareMeanTeacherConfig) -> Result<Self, FrameworkError> {
        check_weight("supervised_weight", config.supervised_weight)?;
        config.teacher.validate()?;
        let (passes, repeat) = (config.mc_passes, config.mc_batch_repeat);
        if passes == 0 || repeat == 0 || passes % repeat != 0 {
            return Err(FrameworkError::Config(format!(
                "mc_passes ({passes}) must be a positive multiple of mc_batch_repeat ({repeat})"
            )));
        }
        Ok(Self { config })
    }

    /// Mean teacher softmax over T noisy, dropout-on passes: `[U, C, X, Y, Z]`.
    fn monte_carlo_mean(
        &self,
        teacher: &Specialist,
        ctx: &StepContext,
        rng: &mut dyn RngCore,
    ) -> Result<Tensor<5>, FrameworkError> {
        let mt = &self.config.teacher;
        let repeat = self.config.mc_batch_repeat;
        let unlabeled = ctx.batch.unlabeled_images().detach();
        let repeated = unlabeled.repeat_dim(0, repeat);
        let mut sum: Option<Tensor<5>> = None;
        for _ in 0..self.config.mc_passes / repeat {
            let inputs =
                add_clamped_gaussian_noise(repeated.clone(), mt.noise_std, mt.noise_clamp, rng);
            let probabilities = channel_softmax(teacher.forward(inputs, Some(rng))?.detach());
            // Fold the repeats: item i of copy r sits at r·U + i.
            let [_, c, x, y, z] = probabilities.dims();
            let folded = probabilities
                .reshape([repeat, ctx.batch.unlabeled_count(), c, x, y, z])
                .sum_dim(0)
                .reshape([ctx.batch.unlabeled_count(), c, x, y, z]);
            sum = Some(match sum {
                Some(total) => total + folded,
                None => folded,
            });
        }
        let sum = sum.expect("mc_passes >= repeat gives at least one pass");
        Ok(sum.div_scalar(self.config.mc_passes as f64))
    }
}

/// Predictive entropy `-Σ_c p_c ln(p_c + 1e-6)` of `[N, C, X, Y, Z]` probabilities, as
/// `[N, 1, X, Y, Z]`.
pub fn predictive_entropy(probabilities: Tensor<5>) -> Tensor<5> {
    let log = probabilities.clone().add_scalar(ENTROPY_EPSILON).log();
    (probabilities * log).sum_dim(1).neg()
}

/// 1 where the entropy of the mean prediction is below `threshold`, else 0: `[N, 1, X, Y, Z]`.
pub fn certainty_mask(mean_probabilities: Tensor<5>, threshold: f64) -> Tensor<5> {
    predictive_entropy(mean_probabilities)
        .lower_elem(threshold)
        .float()
}

impl Framework for UncertaintyAwareMeanTeacher {
    fn name(&self) -> &'static str {
        "ua_mt"
    }

    fn uses_teacher(&self) -> bool {
        true
    }

    fn supervised_weight(&self) -> f64 {
        self.config.supervised_weight
    }

    fn unsupervised_loss(
        &self,
        ctx: &StepContext,
        teacher: Option<&Specialist>,
        rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError> {
        let mut terms = LossTerms::default();
        if ctx.batch.unlabeled_count() == 0 {
            return Ok(terms);
        }
        let teacher = teacher.ok_or(FrameworkError::MissingTeacher {
            framework: self.name(),
        })?;
        let mt = &self.config.teacher;
        let target = teacher_probabilities(teacher, ctx, mt.noise_std, mt.noise_clamp, rng)?;
        let mean = self.monte_carlo_mean(teacher, ctx, rng)?;
        let classes = mean.dims()[1];
        let threshold = uncertainty_threshold(ctx.index.step, ctx.index.max_steps, classes);
        let mask = certainty_mask(mean, threshold);
        let mask_fraction = mask.clone().mean().into_scalar::<f32>() as f64;
        let consistency =
            masked_squared_error(ctx.unlabeled_probabilities(), target.clone(), mask)?;
        terms.teacher_probabilities = Some(target);
        terms.push(
            "consistency",
            mt.consistency.at(ctx.index.step),
            consistency,
        );
        terms.diagnostic("ua_mt/threshold", threshold);
        terms.diagnostic("ua_mt/mask_fraction", mask_fraction);
        Ok(terms)
    }

    fn teacher_decay(&self, step: usize) -> Option<f64> {
        Some(ema_decay(step, self.config.teacher.ema_decay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn entropy_and_threshold_mask_by_hand() {
        let device = Device::default();
        // Three voxels with foreground probability 0.5, 0.9, 1.0.
        let probabilities = Tensor::<5>::from_data(
            TensorData::new(vec![0.5f32, 0.1, 0.0, 0.5, 0.9, 1.0], [1, 2, 1, 1, 3]),
            &device,
        );
        let entropy = predictive_entropy(probabilities.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // -2 · 0.5 ln(0.5 + 1e-6); -(0.9 ln(0.9 + 1e-6) + 0.1 ln(0.1 + 1e-6)); -1 · ln(1 + 1e-6).
        assert_relative_eq!(entropy[0], 0.693_145_2, epsilon = 1e-6);
        assert_relative_eq!(entropy[1], 0.325_081, epsilon = 1e-6);
        assert_relative_eq!(entropy[2], -1e-6, epsilon = 1e-7);
        // At step 0 of 6000, H = 0.52103: the undecided voxel is masked out, the others kept.
        let threshold = uncertainty_threshold(0, 6000, 2);
        let mask = certainty_mask(probabilities, threshold);
        assert_eq!(mask.dims(), [1, 1, 1, 1, 3]);
        assert_eq!(
            mask.into_data().try_to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 1.0]
        );
    }

    #[test]
    fn passes_must_be_a_multiple_of_the_repeat() {
        let config = UncertaintyAwareMeanTeacherConfig {
            mc_passes: 7,
            ..Default::default()
        };
        let err = UncertaintyAwareMeanTeacher::new(config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid framework configuration: mc_passes (7) must be a positive multiple of mc_batch_repeat (2)"
        );
    }
}
