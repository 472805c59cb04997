//! The `[sam]` section: the generalist with its own settings, its prompts, and the term's
//! schedule and options. Generalist-specific keys are checked when the section is parsed, so a
//! run with a wrong one stops before any folder is created or case loaded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::frameworks::RampUp;
use crate::generalists::clicks3d::crop::CropNormalization;
use crate::generalists::clicks3d::{ClickLoopConfig, FirstMaskPrompt};
use crate::generalists::factory::{GeneralistConfig, LiteMedSamConfig, SamMed3dConfig};
use crate::generalists::slicewise::Fusion;
use crate::prompts::PromptConfig;

/// Which frozen generalist produces the pseudo-labels (the `generalist` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum GeneralistKind {
    /// LiteMedSAM (2D, box prompts) applied slice by slice; weights from `semisam weights fetch`.
    LiteMedSam,
    /// SAM-Med3D (3D, clicks); users bring the weights (`weights` is required).
    #[serde(rename = "sammed3d")]
    SamMed3d,
}

/// How the answers of several slicing axes are fused (the `fusion` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FusionKind {
    Mean,
    Vote,
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
    /// the published SemiSAM code does by mistake). A run with it reads the unlabeled
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

/// The `[sam]` section as written in TOML: one flat table whose generalist-specific keys
/// [`SamConfig`] sorts into its generalist's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SamSection {
    generalist: GeneralistKind,
    /// Checkpoint file; the weights cache when absent (LiteMedSAM only: SAM-Med3D needs it).
    weights: Option<PathBuf>,
    /// Slicing axis of a 2D generalist (2 = the third array axis, z for UA-MT h5; the default).
    axis: Option<usize>,
    /// Several slicing axes of a 2D generalist, fused per voxel (exclusive with `axis`).
    axes: Option<Vec<usize>>,
    /// With several axes: `mean` (of the probabilities; the default) or `vote` (majority);
    /// voxels where the axes disagree are left out of the term.
    fusion: Option<FusionKind>,
    /// With `fusion = "mean"`: voxels whose mean lies within this of ½ are left out (0.25).
    fusion_band: Option<f32>,
    /// Embeddings kept in memory: slices (LiteMedSAM, default 4096) or cubes (SAM-Med3D,
    /// default 16; 0.8 MB each for `vit_b_ori`).
    cache_capacity: Option<usize>,
    /// LiteMedSAM: memory the slice embeddings kept in memory may take, in MiB (2 MiB a slice;
    /// default 64). Slices past it are read back from `embedding_dir`, or encoded again.
    embedding_memory_mib: Option<usize>,
    /// SAM-Med3D architecture JSON (the keys of `model_config_vit_b_ori.json`); `vit_b_ori` when
    /// absent.
    model_config: Option<PathBuf>,
    /// SAM-Med3D clicks per pseudo-label (decoder passes; SemiSAM uses 10).
    clicks: usize,
    /// SAM-Med3D mask prompt of the first click: `zeros` (SemiSAM, SAM-Med3D) or `none`.
    first_mask_prompt: FirstMaskPrompt,
    /// SAM-Med3D: give the decoder every click so far instead of only the newest (SemiSAM).
    keep_all_clicks: bool,
    /// SAM-Med3D foreground is `logit > logit_threshold` (0: probability 0.5).
    logit_threshold: f32,
    /// SAM-Med3D crop: image voxels per model voxel (1: the image grid, as SemiSAM).
    crop_voxel_size: f64,
    /// SAM-Med3D crop intensities: `none` (as trained on), `zscore`, `positive_zscore`.
    crop_normalization: CropNormalization,
    /// λ_s at the start of training (SemiSAM: 0.1).
    weight: f64,
    /// Length of the ramp-down in "epochs" (SemiSAM: 40).
    rampdown_epochs: f64,
    /// Iterations per ramp "epoch" (SemiSAM: 150; scale it with the run length).
    iterations_per_epoch: usize,
    /// Recompute a case's pseudo-label at most every this many iterations (1 = every time).
    refresh_interval: usize,
    /// No SAM term before this iteration: an untrained student's "confident" voxels are noise,
    /// and prompts made from them give noise (0 = from the start, as SemiSAM).
    start_iteration: usize,
    /// At each validation, also prompt the generalist from the student's prediction on the
    /// validation cases and log the pseudo-labels' Dice against their references (analysis
    /// only: it costs one embedding per slice of those cases, once).
    validation_dice: bool,
    /// Voxels without a prompt (slices without a box, outside the 3D cube): `ignore` (left out
    /// of the term) or `background`.
    outside_prompts: OutsidePrompts,
    /// `mse` (SemiSAM) or `dice_ce`.
    loss: SamLoss,
    /// LiteMedSAM: a folder where slice embeddings are kept between runs (keyed by weights,
    /// axis and the slice's pixels), so that only the first run on a dataset pays for them.
    embedding_dir: Option<PathBuf>,
    /// `none` or `agreement` (student, teacher and SAM).
    confidence: Confidence,
    /// `student` (SemiSAM) or `teacher` (frameworks with a teacher only).
    prompt_source: PromptSource,
    prompts: PromptConfig,
}

