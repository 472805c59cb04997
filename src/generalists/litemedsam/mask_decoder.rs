//! SAM's mask decoder (`mask_decoder.*`): a two-way transformer between the prompt tokens and
//! the 64x64 image embedding, then upscaling to 256x256 and hypernetwork mask heads.
//! Everything is channel-last: tokens (B, N, 256), image (B, 4096, 256).

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData, activation};

use super::checkpoint::Checkpoint;
use super::gelu::gelu;
use super::layers::{
    ConvTranspose2x2, LAYER_NORM_2D_EPS, LAYER_NORM_EPS, LayerNorm, Linear, ReluMlp,
};
use super::{EMBED_DIM, EMBED_GRID, LiteMedSamError};

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
            q_proj: Linear::load(ckpt, &format!("{prefix}.q_proj"), EMBED_DIM, internal)?,
            k_proj: Linear::load(ckpt, &format!("{prefix}.k_proj"), EMBED_DIM, internal)?,
            v_proj: Linear::load(ckpt, &format!("{prefix}.v_proj"), EMBED_DIM, internal)?,
            out_proj: Linear::load(ckpt, &format!("{prefix}.out_proj"), internal, EMBED_DIM)?,
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

#[derive(Clone, Debug)]
struct TwoWayBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_token_to_image: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_image_to_token: Attention,
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
            LayerNorm::load(ckpt, &format!("{prefix}.{name}"), EMBED_DIM, LAYER_NORM_EPS)
        };
        Ok(Self {
            self_attn: Attention::load(ckpt, &format!("{prefix}.self_attn"), EMBED_DIM)?,
            norm1: norm(ckpt, "norm1")?,
            cross_token_to_image: Attention::load(
                ckpt,
                &format!("{prefix}.cross_attn_token_to_image"),
                cross,
            )?,
            norm2: norm(ckpt, "norm2")?,
            lin1: Linear::load(ckpt, &format!("{prefix}.mlp.lin1"), EMBED_DIM, MLP_DIM)?,
            lin2: Linear::load(ckpt, &format!("{prefix}.mlp.lin2"), MLP_DIM, EMBED_DIM)?,
            norm3: norm(ckpt, "norm3")?,
            norm4: norm(ckpt, "norm4")?,
            cross_image_to_token: Attention::load(
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
    /// (B, M, 256, 256) mask logits of the first M mask tokens.
    pub masks: Tensor<4>,
    /// (B, 4) predicted IoU per mask token.
    pub iou: Tensor<2>,
}

#[derive(Clone, Debug)]
pub(crate) struct MaskDecoder {
    iou_token: Tensor<2>,
    mask_tokens: Tensor<2>,
    blocks: Vec<TwoWayBlock>,
    final_attn: Attention,
    norm_final: LayerNorm,
    upscale1: ConvTranspose2x2,
    upscale_norm: LayerNorm,
    upscale2: ConvTranspose2x2,
    hypernetworks: Vec<ReluMlp>,
    iou_head: ReluMlp,
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
                ReluMlp::load(
                    ckpt,
                    &format!("{prefix}.output_hypernetworks_mlps.{i}"),
                    &dims,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            iou_token: ckpt.take(&format!("{prefix}.iou_token.weight"), [1, EMBED_DIM])?,
            mask_tokens: ckpt.take(
                &format!("{prefix}.mask_tokens.weight"),
                [NUM_MASK_TOKENS, EMBED_DIM],
            )?,
            blocks,
            final_attn: Attention::load(
                ckpt,
                &format!("{prefix}.transformer.final_attn_token_to_image"),
                EMBED_DIM / CROSS_ATTENTION_DOWNSAMPLE,
            )?,
            norm_final: LayerNorm::load(
                ckpt,
                &format!("{prefix}.transformer.norm_final_attn"),
                EMBED_DIM,
                LAYER_NORM_EPS,
            )?,
            upscale1: ConvTranspose2x2::load(
                ckpt,
                &format!("{prefix}.output_upscaling.0"),
                EMBED_DIM,
                EMBED_DIM / 4,
            )?,
            upscale_norm: LayerNorm::load(
                ckpt,
                &format!("{prefix}.output_upscaling.1"),
                EMBED_DIM / 4,
                LAYER_NORM_2D_EPS,
            )?,
            upscale2: ConvTranspose2x2::load(
                ckpt,
                &format!("{prefix}.output_upscaling.3"),
                EMBED_DIM / 4,
                UPSCALED_CHANNELS,
            )?,
            hypernetworks,
            iou_head: ReluMlp::load(
                ckpt,
                &format!("{prefix}.iou_prediction_head"),
                &[EMBED_DIM, EMBED_DIM, EMBED_DIM, NUM_MASK_TOKENS],
            )?,
        })
    }

    /// `sparse`: (B, T, 256) prompt tokens; `image`: (4096, 256) image embedding tokens with the
    /// dense (no-mask) embedding already added; `image_pe`: (4096, 256). Masks come for the first
    /// `mask_tokens` tokens (1 is SAM's `multimask_output=False`).
    pub fn forward(
        &self,
        sparse: Tensor<3>,
        image: Tensor<2>,
        image_pe: Tensor<2>,
        mask_tokens: usize,
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
        let up = gelu(
            self.upscale_norm
                .forward(self.upscale1.forward_subpixel(keys)),
        );
        let up = gelu(self.upscale2.forward_subpixel(up));
        observe(&mut observer, "upscaled", || {
            interleave_subpixels(up.clone()).into_data()
        });

        let hyper_in: Vec<Tensor<3>> = self.hypernetworks[..mask_tokens]
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(queries.clone().narrow(1, 1 + i, 1)))
            .collect();
        let hyper_in = Tensor::cat(hyper_in, 1);
        let masks = interleave_subpixels(up.matmul(hyper_in.swap_dims(1, 2)));
        let iou = self
            .iou_head
            .forward(queries.narrow(1, 0, 1))
            .reshape([b, NUM_MASK_TOKENS]);
        DecoderOutput { masks, iou }
    }
}

/// (B, 16·4096, C) rows in sub-pixel order (cell (y, x), a1, b1, a2, b2) → (B, C, 256, 256) with
/// output pixel (4y + 2·a1 + a2, 4x + 2·b1 + b2).
fn interleave_subpixels(x: Tensor<3>) -> Tensor<4> {
    let [b, _, channels] = x.dims();
    let side = 4 * EMBED_GRID;
    x.reshape([b, EMBED_GRID, EMBED_GRID, 2, 2, 2, 2, channels])
        .permute([0, 7, 1, 3, 5, 2, 4, 6])
        .reshape([b, channels, side, side])
}
