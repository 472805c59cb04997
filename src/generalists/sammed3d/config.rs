//! Architecture hyper-parameters of SAM-Med3D, read from a flat JSON object whose keys are
//! exactly those of the reference `model_config_*.json` files.

use super::error::{Result, SamMed3dError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hard-coded inside the reference `MaskDecoder3D`, identical for every published size.
pub const DECODER_DEPTH: usize = 2;
pub const DECODER_HEADS: usize = 8;
pub const DECODER_MLP_DIM: usize = 2048;
pub const DECODER_ATTENTION_DOWNSAMPLE: usize = 2;
pub const DECODER_LAYERNORM_EPS: f64 = 1e-5;
/// LayerNorm3d (neck, mask downscaling, output upscaling) uses 1e-6 everywhere.
pub const LAYERNORM3D_EPS: f64 = 1e-6;
/// The mask prompt and the low-resolution logits are 4x the embedding grid.
pub const MASK_TO_GRID_FACTOR: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub img_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub encoder_embed_dim: usize,
    pub encoder_depth: usize,
    pub encoder_num_heads: usize,
    pub encoder_mlp_ratio: f64,
    pub encoder_global_attn_indexes: Vec<usize>,
    pub window_size: usize,
    pub use_abs_pos: bool,
    pub use_rel_pos: bool,
    pub qkv_bias: bool,
    pub encoder_layernorm_eps: f64,
    pub prompt_embed_dim: usize,
    pub mask_in_chans: usize,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
}

impl ModelConfig {
    /// The published SAM-Med3D `vit_b_ori` (100,509,232 parameters).
    pub fn vit_b_ori() -> Self {
        Self {
            img_size: 128,
            patch_size: 16,
            in_chans: 1,
            encoder_embed_dim: 768,
            encoder_depth: 12,
            encoder_num_heads: 12,
            encoder_mlp_ratio: 4.0,
            encoder_global_attn_indexes: vec![2, 5, 8, 11],
            window_size: 14,
            use_abs_pos: true,
            use_rel_pos: true,
            qkv_bias: true,
            encoder_layernorm_eps: 1e-6,
            prompt_embed_dim: 384,
            mask_in_chans: 16,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
        }
    }

    /// Parses and validates a config; `origin` names the source in error messages.
    pub fn from_json_str(json: &str, origin: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(json).map_err(|e| SamMed3dError::Config {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| SamMed3dError::Config {
            origin: origin.to_string(),
            message,
        })?;
        Ok(config)
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|source| SamMed3dError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&json, &path.display().to_string())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("img_size", self.img_size),
            ("patch_size", self.patch_size),
            ("in_chans", self.in_chans),
            ("encoder_embed_dim", self.encoder_embed_dim),
            ("encoder_depth", self.encoder_depth),
            ("encoder_num_heads", self.encoder_num_heads),
            ("window_size", self.window_size),
            ("prompt_embed_dim", self.prompt_embed_dim),
            ("mask_in_chans", self.mask_in_chans),
            ("iou_head_depth", self.iou_head_depth),
            ("iou_head_hidden_dim", self.iou_head_hidden_dim),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.img_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "img_size {} is not a multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if !self
            .encoder_embed_dim
            .is_multiple_of(self.encoder_num_heads)
        {
            return Err(format!(
                "encoder_embed_dim {} is not divisible by encoder_num_heads {}",
                self.encoder_embed_dim, self.encoder_num_heads
            ));
        }
        let mlp_hidden = self.encoder_embed_dim as f64 * self.encoder_mlp_ratio;
        if mlp_hidden.is_nan() || mlp_hidden < 1.0 || mlp_hidden.fract() != 0.0 {
            return Err(format!(
                "encoder_embed_dim x encoder_mlp_ratio = {mlp_hidden} is not a positive integer"
            ));
        }
        if let Some(i) = self
            .encoder_global_attn_indexes
            .iter()
            .find(|&&i| i >= self.encoder_depth)
        {
            return Err(format!(
                "encoder_global_attn_indexes contains {i}, beyond encoder_depth {}",
                self.encoder_depth
            ));
        }
        // Fourier features come in three equal parts; the decoder splits the width into 8
        // heads at half width and the hypernetworks output a width / 8 vector.
        if !self.prompt_embed_dim.is_multiple_of(3) || !self.prompt_embed_dim.is_multiple_of(16) {
            return Err(format!(
                "prompt_embed_dim {} must be divisible by 3 and by 16",
                self.prompt_embed_dim
            ));
        }
        if !self.mask_in_chans.is_multiple_of(4) {
            return Err(format!(
                "mask_in_chans {} must be divisible by 4",
                self.mask_in_chans
            ));
        }
        if self.encoder_layernorm_eps.is_nan() || self.encoder_layernorm_eps <= 0.0 {
            return Err("encoder_layernorm_eps must be positive".into());
        }
        Ok(())
    }

