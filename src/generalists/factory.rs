//! Which generalist a run uses, with the settings only that generalist has, and how it is built.
//!
//! Adding a generalist means a variant here and its [`Generalist`] implementation; the SAM term
//! and the training loop see only the trait.

use std::path::PathBuf;

use super::clicks3d::crop::CropNormalization;
use super::clicks3d::{ClickLoopConfig, FirstMaskPrompt, SamMed3dClicks};
use super::litemedsam::LiteMedSam;
use super::sammed3d::{ModelConfig, SamMed3d};
use super::slicewise::embedding_store::EmbeddingStore;
use super::slicewise::litemedsam::LiteMedSamSlices;
use super::slicewise::{Fusion, MultiView, SliceWise};
use super::{Generalist, GeneralistError, weights_cache};
use crate::prompts::PromptConfig;

/// LiteMedSAM (2D, box prompts) applied slice by slice, along one axis or several fused.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteMedSamConfig {
    /// Checkpoint file; the weights cache (`semisam weights fetch`) when absent.
    pub weights: Option<PathBuf>,
    /// Slicing axes (2 = the third array axis, z for UA-MT h5), distinct; one axis is plain
    /// [`SliceWise`], several a [`MultiView`].
    pub axes: Vec<usize>,
    /// How several axes' answers are fused.
    pub fusion: Fusion,
    /// Slice embeddings kept in memory, at most (by all axes together).
    pub cache_capacity: usize,
    /// Memory the kept slice embeddings may take, in MiB (2 MiB a slice, half precision).
    pub embedding_memory_mib: usize,
    /// A folder where slice embeddings are kept between runs (keyed by weights, axis and the
    /// slice's pixels), so that only the first run on a dataset pays for them.
    pub embedding_dir: Option<PathBuf>,
}

impl Default for LiteMedSamConfig {
    fn default() -> Self {
        LiteMedSamConfig {
            weights: None,
            axes: vec![2],
            fusion: Fusion::Mean { band: 0.25 },
            cache_capacity: 4096,
            embedding_memory_mib: 64,
            embedding_dir: None,
        }
    }
}

impl LiteMedSamConfig {
    pub fn check(&self) -> Result<(), GeneralistError> {
        let wrong = |message: String| Err(GeneralistError::Model(message));
        if self.axes.is_empty() {
            return wrong("[sam] axes must list at least one axis".into());
        }
        for (n, &axis) in self.axes.iter().enumerate() {
            if axis > 2 {
                return wrong(format!("[sam] axis must be 0, 1 or 2, got {axis}"));
            }
            if self.axes[..n].contains(&axis) {
                return wrong(format!("[sam] axes lists axis {axis} twice"));
            }
        }
        if let Fusion::Mean { band } = self.fusion
            && !(0.0..0.5).contains(&band)
        {
            return wrong(format!(
                "[sam] fusion_band must be at least 0 and below 0.5, got {band}"
            ));
        }
        Ok(())
    }

    /// The model with the identity its cached embeddings are keyed by.
    fn load_model(
        &self,
        device: &burn::tensor::Device,
    ) -> Result<LiteMedSamSlices, GeneralistError> {
        let spec = &weights_cache::LITEMEDSAM;
        let (path, identity) = match &self.weights {
            Some(path) => (path.clone(), format!("file:{}", path.display())),
            None => (
                weights_cache::locate(spec).map_err(|e| GeneralistError::Model(e.to_string()))?,
                spec.sha256[..12].to_string(),
            ),
        };
        let model = LiteMedSam::load(&path, device)?;
        Ok(LiteMedSamSlices::new(model, identity))
    }

    /// `embedding_memory_mib` in bytes, shared by all the axes.
    fn memory_budget_bytes(&self) -> usize {
        self.embedding_memory_mib.saturating_mul(1 << 20)
    }

    /// `embedding_dir`, else the embeddings folder of the semisam cache: a slice that leaves
    /// the memory budget is read back from the store instead of encoded again, and a later run
    /// on the same images pays nothing.
    fn store(&self) -> Result<EmbeddingStore, GeneralistError> {
        let dir = match &self.embedding_dir {
            Some(dir) => dir.clone(),
            None => weights_cache::embeddings_dir()
                .map_err(|e| GeneralistError::Model(e.to_string()))?,
        };
        Ok(EmbeddingStore::new(dir))
    }

    /// Every axis as its own view, whatever their number (analyses compare the views; a run
    /// with one axis uses plain [`SliceWise`]).
    pub fn build_views(
        &self,
        prompts: &PromptConfig,
        device: &burn::tensor::Device,
    ) -> Result<MultiView<LiteMedSamSlices>, GeneralistError> {
        self.check()?;
        let views = MultiView::new(
            self.load_model(device)?,
            &self.axes,
            prompts.clone(),
            self.cache_capacity,
            self.fusion,
        )
        .with_memory_budget(self.memory_budget_bytes());
        Ok(views.with_store(self.store()?))
    }
}

