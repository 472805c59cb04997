//! SAM's mask decoder (`mask_decoder.*`): a two-way transformer between the prompt tokens and
//! the 64x64 image embedding, then upscaling to 256x256 and hypernetwork mask heads.
//! Everything is channel-last: tokens (B, N, 256), image (B, 4096, 256). The prompt tokens are
//! a handful and stay burn tensors; the image side (B x 4096 rows) is plain rows that the kernels
//! crate's attention, norm and GEMM kernels work on in place.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData, activation};
use rayon::prelude::*;
use semisam_kernels::matmul::{Matrix, matmul};
use semisam_kernels::path::selected as kernel_path;
use semisam_kernels::prompt_attention::{TokenSide, image_to_tokens_add, tokens_to_image};

use super::checkpoint::Checkpoint;
use super::gelu::gelu_in_place;
use super::layers::{ConvTranspose2x2, LAYER_NORM_2D_EPS, LAYER_NORM_EPS, TokenLayerNorm};
use super::preprocess::LogitWindow;
use super::{EMBED_DIM, EMBED_GRID, LiteMedSamError};
use crate::generalists::shared_layers::{LayerNorm, Linear, Mlp};

const HEADS: usize = 8;
const MLP_DIM: usize = 2048;
const DEPTH: usize = 2;
const CROSS_ATTENTION_DOWNSAMPLE: usize = 2;
pub(crate) const NUM_MASK_TOKENS: usize = 4;
const UPSCALED_CHANNELS: usize = EMBED_DIM / 8;

/// Receives named intermediate decoder tensors when tracing.
pub type DecoderObserver<'a> = &'a mut dyn FnMut(&str, TensorData);

/// SAM's `Attention`: q/k/v projections to `internal` channels, contiguous heads.
#[derive(Clone, Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
}

impl Attention {
    fn load(ckpt: &mut Checkpoint, prefix: &str, internal: usize) -> Result<Self, LiteMedSamError> {
        Ok(Self {
            q_proj: Linear::load(
                ckpt.params(),
                &format!("{prefix}.q_proj"),
                EMBED_DIM,
                internal,
            ),
            k_proj: Linear::load(
                ckpt.params(),
                &format!("{prefix}.k_proj"),
                EMBED_DIM,
                internal,
            ),
            v_proj: Linear::load(
                ckpt.params(),
                &format!("{prefix}.v_proj"),
                EMBED_DIM,
                internal,
            ),
            out_proj: Linear::load(
                ckpt.params(),
                &format!("{prefix}.out_proj"),
                internal,
                EMBED_DIM,
            ),
        })
    }

    fn separate_heads(x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, HEADS, c / HEADS]).swap_dims(1, 2)
    }

    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = Self::separate_heads(self.q_proj.forward(q));
        let k = Self::separate_heads(self.k_proj.forward(k));
        let v = Self::separate_heads(self.v_proj.forward(v));
        let [b, _, n, head_dim] = q.dims();
        // Fused softmax(q·kᵀ/√head_dim)·v (the default scale).
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, n, HEADS * head_dim]))
    }
}

/// A copy of `x` in row-major order, so that matmuls on it read contiguous memory.
fn materialise<const D: usize>(ckpt: &Checkpoint, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    ckpt.tensor(values_of(x), dims)
}

/// A tensor's values in row-major order.
fn values_of<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

/// The image side of the two-way transformer: `batch` maps of the same number of channel-last
/// rows of 256, one per prompt set (each set's attention updates its own copy).
#[derive(Clone, Debug)]
struct ImageTokens {
    values: Vec<f32>,
    batch: usize,
}

impl ImageTokens {
    /// `batch` copies of one map (the map itself when `batch` is 1).
    fn repeated(image: Vec<f32>, batch: usize) -> Self {
        let values = if batch == 1 {
            image
        } else {
            image.repeat(batch)
        };
        Self { values, batch }
    }

    fn pixels(&self) -> usize {
        self.values.len() / (self.batch * EMBED_DIM)
    }

