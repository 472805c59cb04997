//! LiteMedSAM's TinyViT image encoder (`image_encoder.*`): 256x256x3 → 256x64x64.
//!
//! Unlike MobileSAM's TinyViT, the patch embedding here is two 1x1 stride-1 convolutions, so the
//! first (convolutional) stage runs at the full 256x256 resolution. Attention stages work on
//! channel-last maps (B, H, W, C); the convolutions on NCHW.

use burn::tensor::{Tensor, TensorData};
use semisam_kernels::path::selected as kernel_path;
use semisam_kernels::tokens::{Heads, Windows, window_attention};

use super::LiteMedSamError;
use super::checkpoint::Checkpoint;
use super::gelu::gelu_in_place;
use super::layers::{
    Conv2d, DepthwiseConv3x3Nhwc, LAYER_NORM_2D_EPS, LAYER_NORM_EPS, TokenLayerNorm, TokenLinear,
};
use crate::generalists::shared_layers::LayerNorm;

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

/// `batch` channel-last maps of `height` x `width` x `channels`: the layout every layer of the
/// encoder works on, so that its 1x1 convolutions and linear layers are plain GEMMs over pixels.
#[derive(Clone, Debug)]
struct TokenMap {
    values: Vec<f32>,
    batch: usize,
    height: usize,
    width: usize,
}

impl TokenMap {
    fn from_nchw(x: Tensor<4>) -> Self {
        let [batch, _, height, width] = x.dims();
        let values = x
            .permute([0, 2, 3, 1])
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 feature map");
        Self {
            values,
            batch,
            height,
            width,
        }
    }

    fn channels(&self) -> usize {
        self.values.len() / (self.batch * self.height * self.width)
    }

    /// The same values as a (B, H, W, C) tensor.
    fn into_nhwc(self, device: &burn::tensor::Device) -> Tensor<4> {
        let dims = [self.batch, self.height, self.width, self.channels()];
        Tensor::from_data(TensorData::new(self.values, dims), device)
    }

    fn with_values(&self, values: Vec<f32>) -> Self {
        Self { values, ..*self }
    }

    fn depthwise(&self, conv: &DepthwiseConv3x3Nhwc) -> Self {
        let (values, height, width) =
            conv.forward(&self.values, self.batch, self.height, self.width);
        Self {
            values,
            batch: self.batch,
            height,
            width,
        }
    }
}

/// `x ↦ gelu(x)` in place on a map.
fn gelu_map(mut map: TokenMap) -> TokenMap {
    gelu_in_place(&mut map.values);
    map
}

#[derive(Clone, Debug)]
struct MbConv {
    conv1: TokenLinear,
    conv2: DepthwiseConv3x3Nhwc,
    conv3: TokenLinear,
}

impl MbConv {
    fn load(ckpt: &mut Checkpoint, prefix: &str, dim: usize) -> Result<Self, LiteMedSamError> {
        let hidden = dim * MBCONV_EXPAND_RATIO;
        Ok(Self {
            conv1: TokenLinear::load_conv_bn(ckpt, &format!("{prefix}.conv1"), dim, hidden)?,
            conv2: DepthwiseConv3x3Nhwc::load_conv_bn(ckpt, &format!("{prefix}.conv2"), hidden, 1)?,
            conv3: TokenLinear::load_conv_bn(ckpt, &format!("{prefix}.conv3"), hidden, dim)?,
        })
    }

    /// The GELU comes after the residual sum.
    fn forward(&self, mut x: TokenMap) -> TokenMap {
        let y = gelu_map(x.with_values(self.conv1.forward(&x.values)));
        let y = gelu_map(y.depthwise(&self.conv2));
        self.conv3.add_to(&y.values, &mut x.values);
        gelu_map(x)
    }
}

#[derive(Clone, Debug)]
struct PatchMerging {
    conv1: TokenLinear,
    conv2: DepthwiseConv3x3Nhwc,
    conv3: TokenLinear,
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
            conv1: TokenLinear::load_conv_bn(ckpt, &format!("{prefix}.conv1"), dim, out)?,
            conv2: DepthwiseConv3x3Nhwc::load_conv_bn(
                ckpt,
                &format!("{prefix}.conv2"),
                out,
                stride,
            )?,
            conv3: TokenLinear::load_conv_bn(ckpt, &format!("{prefix}.conv3"), out, out)?,
        })
    }

    fn forward(&self, x: TokenMap) -> TokenMap {
        let y = gelu_map(x.with_values(self.conv1.forward(&x.values)));
        let y = gelu_map(y.depthwise(&self.conv2));
        y.with_values(self.conv3.forward(&y.values))
    }
}

