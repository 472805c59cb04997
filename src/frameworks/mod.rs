//! Semi-supervised frameworks (supervised only, Mean Teacher, UA-MT) behind one trait.
//!
//! # API used by the training loop
//!
//! ```text
//! let framework: Box<dyn Framework> = FrameworkConfig::MeanTeacher(..).build()?;
//! let mut student = network_config.init(&device.autodiff())?;
//! let mut teacher = framework.uses_teacher().then(|| new_teacher(&student));
//! for step in start..max_steps {
//!     let batch = Batch::new(images, labels, labeled_bs)?    // [B,1,X,Y,Z], [labeled_bs,X,Y,Z]
//!         .with_provenance(items)?;                       // where each patch came from
//!     let out = train_step(&*framework, &student, teacher.as_ref(),
//!                          &batch, StepIndex { step, max_steps }, &mut rng, &mut [])?;
//!     let grads = out.loss.backward();                        // then optimizer step on student
//!     ...
//!     teacher = teacher.map(|t| update_teacher(&*framework, t, &student, step)).transpose()?;
//!     log(out.scalars);                                      // ("loss/total", ..), ("weight/consistency", ..), ...
//! }
//! ```
//!
//! * A batch holds `labeled_bs` labeled items first, then the unlabeled ones; labels exist
//!   only for the labeled items (labels of unlabeled cases never enter a batch).
//! * `step` is the 0-based iteration index. Every schedule (ramp-up, EMA decay, UA-MT
//!   threshold) is evaluated at it, as in the reference code where `iter_num` starts at 0.
//! * All randomness (student and teacher dropout, teacher input noise) comes from the `rng`
//!   argument, in a fixed order, so a run resumed with the saved RNG state is bit-identical.
//! * Total loss = Σ weight · value over the [`LossTerms`] of: the supervised loss, the
//!   framework's unsupervised loss, and every [`AuxiliaryLoss`] passed in. A further term (the
//!   SAM pseudo-label loss) is added by implementing [`AuxiliaryLoss`]; no framework changes.
//! * [`update_teacher`] is called after the optimizer step with the same `step`.

pub mod benchmark;
pub mod ema;
pub mod mean_teacher;
pub mod noise;
pub mod sam_assist;
pub mod schedule;
pub mod supervised;
pub mod ua_mt;

use burn::tensor::{Int, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::data::batches::ItemProvenance;
use crate::losses::LossError;
use crate::networks::{NetworkError, Specialist};
use crate::ops::channel_softmax;

pub use ema::{ema_update, new_teacher};
pub use mean_teacher::{MeanTeacher, MeanTeacherConfig, TeacherConfig};
pub use schedule::{RampUp, ema_decay, sigmoid_rampup, uncertainty_threshold};
pub use supervised::{SupervisedOnly, supervised_terms};
pub use ua_mt::{UncertaintyAwareMeanTeacher, UncertaintyAwareMeanTeacherConfig};

#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error("batch: {0}")]
    Batch(String),
    #[error("{framework} needs a teacher network but none was given")]
    MissingTeacher { framework: &'static str },
    #[error("teacher and student do not match: {0}")]
    TeacherMismatch(String),
    #[error("invalid framework configuration: {0}")]
    Config(String),
    #[error("auxiliary loss {name}: {message}")]
    Auxiliary { name: String, message: String },
}

/// One training batch: `labeled_bs` labeled items first, then unlabeled ones.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, channels, X, Y, Z]`, float.
    pub images: Tensor<5>,
    /// `[labeled_bs, X, Y, Z]` class indices of the labeled items only.
    pub labels: Tensor<4, Int>,
    pub labeled_bs: usize,
    /// Where each item's patch came from (case, augmentation), in batch order; empty for
    /// batches built without it. Terms that map patches back onto their cases read it.
    pub provenance: Vec<ItemProvenance>,
}

impl Batch {
    pub fn new(
        images: Tensor<5>,
        labels: Tensor<4, Int>,
        labeled_bs: usize,
    ) -> Result<Self, FrameworkError> {
        let [b, _, x, y, z] = images.dims();
        let label_dims = labels.dims();
        if labeled_bs == 0 || labeled_bs > b {
            return Err(FrameworkError::Batch(format!(
                "labeled_bs {labeled_bs} must be in 1..={b} (the batch size)"
            )));
        }
        if label_dims != [labeled_bs, x, y, z] {
            return Err(FrameworkError::Batch(format!(
                "labels have shape {label_dims:?}, expected [{labeled_bs}, {x}, {y}, {z}] for images {:?}",
                images.dims()
            )));
        }
        Ok(Self {
            images,
            labels,
            labeled_bs,
            provenance: Vec::new(),
        })
    }

