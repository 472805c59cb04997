//! `relu(norm.forward(x))` for the networks' conv → BatchNorm → ReLU blocks, fused on the flex
//! backend in training (batch statistics), with a hand-written backward.
//!
//! burn's generic batch norm computes the statistics through channel-first permuted copies and
//! records the normalisation, affine map and ReLU as separate passes; at the V-Net's full
//! resolution that cost more than the convolution. Inference (running statistics), other
//! backends and other dtypes take burn's path.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use semisam_kernels::KernelPath;

/// `relu(norm.forward(x))`, fused where it applies; updates the running statistics as
/// `BatchNorm::forward` does.
pub fn batch_norm_relu<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    batch_norm_relu_on(semisam_kernels::path::selected(), norm, x)
}

/// [`batch_norm_relu`] with the kernels on `path` (which the CPU must run).
pub(crate) fn batch_norm_relu_on<const D: usize>(
    path: KernelPath,
    norm: &BatchNorm,
    x: Tensor<D>,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if x.device().is_autodiff()
        && norm.training.is_enabled()
        && x.dtype() == burn::tensor::DType::F32
        && let Some(y) = fused::train(path, norm, x.clone())
    {
        return y;
    }
    #[cfg(not(feature = "flex"))]
    let _ = path;
    relu(norm.forward(x))
}

