//! SAM assistance (SemiSAM, SPEC §5) as an [`AuxiliaryLoss`] that plugs into any framework.
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
use serde::{Deserialize, Serialize};

use super::{AuxiliaryLoss, FrameworkError, LossTerms, RampUp, StepContext};
use crate::data::augment::ItemTransform;
use crate::data::batches::ItemProvenance;
use crate::generalists::slicewise::embedding_store::EmbeddingStore;
use crate::generalists::litemedsam::LiteMedSam;
use crate::generalists::slicewise::litemedsam::LiteMedSamSlices;
use crate::generalists::sammed3d::{ModelConfig, SamMed3d};
use crate::generalists::clicks3d::{ClickLoopConfig, FirstMaskPrompt, SamMed3dClicks};
use crate::generalists::clicks3d::crop::CropNormalization;
use crate::generalists::slicewise::SliceWise;
use crate::generalists::{Generalist, GeneralistError, PseudoLabelRequest};
use crate::losses::{masked_squared_error, weighted_dice_cross_entropy};
use crate::metrics::dice_from_counts;
use crate::prompts::PromptConfig;

/// Which frozen generalist produces the pseudo-labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneralistKind {
    /// LiteMedSAM (2D, box prompts) applied slice by slice; weights from `semisam weights fetch`.
    LiteMedSam,
    /// SAM-Med3D (3D, clicks); users bring the weights (`weights` is required).
    #[serde(rename = "sammed3d")]
    SamMed3d,
}

/// What the term does with voxels the generalist was not prompted for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsidePrompts {
    /// Left out of the term.
    #[default]
    Ignore,
    /// Supervised as background (the whole patch region is pseudo-labelled).
    Background,
}

/// The distance between the student and the pseudo-label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamLoss {
    /// Mean squared error of the softmax to the one-hot pseudo-label (SemiSAM).
    #[default]
    Mse,
    /// Cross-entropy plus foreground Dice, as the supervised loss.
    DiceCe,
}

/// Which network's prediction the prompts are made from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// The student's softmax on the patch (SemiSAM).
    #[default]
    Student,
    /// The teacher's softmax (Mean Teacher, UA-MT): a temporal ensemble of the student, steadier
    /// early in training, when the student's boxes send SAM to the wrong structure.
    Teacher,
    /// Analysis only, never a result: prompts from the ground truth of the unlabeled cases (as
    /// the published SemiSAM code does by mistake, SPEC §5). A run with it reads the unlabeled
    /// cases' label files, and measures how far pseudo-labels with perfect localisation could
    /// take the student: the upper bound of any prompt from a network.
    GroundTruthOracle,
}

/// Per-voxel weighting of the term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Every pseudo-labelled voxel counts the same.
    #[default]
    None,
    /// A voxel weighs `(1 + networks agreeing with SAM) / (1 + networks)`, the networks being
    /// the student and, in frameworks that have one, the teacher: 1 where all agree, 1/3 where
    /// SAM stands alone against both.
    Agreement,
}

