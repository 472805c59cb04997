//! The image encoder (`ImageEncoderViT3D`): patch embedding, absolute position embedding,
//! window and global attention blocks with the reference's decomposed relative-position
//! bias, and the neck down to `prompt_embed_dim` channels.
//!
//! Token tensors are channels-last `[B, D, H, W, C]`, as inside the reference.

use super::config::{LAYERNORM3D_EPS, ModelConfig};
use super::layers::{Conv3d, ConvShape};
use super::padded_window::{QkvBias, padded_window_attention};
use super::rel_pos::RelPosTables;
use crate::generalists::param_loader::ParamLoader;
use crate::generalists::shared_layers::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, softmax};

#[derive(Debug, Clone)]
pub struct ImageEncoder {
    patch_embed: Conv3d,
    pos_embed: Option<Tensor<5>>,
    blocks: Vec<Block>,
    neck_conv1: Conv3d,
    neck_norm1: LayerNorm,
    neck_conv2: Conv3d,
    neck_norm2: LayerNorm,
}

/// The four neck stages, for block-by-block checks.
pub struct NeckStages {
    pub conv1: Tensor<5>,
    pub norm1: Tensor<5>,
    pub conv2: Tensor<5>,
    pub norm2: Tensor<5>,
}

impl ImageEncoder {
    pub(crate) fn load(params: &mut ParamLoader, config: &ModelConfig) -> Self {
        let p = "image_encoder";
        let dim = config.encoder_embed_dim;
        let grid = config.grid_size();
        let out = config.prompt_embed_dim;
        // Requested in the reference's state-dict order.
        let pos_embed = config
            .use_abs_pos
            .then(|| params.tensor(&format!("{p}.pos_embed"), [1, grid, grid, grid, dim]));
        let patch_embed = Conv3d::load(
            params,
            &format!("{p}.patch_embed.proj"),
            ConvShape {
                d_in: config.in_chans,
                d_out: dim,
                kernel: config.patch_size,
                stride: config.patch_size,
                padding: 0,
                bias: true,
            },
        );
        let blocks = (0..config.encoder_depth)
            .map(|i| Block::load(params, &format!("{p}.blocks.{i}"), config, i))
            .collect();
        let conv = |d_in, kernel, padding| ConvShape {
            d_in,
            d_out: out,
            kernel,
            stride: 1,
            padding,
            bias: false,
        };
        Self {
            patch_embed,
            pos_embed,
            blocks,
            neck_conv1: Conv3d::load(params, &format!("{p}.neck.0"), conv(dim, 1, 0)),
            neck_norm1: LayerNorm::load(params, &format!("{p}.neck.1"), out, LAYERNORM3D_EPS),
            neck_conv2: Conv3d::load(params, &format!("{p}.neck.2"), conv(out, 3, 1)),
            neck_norm2: LayerNorm::load(params, &format!("{p}.neck.3"), out, LAYERNORM3D_EPS),
        }
    }

    /// Patch embedding of a `[B, in_chans, S, S, S]` volume, channels-last, before the
    /// position embedding.
    pub fn patch_embed(&self, volume: Tensor<5>) -> Tensor<5> {
        self.patch_embed.forward(volume).permute([0, 2, 3, 4, 1])
    }