#[cfg(feature = "flex")]
mod fused {
    use burn::backend::Flex;
    use burn::backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
    };
    use burn::nn::BatchNorm;
    use burn::tensor::{Tensor, TensorData};
    use burn_flex::FlexTensor;
    use semisam_kernels::KernelPath;
    use semisam_kernels::batch_norm_relu::{self as kernels, BatchStatistics, Layout};

    use crate::ops::flex_primitives::{
        FlexFloat, dims, flex_float, flex_tensor, from_tracked, values,
    };

    /// The training forward; `None` when the tensors are not tracked flex tensors.
    pub(super) fn train<const D: usize>(
        path: KernelPath,
        norm: &BatchNorm,
        x: Tensor<D>,
    ) -> Option<Tensor<D>> {
        let device = x.device();
        let (FlexFloat::Tracked(x), FlexFloat::Tracked(gamma), FlexFloat::Tracked(beta)) = (
            flex_float(x)?,
            flex_float(norm.gamma.val())?,
            flex_float(norm.beta.val())?,
        ) else {
            return None;
        };
        let shape = dims(x.primitive());
        let layout = Layout {
            items: shape[0],
            channels: shape[1],
            spatial: shape[2..].iter().product(),
        };
        let statistics = kernels::statistics(path, &values(x.primitive()), layout);
        update_running(norm, &statistics, &device);
        let state = State {
            path,
            x: x.primitive().clone(),
            layout,
            statistics,
            gamma: values(gamma.primitive()).into_owned(),
            beta: values(beta.primitive()).into_owned(),
            epsilon: norm.epsilon,
        };
        let output = match BatchNormReluBackward
            .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = state.forward(&shape);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(state.forward(&shape)),
        };
        Some(from_tracked(output))
    }

    /// The running statistics, updated exactly as `BatchNorm::forward` does in training (burn
    /// blends in the biased batch variance).
    fn update_running(
        norm: &BatchNorm,
        statistics: &BatchStatistics,
        device: &burn::tensor::Device,
    ) {
        let channels = statistics.mean.len();
        let blend = |running: Tensor<1>, batch: &[f32]| {
            let batch = Tensor::<1>::from_data(TensorData::new(batch.to_vec(), [channels]), device);
            running
                .mul_scalar(1.0 - norm.momentum)
                .add(batch.mul_scalar(norm.momentum))
                .detach()
        };
        let mean = blend(
            norm.running_mean.value_sync().to_device(device),
            &statistics.mean,
        );
        let variance = blend(
            norm.running_var.value_sync().to_device(device),
            &statistics.variance,
        );
        norm.running_mean.update(mean);
        norm.running_var.update(variance);
    }

    /// What the backward step needs, including the forward's kernel path.
    #[derive(Debug, Clone)]
    struct State {
        path: KernelPath,
        x: FlexTensor,
        layout: Layout,
        statistics: BatchStatistics,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        epsilon: f64,
    }

    impl State {
        fn forward(&self, shape: &[usize]) -> FlexTensor {
            let y = kernels::forward(
                self.path,
                &values(&self.x),
                self.layout,
                &self.statistics,
                &self.gamma,
                &self.beta,
                self.epsilon,
            );
            flex_tensor(y, shape)
        }
    }

    #[derive(Debug)]
    struct BatchNormReluBackward;

    impl Backward<Flex, 3> for BatchNormReluBackward {
        type State = State;

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [x_node, gamma_node, beta_node] = ops.parents;
            let gradient = grads.consume::<Flex>(&ops.node);
            let state = ops.state;
            let g = kernels::backward(
                state.path,
                &values(&state.x),
                &values(&gradient),
                state.layout,
                &state.statistics,
                &state.gamma,
                &state.beta,
                state.epsilon,
            );
            let channels = [state.layout.channels];
            if let Some(node) = x_node {
                grads.register::<Flex>(node.id, flex_tensor(g.x, &dims(&state.x)));
            }
            if let Some(node) = gamma_node {
                grads.register::<Flex>(node.id, flex_tensor(g.gamma, &channels));
            }
            if let Some(node) = beta_node {
                grads.register::<Flex>(node.id, flex_tensor(g.beta, &channels));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Output, running statistics and the gradients of x, gamma and beta against burn's
    /// `relu(BatchNorm::forward)`, on a non-trivial gamma/beta and a channel offset, on every
    /// kernel path this CPU runs.
    #[test]
    fn matches_burn_batch_norm_then_relu_in_training_on_every_path() {
        for path in KernelPath::available() {
            matches_burn_in_training(path);
        }
    }

    fn matches_burn_in_training(path: KernelPath) {
        let name = path.name();
        let device = Device::default().autodiff();
        let channels = 5;
        // Two layers with the same parameters and their own running statistics (a clone would
        // share them).
        let layer = || BatchNorm {
            gamma: burn::module::Param::from_tensor(Tensor::<1>::from_floats(
                [1.5, -0.5, 0.8, 1.0, 2.0],
                &device,
            )),
            beta: burn::module::Param::from_tensor(Tensor::<1>::from_floats(
                [0.1, 0.3, -0.2, 0.0, 0.5],
                &device,
            )),
            ..BatchNormConfig::new(channels).init(&device)
        };
        let (fused_norm, burn_norm) = (layer(), layer());
        let x = Tensor::<5>::random(
            [3, channels, 6, 5, 7],
            Distribution::Normal(0.5, 2.0),
            &device,
        );
        let weights = Tensor::<5>::random(
            [3, channels, 6, 5, 7],
            Distribution::Normal(0.0, 1.0),
            &device,
        );

        let x_fused = x.clone().detach().require_grad();
        #[cfg(feature = "flex")]
        assert!(
            fused::train(path, &fused_norm.clone(), x_fused.clone()).is_some(),
            "the fused path did not run"
        );
        let fused = batch_norm_relu_on(path, &fused_norm, x_fused.clone());
        let x_burn = x.clone().detach().require_grad();
        let reference = relu(burn_norm.forward(x_burn.clone()));
        let error = max_abs_diff(fused.clone().detach(), reference.clone().detach());
        assert!(error < 1e-5, "{name}: forward differs by {error}");

        let fused_grads = (fused * weights.clone()).sum().backward();
        let burn_grads = (reference * weights).sum().backward();
        let error = max_abs_diff(
            x_fused.grad(&fused_grads).unwrap(),
            x_burn.grad(&burn_grads).unwrap(),
        );
        assert!(error < 1e-5, "{name}: input gradient differs by {error}");
        for (what, a, b) in [
            ("gamma", fused_norm.gamma.val(), burn_norm.gamma.val()),
            ("beta", fused_norm.beta.val(), burn_norm.beta.val()),
        ] {
            let (a, b) = (a.grad(&fused_grads).unwrap(), b.grad(&burn_grads).unwrap());
            let scale: f32 = b.clone().abs().max().into_scalar();
            let error = max_abs_diff(a, b) / scale.max(1.0);
            assert!(
                error < 1e-5,
                "{name}: {what} gradient differs by {error} (relative)"
            );
        }
        // The test ran the fused training forward twice (the check above), burn's once.
        // `value()` may lag one update behind: compare the synchronised values.
        let once_more = relu(burn_norm.forward(x.clone().detach()));
        drop(once_more);
        for (what, initial, a, b) in [
            (
                "running mean",
                0.0,
                fused_norm.running_mean.value_sync(),
                burn_norm.running_mean.value_sync(),
            ),
            (
                "running variance",
                1.0,
                fused_norm.running_var.value_sync(),
                burn_norm.running_var.value_sync(),
            ),
        ] {
            let moved: f32 = (b.clone() - initial).abs().max().into_scalar();
            assert!(moved > 0.05, "{name}: {what} did not move");
            let error = max_abs_diff(a, b);
            assert!(error < 1e-5, "{name}: {what} differs by {error}");
        }
    }

    #[test]
    fn inference_uses_the_running_statistics() {
        let device = Device::default();
        let norm = BatchNormConfig::new(2).init(&device);
        let x = Tensor::<5>::random([1, 2, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let error = max_abs_diff(batch_norm_relu(&norm, x.clone()), relu(norm.forward(x)));
        assert_eq!(error, 0.0);
    }
}