/// The `[sam]` section: the generalist, its prompts and the term's schedule
/// `weight · r(⌊(T_max - t)/iterations_per_epoch⌋, rampdown_epochs)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamConfig {
    pub generalist: GeneralistKind,
    /// Checkpoint file; the weights cache when absent (LiteMedSAM only: SAM-Med3D needs it).
    pub weights: Option<std::path::PathBuf>,
    /// Slicing axis of a 2D generalist (2 = the third array axis, z for UA-MT h5).
    pub axis: usize,
    /// Embeddings kept in memory: slices (LiteMedSAM, default 4096) or cubes (SAM-Med3D,
    /// default 16; 0.8 MB each for `vit_b_ori`).
    pub cache_capacity: Option<usize>,
    /// SAM-Med3D architecture JSON (the keys of `model_config_vit_b_ori.json`); `vit_b_ori` when
    /// absent.
    pub model_config: Option<std::path::PathBuf>,
    /// SAM-Med3D clicks per pseudo-label (decoder passes; SemiSAM uses 10).
    pub clicks: usize,
    /// SAM-Med3D mask prompt of the first click: `zeros` (SemiSAM, SAM-Med3D) or `none`.
    pub first_mask_prompt: FirstMaskPrompt,
    /// SAM-Med3D: give the decoder every click so far instead of only the newest (SemiSAM).
    pub keep_all_clicks: bool,
    /// SAM-Med3D foreground is `logit > logit_threshold` (0: probability 0.5).
    pub logit_threshold: f32,
    /// SAM-Med3D crop: image voxels per model voxel (1: the image grid, as SemiSAM).
    pub crop_voxel_size: f64,
    /// SAM-Med3D crop intensities: `none` (as trained on), `zscore`, `positive_zscore`.
    pub crop_normalization: CropNormalization,
    /// λ_s at the start of training (SemiSAM: 0.1).
    pub weight: f64,
    /// Length of the ramp-down in "epochs" (SemiSAM: 40).
    pub rampdown_epochs: f64,
    /// Iterations per ramp "epoch" (SemiSAM: 150; scale it with the run length).
    pub iterations_per_epoch: usize,
    /// Recompute a case's pseudo-label at most every this many iterations (1 = every time).
    pub refresh_interval: usize,
    /// No SAM term before this iteration: an untrained student's "confident" voxels are noise,
    /// and prompts made from them give noise (0 = from the start, as SemiSAM).
    pub start_iteration: usize,
    /// At each validation, also prompt the generalist from the student's prediction on the
    /// validation cases and log the pseudo-labels' Dice against their references (analysis
    /// only: it costs one embedding per slice of those cases, once).
    pub validation_dice: bool,
    /// Voxels without a prompt (slices without a box, outside the 3D cube): `ignore` (left out
    /// of the term) or `background`.
    pub outside_prompts: OutsidePrompts,
    /// `mse` (SemiSAM) or `dice_ce`.
    pub loss: SamLoss,
    /// LiteMedSAM: a folder where slice embeddings are kept between runs (keyed by weights,
    /// axis and the slice's pixels), so that only the first run on a dataset pays for them.
    pub embedding_dir: Option<std::path::PathBuf>,
    /// `none` or `agreement` (student, teacher and SAM).
    pub confidence: Confidence,
    /// `student` (SemiSAM) or `teacher` (frameworks with a teacher only).
    pub prompt_source: PromptSource,
    pub prompts: PromptConfig,
}

impl Default for SamConfig {
    fn default() -> Self {
        SamConfig {
            generalist: GeneralistKind::LiteMedSam,
            weights: None,
            axis: 2,
            cache_capacity: None,
            model_config: None,
            clicks: ClickLoopConfig::default().clicks,
            first_mask_prompt: FirstMaskPrompt::default(),
            keep_all_clicks: false,
            logit_threshold: ClickLoopConfig::default().logit_threshold,
            crop_voxel_size: 1.0,
            crop_normalization: CropNormalization::default(),
            weight: 0.1,
            rampdown_epochs: 40.0,
            iterations_per_epoch: 150,
            refresh_interval: 1,
            start_iteration: 0,
            validation_dice: false,
            outside_prompts: OutsidePrompts::default(),
            loss: SamLoss::default(),
            embedding_dir: None,
            confidence: Confidence::default(),
            prompt_source: PromptSource::default(),
            prompts: PromptConfig::default(),
        }
    }
}

impl SamConfig {
    /// λ_s(step): SAM dominates early and fades as the consistency term ramps up.
    pub fn weight_at(&self, step: usize, max_steps: usize) -> f64 {
        let schedule = RampUp {
            weight: self.weight,
            rampup_epochs: self.rampdown_epochs,
            iterations_per_epoch: self.iterations_per_epoch,
        };
        schedule.at(max_steps.saturating_sub(step))
    }

