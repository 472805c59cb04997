//! LiteMedSAM's TinyViT image encoder (`image_encoder.*`): 256x256x3 → 256x64x64.
//!
//! Unlike MobileSAM's TinyViT, the patch embedding here is two 1x1 stride-1 convolutions, so the
//! first (convolutional) stage runs at the full 256x256 resolution. Attention stages work on
//! channel-last maps (B, H, W, C); the convolutions on NCHW.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorData};

use super::LiteMedSamError;
use super::checkpoint::Checkpoint;
use super::gelu::gelu;
use super::layers::{Conv2d, DepthwiseConv3x3Nhwc, LAYER_NORM_2D_EPS, LAYER_NORM_EPS};
use crate::generalists::shared_layers::{LayerNorm, Linear};

const EMBED_DIMS: [usize; 4] = [64, 128, 160, 320];
const DEPTHS: [usize; 4] = [2, 2, 6, 2];
const NUM_HEADS: [usize; 4] = [2, 4, 5, 10];
const WINDOW_SIZES: [usize; 4] = [7, 7, 14, 7];
const MLP_RATIO: usize = 4;
const MBCONV_EXPAND_RATIO: usize = 4;
const NECK_DIM: usize = 256;

/// Receives named intermediate tensors (NCHW) when tracing a forward pass for debugging.
pub type StageObserver<'a> = &'a mut dyn FnMut(&str, TensorData);

/// (B, H, W, C) → (B, C, H, W).
fn to_nchw(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 3, 1, 2])
}

/// (B, C, H, W) → (B, H, W, C).
fn to_nhwc(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 2, 3, 1])
}

#[derive(Clone, Debug)]
struct MbConv {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl MbConv {
    fn load(ckpt: &mut Checkpoint, prefix: &str, dim: usize) -> Result<Self, LiteMedSamError> {
        let hidden = dim * MBCONV_EXPAND_RATIO;
        Ok(Self {
            conv1: Conv2d::load_conv_bn(ckpt, &format!("{prefix}.conv1"), dim, hidden, 1, 1, 1)?,
            conv2: Conv2d::load_conv_bn(
                ckpt,
                &format!("{prefix}.conv2"),
                hidden,
                hidden,
                3,
                1,
                hidden,
            )?,
            conv3: Conv2d::load_conv_bn(ckpt, &format!("{prefix}.conv3"), hidden, dim, 1, 1, 1)?,
        })
    }

    /// NCHW → NCHW; the GELU comes after the residual sum.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = gelu(self.conv1.forward(x.clone()));
        let y = gelu(self.conv2.forward(y));
        gelu(self.conv3.forward(y) + x)
    }
}

#[derive(Clone, Debug)]
struct PatchMerging {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl PatchMerging {
    fn load(
        ckpt: &mut Checkpoint,
        prefix: &str,
        dim: usize,
        out: usize,
    ) -> Result<Self, LiteMedSamError> {
        // Upstream keeps the resolution for these output widths (stride 1).
        let stride = if matches!(out, 320 | 448 | 576) { 1 } else { 2 };
        Ok(Self {
            conv1: Conv2d::load_conv_bn(ckpt, &format!("{prefix}.conv1"), dim, out, 1, 1, 1)?,
            conv2: Conv2d::load_conv_bn(
                ckpt,
                &format!("{prefix}.conv2"),
                out,
                out,
                3,
                stride,
                out,
            )?,
            conv3: Conv2d::load_conv_bn(ckpt, &format!("{prefix}.conv3"), out, out, 1, 1, 1)?,
        })
    }

    /// NCHW → NCHW.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = gelu(self.conv1.forward(x));
        let y = gelu(self.conv2.forward(y));
        self.conv3.forward(y)
    }
}

/// TinyViT window attention: pre-norm, per-head interleaved q|k|v, learned relative bias.
#[derive(Clone, Debug)]
struct WindowAttention {
    norm: LayerNorm,
    qkv: Linear,
    proj: Linear,
    heads: usize,
    key_dim: usize,
    /// (1, heads, N, N) with N = window², gathered once from `attention_biases`.
    bias: Tensor<4>,
}

