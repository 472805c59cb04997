//! The inference-only layers both model ports are made of, holding plain tensors loaded by the
//! checkpoint key prefix of the PyTorch module they mirror.

use burn::tensor::activation::relu;
use burn::tensor::module::layer_norm;
use burn::tensor::{Tensor, TensorData};

use super::param_loader::ParamLoader;

/// `nn.Linear`, with the weight stored transposed (in, out) and contiguous, so every forward is
/// a row-major matmul.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight_t: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn load(params: &mut ParamLoader, prefix: &str, d_in: usize, d_out: usize) -> Self {
        Self::load_with_bias(params, prefix, d_in, d_out, true)
    }

    pub fn load_with_bias(
        params: &mut ParamLoader,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Self {
        let weight: Tensor<2> = params.tensor(&format!("{prefix}.weight"), [d_out, d_in]);
        let bias = bias.then(|| params.tensor(&format!("{prefix}.bias"), [d_out]));
        let device = weight.device();
        let transposed: TensorData = weight.transpose().into_data();
        Self {
            weight_t: Tensor::from_data(transposed, &device),
            bias,
        }
    }

    /// (d_in, d_out).
    pub fn weight_t(&self) -> &Tensor<2> {
        &self.weight_t
    }

    /// The bias, zeros for a layer without one.
    pub fn bias(&self) -> Tensor<1> {
        self.bias
            .clone()
            .unwrap_or_else(|| Tensor::zeros([self.d_out()], &self.weight_t.device()))
    }

    pub fn d_out(&self) -> usize {
        self.weight_t.dims()[1]
    }

    /// Apply to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let mut y = x.reshape([rows, d_in]).matmul(self.weight_t.clone());
        if let Some(bias) = &self.bias {
            y = y + bias.clone().unsqueeze::<2>();
        }
        dims[D - 1] = self.d_out();
        y.reshape(dims)
    }
}

/// `nn.LayerNorm` over the last dimension (biased variance, as PyTorch).
#[derive(Clone, Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn load(params: &mut ParamLoader, prefix: &str, dim: usize, eps: f64) -> Self {
        Self {
            weight: params.tensor(&format!("{prefix}.weight"), [dim]),
            bias: params.tensor(&format!("{prefix}.bias"), [dim]),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.weight.clone(), Some(self.bias.clone()), self.eps)
    }

    /// SAM's `LayerNorm2d`: normalise NCHW over the channel axis at each pixel.
    pub fn forward_nchw(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }

    /// SAM-Med3D's `LayerNorm3d`: normalise `[N, C, D, H, W]` over C at each voxel.
    pub fn forward_channels_first(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward(x.permute([0, 2, 3, 4, 1]))
            .permute([0, 4, 1, 2, 3])
    }
}

/// SAM's `MLP`: Linear layers with ReLU between them (none after the last).
#[derive(Clone, Debug)]
pub(crate) struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Layer `i` maps `dims[i]` to `dims[i + 1]`.
    pub fn load(params: &mut ParamLoader, prefix: &str, dims: &[usize]) -> Self {
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, io)| Linear::load(params, &format!("{prefix}.layers.{i}"), io[0], io[1]))
            .collect();
        Self { layers }
    }

    pub fn forward<const D: usize>(&self, mut x: Tensor<D>) -> Tensor<D> {
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}