    pub fn add_pos_embed(&self, tokens: Tensor<5>) -> Tensor<5> {
        match &self.pos_embed {
            Some(pos) => tokens + pos.clone(),
            None => tokens,
        }
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The neck on the blocks' channels-last output, each stage channels-first.
    pub fn neck(&self, tokens: Tensor<5>) -> NeckStages {
        let conv1 = self.neck_conv1.forward(tokens.permute([0, 4, 1, 2, 3]));
        let norm1 = self.neck_norm1.forward_channels_first(conv1.clone());
        let conv2 = self.neck_conv2.forward(norm1.clone());
        let norm2 = self.neck_norm2.forward_channels_first(conv2.clone());
        NeckStages {
            conv1,
            norm1,
            conv2,
            norm2,
        }
    }

    /// The image embedding `[B, prompt_embed_dim, G, G, G]` of a `[B, in_chans, S, S, S]` volume.
    pub fn forward(&self, volume: Tensor<5>) -> Tensor<5> {
        let mut x = self.add_pos_embed(self.patch_embed(volume));
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.neck(x).norm2
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    /// `None` for a global block.
    window_size: Option<usize>,
}

impl Block {
    fn load(params: &mut ParamLoader, prefix: &str, config: &ModelConfig, index: usize) -> Self {
        let dim = config.encoder_embed_dim;
        let eps = config.encoder_layernorm_eps;
        let window_size = (!config.is_global_block(index)).then_some(config.window_size);
        let attention_size = window_size.unwrap_or(config.grid_size());
        let norm1 = LayerNorm::load(params, &format!("{prefix}.norm1"), dim, eps);
        let attn = Attention::load(params, &format!("{prefix}.attn"), config, attention_size);
        let norm2 = LayerNorm::load(params, &format!("{prefix}.norm2"), dim, eps);
        let hidden = config.encoder_mlp_hidden();
        let lin1 = Linear::load(params, &format!("{prefix}.mlp.lin1"), dim, hidden);
        let lin2 = Linear::load(params, &format!("{prefix}.mlp.lin2"), hidden, dim);
        Self {
            norm1,
            attn,
            norm2,
            lin1,
            lin2,
            window_size,
        }
    }

    pub fn is_global(&self) -> bool {
        self.window_size.is_none()
    }

    pub fn norm1(&self, x: Tensor<5>) -> Tensor<5> {
        self.norm1.forward(x)
    }

    /// The attention branch (after proj and the window crop, before the residual). A grid
    /// that pads to a single window takes the exact shortcut of `padded_window`.
    pub fn attention_branch(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, d, h, w, _] = x.dims();
        match self.window_size {
            Some(window) if d == h && h == w && d < window && self.attn.rel_pos.is_some() => {
                self.attn.forward_padded_grid(self.norm1.forward(x), window)
            }
            _ => self.attention_branch_full_padding(x),
        }
    }

    /// The attention branch computed as the reference does, attending over every token of
    /// the zero-padded windows.
    pub fn attention_branch_full_padding(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.norm1.forward(x);
        match self.window_size {
            None => self.attn.forward(x),
            Some(window) => {
                let [b, d, h, w, _] = x.dims();
                let (windows, padded) = window_partition(x, window);
                let out = self.attn.forward(windows);
                window_unpartition(out, window, b, padded).slice([0..b, 0..d, 0..h, 0..w])
            }
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = x.clone() + self.attention_branch(x);
        let mlp = self
            .lin2
            .forward(gelu(self.lin1.forward(self.norm2.forward(x.clone()))));
        x + mlp
    }
}

/// Zero-pads `[B, D, H, W, C]` at the end of each spatial axis to a multiple of `window` and
/// cuts it into `[B * nD * nH * nW, window, window, window, C]`, windows in (d, h, w)
/// row-major order. Returns the padded sizes too.
fn window_partition(x: Tensor<5>, window: usize) -> (Tensor<5>, [usize; 3]) {
    let [b, d, h, w, c] = x.dims();
    let pad = |n: usize| n.div_ceil(window) * window;
    let padded = [pad(d), pad(h), pad(w)];
    let x = if padded != [d, h, w] {
        Tensor::zeros([b, padded[0], padded[1], padded[2], c], &x.device())
            .slice_assign([0..b, 0..d, 0..h, 0..w, 0..c], x)
    } else {
        x
    };
    let [nd, nh, nw] = padded.map(|n| n / window);
    let windows = x
        .reshape([b * nd, window, nh, window, nw, window, c])
        .permute([0, 2, 4, 1, 3, 5, 6])
        .reshape([b * nd * nh * nw, window, window, window, c]);
    (windows, padded)
}

/// Inverse of [`window_partition`], back to the padded `[B, Dp, Hp, Wp, C]`.
fn window_unpartition(
    windows: Tensor<5>,
    window: usize,
    b: usize,
    padded: [usize; 3],
) -> Tensor<5> {
    let c = windows.dims()[4];
    let [nd, nh, nw] = padded.map(|n| n / window);
    windows
        .reshape([b * nd, nh, nw, window, window, window, c])
        .permute([0, 3, 1, 4, 2, 5, 6])
        .reshape([b, padded[0], padded[1], padded[2], c])
}

/// Multi-head self-attention over a cubic token block `[B, S, S, S, C]`.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    rel_pos: Option<RelPosTables>,
}

impl Attention {
    fn load(params: &mut ParamLoader, prefix: &str, config: &ModelConfig, size: usize) -> Self {
        let dim = config.encoder_embed_dim;
        let rel_pos = config
            .use_rel_pos
            .then(|| RelPosTables::load(params, prefix, size, config.encoder_head_dim()));
        let qkv = Linear::load_with_bias(
            params,
            &format!("{prefix}.qkv"),
            dim,
            3 * dim,
            config.qkv_bias,
        );
        let proj = Linear::load(params, &format!("{prefix}.proj"), dim, dim);
        Self {
            qkv,
            proj,
            heads: config.encoder_num_heads,
            rel_pos,
        }
    }