    /// Every map plus the positional encoding `pe` (one map's worth of rows).
    fn plus(&self, pe: &[f32]) -> Vec<f32> {
        let mut sum = Vec::with_capacity(self.values.len());
        for map in self.values.chunks_exact(pe.len()) {
            sum.par_extend(map.par_iter().zip(pe).map(|(&v, &p)| v + p));
        }
        sum
    }
}

/// `(d_in, heads·head_dim)` → `(heads, d_in, head_dim)`.
fn split_head_columns(ckpt: &Checkpoint, weight_t: &Tensor<2>) -> Tensor<3> {
    let [d_in, d_out] = weight_t.dims();
    let split = weight_t
        .clone()
        .reshape([d_in, HEADS, d_out / HEADS])
        .swap_dims(0, 1);
    materialise(ckpt, split)
}

/// `(heads·head_dim, d_out)` → `(heads, head_dim, d_out)`.
fn split_head_rows(ckpt: &Checkpoint, weight_t: &Tensor<2>) -> Tensor<3> {
    let [d_in, d_out] = weight_t.dims();
    materialise(ckpt, weight_t.clone().reshape([HEADS, d_in / HEADS, d_out]))
}

/// A projection's bias as (1, heads, 1, head_dim), to add to per-head tensors.
fn head_bias(proj: &Linear) -> Tensor<4> {
    let [d_out] = proj.bias().dims();
    proj.bias().reshape([1, HEADS, 1, d_out / HEADS])
}

/// `softmax(q·kᵀ/√head_dim)`'s scale, folded into one side's weights at load time.
fn attention_scale(internal: usize) -> f64 {
    ((internal / HEADS) as f64).powf(-0.5)
}

fn expand_heads(weights: &Tensor<3>, batch: usize) -> Tensor<4> {
    let [h, r, c] = weights.dims();
    weights.clone().unsqueeze::<4>().expand([batch, h, r, c])
}

/// The prompt tokens (a handful) attend to the 4096 image tokens. The image-side key and value
/// projections are folded into the token side: with T tokens and 8 heads, `(q·Wkᵀ)·imageᵀ` and
/// `(P·image)·Wv` cost 8T·256 per pixel instead of the 2·256·128 of projecting every pixel. The
/// key bias adds the same constant to a whole softmax row, so it drops out; the value bias passes
/// through because attention rows sum to one.
#[derive(Clone, Debug)]
struct TokenToImageAttention {
    q_proj: Linear,
    /// (heads, head_dim, 256): each head's key projection, transposed, times the softmax scale.
    k_heads: Tensor<3>,
    /// (heads, 256, head_dim).
    v_heads: Tensor<3>,
    /// (1, heads, 1, head_dim).
    v_bias: Tensor<4>,
    out_proj: Linear,
}

impl TokenToImageAttention {
    fn load(ckpt: &mut Checkpoint, prefix: &str, internal: usize) -> Result<Self, LiteMedSamError> {
        let Attention {
            q_proj,
            k_proj,
            v_proj,
            out_proj,
        } = Attention::load(ckpt, prefix, internal)?;
        let k_scaled = k_proj
            .weight_t()
            .clone()
            .transpose()
            .mul_scalar(attention_scale(internal));
        Ok(Self {
            q_proj,
            k_heads: split_head_rows(ckpt, &k_scaled),
            v_heads: split_head_columns(ckpt, v_proj.weight_t()),
            v_bias: head_bias(&v_proj),
            out_proj,
        })
    }

    /// `tokens`: (B, T, 256) queries; `image_keys`: B maps of image tokens plus PE;
    /// `image_values`: B maps of image tokens (rows of 256 each).
    fn forward(&self, tokens: Tensor<3>, image_keys: &[f32], image_values: &[f32]) -> Tensor<3> {
        let [b, t, _] = tokens.dims();
        let device = tokens.device();
        let [_, _, head_dim] = self.v_heads.dims();
        let q = Attention::separate_heads(self.q_proj.forward(tokens));
        let q_keys = values_of(q.matmul(expand_heads(&self.k_heads, b)));
        let path = kernel_path();
        let map = image_keys.len() / b;
        let mut mixed = Vec::with_capacity(q_keys.len());
        for ((queries, keys), values) in q_keys
            .chunks_exact(HEADS * t * EMBED_DIM)
            .zip(image_keys.chunks_exact(map))
            .zip(image_values.chunks_exact(map))
        {
            mixed.extend(tokens_to_image(
                path, queries, keys, values, EMBED_DIM, EMBED_DIM,
            ));
        }
        let mixed = Tensor::from_data(TensorData::new(mixed, [b, HEADS, t, EMBED_DIM]), &device);
        let out = mixed.matmul(expand_heads(&self.v_heads, b)) + self.v_bias.clone();
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, HEADS * head_dim]))
    }
}