impl WindowAttention {
    fn load(
        ckpt: &mut Checkpoint,
        prefix: &str,
        dim: usize,
        heads: usize,
        window: usize,
    ) -> Result<Self, LiteMedSamError> {
        let n = window * window;
        let table = ckpt.take_values(&format!("{prefix}.attention_biases"), &[heads, n]);
        // Bias between window positions i and j depends on |Δrow|·ws + |Δcol| (row-major).
        let mut gathered = Vec::with_capacity(heads * n * n);
        for h in 0..heads {
            for i in 0..n {
                for j in 0..n {
                    let offset = (i / window).abs_diff(j / window) * window
                        + (i % window).abs_diff(j % window);
                    gathered.push(table[h * n + offset]);
                }
            }
        }
        Ok(Self {
            norm: LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.norm"),
                dim,
                LAYER_NORM_EPS,
            ),
            qkv: Linear::load(ckpt.params(), &format!("{prefix}.qkv"), dim, 3 * dim),
            proj: Linear::load(ckpt.params(), &format!("{prefix}.proj"), dim, dim),
            heads,
            key_dim: dim / heads,
            bias: ckpt.tensor(gathered, [1, heads, n, n]),
        })
    }

    /// (windows, N, C) → (windows, N, C).
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [windows, n, c] = x.dims();
        let d = self.key_dim;
        let qkv = self
            .qkv
            .forward(self.norm.forward(x))
            .reshape([windows, n, self.heads, 3 * d])
            .permute([0, 2, 1, 3]);
        let q = qkv.clone().narrow(3, 0, d);
        let k = qkv.clone().narrow(3, d, d);
        let v = qkv.narrow(3, 2 * d, d);
        // Fused softmax(q·kᵀ/√d + bias)·v; the bias broadcasts over the windows.
        let bias = Some(self.bias.clone());
        let out = attention(q, k, v, None, bias, AttentionModuleOptions::default());
        self.proj
            .forward(out.swap_dims(1, 2).reshape([windows, n, c]))
    }
}

#[derive(Clone, Debug)]
struct TinyVitBlock {
    attn: WindowAttention,
    local_conv: DepthwiseConv3x3Nhwc,
    mlp_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    window: usize,
}

impl TinyVitBlock {
    fn load(
        ckpt: &mut Checkpoint,
        prefix: &str,
        dim: usize,
        heads: usize,
        window: usize,
    ) -> Result<Self, LiteMedSamError> {
        Ok(Self {
            attn: WindowAttention::load(ckpt, &format!("{prefix}.attn"), dim, heads, window)?,
            local_conv: DepthwiseConv3x3Nhwc::load_conv_bn(
                ckpt,
                &format!("{prefix}.local_conv"),
                dim,
            )?,
            mlp_norm: LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.mlp.norm"),
                dim,
                LAYER_NORM_EPS,
            ),
            fc1: Linear::load(
                ckpt.params(),
                &format!("{prefix}.mlp.fc1"),
                dim,
                MLP_RATIO * dim,
            ),
            fc2: Linear::load(
                ckpt.params(),
                &format!("{prefix}.mlp.fc2"),
                MLP_RATIO * dim,
                dim,
            ),
            window,
        })
    }

    /// (B, H, W, C) → (B, H, W, C).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let ws = self.window;
        let (ph, pw) = (h.div_ceil(ws) * ws, w.div_ceil(ws) * ws);
        let (nh, nw) = (ph / ws, pw / ws);
        // Zero padding goes in before the attention's LayerNorm and is not masked: the padded
        // tokens take part as keys and values, exactly as upstream.
        let padded = if (ph, pw) != (h, w) {
            x.clone()
                .pad([(0, 0), (0, ph - h), (0, pw - w), (0, 0)], 0.0)
        } else {
            x.clone()
        };
        let windows = padded
            .reshape([b, nh, ws, nw, ws, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b * nh * nw, ws * ws, c]);
        let attended = self.attn.forward(windows);
        let attended = attended
            .reshape([b, nh, nw, ws, ws, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, ph, pw, c]);
        let attended = if (ph, pw) != (h, w) {
            attended.slice([0..b, 0..h, 0..w, 0..c])
        } else {
            attended
        };
        let x = x + attended;
        // No residual around the local convolution (upstream).
        let x = self.local_conv.forward(x);
        let y = self
            .fc2
            .forward(gelu(self.fc1.forward(self.mlp_norm.forward(x.clone()))));
        x + y
    }
}

#[derive(Clone, Debug)]
struct Neck {
    conv1: Tensor<2>,
    norm1: LayerNorm,
    conv2: Conv2d,
    norm2: LayerNorm,
}

