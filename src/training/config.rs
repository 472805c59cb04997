//! The typed run configuration (`run.toml`) and command-line overrides.
//!
//! Every section rejects unknown keys, so a typo is an error rather than a silently ignored
//! setting. Overrides (`--set section.key=value`) are applied to the TOML value tree *before*
//! deserialisation, so they are validated exactly like the file. To add a section (e.g. `[sam]`),
//! add a field with `#[serde(default)]` to [`RunConfig`] and a check to [`RunConfig::validate`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::data::augment::AugmentOptions;
use crate::data::folds::FoldSpec;
use crate::frameworks::FrameworkConfig;
use crate::inference::SlidingWindow;
use crate::inference::mirror::MirrorAxes;
use crate::inference::pipeline::PredictOptions;
use crate::inference::window_weights::WindowWeighting;
use crate::networks::NetworkConfig;

/// A problem with the configuration, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("override {0:?} is not of the form section.key=value")]
    OverrideSyntax(String),
    #[error("override {key:?}: {message}")]
    OverridePath { key: String, message: String },
    #[error("{origin}: invalid configuration: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub network: NetworkConfig,
    pub framework: FrameworkConfig,
    pub training: TrainingConfig,
    #[serde(default)]
    pub validation: ValidationConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    /// SAM assistance (SemiSAM); absent = the framework alone.
    #[serde(default)]
    pub sam: Option<crate::frameworks::sam_assist::SamConfig>,
}

/// How the cases of a dataset are divided into labeled and unlabeled ones (without a
/// `splits_file`). In both, the validation cases are the last `validation` labeled cases (with
/// `folds`: fold `fold`, and the other labeled cases are taken in the folds' order instead of
/// the list's) and every image without a label is unlabeled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// A user's data: every labeled case is labeled (at most `labeled` of them, the first in list
    /// order, when set; the others are left out), the images without a label are unlabeled.
    #[default]
    All,
    /// The benchmark protocol: the first `labeled` cases of the training list are labeled, the
    /// labeled cases between them and the validation cases are used without their labels.
    Paper,
}

/// Which cases are used and how they are prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset root (UA-MT h5 root or MSD / nnU-Net folder), relative to the working directory.
    pub root: PathBuf,
    /// A plain folder of images without labels, added as unlabeled cases (NIfTI, `<ID>.h5` or
    /// `<ID>/mri_norm2.h5`, `.npy`).
    #[serde(default)]
    pub unlabeled_root: Option<PathBuf>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Number of labeled cases: required by `paper` (the first N of the training list, in file
    /// order); a cap under `all` (every labeled case when absent).
    #[serde(default)]
    pub labeled: Option<usize>,
    /// Number of validation cases, taken from the end of the labeled training cases.
    #[serde(default)]
    pub validation: usize,
    /// Number of unlabeled cases, the first N of them (`paper`: the labeled cases used without
    /// their labels, then the images without a label); all when absent.
    #[serde(default)]
    pub unlabeled: Option<usize>,
    /// An explicit splits JSON (labeled / unlabeled / validation / test); overrides the protocol
    /// and the counts.
    #[serde(default)]
    pub splits_file: Option<PathBuf>,
    /// Cross-validation: the labeled cases are shuffled with `fold_seed` and cut into `folds`
    /// folds; fold `fold` (0-based) validates and the other folds give the labeled cases (see
    /// `crate::data::folds`). Set both or neither; exclusive with `splits_file` and
    /// `validation`.
    #[serde(default)]
    pub folds: Option<usize>,
    #[serde(default)]
    pub fold: Option<usize>,
    /// The shuffle's seed, apart from `training.seed` so that every seed trains on the same
    /// folds (nnU-Net's 12345 by default).
    #[serde(default = "fold_seed_default")]
    pub fold_seed: u64,
    /// Per-case intensity normalisation (`{ method = "z_score" }` by default).
    #[serde(default)]
    pub normalization: Normalization,
    /// Integer down-sampling factor applied to every volume before training (1 = none); the
    /// CPU profiles use 2 to cut the cost by 8.
    #[serde(default = "one")]
    pub downsample: usize,
    /// Voxel spacing (mm) to use when the files store none (UA-MT h5: 0.625 mm for LA).
    #[serde(default)]
    pub spacing: Option<[f64; 3]>,
    /// Resample every volume to this voxel spacing (mm) before training and prediction
    /// (`semisam plan` chooses it); absent: volumes keep their own grid.
    #[serde(default)]
    pub target_spacing: Option<[f64; 3]>,
    /// Imaging modality of the training images (`dataset.json`'s, e.g. "MRI" or "CT");
    /// `predict` refuses inputs declared with another one.
    #[serde(default)]
    pub modality: Option<String>,
}

