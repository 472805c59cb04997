//! The supervised loss on the labeled items, and the supervised-only baseline.

use rand::RngCore;

use super::{Framework, FrameworkError, LossTerms, StepContext};
use crate::losses::{cross_entropy, dice_loss_foreground};
use crate::networks::Specialist;

/// `weight · CE` and `weight · Dice(foreground)` on the labeled items (terms "ce", "dice").
pub fn supervised_terms(ctx: &StepContext, weight: f64) -> Result<LossTerms, FrameworkError> {
    let labeled = ctx.batch.labeled_bs;
    let logits = ctx.student_logits.clone().narrow(0, 0, labeled);
    let probabilities = ctx.student_probabilities.clone().narrow(0, 0, labeled);
    let labels = ctx.batch.labels.clone();
    let mut terms = LossTerms::default();
    terms.push("ce", weight, cross_entropy(logits, labels.clone())?);
    terms.push("dice", weight, dice_loss_foreground(probabilities, labels)?);
    Ok(terms)
}

pub(crate) fn check_weight(name: &str, value: f64) -> Result<(), FrameworkError> {
    if !value.is_finite() || value < 0.0 {
        return Err(FrameworkError::Config(format!(
            "{name} must be finite and non-negative, got {value}"
        )));
    }
    Ok(())
}

/// Baseline: the labeled items' loss only; unlabeled items are ignored.
#[derive(Debug, Clone)]
pub struct SupervisedOnly {
    supervised_weight: f64,
}

impl SupervisedOnly {
    pub fn new(supervised_weight: f64) -> Result<Self, FrameworkError> {
        check_weight("supervised_weight", supervised_weight)?;
        Ok(Self { supervised_weight })
    }
}

impl Framework for SupervisedOnly {
    fn name(&self) -> &'static str {
        "supervised"
    }

    fn uses_teacher(&self) -> bool {
        false
    }

    fn supervised_weight(&self) -> f64 {
        self.supervised_weight
    }

    fn unsupervised_loss(
        &self,
        _ctx: &StepContext,
        _teacher: Option<&Specialist>,
        _rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError> {
        Ok(LossTerms::default())
    }

    fn teacher_decay(&self, _step: usize) -> Option<f64> {
        None
    }
}
