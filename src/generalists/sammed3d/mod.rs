//! SAM-Med3D (`vit_b_ori` and any configuration of the same architecture) as a frozen
//! generalist: `embed` a prepared cubic volume once, then `decode` clicks and an optional
//! low-resolution mask prompt into mask logits.
//!
//! Parameter names mirror the reference checkpoint keys; see `weights` for the file formats.

pub mod config;
pub mod decoder;
pub mod encoder;
pub mod error;
mod layers;
pub mod mask_prompt;
mod padded_window;
pub mod prompt;
mod rel_pos;
pub mod weights;

pub use config::ModelConfig;
pub use error::{Result, SamMed3dError};
pub use prompt::{PointLabel, PointPrompt};
pub use weights::{Report, StateDict, check_checkpoint, check_checkpoint_with_config};

use crate::generalists::param_loader::{ParamLoader, ParamProblems, ParamSource};
use crate::ops::trilinear::trilinear_interpolate;
use burn::tensor::{Device, Tensor};
use decoder::{DecoderTrace, MaskDecoder};
use encoder::ImageEncoder;
use prompt::PromptEncoder;
use std::path::Path;

/// The image embedding of one volume, `[1, prompt_embed_dim, G, G, G]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub image_embedding: Tensor<5>,
}

/// The prompt encoder's output for one set of prompts.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    /// `[1, N + 1, C]` for N clicks (the last row is the padding point); `None` without clicks.
    pub sparse: Option<Tensor<3>>,
    /// `[1, C, G, G, G]`
    pub dense: Tensor<5>,
}

/// The decoder's answer for the first mask token (`multimask_output=False`).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// `[1, 1, M, M, M]` logits, M = 4 G; fed back as the next mask prompt.
    pub low_res_logits: Tensor<5>,
    /// `[1, 1]` predicted IoU.
    pub iou: Tensor<2>,
    /// `[1, 1, S, S, S]` logits upsampled trilinearly (align_corners=false) to the input size.
    pub logits: Tensor<5>,
}

#[derive(Debug, Clone)]
pub struct SamMed3d {
    config: ModelConfig,
    image_encoder: ImageEncoder,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    dense_pe: Tensor<5>,
    parameter_keys: Vec<(String, Vec<usize>)>,
}

impl SamMed3d {
    pub(crate) fn build(config: &ModelConfig, mut params: ParamLoader) -> (Self, ParamProblems) {
        let image_encoder = ImageEncoder::load(&mut params, config);
        let prompt_encoder = PromptEncoder::load(&mut params, config);
        let mask_decoder = MaskDecoder::load(&mut params, config);
        let (parameter_keys, problems) = params.finish();
        let dense_pe = prompt_encoder.dense_pe();
        let model = Self {
            config: config.clone(),
            image_encoder,
            prompt_encoder,
            mask_decoder,
            dense_pe,
            parameter_keys,
        };
        (model, problems)
    }

    /// Loads a checkpoint file (official nesting or bare state dict) into the architecture
    /// `config` describes; any missing, unexpected, mis-shaped or unreadable tensor is an
    /// error naming it.
    pub fn load(path: &Path, config: &ModelConfig, device: &Device) -> Result<Self> {
        Self::from_state_dict(StateDict::open(path)?, config, device)
    }

    pub fn from_state_dict(
        state: StateDict,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let path = state.path.clone();
        let (model, problems) = Self::build(config, state.into_loader(device));
        if !problems.is_empty() {
            return Err(SamMed3dError::WeightsMismatch {
                path,
                summary: problems.summary(),
            });
        }
        Ok(model)
    }