/// Optimiser, schedule, batches and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    pub iterations: usize,
    pub batch_size: usize,
    pub labeled_bs: usize,
    /// Training patch `[x, y, z]` (also the inference window).
    pub patch: [usize; 3],
    pub lr: f64,
    #[serde(default = "momentum_default")]
    pub momentum: f64,
    #[serde(default = "weight_decay_default")]
    pub weight_decay: f64,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default = "seed_default")]
    pub seed: u64,
    /// Write `checkpoints/last.ckpt` every this many iterations (0: only at the end).
    #[serde(default = "checkpoint_every_default")]
    pub checkpoint_every: usize,
    #[serde(default)]
    pub augment: AugmentOptions,
}

/// Learning-rate schedule over iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    /// lr · gamma^⌊t / every⌋ (UA-MT: x0.1 every 2500).
    Step {
        every: usize,
        gamma: f64,
    },
    /// lr · (1 - t / iterations)^power.
    Poly {
        power: f64,
    },
    Constant,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Step {
            every: 2500,
            gamma: 0.1,
        }
    }
}

impl LrSchedule {
    /// The learning rate at iteration `step` (0-based) of `iterations`.
    pub fn lr(&self, base: f64, step: usize, iterations: usize) -> f64 {
        match *self {
            LrSchedule::Step { every, gamma } => base * gamma.powi((step / every.max(1)) as i32),
            LrSchedule::Poly { power } => {
                base * (1.0 - step as f64 / iterations.max(1) as f64)
                    .max(0.0)
                    .powf(power)
            }
            LrSchedule::Constant => base,
        }
    }
}

/// Validation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Validate every this many iterations (0: never; the final model is still evaluated).
    #[serde(default)]
    pub every: usize,
    /// Sliding-window stride; the window is the training patch.
    #[serde(default)]
    pub stride: Option<[usize; 3]>,
}

/// Prediction defaults stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Sliding-window stride (LA default 18/18/4); half the patch when absent.
    #[serde(default)]
    pub stride: Option<[usize; 3]>,
    /// Keep only the largest connected component of each foreground class.
    #[serde(default)]
    pub lcc: bool,
    /// How overlapping windows are averaged (`uniform`, the default, or `gaussian`); validation
    /// during training uses the same.
    #[serde(default)]
    pub weighting: WindowWeighting,
    /// Mirror test-time augmentation (2^k passes per window for k mirrored axes).
    #[serde(default)]
    pub tta: bool,
    /// Axes (0 = x, 1 = y, 2 = z) mirrored by `tta`; default: those the training flipped
    /// (`training.augment.flip` flips x and y).
    #[serde(default)]
    pub mirror_axes: Option<Vec<usize>>,
}

fn one() -> usize {
    1
}
fn momentum_default() -> f64 {
    0.9
}
fn weight_decay_default() -> f64 {
    1e-4
}
fn seed_default() -> u64 {
    1337
}
fn checkpoint_every_default() -> usize {
    500
}
fn fold_seed_default() -> u64 {
    crate::data::folds::DEFAULT_FOLD_SEED
}

impl DataConfig {
    /// The cross-validation fold of the run, if it is one (validated with the configuration).
    pub fn fold_spec(&self) -> Option<FoldSpec> {
        Some(FoldSpec {
            fold: self.fold?,
            folds: self.folds?,
            seed: self.fold_seed,
        })
    }

    /// `data.folds`, `data.fold` and what they exclude.
    fn validate_folds(&self) -> Result<(), String> {
        let Some(spec) = self.fold_spec() else {
            if self.fold.is_some() || self.folds.is_some() {
                return Err(
                    "data.fold and data.folds go together (e.g. --fold 0 --folds 5): set both or neither"
                        .into(),
                );
            }
            return Ok(());
        };
        spec.check()?;
        if let Some(file) = &self.splits_file {
            return Err(format!(
                "data.splits_file ({}) and data.folds both choose the cases: use one",
                file.display()
            ));
        }
        if self.validation != 0 {
            return Err(format!(
                "data.validation = {} and data.folds both choose the validation cases (fold data.fold validates): set data.validation = 0 (--set data.validation=0)",
                self.validation
            ));
        }
        Ok(())
    }
}

