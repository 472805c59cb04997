//! The prompt encoder (`PromptEncoder3D`): Fourier features of click positions, the dense
//! positional encoding of the embedding grid, and the mask-prompt downscaling.

use super::config::{LAYERNORM3D_EPS, ModelConfig};
use super::layers::{Conv3d, ConvShape};
use crate::generalists::param_loader::ParamLoader;
use crate::generalists::shared_layers::LayerNorm;
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, TensorData};

/// Label of a click: what the model was trained with (1 foreground, 0 background).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    Negative,
    Positive,
}

/// One click at a voxel index (d, h, w) along the volume's axes 2, 3, 4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointPrompt {
    pub coord: [f32; 3],
    pub label: PointLabel,
}

#[derive(Debug, Clone)]
pub struct PromptEncoder {
    gaussian: Tensor<2>,
    point_embeddings: [Tensor<2>; 2],
    not_a_point: Tensor<2>,
    no_mask: Tensor<2>,
    down_conv1: Conv3d,
    down_norm1: LayerNorm,
    down_conv2: Conv3d,
    down_norm2: LayerNorm,
    down_conv3: Conv3d,
    embed_dim: usize,
    grid: usize,
    img_size: usize,
}

impl PromptEncoder {
    pub(crate) fn load(params: &mut ParamLoader, config: &ModelConfig) -> Self {
        let p = "prompt_encoder";
        let c = config.prompt_embed_dim;
        let quarter = config.mask_in_chans / 4;
        let conv = |d_in, d_out, kernel| ConvShape {
            d_in,
            d_out,
            kernel,
            stride: kernel,
            padding: 0,
            bias: true,
        };
        Self {
            gaussian: params.tensor(
                &format!("{p}.pe_layer.positional_encoding_gaussian_matrix"),
                [3, c / 3],
            ),
            point_embeddings: [
                params.tensor(&format!("{p}.point_embeddings.0.weight"), [1, c]),
                params.tensor(&format!("{p}.point_embeddings.1.weight"), [1, c]),
            ],
            not_a_point: params.tensor(&format!("{p}.not_a_point_embed.weight"), [1, c]),
            down_conv1: Conv3d::load(
                params,
                &format!("{p}.mask_downscaling.0"),
                conv(1, quarter, 2),
            ),
            down_norm1: LayerNorm::load(
                params,
                &format!("{p}.mask_downscaling.1"),
                quarter,
                LAYERNORM3D_EPS,
            ),
            down_conv2: Conv3d::load(
                params,
                &format!("{p}.mask_downscaling.3"),
                conv(quarter, config.mask_in_chans, 2),
            ),
            down_norm2: LayerNorm::load(
                params,
                &format!("{p}.mask_downscaling.4"),
                config.mask_in_chans,
                LAYERNORM3D_EPS,
            ),
            down_conv3: Conv3d::load(
                params,
                &format!("{p}.mask_downscaling.6"),
                conv(config.mask_in_chans, c, 1),
            ),
            no_mask: params.tensor(&format!("{p}.no_mask_embed.weight"), [1, c]),
            embed_dim: c,
            grid: config.grid_size(),
            img_size: config.img_size,
        }
    }

    /// Fourier features of coordinates `[N, 3]` normalised to [0, 1]: [sin, cos, sin] of
    /// 2π(2c − 1)·G (the reference repeats sin, so the first and last thirds agree).
    fn fourier(&self, coords: Tensor<2>) -> Tensor<2> {
        let projected =
            (coords * 2.0 - 1.0).matmul(self.gaussian.clone()) * (2.0 * std::f64::consts::PI);
        Tensor::cat(
            vec![
                projected.clone().sin(),
                projected.clone().cos(),
                projected.sin(),
            ],
            1,
        )
    }

    /// `get_dense_pe()`: `[1, C, G, G, G]`; token (i, j, k) gets the features of
    /// ((j+0.5)/G, (i+0.5)/G, (k+0.5)/G) — the reference swaps the first two axes here.
    pub fn dense_pe(&self) -> Tensor<5> {
        let g = self.grid;
        let mut coords = Vec::with_capacity(g * g * g * 3);
        for i in 0..g {
            for j in 0..g {
                for k in 0..g {
                    coords.extend([j, i, k].map(|v| (v as f32 + 0.5) / g as f32));
                }
            }
        }
        let device = self.gaussian.device();
        let coords = Tensor::<2>::from_data(TensorData::new(coords, [g * g * g, 3]), &device);
        self.fourier(coords)
            .reshape([1, g, g, g, self.embed_dim])
            .permute([0, 4, 1, 2, 3])
    }

    /// Sparse embeddings `[1, N + 1, C]` of the clicks plus the padding point the reference
    /// appends; `None` for no clicks (the reference's `points=None`).
    pub fn embed_points(&self, points: &[PointPrompt]) -> Option<Tensor<3>> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() + 1;
        let scale = self.img_size as f32;
        let mut coords: Vec<f32> = points
            .iter()
            .flat_map(|p| p.coord.map(|v| (v + 0.5) / scale))
            .collect();
        coords.extend([0.0; 3]);
        let device = self.gaussian.device();
        let pe = self.fourier(Tensor::from_data(TensorData::new(coords, [n, 3]), &device));
        let rows: Vec<Tensor<2>> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let row = pe.clone().slice_dim(0, i..i + 1);
                match p.label {
                    PointLabel::Negative => row + self.point_embeddings[0].clone(),
                    PointLabel::Positive => row + self.point_embeddings[1].clone(),
                }
            })
            .chain(std::iter::once(self.not_a_point.clone()))
            .collect();
        Some(Tensor::cat(rows, 0).unsqueeze::<3>())
    }

    /// Dense embedding `[1, C, G, G, G]` of a `[1, 1, M, M, M]` mask prompt (logits), or the
    /// learnt "no mask" embedding for `None` — which is not the same as an all-zero mask.
    pub fn embed_mask(&self, mask: Option<Tensor<5>>) -> Tensor<5> {
        match mask {
            Some(mask) => {
                let x = gelu(
                    self.down_norm1
                        .forward_channels_first(self.down_conv1.forward(mask)),
                );
                let x = gelu(
                    self.down_norm2
                        .forward_channels_first(self.down_conv2.forward(x)),
                );
                self.down_conv3.forward(x)
            }
            None => {
                let g = self.grid;
                self.no_mask
                    .clone()
                    .reshape([1, self.embed_dim, 1, 1, 1])
                    .expand([1, self.embed_dim, g, g, g])
            }
        }
    }
}