    /// q, k, v `[3, B·heads, N, hd]` of tokens `[B, N, C]`.
    fn qkv(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        let hd = c / self.heads;
        self.qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * self.heads, n, hd])
    }

    /// Attention of the real tokens `[B, G, G, G, C]` of a grid zero-padded to one window of
    /// side `window`, without materialising the padding (exact; see `padded_window`).
    fn forward_padded_grid(&self, x: Tensor<5>, window: usize) -> Tensor<5> {
        let [b, g, _, _, c] = x.dims();
        let n = g * g * g;
        let hd = c / self.heads;
        let qkv = self.qkv(x.reshape([b, n, c]));
        let part = |i: usize| {
            qkv.clone()
                .slice_dim(0, i..i + 1)
                .reshape([b * self.heads, n, hd])
        };
        let bias = self.qkv.bias().reshape([3, self.heads, hd]);
        let head_bias = |i: usize| {
            bias.clone()
                .slice_dim(0, i..i + 1)
                .reshape([self.heads, hd])
        };
        let qkv_bias = QkvBias {
            q: head_bias(0),
            k: head_bias(1),
            v: head_bias(2),
        };
        let tables = self
            .rel_pos
            .as_ref()
            .expect("the shortcut needs the rel-pos tables");
        let out = padded_window_attention(part(0), part(1), part(2), &qkv_bias, tables, g, window)
            .reshape([b, self.heads, n, hd])
            .permute([0, 2, 1, 3])
            .reshape([b, g, g, g, c]);
        self.proj.forward(out)
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, s, s1, s2, c] = x.dims();
        assert!(
            s == s1 && s == s2,
            "attention block must be cubic, got {s}x{s1}x{s2}"
        );
        let n = s * s * s;
        let hd = c / self.heads;
        // Part j, head h, dim i is qkv channel j*C + h*hd + i.
        let qkv = self.qkv(x.reshape([b, n, c]));
        let q = qkv
            .clone()
            .slice_dim(0, 0..1)
            .reshape([b * self.heads, n, hd]);
        let k = qkv
            .clone()
            .slice_dim(0, 1..2)
            .reshape([b * self.heads, n, hd]);
        let v = qkv.slice_dim(0, 2..3).reshape([b * self.heads, n, hd]);
        let scale = (hd as f64).powf(-0.5);
        let mut logits = (q.clone() * scale).matmul(k.swap_dims(1, 2));
        if let Some(tables) = &self.rel_pos {
            logits = logits + tables.bias(q, s);
        }
        let out = softmax(logits, 2)
            .matmul(v)
            .reshape([b, self.heads, n, hd])
            .permute([0, 2, 1, 3])
            .reshape([b, s, s, s, c]);
        self.proj.forward(out)
    }
}