impl RunConfig {
    /// Whether SAM is prompted from the unlabeled cases' ground truth (analysis only): the one
    /// setting under which their labels are read.
    pub fn uses_ground_truth_oracle(&self) -> bool {
        self.sam.as_ref().is_some_and(|sam| {
            sam.prompt_source == crate::frameworks::sam_assist::PromptSource::GroundTruthOracle
        })
    }

    /// Read a configuration file and apply `section.key=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, overrides, &path.display().to_string())
    }

    /// Parse a configuration; `origin` names it in error messages.
    pub fn from_toml_str(
        text: &str,
        overrides: &[String],
        origin: &str,
    ) -> Result<Self, ConfigError> {
        let mut tree: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: describe_toml_error(&e, Some(text)),
        })?;
        for item in overrides {
            apply_override(&mut tree, item)?;
        }
        // Deserialising the text itself keeps the error's position in it; once overrides have
        // changed the tree, only the key path can name where a value is wrong.
        let typed = if overrides.is_empty() {
            serde_path_to_error::deserialize(toml::Deserializer::new(text))
        } else {
            serde_path_to_error::deserialize(toml::Value::Table(tree))
        };
        let origin = if overrides.is_empty() {
            origin.to_owned()
        } else {
            format!("{origin} with overrides {}", overrides.join(" "))
        };
        let config: RunConfig = typed.map_err(|e| {
            let position = overrides.is_empty().then_some(text);
            let message = describe_toml_error(e.inner(), position);
            let path = e.path().to_string();
            ConfigError::Parse {
                origin: origin.clone(),
                // A check of a whole section names its keys itself (`[sam] axes ...`).
                message: if path == "." || path.is_empty() || message.starts_with('[') {
                    message
                } else {
                    format!("{path}: {message}")
                },
            }
        })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(config)
    }

    /// The configuration as TOML (what is saved into the run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("every configuration value is representable in TOML")
    }

    /// The keys whose values differ from `other`'s, as `key: this value, other value`, in the
    /// order of the TOML form.
    pub fn differences(&self, other: &RunConfig) -> Vec<String> {
        fn as_table(config: &RunConfig) -> toml::Table {
            toml::Table::try_from(config).expect("a configuration serialises to a TOML table")
        }
        fn walk(
            prefix: &str,
            a: Option<&toml::Value>,
            b: Option<&toml::Value>,
            out: &mut Vec<String>,
        ) {
            match (a, b) {
                (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                    keys.sort();
                    keys.dedup();
                    for key in keys {
                        let path = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&path, a.get(key), b.get(key), out);
                    }
                }
                (a, b) if a != b => {
                    let show = |v: Option<&toml::Value>| {
                        v.map_or_else(|| "unset".to_string(), |v| v.to_string())
                    };
                    out.push(format!("{prefix}: {}, {}", show(a), show(b)));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        let (a, b) = (as_table(self), as_table(other));
        walk(
            "",
            Some(&toml::Value::Table(a)),
            Some(&toml::Value::Table(b)),
            &mut out,
        );
        out
    }

    /// Checks that need more than one field or a range.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.training;
        if t.iterations == 0 {
            return Err("training.iterations must be positive".into());
        }
        if t.batch_size == 0 || t.labeled_bs == 0 || t.labeled_bs > t.batch_size {
            return Err(format!(
                "training.labeled_bs ({}) must be between 1 and training.batch_size ({})",
                t.labeled_bs, t.batch_size
            ));
        }
        let semi_supervised = !matches!(self.framework, FrameworkConfig::Supervised { .. });
        if semi_supervised && t.labeled_bs == t.batch_size {
            return Err(format!(
                "a semi-supervised framework needs unlabeled items: training.batch_size ({}) must exceed training.labeled_bs",
                t.batch_size
            ));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("training.lr must be positive, got {}", t.lr));
        }
        if !(0.0..1.0).contains(&t.momentum) || t.weight_decay < 0.0 {
            return Err(
                "training.momentum must be in [0, 1) and training.weight_decay non-negative".into(),
            );
        }
        if let LrSchedule::Step { every: 0, .. } = t.lr_schedule {
            return Err("training.lr_schedule.every must be positive".into());
        }
        self.network.validate().map_err(|e| match e {
            crate::networks::NetworkError::Config(message) => format!("[network] {message}"),
            other => format!("[network] {other}"),
        })?;
        let multiples = self.network.side_multiples();
        if t.patch
            .iter()
            .zip(multiples)
            .any(|(&p, m)| p == 0 || p % m != 0)
        {
            let sides = if multiples.iter().all(|&m| m == multiples[0]) {
                format!("every side must be a positive multiple of {}", multiples[0])
            } else {
                format!(
                    "its sides must be positive multiples of {} x {} x {} (network.poolings {:?})",
                    multiples[0], multiples[1], multiples[2], self.network.poolings
                )
            };
            return Err(format!(
                "training.patch {:?}: {sides} for {:?}",
                t.patch, self.network.architecture
            ));
        }
        let d = &self.data;
        if d.labeled == Some(0) {
            return Err("data.labeled must be at least 1".into());
        }
        if d.protocol == Protocol::Paper && d.labeled.is_none() && d.splits_file.is_none() {
            return Err(
                "data.protocol = \"paper\" needs data.labeled (the first N of the training list)"
                    .into(),
            );
        }
        d.validate_folds()?;
        d.normalization
            .check()
            .map_err(|e| format!("data.normalization: {e}"))?;
        if self.data.downsample == 0 {
            return Err("data.downsample must be at least 1".into());
        }
        for (name, spacing) in [
            ("data.spacing", self.data.spacing),
            ("data.target_spacing", self.data.target_spacing),
        ] {
            if let Some(spacing) = spacing
                && !spacing.iter().all(|&s| s > 0.0 && s.is_finite())
            {
                return Err(format!(
                    "{name} {spacing:?}: every spacing must be finite and positive"
                ));
            }
        }
        if self.data.target_spacing.is_some() && self.data.downsample != 1 {
            return Err(
                "data.target_spacing and data.downsample both change the grid: set one".into(),
            );
        }
        for (name, stride) in [
            ("validation.stride", self.validation.stride),
            ("inference.stride", self.inference.stride),
        ] {
            if let Some(s) = stride {
                if s.contains(&0) {
                    return Err(format!("{name} {s:?} must be positive"));
                }
                if let Err(message) = crate::inference::check_stride(s, self.training.patch) {
                    return Err(format!("{name}: {message}"));
                }
            }
        }
        let mirror = self.mirror_axes()?;
        if self.inference.tta && mirror.is_empty() {
            return Err(
                "inference.tta needs axes to mirror: training.augment.flip is off, so set inference.mirror_axes (e.g. [0, 1])"
                    .into(),
            );
        }
        let n = &self.network;
        if n.in_channels != 1 || n.base_filters == 0 || !(2..=256).contains(&n.num_classes) {
            return Err(format!(
                "network: in_channels must be 1 (single-modality volumes), base_filters positive and num_classes in 2..=256; got {}, {}, {}",
                n.in_channels, n.base_filters, n.num_classes
            ));
        }
        if let Some(sam) = &self.sam
            && sam.prompt_source == crate::frameworks::sam_assist::PromptSource::Teacher
            && !semi_supervised
        {
            return Err(
                "sam.prompt_source = \"teacher\" needs a framework with a teacher (mean_teacher, ua_mt)"
                    .into(),
            );
        }
        self.framework.build().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// How the run's volumes are prepared for the network.
    pub fn preparation(&self) -> crate::data::Preparation {
        crate::data::Preparation {
            normalization: self.data.normalization,
            downsample: self.data.downsample,
            target_spacing: self.data.target_spacing,
            fallback_spacing: self.data.spacing,
        }
    }

    /// What the trained network expects of a volume to predict.
    pub fn model_input(&self) -> crate::inference::ModelInput {
        crate::inference::ModelInput {
            preparation: self.preparation(),
            channels: self.network.in_channels,
            window: self.training.patch,
            classes: self.network.num_classes,
        }
    }

    /// The prediction settings the run's `[inference]` section asks for, one window per forward
    /// pass.
    pub fn predict_options(&self) -> PredictOptions {
        PredictOptions {
            stride: self.inference_stride(),
            largest_component: self.inference.lcc,
            window_batch: 1,
            weighting: self.inference.weighting,
            // Validation has checked that `tta` comes with axes to mirror.
            mirror: if self.inference.tta {
                self.mirror_axes().unwrap_or(MirrorAxes::NONE)
            } else {
                MirrorAxes::NONE
            },
        }
    }

    /// The sliding-window stride for inference: configured, or half the patch.
    pub fn inference_stride(&self) -> [usize; 3] {
        self.inference
            .stride
            .unwrap_or(self.training.patch.map(|p| (p / 2).max(1)))
    }

    /// The axes mirror test-time augmentation may use: `inference.mirror_axes`, else the x-y
    /// flips the training drew (none when it drew none).
    pub fn mirror_axes(&self) -> Result<MirrorAxes, String> {
        match &self.inference.mirror_axes {
            Some(list) => {
                MirrorAxes::from_list(list).map_err(|e| format!("inference.mirror_axes: {e}"))
            }
            None if self.training.augment.flip => Ok(MirrorAxes([true, true, false])),
            None => Ok(MirrorAxes::NONE),
        }
    }

    /// The sliding-window stride for validation: configured, else the inference stride.
    pub fn validation_stride(&self) -> [usize; 3] {
        self.validation
            .stride
            .unwrap_or_else(|| self.inference_stride())
    }

    /// The sliding window of validation: the training patch, the validation stride and the
    /// inference weighting, without test-time augmentation (it would multiply the cost).
    pub fn validation_window(&self) -> SlidingWindow {
        SlidingWindow {
            weighting: self.inference.weighting,
            ..SlidingWindow::new(self.training.patch, self.validation_stride())
        }
    }
}

