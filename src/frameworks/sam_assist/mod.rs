//! SAM assistance (SemiSAM) as an [`AuxiliaryLoss`] that plugs into any framework.
//!
//! For every unlabeled item of a batch the student's class probabilities on the patch are mapped
//! back onto the un-augmented volume (the augmentation is invertible), each foreground class gets
//! prompts from its own confident component, the frozen generalist answers with a mask, and the
//! masks are mapped forward onto the patch again as a one-hot pseudo-label. The term is
//! `0.5 · λ_s(t) · mean over pseudo-labelled voxels and classes of (s_u - onehot(m))²`, with the
//! ramp-down `λ_s(t) = w · r(⌊(T_max - t)/e⌋, E)` (or `0.5 · λ_s(t) · (CE + Dice)` with
//! `loss = "dice_ce"`; with `confidence = "agreement"` voxels are weighted by how many of the
//! networks agree with SAM).
//!
//! Prompts come from the student's prediction only: this module never sees a label of an
//! unlabeled case (the batch sampler does not even load them).
//!
//! A pseudo-label is recomputed for a case at most every `refresh_interval` iterations; in between
//! the cached one (on the source grid) is reused where it covers the new patch, and voxels it does
//! not cover are left out of the term.
//!
//! Voxels the generalist gave no answer for (slices without a box, outside a 3D model's cube) are
//! left out of the term too (`outside_prompts = "ignore"`). Counting them as background
//! (`"background"`) teaches the student its own misses: slices its confident component does not
//! reach get no box, and the term then tells it those slices are empty.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use ndarray::{Array3, Array5, Axis, s};
use rand::RngCore;

use super::{AuxiliaryLoss, FrameworkError, LossTerms, StepContext};
use crate::data::augment::ItemTransform;
use crate::data::batches::ItemProvenance;
use crate::generalists::{Generalist, PseudoLabelRequest};
use crate::losses::{masked_squared_error, weighted_dice_cross_entropy};
use crate::metrics::dice_from_counts;
use crate::networks::arrays::{argmax_classes, tensor_to_array};

mod config;
mod label_cache;
#[cfg(test)]
mod tests;

pub use config::{Confidence, OutsidePrompts, PromptSource, SamConfig, SamLoss};
use label_cache::CachedLabel;

/// A cached pseudo-label as [`SamAssist::pseudo_labels`] exposes it.
#[derive(Debug, Clone)]
pub struct PseudoLabelView<'a> {
    pub case_id: &'a str,
    /// Iteration (0-based) it was computed at.
    pub step: usize,
    /// Shape of the case's prepared (normalised, down-sampled) volume the label is on.
    pub grid: [usize; 3],
    /// Part of the grid the label covers.
    pub region: &'a [Range<usize>; 3],
    /// Class index per voxel of `region`.
    pub classes: ndarray::ArrayView3<'a, u8>,
}

/// Per-step usage, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamStepStats {
    pub items_with_term: usize,
    pub items_without: usize,
    pub refreshed: usize,
    pub mean_area: f64,
    pub agreement_dice: f64,
    pub seconds: f64,
}

/// The SAM pseudo-label term.
pub struct SamAssist {
    config: SamConfig,
    generalist: Box<dyn Generalist>,
    /// Normalised, un-augmented images of the unlabeled cases.
    images: HashMap<String, Array3<f32>>,
    labels: HashMap<String, CachedLabel>,
    /// Labels of the unlabeled cases, for `prompt_source = "ground_truth_oracle"` only.
    ground_truth: HashMap<String, Array3<u8>>,
    last: SamStepStats,
}

impl SamAssist {
    pub fn new(
        config: SamConfig,
        generalist: Box<dyn Generalist>,
        unlabeled: impl IntoIterator<Item = (String, Array3<f32>)>,
    ) -> Self {
        SamAssist {
            config,
            generalist,
            images: unlabeled.into_iter().collect(),
            labels: HashMap::new(),
            ground_truth: HashMap::new(),
            last: SamStepStats::default(),
        }
    }

    /// The unlabeled cases' labels, on the same grid as their images, for
    /// `prompt_source = "ground_truth_oracle"` (ignored otherwise).
    pub fn with_ground_truth(
        mut self,
        labels: impl IntoIterator<Item = (String, Array3<u8>)>,
    ) -> Self {
        self.ground_truth = labels.into_iter().collect();
        self
    }

    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    pub fn last_stats(&self) -> SamStepStats {
        self.last
    }

