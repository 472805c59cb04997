//! The mask decoder (`MaskDecoder3D`): a two-way transformer between prompt tokens and image
//! tokens, then hypernetwork heads over the upscaled embedding and an IoU head.

use super::config::{
    DECODER_ATTENTION_DOWNSAMPLE, DECODER_DEPTH, DECODER_HEADS, DECODER_LAYERNORM_EPS,
    DECODER_MLP_DIM, LAYERNORM3D_EPS, ModelConfig,
};
use super::layers::ConvTranspose3d;
use crate::generalists::param_loader::ParamLoader;
use crate::generalists::shared_layers::{LayerNorm, Linear, Mlp};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, relu, softmax};

/// Attention with q/k/v projections to an internal width, split into heads.
#[derive(Debug, Clone)]
struct DecoderAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl DecoderAttention {
    fn load(params: &mut ParamLoader, prefix: &str, dim: usize, downsample: usize) -> Self {
        let inner = dim / downsample;
        Self {
            q_proj: Linear::load(params, &format!("{prefix}.q_proj"), dim, inner),
            k_proj: Linear::load(params, &format!("{prefix}.k_proj"), dim, inner),
            v_proj: Linear::load(params, &format!("{prefix}.v_proj"), dim, inner),
            out_proj: Linear::load(params, &format!("{prefix}.out_proj"), inner, dim),
            heads: DECODER_HEADS,
        }
    }

    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, self.heads, c / self.heads])
            .swap_dims(1, 2)
    }

    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = self.split_heads(self.q_proj.forward(q));
        let k = self.split_heads(self.k_proj.forward(k));
        let v = self.split_heads(self.v_proj.forward(v));
        let [b, heads, n, hd] = q.dims();
        // The reference scales after the product (the encoder scales q first).
        let attn = softmax(q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, n, heads * hd]);
        self.out_proj.forward(out)
    }
}

#[derive(Debug, Clone)]
struct TwoWayBlock {
    self_attn: DecoderAttention,
    norm1: LayerNorm,
    cross_token_to_image: DecoderAttention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_image_to_token: DecoderAttention,
    /// Layer 0 replaces the queries by their self-attention (no PE, no residual).
    skip_first_layer_pe: bool,
}

impl TwoWayBlock {
    fn load(params: &mut ParamLoader, prefix: &str, dim: usize, first: bool) -> Self {
        let eps = DECODER_LAYERNORM_EPS;
        let down = DECODER_ATTENTION_DOWNSAMPLE;
        Self {
            self_attn: DecoderAttention::load(params, &format!("{prefix}.self_attn"), dim, 1),
            norm1: LayerNorm::load(params, &format!("{prefix}.norm1"), dim, eps),
            cross_token_to_image: DecoderAttention::load(
                params,
                &format!("{prefix}.cross_attn_token_to_image"),
                dim,
                down,
            ),
            norm2: LayerNorm::load(params, &format!("{prefix}.norm2"), dim, eps),
            lin1: Linear::load(params, &format!("{prefix}.mlp.lin1"), dim, DECODER_MLP_DIM),
            lin2: Linear::load(params, &format!("{prefix}.mlp.lin2"), DECODER_MLP_DIM, dim),
            norm3: LayerNorm::load(params, &format!("{prefix}.norm3"), dim, eps),
            norm4: LayerNorm::load(params, &format!("{prefix}.norm4"), dim, eps),
            cross_image_to_token: DecoderAttention::load(
                params,
                &format!("{prefix}.cross_attn_image_to_token"),
                dim,
                down,
            ),
            skip_first_layer_pe: first,
        }
    }

    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let queries = self
            .norm2
            .forward(queries + self.cross_token_to_image.forward(q, k, keys.clone()));

        let mlp = self.lin2.forward(relu(self.lin1.forward(queries.clone())));
        let queries = self.norm3.forward(queries + mlp);

        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let keys = self
            .norm4
            .forward(keys + self.cross_image_to_token.forward(k, q, queries.clone()));
        (queries, keys)
    }
}

/// Everything the decoder computes on the way, for block-by-block checks.
#[derive(Debug, Clone)]
pub struct DecoderTrace {
    /// `[1, T, C]`: iou token, mask tokens, sparse prompt rows.
    pub tokens_in: Tensor<3>,
    pub layer0_queries: Tensor<3>,
    pub layer0_keys: Tensor<3>,
    /// Queries after the final token-to-image attention and norm.
    pub hs: Tensor<3>,
    /// Image tokens `[1, G³, C]` after the transformer.
    pub keys: Tensor<3>,
    /// `[1, C/8, M, M, M]`
    pub upscaled_embedding: Tensor<5>,
    /// `[1, mask tokens, C/8]`
    pub hyper_in: Tensor<3>,
    /// `[1, mask tokens, M, M, M]` logits of every mask token.
    pub masks_all: Tensor<5>,
    /// `[1, mask tokens]`
    pub iou_all: Tensor<2>,
}

#[derive(Debug, Clone)]
pub struct MaskDecoder {
    layers: Vec<TwoWayBlock>,
    final_attn: DecoderAttention,
    norm_final: LayerNorm,
    iou_token: Tensor<2>,
    mask_tokens: Tensor<2>,
    upscale1: ConvTranspose3d,
    upscale_norm: LayerNorm,
    upscale2: ConvTranspose3d,
    hypernetworks: Vec<Mlp>,
    iou_head: Mlp,
}