/// The 4096 image tokens attend to the prompt tokens. The image-side query and output
/// projections are folded into the token side (see [`TokenToImageAttention`]): scores are
/// `image·(Wq·kᵀ) + bq·kᵀ` and the output is `P·(v·Wo)`, both 8T wide instead of 128.
#[derive(Clone, Debug)]
struct ImageToTokenAttention {
    /// (heads, 256, head_dim), times the softmax scale.
    q_heads: Tensor<3>,
    /// (1, heads, 1, head_dim), times the softmax scale.
    q_bias: Tensor<4>,
    k_proj: Linear,
    v_proj: Linear,
    /// (heads, head_dim, 256).
    out_heads: Tensor<3>,
    out_bias: Vec<f32>,
}

impl ImageToTokenAttention {
    fn load(ckpt: &mut Checkpoint, prefix: &str, internal: usize) -> Result<Self, LiteMedSamError> {
        let Attention {
            q_proj,
            k_proj,
            v_proj,
            out_proj,
        } = Attention::load(ckpt, prefix, internal)?;
        let scale = attention_scale(internal);
        Ok(Self {
            q_heads: split_head_columns(ckpt, &q_proj.weight_t().clone().mul_scalar(scale)),
            q_bias: head_bias(&q_proj).mul_scalar(scale),
            k_proj,
            v_proj,
            out_heads: split_head_rows(ckpt, out_proj.weight_t()),
            out_bias: values_of(out_proj.bias()),
        })
    }

    /// `residual += attention(image_queries, tokens)`: `image_queries` are B maps of image
    /// tokens plus PE, `residual` B maps of image tokens; `tokens_keys`, `tokens_values`:
    /// (B, T, 256).
    fn add_to(
        &self,
        image_queries: &[f32],
        tokens_keys: Tensor<3>,
        tokens_values: Tensor<3>,
        residual: &mut [f32],
    ) {
        let [b, t, _] = tokens_keys.dims();
        let [_, _, head_dim] = self.q_heads.dims();
        let keys_t = Attention::separate_heads(self.k_proj.forward(tokens_keys)).swap_dims(2, 3);
        let values = Attention::separate_heads(self.v_proj.forward(tokens_values));
        // (B, heads, 256, T) → (B, 256, heads·T), columns grouped by head.
        let query_keys = values_of(
            expand_heads(&self.q_heads, b)
                .matmul(keys_t.clone())
                .swap_dims(1, 2)
                .reshape([b, EMBED_DIM, HEADS * t]),
        );
        let score_bias = values_of(
            self.q_bias
                .clone()
                .expand([b, HEADS, 1, head_dim])
                .matmul(keys_t)
                .reshape([b, HEADS * t]),
        );
        let value_out = values_of(values.matmul(expand_heads(&self.out_heads, b)).reshape([
            b,
            HEADS * t,
            EMBED_DIM,
        ]));
        let path = kernel_path();
        let map = image_queries.len() / b;
        let columns = HEADS * t;
        for (i, (image, residual)) in image_queries
            .chunks_exact(map)
            .zip(residual.chunks_exact_mut(map))
            .enumerate()
        {
            let tokens = TokenSide {
                query_keys: &query_keys[i * EMBED_DIM * columns..][..EMBED_DIM * columns],
                score_bias: &score_bias[i * columns..][..columns],
                group: t,
                value_out: &value_out[i * columns * EMBED_DIM..][..columns * EMBED_DIM],
                out_bias: &self.out_bias,
            };
            image_to_tokens_add(path, image, EMBED_DIM, tokens, residual);
        }
    }
}