impl Neck {
    fn load(ckpt: &mut Checkpoint, prefix: &str, dim: usize) -> Result<Self, LiteMedSamError> {
        let w1: Tensor<4> = ckpt.take(&format!("{prefix}.0.weight"), [NECK_DIM, dim, 1, 1]);
        // The 1x1 conv runs as a channel-last matmul: keep its weight as (in, out).
        let w1t = w1
            .reshape([NECK_DIM, dim])
            .transpose()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32");
        Ok(Self {
            conv1: ckpt.tensor(w1t, [dim, NECK_DIM]),
            norm1: LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.1"),
                NECK_DIM,
                LAYER_NORM_2D_EPS,
            ),
            conv2: Conv2d::load_no_bias(ckpt, &format!("{prefix}.2"), NECK_DIM, NECK_DIM, 3)?,
            norm2: LayerNorm::load(
                ckpt.params(),
                &format!("{prefix}.3"),
                NECK_DIM,
                LAYER_NORM_2D_EPS,
            ),
        })
    }

    /// (B, H, W, 320) → (B, 256, H, W).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let y = x
            .reshape([b * h * w, c])
            .matmul(self.conv1.clone())
            .reshape([b, h, w, NECK_DIM]);
        let y = to_nchw(self.norm1.forward(y));
        let y = self.conv2.forward(y);
        self.norm2.forward_nchw(y)
    }
}

/// The TinyViT image encoder.
#[derive(Clone, Debug)]
pub(crate) struct TinyVit {
    patch_embed: [Conv2d; 2],
    mbconvs: Vec<MbConv>,
    merges: Vec<PatchMerging>,
    stages: Vec<Vec<TinyVitBlock>>,
    neck: Neck,
}

fn observe(observer: &mut Option<StageObserver<'_>>, name: &str, nchw: impl FnOnce() -> Tensor<4>) {
    if let Some(observer) = observer {
        observer(name, nchw().into_data());
    }
}

impl TinyVit {
    pub fn load(ckpt: &mut Checkpoint, prefix: &str) -> Result<Self, LiteMedSamError> {
        let patch_embed = [
            Conv2d::load_conv_bn(
                ckpt,
                &format!("{prefix}.patch_embed.seq.0"),
                3,
                EMBED_DIMS[0] / 2,
                1,
                1,
                1,
            )?,
            Conv2d::load_conv_bn(
                ckpt,
                &format!("{prefix}.patch_embed.seq.2"),
                EMBED_DIMS[0] / 2,
                EMBED_DIMS[0],
                1,
                1,
                1,
            )?,
        ];
        let mbconvs = (0..DEPTHS[0])
            .map(|i| {
                MbConv::load(
                    ckpt,
                    &format!("{prefix}.layers.0.blocks.{i}"),
                    EMBED_DIMS[0],
                )
            })
            .collect::<Result<_, _>>()?;
        let merges = (0..3)
            .map(|s| {
                PatchMerging::load(
                    ckpt,
                    &format!("{prefix}.layers.{s}.downsample"),
                    EMBED_DIMS[s],
                    EMBED_DIMS[s + 1],
                )
            })
            .collect::<Result<_, _>>()?;
        let stages = (1..4)
            .map(|s| {
                (0..DEPTHS[s])
                    .map(|i| {
                        let block = format!("{prefix}.layers.{s}.blocks.{i}");
                        TinyVitBlock::load(
                            ckpt,
                            &block,
                            EMBED_DIMS[s],
                            NUM_HEADS[s],
                            WINDOW_SIZES[s],
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        let neck = Neck::load(ckpt, &format!("{prefix}.neck"), EMBED_DIMS[3])?;
        Ok(Self {
            patch_embed,
            mbconvs,
            merges,
            stages,
            neck,
        })
    }

    /// (B, 3, 256, 256) → (B, 256, 64, 64). With an observer, the stage outputs are reported
    /// under the names of the parity fixtures (`patch_embed`, `layer0_block1`, `layer0`, ...).
    pub fn forward(&self, x: Tensor<4>, mut observer: Option<StageObserver<'_>>) -> Tensor<4> {
        let mut x = self.patch_embed[1].forward(gelu(self.patch_embed[0].forward(x)));
        observe(&mut observer, "patch_embed", || x.clone());
        for (i, block) in self.mbconvs.iter().enumerate() {
            x = block.forward(x);
            observe(&mut observer, &format!("layer0_block{i}"), || x.clone());
        }
        x = self.merges[0].forward(x);
        observe(&mut observer, "layer0", || x.clone());
        let mut x = to_nhwc(x);
        for (s, blocks) in self.stages.iter().enumerate() {
            let layer = s + 1;
            for (i, block) in blocks.iter().enumerate() {
                x = block.forward(x);
                observe(&mut observer, &format!("layer{layer}_block{i}"), || {
                    to_nchw(x.clone())
                });
            }
            if let Some(merge) = self.merges.get(layer) {
                x = to_nhwc(merge.forward(to_nchw(x)));
            }
            observe(&mut observer, &format!("layer{layer}"), || {
                to_nchw(x.clone())
            });
        }
        self.neck.forward(x)
    }
}