/// SAM-Med3D (3D, clicks); users bring the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SamMed3dConfig {
    pub weights: PathBuf,
    /// Architecture JSON (the keys of `model_config_vit_b_ori.json`); `vit_b_ori` when absent.
    pub model_config: Option<PathBuf>,
    /// Clicks per pseudo-label (decoder passes; SemiSAM uses 10).
    pub clicks: usize,
    /// Mask prompt of the first click: `zeros` (SemiSAM, SAM-Med3D) or `none`.
    pub first_mask_prompt: FirstMaskPrompt,
    /// Give the decoder every click so far instead of only the newest (SemiSAM).
    pub keep_all_clicks: bool,
    /// Foreground is `logit > logit_threshold` (0: probability 0.5).
    pub logit_threshold: f32,
    /// Image voxels per model voxel (1: the image grid, as SemiSAM).
    pub crop_voxel_size: f64,
    /// Crop intensities: `none` (as trained on), `zscore`, `positive_zscore`.
    pub crop_normalization: CropNormalization,
    /// Cube embeddings kept in memory (0.8 MB each for `vit_b_ori`).
    pub cache_capacity: usize,
}

impl SamMed3dConfig {
    /// The defaults of every setting but the weights.
    pub fn with_weights(weights: PathBuf) -> Self {
        let clicks = ClickLoopConfig::default();
        SamMed3dConfig {
            weights,
            model_config: None,
            clicks: clicks.clicks,
            first_mask_prompt: clicks.first_mask_prompt,
            keep_all_clicks: clicks.keep_all_clicks,
            logit_threshold: clicks.logit_threshold,
            crop_voxel_size: clicks.crop_voxel_size,
            crop_normalization: clicks.normalization,
            cache_capacity: 16,
        }
    }
}

/// The generalist of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneralistConfig {
    LiteMedSam(LiteMedSamConfig),
    SamMed3d(SamMed3dConfig),
}

impl Default for GeneralistConfig {
    fn default() -> Self {
        GeneralistConfig::LiteMedSam(LiteMedSamConfig::default())
    }
}

impl GeneralistConfig {
    /// The axes a slice-wise generalist cuts the volume along (none for a 3D one).
    pub fn slicing_axes(&self) -> &[usize] {
        match self {
            GeneralistConfig::LiteMedSam(config) => &config.axes,
            GeneralistConfig::SamMed3d(_) => &[],
        }
    }

    /// The axis a slice-wise generalist cuts the volume along (the first, with several).
    pub fn slicing_axis(&self) -> Option<usize> {
        match self {
            GeneralistConfig::LiteMedSam(config) => config.axes.first().copied(),
            GeneralistConfig::SamMed3d(_) => None,
        }
    }

    /// Load the generalist (frozen, inference only) on `device`; `prompts` says how the
    /// specialist's probability becomes its prompts.
    pub fn build(
        &self,
        prompts: &PromptConfig,
        device: &burn::tensor::Device,
    ) -> Result<Box<dyn Generalist>, GeneralistError> {
        match self {
            GeneralistConfig::LiteMedSam(config) => {
                let &[axis] = config.axes.as_slice() else {
                    return Ok(Box::new(config.build_views(prompts, device)?));
                };
                config.check()?;
                let slices = config.load_model(device)?;
                let generalist =
                    SliceWise::new(slices, axis, prompts.clone(), config.cache_capacity)
                        .with_memory_budget(config.memory_budget_bytes())
                        .with_store(config.store()?);
                Ok(Box::new(generalist))
            }
            GeneralistConfig::SamMed3d(config) => {
                let architecture = match &config.model_config {
                    Some(json) => ModelConfig::from_json_file(json)?,
                    None => ModelConfig::vit_b_ori(),
                };
                let model = SamMed3d::load(&config.weights, &architecture, device)?;
                let clicks = ClickLoopConfig {
                    clicks: config.clicks,
                    threshold: prompts.threshold,
                    first_mask_prompt: config.first_mask_prompt,
                    keep_all_clicks: config.keep_all_clicks,
                    logit_threshold: config.logit_threshold,
                    crop_voxel_size: config.crop_voxel_size,
                    normalization: config.crop_normalization,
                };
                let generalist = SamMed3dClicks::new(
                    model,
                    format!("file:{}", config.weights.display()),
                    clicks,
                    config.cache_capacity,
                    device,
                )?;
                Ok(Box::new(generalist))
            }
        }
    }
}