#[derive(Clone, Debug)]
struct TwoWayBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_token_to_image: TokenToImageAttention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNorm,
    norm4: TokenLayerNorm,
    cross_image_to_token: ImageToTokenAttention,
    skip_first_layer_pe: bool,
}

impl TwoWayBlock {
    fn load(
        ckpt: &mut Checkpoint,
        prefix: &str,
        skip_first_layer_pe: bool,
    ) -> Result<Self, LiteMedSamError> {
        let cross = EMBED_DIM / CROSS_ATTENTION_DOWNSAMPLE;
        let norm = |ckpt: &mut Checkpoint, name: &str| {
            LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.{name}"),
                EMBED_DIM,
                LAYER_NORM_EPS,
            )
        };
        Ok(Self {
            self_attn: Attention::load(ckpt, &format!("{prefix}.self_attn"), EMBED_DIM)?,
            norm1: norm(ckpt, "norm1"),
            cross_token_to_image: TokenToImageAttention::load(
                ckpt,
                &format!("{prefix}.cross_attn_token_to_image"),
                cross,
            )?,
            norm2: norm(ckpt, "norm2"),
            lin1: Linear::load(
                ckpt.params(),
                &format!("{prefix}.mlp.lin1"),
                EMBED_DIM,
                MLP_DIM,
            ),
            lin2: Linear::load(
                ckpt.params(),
                &format!("{prefix}.mlp.lin2"),
                MLP_DIM,
                EMBED_DIM,
            ),
            norm3: norm(ckpt, "norm3"),
            norm4: TokenLayerNorm::load(
                ckpt,
                &format!("{prefix}.norm4"),
                EMBED_DIM,
                LAYER_NORM_EPS,
            ),
            cross_image_to_token: ImageToTokenAttention::load(
                ckpt,
                &format!("{prefix}.cross_attn_image_to_token"),
                cross,
            )?,
            skip_first_layer_pe,
        })
    }

    /// Updates the queries (returned) and the image tokens (in place).
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: &mut ImageTokens,
        query_pe: &Tensor<3>,
        key_pe: &[f32],
    ) -> Tensor<3> {
        // The first block's self-attention replaces the queries (no PE, no residual).
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        // The keys do not change until the end of the block: one positional sum for both
        // cross-attentions.
        let keys_pe = keys.plus(key_pe);
        let queries = self
            .norm2
            .forward(queries + self.cross_token_to_image.forward(q, &keys_pe, &keys.values));

        let mlp = self
            .lin2
            .forward(activation::relu(self.lin1.forward(queries.clone())));
        let queries = self.norm3.forward(queries + mlp);

        let q = queries.clone() + query_pe.clone();
        self.cross_image_to_token
            .add_to(&keys_pe, q, queries.clone(), &mut keys.values);
        keys.values = self.norm4.forward(&keys.values);
        queries
    }
}

/// Output of the decoder for a batch of prompt sets on one image embedding.
pub(crate) struct DecoderOutput {
    /// (B, M, H, W) mask logits of the first M mask tokens over the decoded window, row-major.
    pub masks: Vec<f32>,
    /// (B, 4) predicted IoU per mask token.
    pub iou: Tensor<2>,
}

#[derive(Clone, Debug)]
pub(crate) struct MaskDecoder {
    iou_token: Tensor<2>,
    mask_tokens: Tensor<2>,
    blocks: Vec<TwoWayBlock>,
    final_attn: TokenToImageAttention,
    norm_final: LayerNorm,
    upscale1: ConvTranspose2x2,
    upscale_norm: TokenLayerNorm,
    upscale2: ConvTranspose2x2,
    hypernetworks: Vec<Mlp>,
    iou_head: Mlp,
}

fn observe(
    observer: &mut Option<DecoderObserver<'_>>,
    name: &str,
    value: impl FnOnce() -> TensorData,
) {
    if let Some(observer) = observer {
        observer(name, value());
    }
}