impl Default for SamSection {
    fn default() -> Self {
        SamSection {
            generalist: GeneralistKind::LiteMedSam,
            weights: None,
            axis: None,
            axes: None,
            fusion: None,
            fusion_band: None,
            cache_capacity: None,
            embedding_memory_mib: None,
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

/// The SAM term's configuration: `weight · r(⌊(T_max - t)/iterations_per_epoch⌋,
/// rampdown_epochs)` with pseudo-labels from `generalist`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SamSection", into = "SamSection")]
pub struct SamConfig {
    pub generalist: GeneralistConfig,
    /// λ_s at the start of training (SemiSAM: 0.1).
    pub weight: f64,
    /// Length of the ramp-down in "epochs" (SemiSAM: 40).
    pub rampdown_epochs: f64,
    /// Iterations per ramp "epoch" (SemiSAM: 150; scale it with the run length).
    pub iterations_per_epoch: usize,
    /// Recompute a case's pseudo-label at most every this many iterations (1 = every time).
    pub refresh_interval: usize,
    /// No SAM term before this iteration (0 = from the start, as SemiSAM).
    pub start_iteration: usize,
    /// At each validation, also score the pseudo-labels of the validation cases (analysis only).
    pub validation_dice: bool,
    pub outside_prompts: OutsidePrompts,
    pub loss: SamLoss,
    pub confidence: Confidence,
    pub prompt_source: PromptSource,
    pub prompts: PromptConfig,
}

impl Default for SamConfig {
    fn default() -> Self {
        SamConfig::try_from(SamSection::default()).expect("the default section is valid")
    }
}

/// `keys` named in an error about keys of the other generalist.
fn only_for(keys: &[&str], generalist: &str) -> String {
    let verb = if keys.len() == 1 { "applies" } else { "apply" };
    format!(
        "[sam] {} {verb} to generalist = \"{generalist}\" only",
        keys.join(", ")
    )
}

impl SamSection {
    /// Keys set to something other than their default that LiteMedSAM does not read.
    fn sammed3d_keys_set(&self) -> Vec<&'static str> {
        let default = SamSection::default();
        [
            ("model_config", self.model_config != default.model_config),
            ("clicks", self.clicks != default.clicks),
            (
                "first_mask_prompt",
                self.first_mask_prompt != default.first_mask_prompt,
            ),
            (
                "keep_all_clicks",
                self.keep_all_clicks != default.keep_all_clicks,
            ),
            (
                "logit_threshold",
                self.logit_threshold != default.logit_threshold,
            ),
            (
                "crop_voxel_size",
                self.crop_voxel_size != default.crop_voxel_size,
            ),
            (
                "crop_normalization",
                self.crop_normalization != default.crop_normalization,
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// Keys set to something other than their default that SAM-Med3D does not read.
    fn litemedsam_keys_set(&self) -> Vec<&'static str> {
        let default_axes = LiteMedSamConfig::default().axes;
        [
            ("axis", self.axis.is_some_and(|a| default_axes != [a])),
            ("axes", self.axes.is_some()),
            ("fusion", self.fusion.is_some()),
            ("fusion_band", self.fusion_band.is_some()),
            ("embedding_memory_mib", self.embedding_memory_mib.is_some()),
            ("embedding_dir", self.embedding_dir.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// `axis` or `axes`, never both; the third array axis when neither.
    fn axes(&self) -> Result<Vec<usize>, String> {
        match (self.axis, &self.axes) {
            (Some(_), Some(_)) => Err("[sam] axis and axes are exclusive: give one axis as \
                                       axis = N, several as axes = [..]"
                .into()),
            (Some(axis), None) => Ok(vec![axis]),
            (None, Some(axes)) => Ok(axes.clone()),
            (None, None) => Ok(LiteMedSamConfig::default().axes),
        }
    }

    /// The fusion of several axes; its keys are errors with one axis, which has nothing to fuse.
    fn fusion(&self) -> Result<Fusion, String> {
        let several = self.axes.as_ref().is_some_and(|axes| axes.len() > 1);
        let keys: Vec<&str> = [
            ("fusion", self.fusion.is_some()),
            ("fusion_band", self.fusion_band.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if !several && !keys.is_empty() {
            let verb = if keys.len() == 1 { "applies" } else { "apply" };
            return Err(format!(
                "[sam] {} {verb} to several slicing axes only (axes = [..])",
                keys.join(", ")
            ));
        }
        match (self.fusion, self.fusion_band) {
            (Some(FusionKind::Vote), Some(_)) => {
                Err("[sam] fusion_band applies to fusion = \"mean\" only".into())
            }
            (Some(FusionKind::Vote), None) => Ok(Fusion::Vote),
            (_, Some(band)) => Ok(Fusion::Mean { band }),
            (_, None) => Ok(LiteMedSamConfig::default().fusion),
        }
    }

    fn generalist(&self) -> Result<GeneralistConfig, String> {
        match self.generalist {
            GeneralistKind::LiteMedSam => {
                let foreign = self.sammed3d_keys_set();
                if !foreign.is_empty() {
                    return Err(only_for(&foreign, "sammed3d"));
                }
                let defaults = LiteMedSamConfig::default();
                let config = LiteMedSamConfig {
                    weights: self.weights.clone(),
                    axes: self.axes()?,
                    fusion: self.fusion()?,
                    cache_capacity: self.cache_capacity.unwrap_or(defaults.cache_capacity),
                    embedding_memory_mib: self
                        .embedding_memory_mib
                        .unwrap_or(defaults.embedding_memory_mib),
                    embedding_dir: self.embedding_dir.clone(),
                };
                config.check().map_err(|e| e.to_string())?;
                Ok(GeneralistConfig::LiteMedSam(config))
            }
            GeneralistKind::SamMed3d => {
                let foreign = self.litemedsam_keys_set();
                if !foreign.is_empty() {
                    return Err(only_for(&foreign, "litemedsam"));
                }
                let weights = self.weights.clone().ok_or(
                    "[sam] weights is required for generalist = \"sammed3d\": SAM-Med3D weights \
                     cannot be fetched, give the path of your checkpoint (e.g. \
                     sam_med3d_turbo.pth)",
                )?;
                let defaults = SamMed3dConfig::with_weights(weights);
                Ok(GeneralistConfig::SamMed3d(SamMed3dConfig {
                    model_config: self.model_config.clone(),
                    clicks: self.clicks,
                    first_mask_prompt: self.first_mask_prompt,
                    keep_all_clicks: self.keep_all_clicks,
                    logit_threshold: self.logit_threshold,
                    crop_voxel_size: self.crop_voxel_size,
                    crop_normalization: self.crop_normalization,
                    cache_capacity: self.cache_capacity.unwrap_or(defaults.cache_capacity),
                    ..defaults
                }))
            }
        }
    }
}

impl TryFrom<SamSection> for SamConfig {
    type Error = String;

    fn try_from(section: SamSection) -> Result<Self, String> {
        Ok(SamConfig {
            generalist: section.generalist()?,
            weight: section.weight,
            rampdown_epochs: section.rampdown_epochs,
            iterations_per_epoch: section.iterations_per_epoch,
            refresh_interval: section.refresh_interval,
            start_iteration: section.start_iteration,
            validation_dice: section.validation_dice,
            outside_prompts: section.outside_prompts,
            loss: section.loss,
            confidence: section.confidence,
            prompt_source: section.prompt_source,
            prompts: section.prompts,
        })
    }
}

impl From<SamConfig> for SamSection {
    fn from(config: SamConfig) -> Self {
        let mut section = SamSection {
            weight: config.weight,
            rampdown_epochs: config.rampdown_epochs,
            iterations_per_epoch: config.iterations_per_epoch,
            refresh_interval: config.refresh_interval,
            start_iteration: config.start_iteration,
            validation_dice: config.validation_dice,
            outside_prompts: config.outside_prompts,
            loss: config.loss,
            confidence: config.confidence,
            prompt_source: config.prompt_source,
            prompts: config.prompts,
            ..SamSection::default()
        };
        match config.generalist {
            GeneralistConfig::LiteMedSam(generalist) => {
                section.generalist = GeneralistKind::LiteMedSam;
                section.weights = generalist.weights;
                match generalist.axes.as_slice() {
                    &[axis] => section.axis = Some(axis),
                    axes => {
                        section.axes = Some(axes.to_vec());
                        (section.fusion, section.fusion_band) = match generalist.fusion {
                            Fusion::Mean { band } => (Some(FusionKind::Mean), Some(band)),
                            Fusion::Vote => (Some(FusionKind::Vote), None),
                        };
                    }
                }
                section.cache_capacity = Some(generalist.cache_capacity);
                section.embedding_memory_mib = Some(generalist.embedding_memory_mib);
                section.embedding_dir = generalist.embedding_dir;
            }
            GeneralistConfig::SamMed3d(generalist) => {
                section.generalist = GeneralistKind::SamMed3d;
                section.weights = Some(generalist.weights);
                section.model_config = generalist.model_config;
                section.clicks = generalist.clicks;
                section.first_mask_prompt = generalist.first_mask_prompt;
                section.keep_all_clicks = generalist.keep_all_clicks;
                section.logit_threshold = generalist.logit_threshold;
                section.crop_voxel_size = generalist.crop_voxel_size;
                section.crop_normalization = generalist.crop_normalization;
                section.cache_capacity = Some(generalist.cache_capacity);
            }
        }
        section
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SamConfig, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    #[test]
    fn generalist_keys_are_sorted_into_the_generalist_and_written_back() {
        let config =
            parse("generalist = \"litemedsam\"\naxis = 1\nembedding_dir = \"emb\"").unwrap();
        let GeneralistConfig::LiteMedSam(generalist) = &config.generalist else {
            panic!("{config:?}");
        };
        assert_eq!(
            (&generalist.axes[..], generalist.cache_capacity),
            (&[1][..], 4096)
        );
        assert_eq!(generalist.embedding_memory_mib, 64);
        assert_eq!(generalist.embedding_dir, Some(PathBuf::from("emb")));
        let text = toml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);

        let config = parse("generalist = \"sammed3d\"\nweights = \"w.pth\"\nclicks = 3").unwrap();
        let GeneralistConfig::SamMed3d(generalist) = &config.generalist else {
            panic!("{config:?}");
        };
        assert_eq!((generalist.clicks, generalist.cache_capacity), (3, 16));
        assert_eq!(parse(&toml::to_string(&config).unwrap()).unwrap(), config);
    }

    #[test]
    fn keys_of_the_other_generalist_and_bad_values_are_parse_errors() {
        assert_eq!(
            parse("axis = 3").unwrap_err(),
            "[sam] axis must be 0, 1 or 2, got 3"
        );
        assert_eq!(
            parse("clicks = 9\nmodel_config = \"m.json\"").unwrap_err(),
            "[sam] model_config, clicks apply to generalist = \"sammed3d\" only"
        );
        assert_eq!(
            parse("generalist = \"sammed3d\"\nweights = \"w.pth\"\naxis = 0").unwrap_err(),
            "[sam] axis applies to generalist = \"litemedsam\" only"
        );
        assert_eq!(
            parse("generalist = \"sammed3d\"\nweights = \"w.pth\"\nembedding_memory_mib = 64")
                .unwrap_err(),
            "[sam] embedding_memory_mib applies to generalist = \"litemedsam\" only"
        );
        let error = parse("generalist = \"sammed3d\"").unwrap_err();
        assert!(error.starts_with("[sam] weights is required"), "{error}");
    }

    #[test]
    fn several_axes_are_fused_and_written_back() {
        let config = parse("axes = [0, 1, 2]").unwrap();
        let GeneralistConfig::LiteMedSam(generalist) = &config.generalist else {
            panic!("{config:?}");
        };
        assert_eq!(generalist.axes, [0, 1, 2]);
        assert_eq!(generalist.fusion, Fusion::Mean { band: 0.25 });
        let text = toml::to_string(&config).unwrap();
        assert!(
            text.contains("axes = [0, 1, 2]") && !text.contains("axis ="),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), config);

        let config = parse("axes = [2, 0]\nfusion = \"vote\"").unwrap();
        let GeneralistConfig::LiteMedSam(generalist) = &config.generalist else {
            panic!("{config:?}");
        };
        assert_eq!(
            (&generalist.axes[..], generalist.fusion),
            (&[2, 0][..], Fusion::Vote)
        );
        assert_eq!(parse(&toml::to_string(&config).unwrap()).unwrap(), config);

        let config = parse("axes = [0, 2]\nfusion_band = 0.1").unwrap();
        let GeneralistConfig::LiteMedSam(generalist) = &config.generalist else {
            panic!("{config:?}");
        };
        assert_eq!(generalist.fusion, Fusion::Mean { band: 0.1 });
        // one axis listed as `axes` is the plain slice-wise generalist
        assert_eq!(parse("axes = [2]").unwrap(), SamConfig::default());
    }

    #[test]
    fn axes_errors_name_the_key() {
        for (text, expected) in [
            (
                "axis = 2\naxes = [0, 1, 2]",
                "[sam] axis and axes are exclusive: give one axis as axis = N, several as axes = [..]",
            ),
            ("axes = []", "[sam] axes must list at least one axis"),
            ("axes = [0, 3]", "[sam] axis must be 0, 1 or 2, got 3"),
            ("axes = [1, 1]", "[sam] axes lists axis 1 twice"),
            (
                "axis = 1\nfusion = \"vote\"",
                "[sam] fusion applies to several slicing axes only (axes = [..])",
            ),
            (
                "fusion = \"mean\"\nfusion_band = 0.1",
                "[sam] fusion, fusion_band apply to several slicing axes only (axes = [..])",
            ),
            (
                "axes = [0, 1]\nfusion = \"vote\"\nfusion_band = 0.1",
                "[sam] fusion_band applies to fusion = \"mean\" only",
            ),
            (
                "axes = [0, 1]\nfusion_band = 0.5",
                "[sam] fusion_band must be at least 0 and below 0.5, got 0.5",
            ),
            (
                "generalist = \"sammed3d\"\nweights = \"w.pth\"\naxes = [0, 1]",
                "[sam] axes applies to generalist = \"litemedsam\" only",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err(), expected, "{text}");
        }
        assert!(parse("fusion = \"median\"\naxes = [0, 1]").is_err());
    }

    #[test]
    fn sections_saved_with_every_key_at_its_default_still_parse() {
        // a LiteMedSAM section that also lists the SAM-Med3D keys at their defaults
        let text = "generalist = \"litemedsam\"\naxis = 2\nclicks = 5\nfirst_mask_prompt = \"zeros\"\n\
                    keep_all_clicks = false\nlogit_threshold = 0.0\ncrop_voxel_size = 1.0\n\
                    crop_normalization = \"none\"";
        assert_eq!(parse(text).unwrap(), SamConfig::default());
    }
}