    /// Load the configured generalist (frozen, inference only) on `device`.
    pub fn build_generalist(
        &self,
        device: &burn::tensor::Device,
    ) -> Result<Box<dyn Generalist>, GeneralistError> {
        if self.axis > 2 {
            return Err(GeneralistError::Model(format!(
                "[sam] axis must be 0, 1 or 2, got {}",
                self.axis
            )));
        }
        match self.generalist {
            GeneralistKind::LiteMedSam => {
                let spec = &crate::generalists::weights_cache::LITEMEDSAM;
                let (path, identity) = match &self.weights {
                    Some(path) => (path.clone(), format!("file:{}", path.display())),
                    None => (
                        crate::generalists::weights_cache::locate(spec)
                            .map_err(|e| GeneralistError::Model(e.to_string()))?,
                        spec.sha256[..12].to_string(),
                    ),
                };
                if self.model_config.is_some() {
                    return Err(GeneralistError::Model(
                        "[sam] model_config applies to generalist = \"sammed3d\" only".into(),
                    ));
                }
                let model = LiteMedSam::load(&path, device)?;
                let slices = LiteMedSamSlices::new(model, identity);
                let mut generalist = SliceWise::new(
                    slices,
                    self.axis,
                    self.prompts.clone(),
                    self.cache_capacity.unwrap_or(4096),
                );
                if let Some(dir) = &self.embedding_dir {
                    generalist = generalist.with_store(EmbeddingStore::new(dir));
                }
                Ok(Box::new(generalist))
            }
            GeneralistKind::SamMed3d => {
                if self.embedding_dir.is_some() {
                    return Err(GeneralistError::Model(
                        "[sam] embedding_dir applies to generalist = \"litemedsam\" only".into(),
                    ));
                }
                let path = self.weights.as_ref().ok_or_else(|| {
                    GeneralistError::Model(
                        "[sam] weights is required for generalist = \"sammed3d\": SAM-Med3D \
                         weights cannot be fetched, give the path of your checkpoint (e.g. \
                         sam_med3d_turbo.pth)"
                            .into(),
                    )
                })?;
                let config = match &self.model_config {
                    Some(json) => ModelConfig::from_json_file(json)?,
                    None => ModelConfig::vit_b_ori(),
                };
                let model = SamMed3d::load(path, &config, device)?;
                let clicks = ClickLoopConfig {
                    clicks: self.clicks,
                    threshold: self.prompts.threshold,
                    first_mask_prompt: self.first_mask_prompt,
                    keep_all_clicks: self.keep_all_clicks,
                    logit_threshold: self.logit_threshold,
                    crop_voxel_size: self.crop_voxel_size,
                    normalization: self.crop_normalization,
                };
                let generalist = SamMed3dClicks::new(
                    model,
                    format!("file:{}", path.display()),
                    clicks,
                    self.cache_capacity.unwrap_or(16),
                    device,
                )?;
                Ok(Box::new(generalist))
            }
        }
    }
}

/// Checkpoint section of the reused pseudo-labels: version 2 stores which voxels are known;
/// version 1 labels were known wherever they covered.
const LABELS_MAGIC: &[u8] = b"semisam-sam-labels-2";
const LABELS_MAGIC_V1: &[u8] = b"semisam-sam-labels-1";

/// Little-endian reads from a byte slice, `None` past its end.
struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: impl TryInto<usize>) -> Option<&'a [u8]> {
        let n = n.try_into().ok()?;
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<usize> {
        let bytes: [u8; 8] = self.take(8usize)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(bytes)).ok()
    }
}

/// A pseudo-label kept on the source grid of a case.
struct CachedLabel {
    step: usize,
    /// Source region the label covers.
    region: [Range<usize>; 3],
    /// Class index per voxel of `region`.
    classes: Array3<u8>,
    /// Voxels of `region` the term supervises.
    known: Array3<bool>,
}

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
    /// Provenance of the batch about to be trained on (set by [`SamAssist::prepare`]).
    items: Vec<ItemProvenance>,
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
            items: Vec::new(),
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
        let mut ids: Vec<&String> = self.labels.keys().collect();
        ids.sort();
        let mut bytes = LABELS_MAGIC.to_vec();
        bytes.extend((ids.len() as u64).to_le_bytes());
        for id in ids {
            let label = &self.labels[id];
            bytes.extend((id.len() as u64).to_le_bytes());
            bytes.extend(id.as_bytes());
            bytes.extend((label.step as u64).to_le_bytes());
            for range in &label.region {
                bytes.extend((range.start as u64).to_le_bytes());
                bytes.extend((range.end as u64).to_le_bytes());
            }
            bytes.extend(label.classes.iter());
            bytes.extend(label.known.iter().map(|&k| u8::from(k)));
        }
        bytes
    }

    /// Restore what [`SamAssist::export_labels`] wrote.
    pub fn import_labels(&mut self, bytes: &[u8]) -> Result<(), FrameworkError> {
        let corrupt = |what: &str| FrameworkError::Auxiliary {
            name: "sam".into(),
            message: format!("the checkpoint's pseudo-label section is corrupt ({what})"),
        };
        let mut reader = ByteReader(bytes);
        let header = reader
            .take(LABELS_MAGIC.len())
            .ok_or_else(|| corrupt("header"))?;
        let stores_known = match header {
            LABELS_MAGIC => true,
            LABELS_MAGIC_V1 => false,
            _ => return Err(corrupt("header")),
        };
        let count = reader.u64().ok_or_else(|| corrupt("count"))?;
        let mut labels = HashMap::new();
        for _ in 0..count {
            let length = reader.u64().ok_or_else(|| corrupt("case id"))?;
            let id = reader
                .take(length)
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .ok_or_else(|| corrupt("case id"))?;
            if !self.images.contains_key(&id) {
                return Err(corrupt(&format!(
                    "case {id} is not an unlabeled case of this run"
                )));
            }
            let step = reader.u64().ok_or_else(|| corrupt("step"))?;
            let mut region: [Range<usize>; 3] = [0..0, 0..0, 0..0];
            for range in &mut region {
                let start = reader.u64().ok_or_else(|| corrupt("region"))?;
                let end = reader.u64().ok_or_else(|| corrupt("region"))?;
                *range = start..end.max(start);
            }
            let shape = (region[0].len(), region[1].len(), region[2].len());
            let voxels = reader
                .take(shape.0 * shape.1 * shape.2)
                .ok_or_else(|| corrupt("classes"))?;
            let classes =
                Array3::from_shape_vec(shape, voxels.to_vec()).map_err(|_| corrupt("classes"))?;
            let known = if stores_known {
                let flags = reader
                    .take(classes.len())
                    .ok_or_else(|| corrupt("known voxels"))?;
                Array3::from_shape_vec(shape, flags.iter().map(|&k| k != 0).collect())
                    .map_err(|_| corrupt("known voxels"))?
            } else {
                Array3::from_elem(shape, true)
            };
            labels.insert(
                id,
                CachedLabel {
                    step,
                    region,
                    classes,
                    known,
                },
            );
        }
        if !reader.0.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        self.labels = labels;
        Ok(())
    }

    /// Make sure the item's case has a pseudo-label (recomputed, `Some(true)`, or reused,
    /// `Some(false)`) on the source region its patch covers.
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

    /// Class map of one item on the source grid region its patch covers, recomputed or reused.
    /// `None` when the student had no confident foreground for any class.
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

