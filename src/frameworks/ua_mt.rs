//! Uncertainty-aware Mean Teacher (Yu et al., MICCAI 2019; UA-MT
//! `train_LA_meanteacher_certainty_unlabel.py`): the Mean Teacher consistency restricted to
//! the voxels where the teacher's Monte Carlo entropy is below a rising threshold.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::mean_teacher::{MeanTeacherConfig, teacher_probabilities};
use super::noise::add_clamped_gaussian_noise;
use super::schedule::{ema_decay, uncertainty_threshold};
use super::{Framework, FrameworkError, LossTerms, StepContext};
use crate::losses::masked_squared_error;
use crate::networks::Specialist;

/// Inside the entropy's logarithm, as in UA-MT.
pub const ENTROPY_EPSILON: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UncertaintyAwareMeanTeacherConfig {
    /// Supervised scale, teacher, noise and consistency ramp (UA-MT: supervised 0.5).
    pub mean_teacher: MeanTeacherConfig,
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
            mean_teacher: MeanTeacherConfig {
                supervised_weight: 0.5,
                ..MeanTeacherConfig::default()
            },
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
        config.mean_teacher.validate()?;
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
        let mt = &self.config.mean_teacher;
        let repeat = self.config.mc_batch_repeat;
        let unlabeled = ctx.batch.unlabeled_images().detach();
        let repeated = unlabeled.repeat_dim(0, repeat);
        let mut sum: Option<Tensor<5>> = None;
        for _ in 0..self.config.mc_passes / repeat {
            let inputs =
                add_clamped_gaussian_noise(repeated.clone(), mt.noise_std, mt.noise_clamp, rng);
            let probabilities = softmax(teacher.forward(inputs, Some(rng))?.detach(), 1);
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

impl Framework for UncertaintyAwareMeanTeacher {
    fn name(&self) -> &'static str {
        "ua_mt"
    }

    fn uses_teacher(&self) -> bool {
        true
    }

    fn supervised_weight(&self) -> f64 {
        self.config.mean_teacher.supervised_weight
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
        let mt = &self.config.mean_teacher;
        let target = teacher_probabilities(teacher, ctx, mt.noise_std, mt.noise_clamp, rng)?;
        let mean = self.monte_carlo_mean(teacher, ctx, rng)?;
        let classes = mean.dims()[1];
        let threshold = uncertainty_threshold(ctx.index.step, ctx.index.max_steps, classes);
        let mask = predictive_entropy(mean).lower_elem(threshold).float();
        let mask_fraction = mask.clone().mean().into_scalar::<f32>() as f64;
        let consistency = masked_squared_error(ctx.unlabeled_probabilities(), target, mask)?;
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
        Some(ema_decay(step, self.config.mean_teacher.ema_decay))
    }
}
