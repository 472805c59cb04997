//! The convolutions LiteMedSAM adds to the layers both ports share (`shared_layers`), used by
//! its encoder and decoder. Each loader takes the checkpoint prefix of the PyTorch module it
//! mirrors, so tensor names map 1:1.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::LiteMedSamError;
use super::checkpoint::Checkpoint;

/// `nn.LayerNorm`'s default epsilon.
pub(crate) const LAYER_NORM_EPS: f64 = 1e-5;
/// SAM's `LayerNorm2d` epsilon.
pub(crate) const LAYER_NORM_2D_EPS: f64 = 1e-6;

/// A 2-D convolution (NCHW) with an optional bias.
#[derive(Clone, Debug)]
pub(crate) struct Conv2d {
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
}

impl Conv2d {
    /// A bias-free `nn.Conv2d` with "same" padding for odd kernels.
    pub fn load_no_bias(
        ckpt: &mut Checkpoint,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
    ) -> Result<Self, LiteMedSamError> {
        let weight = ckpt.take(&format!("{prefix}.weight"), [c_out, c_in, kernel, kernel]);
        Ok(Self {
            weight,
            bias: None,
            options: ConvOptions::new([1, 1], [kernel / 2, kernel / 2], [1, 1], 1),
        })
    }

    /// TinyViT's `Conv2d_BN` (bias-free conv + eval-mode BatchNorm), folded into one conv:
    /// `w' = w·γ/√(var+ε)`, `b' = β − mean·γ/√(var+ε)`.
    pub fn load_conv_bn(
        ckpt: &mut Checkpoint,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self, LiteMedSamError> {
        let (folded_w, folded_b) = fold_conv_bn(ckpt, prefix, c_in / groups, c_out, kernel)?;
        Ok(Self {
            weight: ckpt.tensor(folded_w, [c_out, c_in / groups, kernel, kernel]),
            bias: Some(ckpt.tensor(folded_b, [c_out])),
            options: ConvOptions::new([stride, stride], [kernel / 2, kernel / 2], [1, 1], groups),
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.clone(),
            self.bias.clone(),
            self.options.clone(),
        )
    }
}

/// Read a `Conv2d_BN` (bias-free conv + eval-mode BatchNorm) and fold the BatchNorm into the
/// conv: `w' = w·γ/√(var+ε)`, `b' = β − mean·γ/√(var+ε)`. Weight layout (out, in/groups, k, k).
fn fold_conv_bn(
    ckpt: &mut Checkpoint,
    prefix: &str,
    c_in_per_group: usize,
    c_out: usize,
    kernel: usize,
) -> Result<(Vec<f32>, Vec<f32>), LiteMedSamError> {
    const BATCH_NORM_EPS: f64 = 1e-5;
    let per_out = c_in_per_group * kernel * kernel;
    let w = ckpt.take_values(
        &format!("{prefix}.c.weight"),
        &[c_out, c_in_per_group, kernel, kernel],
    );
    let gamma = ckpt.take_values(&format!("{prefix}.bn.weight"), &[c_out]);
    let beta = ckpt.take_values(&format!("{prefix}.bn.bias"), &[c_out]);
    let mean = ckpt.take_values(&format!("{prefix}.bn.running_mean"), &[c_out]);
    let var = ckpt.take_values(&format!("{prefix}.bn.running_var"), &[c_out]);
    ckpt.discard_counter(&format!("{prefix}.bn.num_batches_tracked"));
    let mut folded_w = Vec::with_capacity(w.len());
    let mut folded_b = Vec::with_capacity(c_out);
    for o in 0..c_out {
        let scale = gamma[o] as f64 / (var[o] as f64 + BATCH_NORM_EPS).sqrt();
        folded_w.extend(
            w[o * per_out..(o + 1) * per_out]
                .iter()
                .map(|&v| (v as f64 * scale) as f32),
        );
        folded_b.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
    }
    Ok((folded_w, folded_b))
}

/// A depthwise 3x3 `Conv2d_BN` (stride 1, padding 1) applied to channel-last maps, so the
/// TinyViT blocks' local convolution needs no NHWC↔NCHW transposes. The inner loop runs over
/// contiguous channels.
#[derive(Clone, Debug)]
pub(crate) struct DepthwiseConv3x3Nhwc {
    /// (3, 3, C): tap-major so each tap's weights are contiguous over channels.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl DepthwiseConv3x3Nhwc {
    pub fn load_conv_bn(
        ckpt: &mut Checkpoint,
        prefix: &str,
        channels: usize,
    ) -> Result<Self, LiteMedSamError> {
        let (w, bias) = fold_conv_bn(ckpt, prefix, 1, channels, 3)?;
        let mut weight = vec![0.0; 9 * channels];
        for c in 0..channels {
            for tap in 0..9 {
                weight[tap * channels + c] = w[c * 9 + tap];
            }
        }
        Ok(Self { weight, bias })
    }

    /// (B, H, W, C) → (B, H, W, C).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let [b, h, w, c] = x.dims();
        let input = x
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 feature map");
        let mut output = vec![0.0f32; input.len()];
        let row = w * c;
        output
            .par_chunks_mut(row)
            .enumerate()
            .for_each(|(by, out_row)| {
                let (batch, y) = (by / h, by % h);
                for x in 0..w {
                    let out = &mut out_row[x * c..(x + 1) * c];
                    out.copy_from_slice(&self.bias);
                    for ky in 0..3 {
                        let sy = y + ky;
                        if sy == 0 || sy > h {
                            continue;
                        }
                        for kx in 0..3 {
                            let sx = x + kx;
                            if sx == 0 || sx > w {
                                continue;
                            }
                            let start = ((batch * h + sy - 1) * w + sx - 1) * c;
                            let src = &input[start..start + c];
                            let tap = &self.weight[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                            for ((o, &v), &k) in out.iter_mut().zip(src).zip(tap) {
                                *o += v * k;
                            }
                        }
                    }
                }
            });
        Tensor::from_data(TensorData::new(output, [b, h, w, c]), &device)
    }
}

/// `nn.ConvTranspose2d` with kernel = stride = 2 on channel-last input. The 2x2 windows do not
/// overlap, so it is one matmul `(pixels, C_in) @ (C_in, 2·2·C_out)`; the outputs stay in
/// sub-pixel order (each input pixel's 2x2 block together) until the caller interleaves them.
#[derive(Clone, Debug)]
pub(crate) struct ConvTranspose2x2 {
    /// (C_in, 2·2·C_out), columns ordered (a, b, o): kernel row, kernel column, output channel.
    weight: Tensor<2>,
    bias: Tensor<1>,
    c_out: usize,
}

impl ConvTranspose2x2 {
    pub fn load(
        ckpt: &mut Checkpoint,
        prefix: &str,
        c_in: usize,
        c_out: usize,
    ) -> Result<Self, LiteMedSamError> {
        // PyTorch stores transposed-conv weights as (in, out, kH, kW).
        let w = ckpt.take_values(&format!("{prefix}.weight"), &[c_in, c_out, 2, 2]);
        let bias = ckpt.take(&format!("{prefix}.bias"), [c_out]);
        let mut reordered = vec![0.0f32; w.len()];
        for c in 0..c_in {
            for o in 0..c_out {
                for ab in 0..4 {
                    reordered[c * 4 * c_out + ab * c_out + o] = w[(c * c_out + o) * 4 + ab];
                }
            }
        }
        Ok(Self {
            weight: ckpt.tensor(reordered, [c_in, 4 * c_out]),
            bias,
            c_out,
        })
    }

    /// (B, N, C_in) → (B, 4N, C_out): row `4n + 2a + b` is output pixel (2y + a, 2x + b) of input
    /// pixel `n` = (y, x). Interleaving is left to the caller so that per-pixel operations in
    /// between (norms, activations, another such layer) need no copy.
    pub fn forward_subpixel(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, c_in] = x.dims();
        let y = x.reshape([b * n, c_in]).matmul(self.weight.clone());
        y.reshape([b, 4 * n, self.c_out]) + self.bias.clone().unsqueeze::<3>()
    }
}
