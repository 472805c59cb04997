//! Mean Teacher (Tarvainen & Valpola; UA-MT's `train_LA_meanteacher` recipe).

use crate::ops::channel_softmax;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::noise::{TEACHER_NOISE_CLAMP, TEACHER_NOISE_STD, add_clamped_gaussian_noise};
use super::schedule::{RampUp, ema_decay};
use super::supervised::check_weight;
use super::{Framework, FrameworkError, LossTerms, StepContext};
use crate::losses::squared_error_mean;
use crate::networks::Specialist;

/// The EMA teacher and its consistency term, shared by Mean Teacher and UA-MT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherConfig {
    pub consistency: RampUp,
    /// Upper bound of the EMA decay (0.99).
    pub ema_decay: f64,
    pub noise_std: f64,
    pub noise_clamp: f64,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            consistency: RampUp::CONSISTENCY,
            ema_decay: 0.99,
            noise_std: TEACHER_NOISE_STD,
            noise_clamp: TEACHER_NOISE_CLAMP,
        }
    }
}

impl TeacherConfig {
    pub(crate) fn validate(&self) -> Result<(), FrameworkError> {
        check_weight("teacher.consistency.weight", self.consistency.weight)?;
        check_weight(
            "teacher.consistency.rampup_epochs",
            self.consistency.rampup_epochs,
        )?;
        check_weight("teacher.noise_std", self.noise_std)?;
        check_weight("teacher.noise_clamp", self.noise_clamp)?;
        if self.consistency.iterations_per_epoch == 0 {
            return Err(FrameworkError::Config(
                "teacher.consistency.iterations_per_epoch must be positive".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return Err(FrameworkError::Config(format!(
                "teacher.ema_decay must be in [0, 1], got {}",
                self.ema_decay
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeanTeacherConfig {
    /// Scale of CE + Dice (1, as in SemiSAM's MT).
    pub supervised_weight: f64,
    pub teacher: TeacherConfig,
}

impl Default for MeanTeacherConfig {
    fn default() -> Self {
        Self {
            supervised_weight: 1.0,
            teacher: TeacherConfig::default(),
        }
    }
}

/// Consistency = mean over the unlabeled items and classes of (softmax(student) -
/// softmax(teacher(noisy input)))², weighted by the ramp-up λ_c(t).
#[derive(Debug, Clone)]
pub struct MeanTeacher {
    config: MeanTeacherConfig,
}

impl MeanTeacher {
    pub fn new(config: MeanTeacherConfig) -> Result<Self, FrameworkError> {
        check_weight("supervised_weight", config.supervised_weight)?;
        config.teacher.validate()?;
        Ok(Self { config })
    }
}

/// The teacher's softmax on the unlabeled items with noisy input and dropout (no gradient).
pub(crate) fn teacher_probabilities(
    teacher: &Specialist,
    ctx: &StepContext,
    noise_std: f64,
    noise_clamp: f64,
    rng: &mut dyn RngCore,
) -> Result<burn::tensor::Tensor<5>, FrameworkError> {
    let inputs = add_clamped_gaussian_noise(
        ctx.batch.unlabeled_images().detach(),
        noise_std,
        noise_clamp,
        rng,
    );
    let logits = teacher.forward(inputs, Some(rng))?;
    Ok(channel_softmax(logits.detach()))
}

impl Framework for MeanTeacher {
    fn name(&self) -> &'static str {
        "mean_teacher"
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
        let target = teacher_probabilities(
            teacher,
            ctx,
            self.config.teacher.noise_std,
            self.config.teacher.noise_clamp,
            rng,
        )?;
        let consistency = squared_error_mean(ctx.unlabeled_probabilities(), target.clone())?;
        terms.push(
            "consistency",
            self.config.teacher.consistency.at(ctx.index.step),
            consistency,
        );
        terms.teacher_probabilities = Some(target);
        Ok(terms)
    }

    fn teacher_decay(&self, step: usize) -> Option<f64> {
        Some(ema_decay(step, self.config.teacher.ema_decay))
    }
}
