//! The convolutions LiteMedSAM adds to the layers both ports share (`shared_layers`), used by
//! its encoder and decoder. Each loader takes the checkpoint prefix of the PyTorch module it
//! mirrors, so tensor names map 1:1.

use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use semisam_kernels::matmul::{Matrix, matmul};
use semisam_kernels::path::selected as kernel_path;
use semisam_kernels::tokens::{depthwise_conv3x3, layer_norm_rows};

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

/// A depthwise 3x3 `Conv2d_BN` (padding 1) applied to channel-last maps, so that TinyViT's
/// convolutional stage and blocks need no NHWC↔NCHW transposes.
#[derive(Clone, Debug)]
pub(crate) struct DepthwiseConv3x3Nhwc {
    /// (3, 3, C): tap-major so each tap's weights are contiguous over channels.
    weight: Vec<f32>,
    bias: Vec<f32>,
    stride: usize,
}

impl DepthwiseConv3x3Nhwc {
    pub fn load_conv_bn(
        ckpt: &mut Checkpoint,
        prefix: &str,
        channels: usize,
        stride: usize,
    ) -> Result<Self, LiteMedSamError> {
        let (w, bias) = fold_conv_bn(ckpt, prefix, 1, channels, 3)?;
        let mut weight = vec![0.0; 9 * channels];
        for c in 0..channels {
            for tap in 0..9 {
                weight[tap * channels + c] = w[c * 9 + tap];
            }
        }
        Ok(Self {
            weight,
            bias,
            stride,
        })
    }

    /// `batch` channel-last maps of `h` x `w` → the output maps and their height and width.
    pub fn forward(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> (Vec<f32>, usize, usize) {
        depthwise_conv3x3(
            kernel_path(),
            input,
            batch,
            h,
            w,
            &self.weight,
            &self.bias,
            self.stride,
        )
    }
}

/// `nn.ConvTranspose2d` with kernel = stride = 2 on channel-last rows. The 2x2 windows do not
/// overlap, so it is a linear layer `C_in → 2·2·C_out` per input pixel; its outputs stay in
/// sub-pixel order (each input pixel's 2x2 block together) until the caller interleaves them.
#[derive(Clone, Debug)]
pub(crate) struct ConvTranspose2x2 {
    /// Columns ordered (a, b, o): kernel row, kernel column, output channel.
    linear: TokenLinear,
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
        let bias = ckpt.take_values(&format!("{prefix}.bias"), &[c_out]);
        let mut weight_t = vec![0.0f32; w.len()];
        for c in 0..c_in {
            for o in 0..c_out {
                for ab in 0..4 {
                    weight_t[c * 4 * c_out + ab * c_out + o] = w[(c * c_out + o) * 4 + ab];
                }
            }
        }
        Ok(Self {
            linear: TokenLinear {
                weight_t,
                bias: bias.repeat(4),
            },
        })
    }

    /// Rows of C_in (input pixels) → four rows of C_out each: row `4n + 2a + b` is output pixel
    /// (2y + a, 2x + b) of input pixel `n` = (y, x). Interleaving is left to the caller so that
    /// per-pixel operations in between (norms, activations, another such layer) need no copy.
    pub fn forward_subpixel(&self, x: &[f32]) -> Vec<f32> {
        self.linear.forward(x)
    }
}

/// `nn.Linear` on channel-last token rows: one GEMM whose accumulator starts from the bias (or
/// from a residual plus the bias), so neither costs a pass of its own.
#[derive(Clone, Debug)]
pub(crate) struct TokenLinear {
    /// (in, out), row-major.
    weight_t: Vec<f32>,
    bias: Vec<f32>,
}

impl TokenLinear {
    pub fn load(ckpt: &mut Checkpoint, prefix: &str, d_in: usize, d_out: usize) -> Self {
        let weight = ckpt.take_values(&format!("{prefix}.weight"), &[d_out, d_in]);
        Self {
            weight_t: transposed(&weight, d_out, d_in),
            bias: ckpt.take_values(&format!("{prefix}.bias"), &[d_out]),
        }
    }

    /// A 1x1 `Conv2d_BN` with the BatchNorm folded in: a linear layer over pixels.
    pub fn load_conv_bn(
        ckpt: &mut Checkpoint,
        prefix: &str,
        c_in: usize,
        c_out: usize,
    ) -> Result<Self, LiteMedSamError> {
        let (weight, bias) = fold_conv_bn(ckpt, prefix, c_in, c_out, 1)?;
        Ok(Self {
            weight_t: transposed(&weight, c_out, c_in),
            bias,
        })
    }

    fn d_out(&self) -> usize {
        self.bias.len()
    }

    fn d_in(&self) -> usize {
        self.weight_t.len() / self.d_out()
    }

    /// Rows of `d_in` values → rows of `d_out`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = self.bias.repeat(x.len() / self.d_in());
        self.accumulate(x, &mut out);
        out
    }

    /// `residual += linear(x)`.
    pub fn add_to(&self, x: &[f32], residual: &mut [f32]) {
        for row in residual.chunks_exact_mut(self.d_out()) {
            for (r, &b) in row.iter_mut().zip(&self.bias) {
                *r += b;
            }
        }
        self.accumulate(x, residual);
    }

    fn accumulate(&self, x: &[f32], out: &mut [f32]) {
        let rows = x.len() / self.d_in();
        matmul(
            out,
            Matrix::row_major(x, rows, self.d_in()),
            Matrix::row_major(&self.weight_t, self.d_in(), self.d_out()),
            true,
        );
    }
}

/// `nn.LayerNorm` over channel-last token rows.
#[derive(Clone, Debug)]
pub(crate) struct TokenLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl TokenLayerNorm {
    pub fn load(ckpt: &mut Checkpoint, prefix: &str, dim: usize, eps: f64) -> Self {
        Self {
            gamma: ckpt.take_values(&format!("{prefix}.weight"), &[dim]),
            beta: ckpt.take_values(&format!("{prefix}.bias"), &[dim]),
            eps: eps as f32,
        }
    }

    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        layer_norm_rows(kernel_path(), x, &self.gamma, &self.beta, self.eps)
    }

    /// What a row of zeros normalises to.
    pub fn of_zeros(&self) -> &[f32] {
        &self.beta
    }
}

/// A row-major `rows` x `cols` matrix transposed.
pub(crate) fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}