/// Set `a.b.c = value` in the tree. The value is parsed as TOML (`0.02`, `[1, 2]`, `true`,
/// `"text"`); anything that does not parse is taken as a bare string (`kind=ua_mt`).
fn apply_override(tree: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| ConfigError::OverrideSyntax(item.to_owned()))?;
    let key = key.trim();
    let path: Vec<&str> = key.split('.').map(str::trim).collect();
    if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::OverrideSyntax(item.to_owned()));
    }
    let value = parse_value(raw.trim());
    let (last, parents) = path.split_last().expect("at least two parts");
    // A [sam] section turns the SAM term on: a setting meant for SemiSAM runs only (an
    // embedding folder, a weight) must not turn a plain run into one with default settings.
    if path[0] == "sam" && !tree.contains_key("sam") && path[1..] != ["generalist"] {
        return Err(ConfigError::OverridePath {
            key: key.to_owned(),
            message: "the configuration has no [sam] section, and creating one turns SAM \
                      pseudo-labels on with default settings; to turn them on, set \
                      sam.generalist first (--set sam.generalist=litemedsam)"
                .into(),
        });
    }
    let mut table = tree;
    for (depth, part) in parents.iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::OverridePath {
                key: key.to_owned(),
                message: format!("{} is a value, not a section", path[..=depth].join(".")),
            })?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// A TOML error's message, with its line and column when `text` is the document it points into.