    /// Random weights (Normal(0, 0.02)): for shape checks and speed measurements.
    pub fn random(config: &ModelConfig, device: &Device) -> Self {
        let loader = ParamLoader::new(ParamSource::Random { std: 0.02 }, device);
        Self::build(config, loader).0
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Every state-dict key the model holds, with its shape, in reference order.
    pub fn parameter_keys(&self) -> &[(String, Vec<usize>)] {
        &self.parameter_keys
    }

    pub fn image_encoder(&self) -> &ImageEncoder {
        &self.image_encoder
    }

    pub fn prompt_encoder(&self) -> &PromptEncoder {
        &self.prompt_encoder
    }

    pub fn mask_decoder(&self) -> &MaskDecoder {
        &self.mask_decoder
    }

    /// `[1, C, G, G, G]`, computed once at build time.
    pub fn dense_pe(&self) -> Tensor<5> {
        self.dense_pe.clone()
    }

    /// Embeds one prepared volume `[1, in_chans, S, S, S]` (S = `img_size`).
    pub fn embed(&self, volume: Tensor<5>) -> Result<Embedding> {
        let s = self.config.img_size;
        let want = [1, self.config.in_chans, s, s, s];
        if volume.dims() != want {
            return Err(SamMed3dError::Input(format!(
                "volume has shape {:?}, the model needs {want:?}",
                volume.dims()
            )));
        }
        Ok(Embedding {
            image_embedding: self.image_encoder.forward(volume),
        })
    }

    /// Encodes clicks and the optional mask prompt `[1, 1, M, M, M]` (logits). `None` uses
    /// the learnt "no mask" embedding, which differs from an all-zero mask.
    pub fn encode_prompts(
        &self,
        points: &[PointPrompt],
        mask_input: Option<Tensor<5>>,
    ) -> Result<PromptEmbeddings> {
        let s = self.config.img_size as f32;
        if let Some(p) = points
            .iter()
            .find(|p| p.coord.iter().any(|&c| !(0.0..s).contains(&c)))
        {
            return Err(SamMed3dError::Input(format!(
                "click {:?} lies outside the {s}^3 volume",
                p.coord
            )));
        }
        if let Some(mask) = &mask_input {
            let m = self.config.mask_size();
            if mask.dims() != [1, 1, m, m, m] {
                return Err(SamMed3dError::Input(format!(
                    "mask prompt has shape {:?}, the model needs [1, 1, {m}, {m}, {m}]",
                    mask.dims()
                )));
            }
        }
        Ok(PromptEmbeddings {
            sparse: self.prompt_encoder.embed_points(points),
            dense: self.prompt_encoder.embed_mask(mask_input),
        })
    }

    /// Runs the mask decoder on prompt embeddings, keeping every intermediate.
    pub fn decode_prompts(
        &self,
        embedding: &Embedding,
        prompts: &PromptEmbeddings,
    ) -> DecoderTrace {
        self.mask_decoder.forward(
            embedding.image_embedding.clone(),
            self.dense_pe(),
            prompts.sparse.clone(),
            prompts.dense.clone(),
        )
    }

    /// One SemiSAM/SAM-Med3D decoding step: clicks (an empty slice means no clicks) plus the
    /// optional low-resolution mask prompt to mask logits for the first mask token.
    pub fn decode(
        &self,
        embedding: &Embedding,
        points: &[PointPrompt],
        mask_input: Option<Tensor<5>>,
    ) -> Result<Decoded> {
        let g = self.config.grid_size();
        let dims = embedding.image_embedding.dims();
        let want = [1, self.config.prompt_embed_dim, g, g, g];
        if dims != want {
            return Err(SamMed3dError::Input(format!(
                "image embedding has shape {dims:?}, the model needs {want:?}"
            )));
        }
        let prompts = self.encode_prompts(points, mask_input)?;
        let trace = self.decode_prompts(embedding, &prompts);
        let m = self.config.mask_size();
        let low_res_logits = trace.masks_all.slice([0..1, 0..1, 0..m, 0..m, 0..m]);
        let iou = trace.iou_all.slice([0..1, 0..1]);
        let s = self.config.img_size;
        let logits = trilinear_interpolate(low_res_logits.clone(), [s, s, s], false)
            .map_err(|e| SamMed3dError::Input(e.to_string()))?;
        Ok(Decoded {
            low_res_logits,
            iou,
            logits,
        })
    }
}