/// Class index of the largest probability per voxel, for `[C, X, Y, Z]` probabilities.
fn argmax_classes(probabilities: ndarray::ArrayView4<f32>) -> Array3<u8> {
    probabilities.map_axis(Axis(0), |p| {
        p.iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (c, &v)| if v > best.1 { (c, v) } else { best },
            )
            .0 as u8
    })
}

fn to_array5(tensor: Tensor<5>) -> Array5<f32> {
    let dims = tensor.dims();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 probabilities");
    Array5::from_shape_vec(dims, values).expect("tensor data matches its shape")
}

impl AuxiliaryLoss for SamAssist {
    fn name(&self) -> &str {
        "sam"
    }

    fn prepare(&mut self, items: &[ItemProvenance]) {
        self.items = items.to_vec();
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
        let unlabeled_items = self
            .items
            .get(batch.labeled_bs..)
            .unwrap_or_default()
            .to_vec();
        if unlabeled_items.len() != batch.unlabeled_count() {
            return Err(FrameworkError::Auxiliary {
                name: "sam".into(),
                message: format!(
                    "prepare() was given {} unlabeled items for a batch with {}",
                    unlabeled_items.len(),
                    batch.unlabeled_count()
                ),
            });
        }
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
        let probabilities = to_array5(student.clone().detach());
        let teacher = ctx.teacher_probabilities.clone().map(to_array5);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frameworks::{Batch, StepIndex};
    use crate::generalists::PseudoLabel;
    use burn::tensor::{Device, Int};
    use rand::SeedableRng;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers with the student's own confident voxels (or a fixed mask), counting its calls;
    /// with `answered`, only there.
    struct Echo {
        calls: Arc<AtomicUsize>,
        fixed: Option<Array3<bool>>,
        answered: Option<Array3<bool>>,
    }

    impl Generalist for Echo {
        fn identity(&self) -> String {
            "echo".into()
        }
        fn pseudo_label(
            &mut self,
            request: &PseudoLabelRequest<'_>,
        ) -> Result<Option<PseudoLabel>, GeneralistError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut mask = match &self.fixed {
                Some(fixed) => fixed.clone(),
                None => request.probability.mapv(|p| p > 0.5),
            };
            let known = self
                .answered
                .clone()
                .unwrap_or_else(|| Array3::from_elem(mask.raw_dim(), true));
            mask.zip_mut_with(&known, |m, &k| *m &= k);
            Ok(mask.iter().any(|&m| m).then_some(PseudoLabel {
                mask,
                known,
                prompts: 1,
            }))
        }
    }

    const SHAPE: [usize; 3] = [4, 6, 2];