/// TinyViT window attention: pre-norm, per-head interleaved q|k|v, learned relative bias.
#[derive(Clone, Debug)]
struct WindowAttention {
    norm: TokenLayerNorm,
    qkv: TokenLinear,
    proj: TokenLinear,
    heads: Heads,
    window: usize,
    /// (heads, N, N) with N = window², gathered once from `attention_biases`.
    bias: Vec<f32>,
    /// The q|k|v row of a zero-padded position: the norm maps zeros to its bias.
    padding_qkv: Vec<f32>,
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
        let mut bias = Vec::with_capacity(heads * n * n);
        for h in 0..heads {
            for i in 0..n {
                for j in 0..n {
                    let offset = (i / window).abs_diff(j / window) * window
                        + (i % window).abs_diff(j % window);
                    bias.push(table[h * n + offset]);
                }
            }
        }
        let norm = TokenLayerNorm::load(ckpt, &format!("{prefix}.norm"), dim, LAYER_NORM_EPS);
        let qkv = TokenLinear::load(ckpt, &format!("{prefix}.qkv"), dim, 3 * dim);
        let padding_qkv = qkv.forward(norm.of_zeros());
        Ok(Self {
            norm,
            qkv,
            proj: TokenLinear::load(ckpt, &format!("{prefix}.proj"), dim, dim),
            heads: Heads {
                heads,
                key_dim: dim / heads,
            },
            window,
            bias,
            padding_qkv,
        })
    }

    /// `tokens += attention(tokens)` on `batch` channel-last maps of `h` x `w`. Upstream pads the
    /// map with zeros to a multiple of the window before the norm and lets the padded tokens take
    /// part as keys and values (unmasked); they all share `padding_qkv`, so no padded map is made.
    fn add_to(&self, tokens: &mut [f32], batch: usize, h: usize, w: usize) {
        let qkv = self.qkv.forward(&self.norm.forward(tokens));
        let windows = Windows {
            batch,
            height: h,
            width: w,
            window: self.window,
        };
        let attended = window_attention(
            kernel_path(),
            &qkv,
            &self.padding_qkv,
            &self.bias,
            windows,
            self.heads,
        );
        self.proj.add_to(&attended, tokens);
    }
}

#[derive(Clone, Debug)]
struct TinyVitBlock {
    attn: WindowAttention,
    local_conv: DepthwiseConv3x3Nhwc,
    mlp_norm: TokenLayerNorm,
    fc1: TokenLinear,
    fc2: TokenLinear,
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
                1,
            )?,
            mlp_norm: TokenLayerNorm::load(
                ckpt,
                &format!("{prefix}.mlp.norm"),
                dim,
                LAYER_NORM_EPS,
            ),
            fc1: TokenLinear::load(ckpt, &format!("{prefix}.mlp.fc1"), dim, MLP_RATIO * dim),
            fc2: TokenLinear::load(ckpt, &format!("{prefix}.mlp.fc2"), MLP_RATIO * dim, dim),
        })
    }

    fn forward(&self, mut x: TokenMap) -> TokenMap {
        self.attn.add_to(&mut x.values, x.batch, x.height, x.width);
        // No residual around the local convolution (upstream).
        let mut x = x.depthwise(&self.local_conv);
        let mut hidden = self.fc1.forward(&self.mlp_norm.forward(&x.values));
        gelu_in_place(&mut hidden);
        self.fc2.add_to(&hidden, &mut x.values);
        x
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
    patch_embed: [TokenLinear; 2],
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
            TokenLinear::load_conv_bn(
                ckpt,
                &format!("{prefix}.patch_embed.seq.0"),
                3,
                EMBED_DIMS[0] / 2,
            )?,
            TokenLinear::load_conv_bn(
                ckpt,
                &format!("{prefix}.patch_embed.seq.2"),
                EMBED_DIMS[0] / 2,
                EMBED_DIMS[0],
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
        let device = x.device();
        let mut report = |name: &str, map: &TokenMap| {
            observe(&mut observer, name, || {
                to_nchw(map.clone().into_nhwc(&device))
            });
        };
        let x = TokenMap::from_nchw(x);
        let x = gelu_map(x.with_values(self.patch_embed[0].forward(&x.values)));
        let mut x = x.with_values(self.patch_embed[1].forward(&x.values));
        report("patch_embed", &x);
        for (i, block) in self.mbconvs.iter().enumerate() {
            x = block.forward(x);
            report(&format!("layer0_block{i}"), &x);
        }
        x = self.merges[0].forward(x);
        report("layer0", &x);
        for (s, blocks) in self.stages.iter().enumerate() {
            let layer = s + 1;
            for (i, block) in blocks.iter().enumerate() {
                x = block.forward(x);
                report(&format!("layer{layer}_block{i}"), &x);
            }
            if let Some(merge) = self.merges.get(layer) {
                x = merge.forward(x);
            }
            report(&format!("layer{layer}"), &x);
        }
        self.neck.forward(x.into_nhwc(&device))
    }
}