    pub fn generalist(&self) -> &dyn Generalist {
        &*self.generalist
    }

    /// Mean foreground Dice, against `reference`, of the pseudo-labels the generalist gives when
    /// prompted from the student's class probabilities `[C, X, Y, Z]` on a whole held-out case
    /// (analysis only: the reference is read after the pseudo-label is made, never by it).
    pub fn held_out_dice(
        &mut self,
        case_id: &str,
        image: &Array3<f32>,
        probabilities: &ndarray::Array4<f32>,
        reference: &Array3<u8>,
    ) -> Result<f64, FrameworkError> {
        let classes = probabilities.shape()[0];
        let region: [Range<usize>; 3] = std::array::from_fn(|d| 0..image.shape()[d]);
        let mut total = 0.0;
        for class in 1..classes {
            let request = PseudoLabelRequest {
                case_id,
                image: image.view(),
                region: region.clone(),
                probability: probabilities.index_axis(Axis(0), class),
            };
            let label =
                self.generalist
                    .pseudo_label(&request)
                    .map_err(|e| FrameworkError::Auxiliary {
                        name: "sam".into(),
                        message: format!("validation case {case_id}: {e}"),
                    })?;
            let mask = label.map_or_else(|| Array3::from_elem(image.dim(), false), |l| l.mask);
            let (mut both, mut sam, mut truth) = (0usize, 0usize, 0usize);
            ndarray::Zip::from(&mask).and(reference).for_each(|&m, &r| {
                let r = r as usize == class;
                both += usize::from(m && r);
                sam += usize::from(m);
                truth += usize::from(r);
            });
            total += dice_from_counts(both, sam, truth);
        }
        Ok(total / (classes.saturating_sub(1)).max(1) as f64)
    }

    /// The pseudo-labels currently reused between refreshes, as checkpoint bytes: a resumed run
    /// must reuse exactly what the uninterrupted one would have (refresh_interval > 1).
    pub fn export_labels(&self) -> Vec<u8> {
        label_cache::encode(&self.labels)
    }

    /// Restore what [`SamAssist::export_labels`] wrote.
    pub fn import_labels(&mut self, bytes: &[u8]) -> Result<(), FrameworkError> {
        self.labels = label_cache::decode(bytes, |id| self.images.contains_key(id))?;
        Ok(())
    }

