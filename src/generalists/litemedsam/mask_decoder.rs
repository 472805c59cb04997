//! SAM's mask decoder (`mask_decoder.*`): a two-way transformer between the prompt tokens and
//! the 64x64 image embedding, then upscaling to 256x256 and hypernetwork mask heads.
//! Everything is channel-last: tokens (B, N, 256), image (B, 4096, 256).

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData, activation};

use super::checkpoint::Checkpoint;
use super::gelu::gelu;
use super::layers::{ConvTranspose2x2, LAYER_NORM_2D_EPS, LAYER_NORM_EPS};
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
    ckpt.tensor(x.into_data().try_into_vec::<f32>().expect("f32"), dims)
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

    /// `tokens`: (B, T, 256) queries; `image_keys`: (B, P, 256) image tokens plus PE;
    /// `image_values`: (B, P, 256).
    fn forward(
        &self,
        tokens: Tensor<3>,
        image_keys: Tensor<3>,
        image_values: Tensor<3>,
    ) -> Tensor<3> {
        let [b, t, _] = tokens.dims();
        let [_, _, head_dim] = self.v_heads.dims();
        let q = Attention::separate_heads(self.q_proj.forward(tokens));
        let q_keys = q.matmul(expand_heads(&self.k_heads, b));
        let scores = q_keys
            .reshape([b, HEADS * t, EMBED_DIM])
            .matmul(image_keys.swap_dims(1, 2));
        let mixed = activation::softmax(scores, 2).matmul(image_values);
        let out = mixed
            .reshape([b, HEADS, t, EMBED_DIM])
            .matmul(expand_heads(&self.v_heads, b))
            + self.v_bias.clone();
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
    out_bias: Tensor<1>,
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
            out_bias: out_proj.bias(),
        })
    }

    /// `image_queries`: (B, P, 256) image tokens plus PE; `tokens_keys`, `tokens_values`:
    /// (B, T, 256).
    fn forward(
        &self,
        image_queries: Tensor<3>,
        tokens_keys: Tensor<3>,
        tokens_values: Tensor<3>,
    ) -> Tensor<3> {
        let [b, pixels, _] = image_queries.dims();
        let [_, t, _] = tokens_keys.dims();
        let [_, _, head_dim] = self.q_heads.dims();
        let keys_t = Attention::separate_heads(self.k_proj.forward(tokens_keys)).swap_dims(2, 3);
        let values = Attention::separate_heads(self.v_proj.forward(tokens_values));
        // (B, heads, 256, T) → (B, 256, heads·T), columns grouped by head.
        let query_keys = expand_heads(&self.q_heads, b)
            .matmul(keys_t.clone())
            .swap_dims(1, 2)
            .reshape([b, EMBED_DIM, HEADS * t]);
        let bias_keys = self
            .q_bias
            .clone()
            .expand([b, HEADS, 1, head_dim])
            .matmul(keys_t)
            .reshape([b, 1, HEADS * t]);
        let scores = (image_queries.matmul(query_keys) + bias_keys).reshape([b, pixels, HEADS, t]);
        let weights = activation::softmax(scores, 3).reshape([b, pixels, HEADS * t]);
        let value_out =
            values
                .matmul(expand_heads(&self.out_heads, b))
                .reshape([b, HEADS * t, EMBED_DIM]);
        weights.matmul(value_out) + self.out_bias.clone().unsqueeze::<3>()
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
    norm4: LayerNorm,
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
            norm4: norm(ckpt, "norm4"),
            cross_image_to_token: ImageToTokenAttention::load(
                ckpt,
                &format!("{prefix}.cross_attn_image_to_token"),
                cross,
            )?,
            skip_first_layer_pe,
        })
    }

    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: &Tensor<3>,
        key_pe: &Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
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
        let keys_pe = keys.clone() + key_pe.clone();
        let queries = self.norm2.forward(
            queries
                + self
                    .cross_token_to_image
                    .forward(q, keys_pe.clone(), keys.clone()),
        );

        let mlp = self
            .lin2
            .forward(activation::relu(self.lin1.forward(queries.clone())));
        let queries = self.norm3.forward(queries + mlp);

        let q = queries.clone() + query_pe.clone();
        let keys = self.norm4.forward(
            keys + self
                .cross_image_to_token
                .forward(keys_pe, q, queries.clone()),
        );
        (queries, keys)
    }
}