impl MaskDecoder {
    pub(crate) fn load(params: &mut ParamLoader, config: &ModelConfig) -> Self {
        let p = "mask_decoder";
        let c = config.prompt_embed_dim;
        let t = format!("{p}.transformer");
        let tokens = config.num_mask_tokens();
        let layers = (0..DECODER_DEPTH)
            .map(|i| TwoWayBlock::load(params, &format!("{t}.layers.{i}"), c, i == 0))
            .collect();
        let final_attn = DecoderAttention::load(
            params,
            &format!("{t}.final_attn_token_to_image"),
            c,
            DECODER_ATTENTION_DOWNSAMPLE,
        );
        let norm_final = LayerNorm::load(
            params,
            &format!("{t}.norm_final_attn"),
            c,
            DECODER_LAYERNORM_EPS,
        );
        let iou_token = params.tensor(&format!("{p}.iou_token.weight"), [1, c]);
        let mask_tokens = params.tensor(&format!("{p}.mask_tokens.weight"), [tokens, c]);
        let upscale1 = ConvTranspose3d::load(params, &format!("{p}.output_upscaling.0"), c, c / 4);
        let upscale_norm = LayerNorm::load(
            params,
            &format!("{p}.output_upscaling.1"),
            c / 4,
            LAYERNORM3D_EPS,
        );
        let upscale2 =
            ConvTranspose3d::load(params, &format!("{p}.output_upscaling.3"), c / 4, c / 8);
        let hypernetworks = (0..tokens)
            .map(|i| {
                Mlp::load(
                    params,
                    &format!("{p}.output_hypernetworks_mlps.{i}"),
                    &[c, c, c, c / 8],
                )
            })
            .collect();
        let mut iou_dims = vec![c];
        iou_dims.extend(vec![
            config.iou_head_hidden_dim;
            config.iou_head_depth.saturating_sub(1)
        ]);
        iou_dims.push(tokens);
        let iou_head = Mlp::load(params, &format!("{p}.iou_prediction_head"), &iou_dims);
        Self {
            layers,
            final_attn,
            norm_final,
            iou_token,
            mask_tokens,
            upscale1,
            upscale_norm,
            upscale2,
            hypernetworks,
            iou_head,
        }
    }

    /// Runs the decoder for one image embedding `[1, C, G, G, G]`, its dense positional
    /// encoding, the sparse prompt rows `[1, N, C]` (if any) and the dense prompt embedding.
    pub fn forward(
        &self,
        image_embedding: Tensor<5>,
        dense_pe: Tensor<5>,
        sparse: Option<Tensor<3>>,
        dense: Tensor<5>,
    ) -> DecoderTrace {
        let [b, c, g, _, _] = image_embedding.dims();
        let n_masks = self.mask_tokens.dims()[0];
        let mut rows = vec![self.iou_token.clone(), self.mask_tokens.clone()];
        if let Some(sparse) = sparse {
            let [_, n, _] = sparse.dims();
            rows.push(sparse.reshape([n, c]));
        }
        let tokens_in = Tensor::cat(rows, 0).unsqueeze::<3>();
        let flat = |x: Tensor<5>| x.reshape([b, c, g * g * g]).swap_dims(1, 2);
        let keys = flat(image_embedding + dense);
        let key_pe = flat(dense_pe);

        let mut queries = tokens_in.clone();
        let mut keys = keys;
        let mut layer0 = None;
        for layer in &self.layers {
            let (q, k) = layer.forward(queries, keys, tokens_in.clone(), key_pe.clone());
            if layer0.is_none() {
                layer0 = Some((q.clone(), k.clone()));
            }
            queries = q;
            keys = k;
        }
        let (layer0_queries, layer0_keys) = layer0.expect("the decoder has layers");
        let q = queries.clone() + tokens_in.clone();
        let k = keys.clone() + key_pe;
        let hs = self
            .norm_final
            .forward(queries + self.final_attn.forward(q, k, keys.clone()));

        let image = keys.clone().swap_dims(1, 2).reshape([b, c, g, g, g]);
        let upscaled = gelu(
            self.upscale_norm
                .forward_channels_first(self.upscale1.forward(image)),
        );
        let upscaled = gelu(self.upscale2.forward(upscaled));
        let [_, c8, m, _, _] = upscaled.dims();
        let hyper_in = Tensor::cat(
            self.hypernetworks
                .iter()
                .enumerate()
                .map(|(i, mlp)| mlp.forward(hs.clone().slice([0..b, 1 + i..2 + i, 0..c])))
                .collect(),
            1,
        );
        let masks_all = hyper_in
            .clone()
            .matmul(upscaled.clone().reshape([b, c8, m * m * m]))
            .reshape([b, n_masks, m, m, m]);
        let iou_all = self
            .iou_head
            .forward(hs.clone().slice([0..b, 0..1, 0..c]))
            .reshape([b, n_masks]);
        DecoderTrace {
            tokens_in,
            layer0_queries,
            layer0_keys,
            hs,
            keys,
            upscaled_embedding: upscaled,
            hyper_in,
            masks_all,
            iou_all,
        }
    }
}