impl MaskDecoder {
    pub fn load(ckpt: &mut Checkpoint, prefix: &str) -> Result<Self, LiteMedSamError> {
        let blocks = (0..DEPTH)
            .map(|i| TwoWayBlock::load(ckpt, &format!("{prefix}.transformer.layers.{i}"), i == 0))
            .collect::<Result<_, _>>()?;
        let hypernetworks = (0..NUM_MASK_TOKENS)
            .map(|i| {
                let dims = [EMBED_DIM, EMBED_DIM, EMBED_DIM, UPSCALED_CHANNELS];
                Mlp::load(
                    ckpt.params(),
                    &format!("{prefix}.output_hypernetworks_mlps.{i}"),
                    &dims,
                )
            })
            .collect();
        Ok(Self {
            iou_token: ckpt.take(&format!("{prefix}.iou_token.weight"), [1, EMBED_DIM]),
            mask_tokens: ckpt.take(
                &format!("{prefix}.mask_tokens.weight"),
                [NUM_MASK_TOKENS, EMBED_DIM],
            ),
            blocks,
            final_attn: TokenToImageAttention::load(
                ckpt,
                &format!("{prefix}.transformer.final_attn_token_to_image"),
                EMBED_DIM / CROSS_ATTENTION_DOWNSAMPLE,
            )?,
            norm_final: LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.transformer.norm_final_attn"),
                EMBED_DIM,
                LAYER_NORM_EPS,
            ),
            upscale1: ConvTranspose2x2::load(
                ckpt,
                &format!("{prefix}.output_upscaling.0"),
                EMBED_DIM,
                EMBED_DIM / 4,
            )?,
            upscale_norm: TokenLayerNorm::load(
                ckpt,
                &format!("{prefix}.output_upscaling.1"),
                EMBED_DIM / 4,
                LAYER_NORM_2D_EPS,
            ),
            upscale2: ConvTranspose2x2::load(
                ckpt,
                &format!("{prefix}.output_upscaling.3"),
                EMBED_DIM / 4,
                UPSCALED_CHANNELS,
            )?,
            hypernetworks,
            iou_head: Mlp::load(
                ckpt.params(),
                &format!("{prefix}.iou_prediction_head"),
                &[EMBED_DIM, EMBED_DIM, EMBED_DIM, NUM_MASK_TOKENS],
            ),
        })
    }

    /// `sparse`: (B, T, 256) prompt tokens; `image`: the 4096 image embedding tokens, rows of
    /// 256, with the dense (no-mask) embedding already added; `image_pe`: the same for the
    /// positional encoding. Masks come for the first `mask_tokens` tokens (1 is SAM's
    /// `multimask_output=False`), over `window` of the 256x256 grid (non-empty, inside the grid).
    pub fn forward(
        &self,
        sparse: Tensor<3>,
        image: Vec<f32>,
        image_pe: &[f32],
        mask_tokens: usize,
        window: &LogitWindow,
        mut observer: Option<DecoderObserver<'_>>,
    ) -> DecoderOutput {
        assert!(
            (1..=NUM_MASK_TOKENS).contains(&mask_tokens),
            "1 to {NUM_MASK_TOKENS} mask tokens"
        );
        assert_eq!(
            image.len(),
            image_pe.len(),
            "image and positional encoding sizes"
        );
        let [b, _, _] = sparse.dims();
        let output_tokens = Tensor::cat(vec![self.iou_token.clone(), self.mask_tokens.clone()], 0)
            .unsqueeze::<3>()
            .expand([b, 1 + NUM_MASK_TOKENS, EMBED_DIM]);
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1);
        observe(&mut observer, "tokens_in", || tokens.to_data());
        let mut keys = ImageTokens::repeated(image, b);
        let mut queries = tokens.clone();
        for block in &self.blocks {
            queries = block.forward(queries, &mut keys, &tokens, image_pe);
        }
        let q = queries.clone() + tokens;
        let queries = self.norm_final.forward(
            queries
                + self
                    .final_attn
                    .forward(q, &keys.plus(image_pe), &keys.values),
        );
        observe(&mut observer, "transformer_hs", || queries.to_data());
        observe(&mut observer, "transformer_keys", || {
            TensorData::new(keys.values.clone(), [b, keys.pixels(), EMBED_DIM])
        });

        // Both upscalings and everything between them act per pixel, so the 16 outputs of each
        // grid cell stay together (rows (cell, a1, b1, a2, b2)) and only the masks get
        // interleaved onto the 256x256 grid: output pixel (4y + 2·a1 + a2, 4x + 2·b1 + b2).
        // For the same reason only the cells under the window need upscaling.
        let cells = window_cells(keys, window);
        let mut up = self
            .upscale_norm
            .forward(&self.upscale1.forward_subpixel(&cells));
        gelu_in_place(&mut up);
        let mut up = self.upscale2.forward_subpixel(&up);
        gelu_in_place(&mut up);
        observe(&mut observer, "upscaled", || {
            let dims = [b, UPSCALED_CHANNELS, window.height(), window.width()];
            TensorData::new(
                interleave_subpixels(&up, b, UPSCALED_CHANNELS, window),
                dims,
            )
        });

        let hyper_in: Vec<Tensor<3>> = self.hypernetworks[..mask_tokens]
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(queries.clone().narrow(1, 1 + i, 1)))
            .collect();
        let hyper_in = values_of(Tensor::cat(hyper_in, 1));
        let map = up.len() / b;
        let pixels = map / UPSCALED_CHANNELS;
        let mut masks = vec![0.0f32; b * pixels * mask_tokens];
        for ((masks, up), hyper) in masks
            .chunks_exact_mut(pixels * mask_tokens)
            .zip(up.chunks_exact(map))
            .zip(hyper_in.chunks_exact(mask_tokens * UPSCALED_CHANNELS))
        {
            matmul(
                masks,
                Matrix::row_major(up, pixels, UPSCALED_CHANNELS),
                Matrix::row_major(hyper, mask_tokens, UPSCALED_CHANNELS).transposed(),
                false,
            );
        }
        let iou = self
            .iou_head
            .forward(queries.narrow(1, 0, 1))
            .reshape([b, NUM_MASK_TOKENS]);
        DecoderOutput {
            masks: interleave_subpixels(&masks, b, mask_tokens, window),
            iou,
        }
    }
}