    /// The batch with the provenance of every item (labeled first).
    pub fn with_provenance(mut self, items: Vec<ItemProvenance>) -> Result<Self, FrameworkError> {
        if items.len() != self.batch_size() {
            return Err(FrameworkError::Batch(format!(
                "{} item provenances for a batch of {}",
                items.len(),
                self.batch_size()
            )));
        }
        self.provenance = items;
        Ok(self)
    }

    pub fn batch_size(&self) -> usize {
        self.images.dims()[0]
    }

    pub fn unlabeled_count(&self) -> usize {
        self.batch_size() - self.labeled_bs
    }

    /// The unlabeled items' images `[B - labeled_bs, ...]`.
    pub fn unlabeled_images(&self) -> Tensor<5> {
        self.images
            .clone()
            .narrow(0, self.labeled_bs, self.unlabeled_count())
    }
}

/// Where training stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepIndex {
    /// 0-based iteration index.
    pub step: usize,
    /// Total number of iterations of the run.
    pub max_steps: usize,
}

/// What every loss term sees in one training step.
#[derive(Debug, Clone)]
pub struct StepContext<'a> {
    pub index: StepIndex,
    pub batch: &'a Batch,
    /// Student logits `[B, C, X, Y, Z]` (tracked: losses on them train the student).
    pub student_logits: Tensor<5>,
    /// `softmax(student_logits)` over classes (tracked).
    pub student_probabilities: Tensor<5>,
    /// The teacher's softmax on the unlabeled items `[U, C, X, Y, Z]` (detached), once the
    /// framework has computed it: auxiliary losses see it, the framework's own loss does not.
    pub teacher_probabilities: Option<Tensor<5>>,
}

impl StepContext<'_> {
    /// Student probabilities of the unlabeled items (tracked).
    pub fn unlabeled_probabilities(&self) -> Tensor<5> {
        let b = self.batch;
        self.student_probabilities
            .clone()
            .narrow(0, b.labeled_bs, b.unlabeled_count())
    }
}

/// One named loss term: it adds `weight · value` to the total.
#[derive(Debug, Clone)]
pub struct LossTerm {
    pub name: String,
    pub weight: f64,
    /// One-element tensor.
    pub value: Tensor<1>,
}

/// Named loss terms plus diagnostics to log (e.g. UA-MT's mask fraction).
#[derive(Debug, Clone, Default)]
pub struct LossTerms {
    pub terms: Vec<LossTerm>,
    pub diagnostics: Vec<(String, f64)>,
    /// The teacher's softmax on the unlabeled items (detached), for the auxiliary losses.
    pub teacher_probabilities: Option<Tensor<5>>,
}

impl LossTerms {
    pub fn push(&mut self, name: impl Into<String>, weight: f64, value: Tensor<1>) {
        self.terms.push(LossTerm {
            name: name.into(),
            weight,
            value,
        });
    }

    pub fn diagnostic(&mut self, name: impl Into<String>, value: f64) {
        self.diagnostics.push((name.into(), value));
    }

    pub fn extend(&mut self, other: LossTerms) {
        self.terms.extend(other.terms);
        self.diagnostics.extend(other.diagnostics);
        if other.teacher_probabilities.is_some() {
            self.teacher_probabilities = other.teacher_probabilities;
        }
    }

    /// `Σ weight · value`; `None` when there are no terms.
    pub fn total(&self) -> Option<Tensor<1>> {
        self.terms
            .iter()
            .map(|term| term.value.clone().mul_scalar(term.weight))
            .reduce(|a, b| a + b)
    }
}

/// A semi-supervised framework: how the unlabeled items (and a teacher) enter the loss.
pub trait Framework: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the training loop must keep an EMA teacher for this framework.
    fn uses_teacher(&self) -> bool;

    /// Scale of the supervised CE + Dice terms (1 for MT, 0.5 for UA-MT).
    fn supervised_weight(&self) -> f64;

    /// The framework's own terms on this step (empty for supervised-only). Randomness only
    /// from `rng`; the teacher runs without gradient.
    fn unsupervised_loss(
        &self,
        ctx: &StepContext,
        teacher: Option<&Specialist>,
        rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError>;

    /// EMA decay α for the teacher update after `step`'s optimizer step; `None` when the
    /// framework has no teacher.
    fn teacher_decay(&self, step: usize) -> Option<f64>;
}

