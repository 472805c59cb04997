//! The few building blocks SAM-Med3D is made of, holding plain tensors loaded by key.

use crate::generalists::param_loader::ParamLoader;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// `nn.Linear`; the weight is kept transposed, (in, out).
#[derive(Debug, Clone)]
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
        let weight = params.tensor(&format!("{prefix}.weight"), [d_out, d_in]);
        let bias = bias.then(|| params.tensor(&format!("{prefix}.bias"), [d_out]));
        Self {
            weight_t: weight.transpose(),
            bias,
        }
    }

    pub fn d_out(&self) -> usize {
        self.weight_t.dims()[1]
    }

    pub fn bias(&self) -> Option<&Tensor<1>> {
        self.bias.as_ref()
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = x.shape().num_elements() / d_in;
        let mut y = x.reshape([rows, d_in]).matmul(self.weight_t.clone());
        if let Some(bias) = &self.bias {
            y = y + bias.clone().unsqueeze::<2>();
        }
        dims[D - 1] = self.d_out();
        y.reshape(dims)
    }
}

/// LayerNorm over the last axis, variance computed in two passes (biased) as PyTorch does.
#[derive(Debug, Clone)]
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
        let mean = x.clone().mean_dim(D - 1);
        let centred = x - mean;
        let var = centred.clone().square().mean_dim(D - 1);
        let normed = centred / (var + self.eps).sqrt();
        let mut shape = [1usize; D];
        shape[D - 1] = self.weight.dims()[0];
        normed * self.weight.clone().reshape(shape) + self.bias.clone().reshape(shape)
    }

    /// The reference `LayerNorm3d`: normalises a channels-first `[N, C, D, H, W]` tensor over C.
    pub fn forward_channels_first(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward(x.permute([0, 2, 3, 4, 1]))
            .permute([0, 4, 1, 2, 3])
    }
}

/// `nn.Conv3d` with a cubic kernel, weight (out, in, k, k, k).
#[derive(Debug, Clone)]
pub(crate) struct Conv3d {
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
}

pub(crate) struct ConvShape {
    pub d_in: usize,
    pub d_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl Conv3d {
    pub fn load(params: &mut ParamLoader, prefix: &str, shape: ConvShape) -> Self {
        let k = shape.kernel;
        Self {
            weight: params.tensor(
                &format!("{prefix}.weight"),
                [shape.d_out, shape.d_in, k, k, k],
            ),
            bias: shape
                .bias
                .then(|| params.tensor(&format!("{prefix}.bias"), [shape.d_out])),
            stride: shape.stride,
            padding: shape.padding,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
        conv3d(x, self.weight.clone(), self.bias.clone(), options)
    }
}

/// `nn.ConvTranspose3d(kernel 2, stride 2)`, weight (in, out, 2, 2, 2).
#[derive(Debug, Clone)]
pub(crate) struct ConvTranspose3d {
    weight: Tensor<5>,
    bias: Tensor<1>,
}

impl ConvTranspose3d {
    pub fn load(params: &mut ParamLoader, prefix: &str, d_in: usize, d_out: usize) -> Self {
        Self {
            weight: params.tensor(&format!("{prefix}.weight"), [d_in, d_out, 2, 2, 2]),
            bias: params.tensor(&format!("{prefix}.bias"), [d_out]),
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvTransposeOptions::new([2; 3], [0; 3], [0; 3], [1; 3], 1);
        conv_transpose3d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}

/// The reference `MLP`: Linear layers with ReLU between them (none after the last).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    pub fn load(
        params: &mut ParamLoader,
        prefix: &str,
        d_in: usize,
        hidden: usize,
        d_out: usize,
        depth: usize,
    ) -> Self {
        let layers = (0..depth)
            .map(|i| {
                let a = if i == 0 { d_in } else { hidden };
                let b = if i + 1 == depth { d_out } else { hidden };
                Linear::load(params, &format!("{prefix}.layers.{i}"), a, b)
            })
            .collect();
        Self { layers }
    }

    pub fn forward<const D: usize>(&self, mut x: Tensor<D>) -> Tensor<D> {
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i + 1 < self.layers.len() {
                x = relu(x);
            }
        }
        x
    }
}