    /// The latest pseudo-label of every case that has one, by case identifier (read-only, for
    /// the run report).
    pub fn pseudo_labels(&self) -> Vec<PseudoLabelView<'_>> {
        let mut views: Vec<PseudoLabelView<'_>> = self
            .labels
            .iter()
            .filter_map(|(id, cached)| {
                Some(PseudoLabelView {
                    case_id: id,
                    step: cached.step,
                    grid: self.images.get(id)?.dim().into(),
                    region: &cached.region,
                    classes: cached.classes.view(),
                })
            })
            .collect();
        views.sort_by(|a, b| a.case_id.cmp(b.case_id));
        views
    }

    /// Make sure the item's case has a pseudo-label (recomputed, `Some(true)`, or reused,
    /// `Some(false)`) on the source grid region its patch covers. `None` when the student had
    /// no confident foreground for any class.
    fn source_label(
        &mut self,
        item: &ItemProvenance,
        probabilities: &Array5<f32>,
        u: usize,
        step: usize,
    ) -> Result<Option<bool>, FrameworkError> {
        let transform = &item.transform;
        let (window_part, region) = transform.overlap();
        if region.iter().any(|r| r.is_empty()) {
            return Ok(None);
        }
        if let Some(cached) = self.labels.get(&item.case_id)
            && step.saturating_sub(cached.step) < self.config.refresh_interval.max(1)
        {
            return Ok(Some(false));
        }
        let image = self
            .images
            .get(&item.case_id)
            .ok_or_else(|| FrameworkError::Auxiliary {
                name: "sam".into(),
                message: format!("case {} is not one of the unlabeled cases", item.case_id),
            })?;
        let shape: Vec<usize> = region.iter().map(|r| r.len()).collect();
        let mut classes = Array3::<u8>::zeros((shape[0], shape[1], shape[2]));
        let mut known = Array3::from_elem(classes.raw_dim(), false);
        let mut any = false;
        let ground_truth = if self.config.prompt_source == PromptSource::GroundTruthOracle {
            let label =
                self.ground_truth
                    .get(&item.case_id)
                    .ok_or_else(|| FrameworkError::Auxiliary {
                        name: "sam".into(),
                        message: format!(
                            "sam.prompt_source = \"ground_truth_oracle\" but case {} has no label",
                            item.case_id
                        ),
                    })?;
            Some(label.slice(s![region[0].clone(), region[1].clone(), region[2].clone()]))
        } else {
            None
        };
        for class in 1..probabilities.shape()[1] {
            let (window, oracle_mask);
            let probability = match ground_truth {
                Some(label) => {
                    oracle_mask = label.mapv(|c| f32::from(u8::from(usize::from(c) == class)));
                    oracle_mask.view()
                }
                None => {
                    window = transform.invert(probabilities.slice(s![u, class, .., .., ..]));
                    window.slice(s![
                        window_part[0].clone(),
                        window_part[1].clone(),
                        window_part[2].clone()
                    ])
                }
            };
            let request = PseudoLabelRequest {
                case_id: &item.case_id,
                image: image.view(),
                region: region.clone(),
                probability,
            };
            let label =
                self.generalist
                    .pseudo_label(&request)
                    .map_err(|e| FrameworkError::Auxiliary {
                        name: "sam".into(),
                        message: e.to_string(),
                    })?;
            if let Some(label) = label {
                any = true;
                ndarray::Zip::from(&mut classes)
                    .and(&mut known)
                    .and(&label.mask)
                    .and(&label.known)
                    .for_each(|c, k, &m, &answered| {
                        if m {
                            *c = class as u8;
                        }
                        *k |= answered;
                    });
            }
        }
        if !any {
            self.labels.remove(&item.case_id);
            return Ok(None);
        }
        if self.config.outside_prompts == OutsidePrompts::Background {
            known.fill(true);
        }
        self.labels.insert(
            item.case_id.clone(),
            CachedLabel {
                step,
                region: region.clone(),
                classes,
                known,
            },
        );
        Ok(Some(true))
    }

    /// The cached class map and its coverage, transformed onto the patch.
    fn patch_label(&self, item: &ItemProvenance) -> (Array3<u8>, Array3<bool>) {
        let cached = &self.labels[&item.case_id];
        let transform: &ItemTransform = &item.transform;
        let mut classes = Array3::<u8>::zeros(transform.source_shape);
        let mut known = Array3::from_elem(transform.source_shape, false);
        let region = s![
            cached.region[0].clone(),
            cached.region[1].clone(),
            cached.region[2].clone()
        ];
        classes.slice_mut(region).assign(&cached.classes);
        known.slice_mut(region).assign(&cached.known);
        (
            transform.apply(classes.view()),
            transform.apply(known.view()),
        )
    }
}

impl AuxiliaryLoss for SamAssist {
    fn name(&self) -> &str {
        "sam"
    }