/// Output of the decoder for a batch of prompt sets on one image embedding.
pub(crate) struct DecoderOutput {
    /// (B, M, H, W) mask logits of the first M mask tokens over the decoded window.
    pub masks: Tensor<4>,
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
    upscale_norm: LayerNorm,
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
            upscale_norm: LayerNorm::load(
                ckpt.params(),
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

    /// `sparse`: (B, T, 256) prompt tokens; `image`: (4096, 256) image embedding tokens with the
    /// dense (no-mask) embedding already added; `image_pe`: (4096, 256). Masks come for the first
    /// `mask_tokens` tokens (1 is SAM's `multimask_output=False`), over `window` of the 256x256
    /// grid (non-empty, inside the grid).
    pub fn forward(
        &self,
        sparse: Tensor<3>,
        image: Tensor<2>,
        image_pe: Tensor<2>,
        mask_tokens: usize,
        window: &LogitWindow,
        mut observer: Option<DecoderObserver<'_>>,
    ) -> DecoderOutput {
        assert!(
            (1..=NUM_MASK_TOKENS).contains(&mask_tokens),
            "1 to {NUM_MASK_TOKENS} mask tokens"
        );
        let [b, _, _] = sparse.dims();
        let [pixels, _] = image.dims();
        let output_tokens = Tensor::cat(vec![self.iou_token.clone(), self.mask_tokens.clone()], 0)
            .unsqueeze::<3>()
            .expand([b, 1 + NUM_MASK_TOKENS, EMBED_DIM]);
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1);
        observe(&mut observer, "tokens_in", || tokens.to_data());
        let key_pe: Tensor<3> = image_pe.unsqueeze::<3>().expand([b, pixels, EMBED_DIM]);
        let mut keys: Tensor<3> = image.unsqueeze::<3>().expand([b, pixels, EMBED_DIM]);
        let mut queries = tokens.clone();
        for block in &self.blocks {
            (queries, keys) = block.forward(queries, keys, &tokens, &key_pe);
        }
        let q = queries.clone() + tokens;
        let k = keys.clone() + key_pe;
        let queries = self
            .norm_final
            .forward(queries + self.final_attn.forward(q, k, keys.clone()));
        observe(&mut observer, "transformer_hs", || queries.to_data());
        observe(&mut observer, "transformer_keys", || keys.to_data());

        // Both upscalings and everything between them act per pixel, so the 16 outputs of each
        // grid cell stay together (rows (cell, a1, b1, a2, b2)) and only the masks get
        // interleaved onto the 256x256 grid: output pixel (4y + 2·a1 + a2, 4x + 2·b1 + b2).
        // For the same reason only the cells under the window need upscaling.
        let cells = window_cells(keys, window);
        let up = gelu(
            self.upscale_norm
                .forward(self.upscale1.forward_subpixel(cells)),
        );
        let up = gelu(self.upscale2.forward_subpixel(up));
        observe(&mut observer, "upscaled", || {
            interleave_subpixels(up.clone(), window).into_data()
        });

        let hyper_in: Vec<Tensor<3>> = self.hypernetworks[..mask_tokens]
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(queries.clone().narrow(1, 1 + i, 1)))
            .collect();
        let hyper_in = Tensor::cat(hyper_in, 1);
        let masks = interleave_subpixels(up.matmul(hyper_in.swap_dims(1, 2)), window);
        let iou = self
            .iou_head
            .forward(queries.narrow(1, 0, 1))
            .reshape([b, NUM_MASK_TOKENS]);
        DecoderOutput { masks, iou }
    }
}

/// The image tokens (B, 4096, C) of the window's cells, row by row: (B, cells, C).
fn window_cells(tokens: Tensor<3>, window: &LogitWindow) -> Tensor<3> {
    if *window == LogitWindow::full() {
        return tokens;
    }
    let (first, width) = (window.cell_cols.start, window.cell_cols.len());
    let rows: Vec<Tensor<3>> = window
        .cell_rows
        .clone()
        .map(|y| tokens.clone().narrow(1, y * EMBED_GRID + first, width))
        .collect();
    Tensor::cat(rows, 1)
}

/// (B, 16·cells, C) rows in sub-pixel order (cell (y, x), a1, b1, a2, b2) → (B, C, H, W) over the
/// window, with output pixel (4y + 2·a1 + a2, 4x + 2·b1 + b2) relative to its corner.
fn interleave_subpixels(x: Tensor<3>, window: &LogitWindow) -> Tensor<4> {
    let [b, _, channels] = x.dims();
    let (rows, cols) = (window.cell_rows.len(), window.cell_cols.len());
    x.reshape([b, rows, cols, 2, 2, 2, 2, channels])
        .permute([0, 7, 1, 3, 5, 2, 4, 6])
        .reshape([b, channels, window.height(), window.width()])
}