/// The image tokens of the window's cells, row by row: B x cells rows of 256.
fn window_cells(tokens: ImageTokens, window: &LogitWindow) -> Vec<f32> {
    if *window == LogitWindow::full() {
        return tokens.values;
    }
    let (first, width) = (window.cell_cols.start, window.cell_cols.len());
    let map = tokens.values.len() / tokens.batch;
    let mut values = Vec::with_capacity(tokens.batch * window.cell_rows.len() * width * EMBED_DIM);
    for image in tokens.values.chunks_exact(map) {
        for y in window.cell_rows.clone() {
            values.extend_from_slice(
                &image[(y * EMBED_GRID + first) * EMBED_DIM..][..width * EMBED_DIM],
            );
        }
    }
    values
}

/// `batch` maps of rows of `channels` in sub-pixel order (cell (y, x), a1, b1, a2, b2) →
/// (batch, channels, H, W) over the window, with output pixel (4y + 2·a1 + a2, 4x + 2·b1 + b2)
/// relative to its corner.
fn interleave_subpixels(
    rows: &[f32],
    batch: usize,
    channels: usize,
    window: &LogitWindow,
) -> Vec<f32> {
    let (height, width, cell_cols) = (window.height(), window.width(), window.cell_cols.len());
    let map = rows.len() / batch;
    let mut out = vec![0.0f32; rows.len()];
    for (rows, out) in rows.chunks_exact(map).zip(out.chunks_exact_mut(map)) {
        for (r, row) in rows.chunks_exact(channels).enumerate() {
            let (cell, sub) = (r / 16, r % 16);
            let y = 4 * (cell / cell_cols) + 2 * (sub >> 3 & 1) + (sub >> 1 & 1);
            let x = 4 * (cell % cell_cols) + 2 * (sub >> 2 & 1) + (sub & 1);
            for (c, &v) in row.iter().enumerate() {
                out[(c * height + y) * width + x] = v;
            }
        }
    }
    out
}