    /// One labeled + one unlabeled item; the unlabeled item's foreground probability is `fg`.
    fn context_parts(fg: &Array3<f32>) -> (Batch, Tensor<5>) {
        let device = Device::default();
        let [x, y, z] = SHAPE;
        let n = x * y * z;
        let images = Tensor::<5>::zeros([2, 1, x, y, z], &device);
        let labels = Tensor::<4, Int>::zeros([1, x, y, z], &device);
        let batch = Batch::new(images, labels, 1).unwrap();
        let mut values = vec![0.5f32; 2 * n]; // labeled item: uniform
        values.extend(fg.iter().map(|p| 1.0 - p));
        values.extend(fg.iter().copied());
        let probabilities =
            Tensor::<5>::from_data(TensorData::new(values, [2, 2, x, y, z]), &device);
        (batch, probabilities)
    }

    fn provenance(transform: ItemTransform, labeled: bool) -> ItemProvenance {
        ItemProvenance {
            case_id: if labeled { "lab".into() } else { "unl".into() },
            labeled,
            transform,
        }
    }

    fn run(
        assist: &mut SamAssist,
        fg: &Array3<f32>,
        transform: ItemTransform,
        step: usize,
    ) -> LossTerms {
        run_with_teacher(assist, fg, None, transform, step)
    }

    /// As [`run`], with the teacher's foreground probability on the unlabeled item.
    fn run_with_teacher(
        assist: &mut SamAssist,
        fg: &Array3<f32>,
        teacher_fg: Option<&Array3<f32>>,
        transform: ItemTransform,
        step: usize,
    ) -> LossTerms {
        try_run_with_teacher(assist, fg, teacher_fg, transform, step).unwrap()
    }