/// A loss term added on top of any framework (the SAM pseudo-label term plugs in here).
pub trait AuxiliaryLoss {
    fn name(&self) -> &str;

    fn loss_terms(
        &mut self,
        ctx: &StepContext,
        rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError>;
}

/// The result of [`train_step`].
#[derive(Debug)]
pub struct StepOutput {
    /// Total loss (one element, tracked): call `backward()` on it.
    pub loss: Tensor<1>,
    /// `loss/<term>` values, `weight/<term>` weights, `loss/total` and diagnostics.
    pub scalars: Vec<(String, f64)>,
    /// Student softmax `[B, C, X, Y, Z]`, detached (for prompts, logging, visualisation).
    pub student_probabilities: Tensor<5>,
}

/// Forward the student on the whole batch (dropout on), then collect the supervised, framework
/// and auxiliary terms. The student's forward draws from `rng` first, then the framework,
/// then each auxiliary loss in order.
pub fn train_step(
    framework: &dyn Framework,
    student: &Specialist,
    teacher: Option<&Specialist>,
    batch: &Batch,
    index: StepIndex,
    rng: &mut dyn RngCore,
    auxiliary: &mut [&mut dyn AuxiliaryLoss],
) -> Result<StepOutput, FrameworkError> {
    if framework.uses_teacher() && teacher.is_none() {
        return Err(FrameworkError::MissingTeacher {
            framework: framework.name(),
        });
    }
    let student_logits = student.forward(batch.images.clone(), Some(&mut *rng))?;
    let student_probabilities = channel_softmax(student_logits.clone());
    let mut ctx = StepContext {
        index,
        batch,
        student_logits,
        student_probabilities,
        teacher_probabilities: None,
    };
    let mut terms = supervised_terms(&ctx, framework.supervised_weight())?;
    terms.extend(framework.unsupervised_loss(&ctx, teacher, rng)?);
    ctx.teacher_probabilities = terms.teacher_probabilities.take();
    for extra in auxiliary.iter_mut() {
        terms.extend(extra.loss_terms(&ctx, rng)?);
    }
    let loss = terms
        .total()
        .expect("the supervised loss always contributes terms");
    let mut scalars = Vec::with_capacity(2 * terms.terms.len() + terms.diagnostics.len() + 1);
    scalars.push(("loss/total".to_string(), scalar(&loss)));
    for term in &terms.terms {
        scalars.push((format!("loss/{}", term.name), scalar(&term.value)));
        scalars.push((format!("weight/{}", term.name), term.weight));
    }
    scalars.extend(terms.diagnostics);
    Ok(StepOutput {
        loss,
        scalars,
        student_probabilities: ctx.student_probabilities.detach(),
    })
}

/// EMA update of the teacher after the optimizer step of `step`.
pub fn update_teacher(
    framework: &dyn Framework,
    teacher: Specialist,
    student: &Specialist,
    step: usize,
) -> Result<Specialist, FrameworkError> {
    match framework.teacher_decay(step) {
        Some(alpha) => ema_update(teacher, student, alpha),
        None => Ok(teacher),
    }
}

fn scalar(value: &Tensor<1>) -> f64 {
    value.clone().into_scalar::<f32>() as f64
}

/// Which framework to train with, with its settings (TOML section `[framework]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FrameworkConfig {
    Supervised {
        #[serde(default = "one")]
        supervised_weight: f64,
    },
    MeanTeacher(MeanTeacherConfig),
    UaMt(UncertaintyAwareMeanTeacherConfig),
}

fn one() -> f64 {
    1.0
}

impl FrameworkConfig {
    pub fn build(&self) -> Result<Box<dyn Framework>, FrameworkError> {
        Ok(match self {
            FrameworkConfig::Supervised { supervised_weight } => {
                Box::new(SupervisedOnly::new(*supervised_weight)?)
            }
            FrameworkConfig::MeanTeacher(config) => Box::new(MeanTeacher::new(config.clone())?),
            FrameworkConfig::UaMt(config) => {
                Box::new(UncertaintyAwareMeanTeacher::new(config.clone())?)
            }
        })
    }
}

#[cfg(test)]
mod tests;