fn describe_toml_error(error: &toml::de::Error, text: Option<&str>) -> String {
    let message = error.message().trim_end().to_owned();
    match (error.span(), text) {
        (Some(span), Some(text)) if text.is_char_boundary(span.start) => {
            let before = &text[..span.start];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        _ => message,
    }
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[data]
root = "data/LA"
labeled = 2
validation = 4

[network]
architecture = "v_net"
in_channels = 1
num_classes = 2
base_filters = 8
dropout = true

[framework]
kind = "mean_teacher"

[training]
iterations = 100
batch_size = 4
labeled_bs = 1
patch = [64, 64, 48]
lr = 0.01
"#;

    fn parse(overrides: &[&str]) -> Result<RunConfig, ConfigError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RunConfig::from_toml_str(MINIMAL, &overrides, "run.toml")
    }

    #[test]
    fn a_wrongly_typed_value_is_named_by_key_and_line() {
        let text = MINIMAL.replace("num_classes = 2", "num_classes = \"two\"");
        let message = RunConfig::from_toml_str(&text, &[], "run.toml")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("run.toml: network.num_classes: "),
            "{message}"
        );
        assert!(message.contains("expected usize"), "{message}");
        assert!(message.contains("(line 10, column 15)"), "{message}");

        let message = parse(&["training.lr=\"fast\""]).unwrap_err().to_string();
        assert!(message.contains("training.lr: "), "{message}");
        assert!(message.contains("expected f64"), "{message}");
    }

    #[test]
    fn a_syntax_error_is_located() {
        let text = MINIMAL.replace("labeled_bs = 1", "labeled_bs = ");
        let message = RunConfig::from_toml_str(&text, &[], "run.toml")
            .unwrap_err()
            .to_string();
        assert!(message.contains("(line 20, column 14)"), "{message}");
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.training.momentum, 0.9);
        assert_eq!(c.training.weight_decay, 1e-4);
        assert_eq!(c.training.seed, 1337);
        assert_eq!(
            c.training.lr_schedule,
            LrSchedule::Step {
                every: 2500,
                gamma: 0.1
            }
        );
        let FrameworkConfig::MeanTeacher(mt) = &c.framework else {
            panic!("{:?}", c.framework)
        };
        assert_eq!(mt.teacher.consistency.at(0), 0.1 * (-5.0f64).exp());
        assert_eq!(mt.teacher.ema_decay, 0.99);
        assert_eq!(c.data.normalization, Normalization::ZScore);
        assert_eq!(c.data.protocol, Protocol::All);
        assert_eq!(c.data.unlabeled_root, None);
        assert_eq!(c.inference_stride(), [32, 32, 24]);
        assert_eq!(c.inference.weighting, WindowWeighting::Uniform);
        assert!(!c.inference.tta);
        assert_eq!(c.mirror_axes().unwrap(), MirrorAxes([true, true, false]));
    }

    #[test]
    fn inference_weighting_and_mirror_axes_are_validated() {
        let c = parse(&["inference.weighting=gaussian", "inference.mirror_axes=[2]"]).unwrap();
        assert_eq!(c.inference.weighting, WindowWeighting::Gaussian);
        assert_eq!(c.mirror_axes().unwrap(), MirrorAxes([false, false, true]));
        let err = parse(&["inference.weighting=box"]).unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `box`, expected `gaussian` or `uniform`"),
            "{err}"
        );
        let err = parse(&["inference.mirror_axes=[0, 3]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("inference.mirror_axes: mirror axis 3 is not a spatial axis (0, 1 or 2)"),
            "{err}"
        );
        let err = parse(&[
            "inference.tta=true",
            "training.augment={ rot90 = true, flip = false }",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("inference.tta needs axes to mirror"), "{err}");
        parse(&[
            "inference.tta=true",
            "training.augment={ rot90 = true, flip = false }",
            "inference.mirror_axes=[0]",
        ])
        .unwrap();
    }

    #[test]
    fn saved_config_parses_back_identically() {
        let c = parse(&[
            "training.lr_schedule.kind=poly",
            "training.lr_schedule.power=0.9",
        ])
        .unwrap();
        assert_eq!(
            RunConfig::from_toml_str(&c.to_toml(), &[], "saved").unwrap(),
            c
        );
    }

    #[test]
    fn unknown_keys_are_rejected_in_file_and_overrides() {
        let text = MINIMAL.replace("lr = 0.01", "lr = 0.01\nlearning_rate = 0.1");
        let err = RunConfig::from_toml_str(&text, &[], "run.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("run.toml: training.learning_rate: unknown field `learning_rate`"),
            "{err}"
        );
        assert!(err.ends_with("(line 23, column 1)"), "{err}");
        let err = parse(&["training.lrr=0.1"]).unwrap_err().to_string();
        assert!(
            err.contains("with overrides training.lrr=0.1: training.lrr: unknown field `lrr`"),
            "{err}"
        );
        let err = parse(&["augmentation.rot90=true"]).unwrap_err().to_string();
        assert!(err.contains("unknown field `augmentation`"), "{err}");
        let err = parse(&["sam.generalist=litemedsam", "sam.weigth=1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `weigth`"), "{err}");
    }

    #[test]
    fn the_paper_protocol_needs_a_labeled_count_and_all_takes_it_as_a_cap() {
        let c = parse(&["data.protocol=paper", "data.unlabeled_root=\"pool\""]).unwrap();
        assert_eq!(c.data.protocol, Protocol::Paper);
        assert_eq!(c.data.labeled, Some(2));
        assert_eq!(c.data.unlabeled_root, Some(PathBuf::from("pool")));
        let text = MINIMAL.replace("labeled = 2\n", "protocol = \"paper\"\n");
        let err = RunConfig::from_toml_str(&text, &[], "run.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs data.labeled"), "{err}");
        let text = MINIMAL.replace("labeled = 2\n", "");
        assert_eq!(
            RunConfig::from_toml_str(&text, &[], "run.toml")
                .unwrap()
                .data
                .labeled,
            None
        );
        let err = parse(&["data.labeled=0"]).unwrap_err().to_string();
        assert!(err.contains("data.labeled must be at least 1"), "{err}");
        let err = parse(&["data.protocol=half"]).unwrap_err().to_string();
        assert!(err.contains("unknown variant `half`"), "{err}");
    }

    #[test]
    fn differences_name_each_changed_key_with_both_values() {
        let a = parse(&[]).unwrap();
        assert!(a.differences(&a).is_empty());
        let b = parse(&["training.iterations=6", "data.spacing=[1.0, 1.0, 2.0]"]).unwrap();
        assert_eq!(
            a.differences(&b),
            [
                "data.spacing: unset, [1.0, 1.0, 2.0]".to_string(),
                format!("training.iterations: {}, 6", a.training.iterations),
            ]
        );
    }

    #[test]
    fn spacings_must_be_finite_and_positive() {
        for (set, expected) in [
            (
                "data.spacing=[0.0, 1.0, 1.0]",
                "data.spacing [0.0, 1.0, 1.0]",
            ),
            (
                "data.spacing=[-1.0, 1.0, 1.0]",
                "data.spacing [-1.0, 1.0, 1.0]",
            ),
            (
                "data.spacing=[nan, 1.0, 1.0]",
                "data.spacing [NaN, 1.0, 1.0]",
            ),
            (
                "data.target_spacing=[1.0, inf, 1.0]",
                "data.target_spacing [1.0, inf, 1.0]",
            ),
        ] {
            let err = parse(&[set]).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "{expected}: every spacing must be finite and positive"
                )),
                "{set}: {err}"
            );
        }
        assert_eq!(
            parse(&["data.spacing=[0.5, 0.5, 2.0]"])
                .unwrap()
                .data
                .spacing,
            Some([0.5, 0.5, 2.0])
        );
    }

    #[test]
    fn normalization_parameters_are_checked_with_the_configuration() {
        let err = parse(&[
            "data.normalization={ method = \"clip_z_score\", lower = 5.0, upper = -5.0, mean = 0.0, std = 0.0 }",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data.normalization: clip_z_score needs lower < upper"),
            "{err}"
        );
        let err = parse(&[
            "data.normalization={ method = \"percentile_clip\", lower = 99.5, upper = 0.5 }",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data.normalization: percentile clipping needs 0 <= lower < upper <= 100"),
            "{err}"
        );
    }

    #[test]
    fn folds_are_validated_with_the_configuration() {
        assert_eq!(parse(&[]).unwrap().data.fold_spec(), None);
        let folds = ["data.validation=0", "data.folds=5", "data.fold=4"];
        let c = parse(&folds).unwrap();
        assert_eq!(
            c.data.fold_spec(),
            Some(FoldSpec {
                fold: 4,
                folds: 5,
                seed: 12345
            })
        );
        assert_eq!(
            RunConfig::from_toml_str(&c.to_toml(), &[], "saved").unwrap(),
            c
        );
        let seeded = parse(&[&folds[..], &["data.fold_seed=7"]].concat()).unwrap();
        assert_eq!(seeded.data.fold_spec().unwrap().seed, 7);
        let err = |extra: &[&str]| {
            parse(&[&folds[..], extra].concat())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&["data.fold=5"])
                .ends_with("data.fold = 5 but data.folds = 5: folds are numbered 0 to 4"),
            "{}",
            err(&["data.fold=5"])
        );
        assert!(
            err(&["data.folds=1", "data.fold=0"])
                .ends_with("data.folds = 1: a cross-validation needs at least 2 folds")
        );
        assert!(
            err(&["data.splits_file=\"s.json\""]).ends_with(
                "data.splits_file (s.json) and data.folds both choose the cases: use one"
            )
        );
        assert!(err(&["data.validation=4"]).ends_with(
            "data.validation = 4 and data.folds both choose the validation cases (fold data.fold validates): set data.validation = 0 (--set data.validation=0)"
        ));
        for half in [
            ["data.validation=0", "data.fold=1"],
            ["data.validation=0", "data.folds=3"],
        ] {
            let err = parse(&half).unwrap_err().to_string();
            assert!(err.ends_with("data.fold and data.folds go together (e.g. --fold 0 --folds 5): set both or neither"), "{err}");
        }
        let err = parse(&["data.folds=-1"]).unwrap_err().to_string();
        assert!(err.contains("expected usize"), "{err}");
    }

    #[test]
    fn teacher_prompts_need_a_teacher() {
        assert!(parse(&["sam.generalist=litemedsam", "sam.prompt_source=\"teacher\""]).is_ok());
        let err = parse(&[
            "framework.kind=supervised",
            "sam.generalist=litemedsam",
            "sam.prompt_source=\"teacher\"",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs a framework with a teacher"), "{err}");
    }

    #[test]
    fn overrides_are_typed_and_validated() {
        let c = parse(&[
            "training.lr=0.02",
            "framework.kind=ua_mt",
            "training.patch=[32, 32, 16]",
        ])
        .unwrap();
        assert_eq!(c.training.lr, 0.02);
        assert!(
            matches!(c.framework, FrameworkConfig::UaMt(_)),
            "{:?}",
            c.framework
        );
        assert_eq!(c.training.patch, [32, 32, 16]);
        let err = parse(&["training.lr=fast"]).unwrap_err().to_string();
        assert!(
            err.contains("invalid type: string \"fast\", expected f64"),
            "{err}"
        );
        let err = parse(&["training.patch=[30, 32, 16]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("every side must be a positive multiple of 16"),
            "{err}"
        );
        assert!(matches!(
            parse(&["training"]),
            Err(ConfigError::OverrideSyntax(_))
        ));
        let err = parse(&["training.lr.x=1"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "override \"training.lr.x\": training.lr is a value, not a section"
        );
    }

    #[test]
    fn poolings_are_validated_with_the_patch() {
        let unet = [
            "network.architecture=\"unet3d\"",
            "network.poolings=[4, 4, 0]",
        ];
        let c = parse(&[unet[0], unet[1], "training.patch=[64, 64, 3]"]).unwrap();
        assert_eq!(c.network.side_multiples(), [16, 16, 1]);
        assert_eq!(parse(&[]).unwrap().network.poolings, [4, 4, 4]);
        let err = parse(&[unet[0], unet[1], "training.patch=[64, 40, 1]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "training.patch [64, 40, 1]: its sides must be positive multiples of 16 x 16 x 1 (network.poolings [4, 4, 0])"
            ),
            "{err}"
        );
        let err = parse(&[unet[0], "network.poolings=[5, 4, 0]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[network] poolings [5, 4, 0]: the networks have 4 levels"),
            "{err}"
        );
        let err = parse(&["network.poolings=[4, 4, 0]", "training.patch=[64, 64, 1]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the V-Net down-samples every axis 4 times")
                && err.contains("use architecture = \"unet3d\""),
            "{err}"
        );
    }

    #[test]
    fn only_sam_generalist_creates_the_sam_section() {
        let err = parse(&["sam.embedding_dir=\"emb\""])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "override \"sam.embedding_dir\": the configuration has no [sam] section"
            ),
            "{err}"
        );
        assert!(parse(&[]).unwrap().sam.is_none());
        let on = parse(&["sam.generalist=litemedsam", "sam.weight=0.3"]).unwrap();
        assert_eq!(on.sam.expect("sam.generalist turns SAM on").weight, 0.3);
    }

    #[test]
    fn a_stride_longer_than_the_patch_is_refused() {
        // the patch is 64x64x48
        parse(&["inference.stride=[64, 64, 48]"]).unwrap();
        let err = parse(&["validation.stride=[32, 65, 24]"])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("validation.stride: stride [32, 65, 24] is longer than the window [64, 64, 48] along axis 1: voxels between windows would go unpredicted (at most the window; half of it is the default)"),
            "{err}"
        );
        assert!(parse(&["inference.stride=[1000, 8, 8]"]).is_err());
    }

    #[test]
    fn semi_supervised_framework_needs_unlabeled_items() {
        let err = parse(&["training.labeled_bs=4"]).unwrap_err().to_string();
        assert!(err.contains("must exceed training.labeled_bs"), "{err}");
        parse(&["training.labeled_bs=4", "framework.kind=supervised"]).unwrap();
    }

    #[test]
    fn lr_schedules() {
        let step = LrSchedule::Step {
            every: 2500,
            gamma: 0.1,
        };
        assert_eq!(step.lr(0.01, 2499, 6000), 0.01);
        assert!((step.lr(0.01, 2500, 6000) - 0.001).abs() < 1e-15);
        assert!((step.lr(0.01, 5999, 6000) - 0.0001).abs() < 1e-15);
        let poly = LrSchedule::Poly { power: 0.9 };
        assert_eq!(poly.lr(0.01, 0, 100), 0.01);
        assert!((poly.lr(0.01, 50, 100) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert_eq!(LrSchedule::Constant.lr(0.3, 77, 100), 0.3);
    }
}