    fn try_run_with_teacher(
        assist: &mut SamAssist,
        fg: &Array3<f32>,
        teacher_fg: Option<&Array3<f32>>,
        transform: ItemTransform,
        step: usize,
    ) -> Result<LossTerms, FrameworkError> {
        let (batch, probabilities) = context_parts(fg);
        let teacher_probabilities = teacher_fg.map(|t| {
            let [x, y, z] = SHAPE;
            let mut values: Vec<f32> = t.iter().map(|p| 1.0 - p).collect();
            values.extend(t.iter().copied());
            Tensor::<5>::from_data(TensorData::new(values, [1, 2, x, y, z]), &Device::default())
        });
        assist.prepare(&[
            provenance(ItemTransform::crop_only(SHAPE, [0; 3], SHAPE), true),
            provenance(transform, false),
        ]);
        let ctx = StepContext {
            index: StepIndex {
                step,
                max_steps: 6000,
            },
            batch: &batch,
            student_logits: probabilities.clone(),
            student_probabilities: probabilities,
            teacher_probabilities,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assist.loss_terms(&ctx, &mut rng)
    }

    fn diagnostic(terms: &LossTerms, name: &str) -> f64 {
        terms.diagnostics.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn assist(
        fixed: Option<Array3<bool>>,
        refresh_interval: usize,
    ) -> (SamAssist, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let generalist = Box::new(Echo {
            calls: Arc::clone(&calls),
            fixed,
            answered: None,
        });
        let config = SamConfig {
            refresh_interval,
            ..Default::default()
        };
        let image = Array3::from_shape_fn(SHAPE, |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        (
            SamAssist::new(config, generalist, [("unl".to_string(), image)]),
            calls,
        )
    }

    #[test]
    fn ramp_down_matches_the_semisam_schedule() {
        let config = SamConfig::default();
        assert!((config.weight_at(0, 6000) - 0.1).abs() < 1e-12);
        assert!((config.weight_at(3000, 6000) - 0.1 * (-1.25f64).exp()).abs() < 1e-12);
        assert!((config.weight_at(6000, 6000) - 0.1 * (-5f64).exp()).abs() < 1e-12);
        // ⌊(6000 - 750)/150⌋ = 35 → 0.5 λ = 0.0462 (SemiSAM's table)
        assert!((0.5 * config.weight_at(750, 6000) - 0.0462).abs() < 5e-5);
    }

    #[test]
    fn term_is_half_the_mean_squared_error_to_the_one_hot_pseudo_label() {
        let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
        let fixed = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
        let (mut assist, _) = assist(Some(fixed.clone()), 1);
        let terms = run(
            &mut assist,
            &fg,
            ItemTransform::crop_only(SHAPE, [0; 3], SHAPE),
            0,
        );
        let term = &terms.terms[0];
        assert_eq!(term.name, "sam");
        assert!((term.weight - 0.1).abs() < 1e-12);
        let mut sum = 0.0f64;
        for ((index, &p), &m) in fg.indexed_iter().zip(fixed.iter()) {
            let _ = index;
            let target = f64::from(u8::from(m));
            sum += (f64::from(1.0 - p) - (1.0 - target)).powi(2) + (f64::from(p) - target).powi(2);
        }
        let expected = 0.5 * sum / (2.0 * fg.len() as f64);
        let value = f64::from(term.value.clone().into_scalar::<f32>());
        assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
        assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
        assert_eq!(diagnostic(&terms, "sam/mean_area"), 2.0 * 6.0 * 2.0);
    }

    #[test]
    fn prompts_come_from_the_teacher_when_asked() {
        // The student is confident nowhere; the teacher is confident on the first two rows.
        let student = Array3::from_elem(SHAPE, 0.2f32);
        let teacher = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);

        let (mut from_student, _) = assist(None, 1);
        let terms = run_with_teacher(&mut from_student, &student, Some(&teacher), identity, 0);
        assert_eq!(diagnostic(&terms, "sam/items_with_term"), 0.0);

        let (mut from_teacher, _) = assist(None, 1);
        from_teacher.config.prompt_source = PromptSource::Teacher;
        let terms = run_with_teacher(&mut from_teacher, &student, Some(&teacher), identity, 0);
        assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
        // The echoing generalist answers the teacher's confident voxels.
        let (classes, _) = from_teacher.patch_label(&provenance(identity, false));
        for (&c, &t) in classes.iter().zip(teacher.iter()) {
            assert_eq!(c, u8::from(t > 0.5));
        }

        let (mut without_teacher, _) = assist(None, 1);
        without_teacher.config.prompt_source = PromptSource::Teacher;
        let error = try_run_with_teacher(&mut without_teacher, &student, None, identity, 0)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("needs a framework with a teacher"),
            "{error}"
        );
    }

    #[test]
    fn oracle_prompts_come_from_the_ground_truth_and_need_it() {
        // The student is confident everywhere; the label marks the first two rows only.
        let student = Array3::from_elem(SHAPE, 0.9f32);
        let label = Array3::from_shape_fn(SHAPE, |(i, _, _)| u8::from(i < 2));
        // Shifted into the padding and flipped: the label is looked up on the source grid.
        let transform = ItemTransform {
            flip: [true, false],
            ..ItemTransform::crop_only(SHAPE, [1, 0, 0], SHAPE)
        };

        let (oracle, _) = assist(None, 1);
        let mut oracle = oracle.with_ground_truth([("unl".to_string(), label.clone())]);
        oracle.config.prompt_source = PromptSource::GroundTruthOracle;
        let terms = run(&mut oracle, &student, transform, 0);
        assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
        let (classes, _) = oracle.patch_label(&provenance(transform, false));
        let expected = transform.apply(label.view());
        assert_eq!(classes, expected);
        assert_eq!(classes.iter().filter(|&&c| c == 1).count(), 6 * 2);

        let (mut missing, _) = assist(None, 1);
        missing.config.prompt_source = PromptSource::GroundTruthOracle;
        let error = try_run_with_teacher(&mut missing, &student, None, transform, 0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("case unl has no label"), "{error}");
    }

    #[test]
    fn augmented_patches_map_back_and_forth_exactly() {
        // source 6x4x3, patch 4x6x2 after one quarter turn and a flip, window partly in padding
        let source = [6, 4, 3];
        let transform = ItemTransform {
            source_shape: source,
            origin: [0, -1, 1],
            rot90: 1,
            flip: [true, false],
            patch_shape: SHAPE,
        };
        let fg = Array3::from_shape_fn(
            SHAPE,
            |(i, j, k)| if (i + j + k) % 3 == 0 { 0.9 } else { 0.2 },
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let image = Array3::<f32>::zeros(source);
        let mut assist = SamAssist::new(
            SamConfig::default(),
            Box::new(Echo {
                calls: Arc::clone(&calls),
                fixed: None,
                answered: None,
            }),
            [("unl".to_string(), image)],
        );
        let terms = run(&mut assist, &fg, transform, 0);
        // SAM echoes the student's confident voxels: wherever the window lies inside the volume,
        // the pseudo-label must equal the student's prediction on the patch.
        assert_eq!(diagnostic(&terms, "sam/agreement_dice"), 1.0);
        let (classes, known) = assist.patch_label(&provenance(transform, false));
        let inside = transform.apply(Array3::from_elem(source, true).view());
        assert_eq!(known, inside);
        for ((&c, &k), &p) in classes.iter().zip(known.iter()).zip(fg.iter()) {
            if k {
                assert_eq!(c, u8::from(p > 0.5));
            }
        }
    }

    #[test]
    fn refresh_interval_reuses_cached_pseudo_labels() {
        let fg = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
        let (mut assist, calls) = assist(None, 3);
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
        let refreshed: Vec<f64> = (0..7)
            .map(|step| diagnostic(&run(&mut assist, &fg, identity, step), "sam/refreshed"))
            .collect();
        assert_eq!(refreshed, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn no_term_and_no_generalist_call_before_the_start_iteration() {
        let fg = Array3::from_elem(SHAPE, 0.9f32);
        let (mut assist, calls) = assist(None, 1);
        assist.config.start_iteration = 3;
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
        let with_term: Vec<usize> = (0..5)
            .map(|step| run(&mut assist, &fg, identity, step).terms.len())
            .collect();
        assert_eq!(with_term, vec![0, 0, 0, 1, 1]);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn no_confident_foreground_means_no_term() {
        let fg = Array3::from_elem(SHAPE, 0.3f32);
        let (mut assist, _) = assist(None, 1);
        let terms = run(
            &mut assist,
            &fg,
            ItemTransform::crop_only(SHAPE, [0; 3], SHAPE),
            5,
        );
        assert!(terms.terms.is_empty());
        assert_eq!(diagnostic(&terms, "sam/items_without"), 1.0);
    }

    /// A term over an all-zero image whose generalist answers `fixed` (or echoes the student),
    /// only on `answered` when given.
    fn echo_assist(
        config: SamConfig,
        fixed: Option<Array3<bool>>,
        answered: Option<Array3<bool>>,
    ) -> SamAssist {
        let generalist = Box::new(Echo {
            calls: Arc::new(AtomicUsize::new(0)),
            fixed,
            answered,
        });
        let image = Array3::<f32>::zeros(SHAPE);
        SamAssist::new(config, generalist, [("unl".to_string(), image)])
    }

    /// Half the mean squared error of the two-class softmax `(1 - p, p)` to the one-hot `fixed`
    /// over the voxels where `over` holds.
    fn expected_term(fg: &Array3<f32>, fixed: &Array3<bool>, over: &Array3<bool>) -> f64 {
        let (mut sum, mut count) = (0.0f64, 0usize);
        ndarray::Zip::from(fg)
            .and(fixed)
            .and(over)
            .for_each(|&p, &m, &o| {
                if o {
                    let target = f64::from(u8::from(m));
                    sum += 2.0 * (f64::from(p) - target).powi(2);
                    count += 1;
                }
            });
        0.5 * sum / (2.0 * count as f64)
    }

    #[test]
    fn voxels_without_an_answer_are_ignored_unless_configured_as_background() {
        let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
        let fixed = Array3::from_shape_fn(SHAPE, |(i, j, _)| i < 2 && j < 4);
        // the generalist answered on the first half of the second axis only ("prompted slices")
        let answered = Array3::from_shape_fn(SHAPE, |(_, j, _)| j < 3);
        let everywhere = Array3::from_elem(SHAPE, true);
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
        for (policy, over) in [
            (OutsidePrompts::Ignore, &answered),
            (OutsidePrompts::Background, &everywhere),
        ] {
            let config = SamConfig {
                outside_prompts: policy,
                ..Default::default()
            };
            let mut assist = echo_assist(config, Some(fixed.clone()), Some(answered.clone()));
            let terms = run(&mut assist, &fg, identity, 0);
            let value = f64::from(terms.terms[0].value.clone().into_scalar::<f32>());
            let expected = expected_term(&fg, &(&fixed & &answered), over);
            assert!(
                (value - expected).abs() < 1e-6,
                "{policy:?}: {value} vs {expected}"
            );
            // the pseudo-label area counts answered foreground: i < 2, j < 3, both k
            assert_eq!(diagnostic(&terms, "sam/mean_area"), 12.0);
        }
    }

    /// The unlabeled item's term with SAM answering `fixed` everywhere, under `config`.
    fn term_value(config: SamConfig, fg: &Array3<f32>, teacher_fg: Option<&Array3<f32>>) -> f64 {
        let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
        let mut assist = echo_assist(config, Some(sam), None);
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
        let terms = run_with_teacher(&mut assist, fg, teacher_fg, identity, 0);
        f64::from(terms.terms[0].value.clone().into_scalar::<f32>())
    }

    #[test]
    fn agreement_weights_voxels_by_how_many_networks_side_with_sam() {
        let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
        let teacher_fg =
            Array3::from_shape_fn(SHAPE, |(i, j, _)| if i + j < 4 { 0.8 } else { 0.3 });
        let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
        let config = SamConfig {
            confidence: Confidence::Agreement,
            ..Default::default()
        };
        for teacher in [None, Some(&teacher_fg)] {
            let (mut weighted, mut total) = (0.0f64, 0.0f64);
            for (((&p, &m), &t), _) in fg.iter().zip(&sam).zip(&teacher_fg).zip(0..) {
                let agrees = |q: f32| f64::from(u8::from((q > 0.5) == m));
                let (agreeing, networks) = match teacher {
                    Some(_) => (agrees(p) + agrees(t), 2.0),
                    None => (agrees(p), 1.0),
                };
                let w = (1.0 + agreeing) / (1.0 + networks);
                weighted += w * 2.0 * (f64::from(p) - f64::from(u8::from(m))).powi(2);
                total += w;
            }
            let expected = 0.5 * weighted / (2.0 * total);
            let value = term_value(config.clone(), &fg, teacher);
            assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
        }
    }

    #[test]
    fn dice_ce_replaces_the_squared_error() {
        // The test context passes the probabilities (1 - p, p) as the student's logits.
        let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
        let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
        let (mut ce, mut intersection, mut denominator) = (0.0f64, 0.0f64, 0.0f64);
        for (&p, &m) in fg.iter().zip(&sam) {
            let p = f64::from(p);
            let q = p.exp() / (p.exp() + (1.0 - p).exp());
            let t = f64::from(u8::from(m));
            ce -= if m { q.ln() } else { (1.0 - q).ln() };
            intersection += q * t;
            denominator += q * q + t;
        }
        ce /= fg.len() as f64;
        let s = 1e-5;
        let dice = 1.0 - (2.0 * intersection + s) / (denominator + s);
        let config = SamConfig {
            loss: SamLoss::DiceCe,
            ..Default::default()
        };
        let value = term_value(config, &fg, None);
        let expected = 0.5 * (ce + dice);
        assert!((value - expected).abs() < 1e-5, "{value} vs {expected}");
    }

    #[test]
    fn reused_labels_round_trip_through_checkpoint_bytes() {
        let fg = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
        let answered = Array3::from_shape_fn(SHAPE, |(_, _, k)| k == 0);
        let make = || {
            let config = SamConfig {
                refresh_interval: 100,
                ..Default::default()
            };
            echo_assist(config, None, Some(answered.clone()))
        };
        let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
        let mut original = make();
        run(&mut original, &fg, identity, 0);
        let bytes = original.export_labels();
        let mut restored = make();
        restored.import_labels(&bytes).unwrap();
        let item = provenance(identity, false);
        assert_eq!(restored.patch_label(&item), original.patch_label(&item));
        assert_eq!(restored.patch_label(&item).1, answered);

        // a version-1 section (no known voxels) restores its labels as known where they cover
        let mut v1 = LABELS_MAGIC_V1.to_vec();
        v1.extend(&bytes[LABELS_MAGIC.len()..bytes.len() - answered.len()]);
        restored.import_labels(&v1).unwrap();
        assert_eq!(
            restored.patch_label(&item).1,
            Array3::from_elem(SHAPE, true)
        );

        let truncated = &bytes[..bytes.len() - 1];
        let err = restored.import_labels(truncated).unwrap_err().to_string();
        assert!(err.contains("corrupt (known voxels)"), "{err}");
    }

    #[test]
    fn held_out_dice_scores_the_pseudo_label_against_the_reference() {
        // Three classes; the echo generalist answers p > 0.5 per class.
        let [x, y, z] = SHAPE;
        let mut probabilities = ndarray::Array4::<f32>::zeros((3, x, y, z));
        let mut reference = Array3::<u8>::zeros(SHAPE);
        // Class 1: pseudo-label 4 voxels, reference 2 of them plus 2 others → Dice 2·2/8.
        for i in 0..4 {
            probabilities[[1, i, 0, 0]] = 0.9;
        }
        for voxel in [[0, 0, 0], [1, 0, 0], [0, 2, 1], [1, 2, 1]] {
            reference[voxel] = 1;
        }
        // Class 2: absent from both → Dice 1.
        let (mut assist, calls) = assist(None, 1);
        let image = Array3::<f32>::zeros(SHAPE);
        let dice = assist
            .held_out_dice("val", &image, &probabilities, &reference)
            .unwrap();
        assert!(
            (dice - (2.0 * 2.0 / 8.0 + 1.0) / 2.0).abs() < 1e-12,
            "{dice}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 2, "one request per class");
    }
}