    fn loss_terms(
        &mut self,
        ctx: &StepContext,
        _rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError> {
        let started = Instant::now();
        let mut terms = LossTerms::default();
        let weight = self.config.weight_at(ctx.index.step, ctx.index.max_steps);
        let batch = ctx.batch;
        if batch.provenance.len() != batch.batch_size() {
            return Err(FrameworkError::Auxiliary {
                name: "sam".into(),
                message: "the batch does not say where its patches came from \
                          (build it with Batch::with_provenance)"
                    .into(),
            });
        }
        let unlabeled_items = &batch.provenance[batch.labeled_bs..];
        if ctx.index.step < self.config.start_iteration {
            terms.diagnostic("sam/items_with_term", 0.0);
            terms.diagnostic("sam/items_without", unlabeled_items.len() as f64);
            self.last = SamStepStats {
                items_without: unlabeled_items.len(),
                ..Default::default()
            };
            return Ok(terms);
        }
        let student = ctx.unlabeled_probabilities();
        let probabilities = tensor_to_array(student.clone().detach());
        let teacher = ctx.teacher_probabilities.clone().map(tensor_to_array);
        let networks = 1 + usize::from(teacher.is_some());
        let prompt_probabilities = match (self.config.prompt_source, &teacher) {
            // The oracle's prompts come from the labels (`source_label`); this is not read.
            (PromptSource::Student | PromptSource::GroundTruthOracle, _) => &probabilities,
            (PromptSource::Teacher, Some(teacher)) => teacher,
            (PromptSource::Teacher, None) => {
                return Err(FrameworkError::Auxiliary {
                    name: "sam".into(),
                    message: "sam.prompt_source = \"teacher\" needs a framework with a teacher \
                              (mean_teacher, ua_mt)"
                        .into(),
                });
            }
        };
        let [_, channels, x, y, z] = student.dims();

        let mut stats = SamStepStats::default();
        let mut kept = Vec::new();
        let mut targets = Vec::new();
        let mut masks = Vec::new();
        let (mut area, mut agreement) = (0.0, 0.0);
        for (u, item) in unlabeled_items.iter().enumerate() {
            let Some(refreshed) =
                self.source_label(item, prompt_probabilities, u, ctx.index.step)?
            else {
                stats.items_without += 1;
                continue;
            };
            stats.refreshed += usize::from(refreshed);
            let (classes, known) = self.patch_label(item);
            if !known.iter().any(|&k| k) {
                stats.items_without += 1;
                continue;
            }
            let predicted = argmax_classes(probabilities.index_axis(Axis(0), u));
            let teacher_predicted = teacher
                .as_ref()
                .map(|t| argmax_classes(t.index_axis(Axis(0), u)));
            let (mut both, mut sam_fg, mut student_fg) = (0usize, 0usize, 0usize);
            ndarray::Zip::from(&classes)
                .and(&predicted)
                .and(&known)
                .for_each(|&m, &p, &k| {
                    if k {
                        both += usize::from(m > 0 && p > 0);
                        sam_fg += usize::from(m > 0);
                        student_fg += usize::from(p > 0);
                    }
                });
            area += sam_fg as f64;
            agreement += dice_from_counts(both, sam_fg, student_fg);
            let mut one_hot = vec![0f32; channels * x * y * z];
            for (v, &c) in classes.iter().enumerate() {
                one_hot[usize::from(c) * x * y * z + v] = 1.0;
            }
            targets.extend(one_hot);
            let mut weights = known.mapv(|k| f32::from(u8::from(k)));
            if self.config.confidence == Confidence::Agreement {
                for ((index, w), &m) in weights.indexed_iter_mut().zip(classes.iter()) {
                    let agrees = |other: &Array3<u8>| usize::from(other[index] == m);
                    let agreeing =
                        agrees(&predicted) + teacher_predicted.as_ref().map_or(0, agrees);
                    *w *= (1 + agreeing) as f32 / (1 + networks) as f32;
                }
            }
            masks.extend(weights);
            kept.push(u as i64);
            stats.items_with_term += 1;
        }
        if !kept.is_empty() {
            let n = kept.len();
            stats.mean_area = area / n as f64;
            stats.agreement_dice = agreement / n as f64;
            let device = student.device();
            let index =
                Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(kept, [n]), &device);
            let target =
                Tensor::<5>::from_data(TensorData::new(targets, [n, channels, x, y, z]), &device);
            let weights = Tensor::<5>::from_data(TensorData::new(masks, [n, 1, x, y, z]), &device);
            let distance = match self.config.loss {
                SamLoss::Mse => masked_squared_error(student.select(0, index), target, weights)?,
                SamLoss::DiceCe => {
                    let batch = ctx.batch;
                    let logits = ctx
                        .student_logits
                        .clone()
                        .narrow(0, batch.labeled_bs, batch.unlabeled_count())
                        .select(0, index);
                    weighted_dice_cross_entropy(logits, target, weights)?
                }
            };
            let value = distance.mul_scalar(0.5);
            terms.push("sam", weight, value);
        }
        stats.seconds = started.elapsed().as_secs_f64();
        terms.diagnostic("sam/items_with_term", stats.items_with_term as f64);
        terms.diagnostic("sam/items_without", stats.items_without as f64);
        terms.diagnostic("sam/refreshed", stats.refreshed as f64);
        terms.diagnostic("sam/mean_area", stats.mean_area);
        terms.diagnostic("sam/agreement_dice", stats.agreement_dice);
        terms.diagnostic("sam/seconds", stats.seconds);
        self.last = stats;
        Ok(terms)
    }
}