    /// Side of the cubic token grid (8 for vit_b_ori).
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Side of the mask prompt and of the low-resolution logits (32 for vit_b_ori).
    pub fn mask_size(&self) -> usize {
        self.grid_size() * MASK_TO_GRID_FACTOR
    }

    pub fn encoder_head_dim(&self) -> usize {
        self.encoder_embed_dim / self.encoder_num_heads
    }

    pub fn encoder_mlp_hidden(&self) -> usize {
        (self.encoder_embed_dim as f64 * self.encoder_mlp_ratio) as usize
    }

    pub fn num_mask_tokens(&self) -> usize {
        self.num_multimask_outputs + 1
    }

    pub fn is_global_block(&self, index: usize) -> bool {
        self.encoder_global_attn_indexes.contains(&index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"img_size": 64, "patch_size": 8, "in_chans": 1,
        "encoder_embed_dim": 96, "encoder_depth": 4, "encoder_num_heads": 4,
        "encoder_mlp_ratio": 4, "encoder_global_attn_indexes": [1, 3], "window_size": 14,
        "use_abs_pos": true, "use_rel_pos": true, "qkv_bias": true,
        "encoder_layernorm_eps": 1e-06, "prompt_embed_dim": 48, "mask_in_chans": 16,
        "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 32}"#;

    #[test]
    fn tiny_config_parses() {
        let config = ModelConfig::from_json_str(TINY, "tiny").unwrap();
        assert_eq!(config.grid_size(), 8);
        assert_eq!(config.mask_size(), 32);
        assert_eq!(config.encoder_head_dim(), 24);
        assert_eq!(config.encoder_mlp_hidden(), 384);
        assert!(config.is_global_block(3) && !config.is_global_block(2));
    }

    #[test]
    fn vit_b_ori_round_trips_through_json() {
        let json = serde_json::to_string(&ModelConfig::vit_b_ori()).unwrap();
        let config = ModelConfig::from_json_str(&json, "vit_b_ori").unwrap();
        assert_eq!(config, ModelConfig::vit_b_ori());
        assert_eq!(config.grid_size(), 8);
    }

    #[test]
    fn missing_key_is_an_error_naming_it() {
        let json = TINY.replace(r#""qkv_bias": true,"#, "");
        let err = ModelConfig::from_json_str(&json, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cfg.json") && err.contains("missing field `qkv_bias`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let json = TINY.replace(
            r#""qkv_bias": true,"#,
            r#""qkv_bias": true, "out_chans": 48,"#,
        );
        let err = ModelConfig::from_json_str(&json, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `out_chans`"), "{err}");
    }

    #[test]
    fn inconsistent_sizes_are_errors() {
        let json = TINY.replace(r#""patch_size": 8"#, r#""patch_size": 7"#);
        let err = ModelConfig::from_json_str(&json, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multiple of patch_size 7"), "{err}");
        let json = TINY.replace(r#""prompt_embed_dim": 48"#, r#""prompt_embed_dim": 40"#);
        let err = ModelConfig::from_json_str(&json, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prompt_embed_dim 40"), "{err}");
    }
}
