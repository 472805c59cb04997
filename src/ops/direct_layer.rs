//! One autodiff wrapper for the hand-written linear layers on flex (3x3x3 convolution, 2x2x2
//! stride-2 convolution and its transpose): each provides its forward and the gradients of its
//! input and weight; the wrapper routes tracked and plain tensors, records the backward step and
//! computes the bias gradient, which is the same per-channel sum for all of them.

use std::borrow::Cow;
use std::fmt::Debug;

use burn::backend::Flex;
use burn::backend::autodiff::{
    NodeId,
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use crate::ops::flex_primitives::{
    FlexFloat, TrackedFloat, dims, flex_float, flex_tensor, from_plain, from_tracked, values,
};

/// A layer `y = f(x, weight) + bias`, linear in `x` and in `weight`.
pub(crate) trait DirectLayer: Debug + Clone + Send + Sync + 'static {
    /// `f(x, weight)` plus `bias[channel]` where given.
    fn forward(&self, x: &FlexTensor, weight: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor;

    /// The output gradient in the layout both gradient kernels read, computed once per backward
    /// step (the padded grid, space-to-depth); as it is by default.
    fn prepare_gradient<'a>(
        &self,
        _x: &FlexTensor,
        _weight: &FlexTensor,
        output_gradient: &'a [f32],
    ) -> Cow<'a, [f32]> {
        Cow::Borrowed(output_gradient)
    }

    /// The gradient of `x` given the prepared output gradient.
    fn input_gradient(
        &self,
        x: &FlexTensor,
        weight: &FlexTensor,
        output_gradient: &[f32],
    ) -> FlexTensor;

    /// The gradient of `weight` given the prepared output gradient.
    fn weight_gradient(
        &self,
        x: &FlexTensor,
        weight: &FlexTensor,
        output_gradient: &[f32],
    ) -> FlexTensor;
}

/// Runs `layer`; `None` when the tensors are not all flex tensors of one kind (the caller then
/// takes burn's path).
pub(crate) fn run<L: DirectLayer>(
    layer: L,
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
) -> Option<Tensor<5>> {
    let bias = match bias {
        Some(bias) => Some(flex_float(bias)?),
        None => None,
    };
    match (flex_float(x)?, flex_float(weight)?, bias) {
        (FlexFloat::Tracked(x), FlexFloat::Tracked(weight), None) => {
            Some(from_tracked(tracked(layer, x, weight, None)))
        }
        (FlexFloat::Tracked(x), FlexFloat::Tracked(weight), Some(FlexFloat::Tracked(bias))) => {
            Some(from_tracked(tracked(layer, x, weight, Some(bias))))
        }
        (FlexFloat::Plain(x), FlexFloat::Plain(weight), None) => {
            Some(from_plain(layer.forward(&x, &weight, None)))
        }
        (FlexFloat::Plain(x), FlexFloat::Plain(weight), Some(FlexFloat::Plain(bias))) => {
            Some(from_plain(layer.forward(&x, &weight, Some(&values(&bias)))))
        }
        _ => None,
    }
}

fn tracked<L: DirectLayer>(
    layer: L,
    x: TrackedFloat,
    weight: TrackedFloat,
    bias: Option<TrackedFloat>,
) -> TrackedFloat {
    let step = LayerBackward(layer.clone());
    let forward = |bias: Option<&FlexTensor>| {
        let bias = bias.map(values);
        layer.forward(x.primitive(), weight.primitive(), bias.as_deref())
    };
    let state = || (x.primitive().clone(), weight.primitive().clone());
    match &bias {
        None => match step
            .prepare::<NoCheckpointing>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(), forward(None)),
            OpsKind::UnTracked(prep) => prep.finish(forward(None)),
        },
        Some(b) => match step
            .prepare::<NoCheckpointing>([x.node(), weight.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state(), forward(Some(b.primitive()))),
            OpsKind::UnTracked(prep) => prep.finish(forward(Some(b.primitive()))),
        },
    }
}

#[derive(Debug)]
struct LayerBackward<L>(L);

impl<L: DirectLayer> LayerBackward<L> {
    fn register(
        &self,
        (x, weight): (FlexTensor, FlexTensor),
        gradient: &[f32],
        x_node: Option<NodeId>,
        weight_node: Option<NodeId>,
        grads: &mut Gradients,
    ) {
        if x_node.is_none() && weight_node.is_none() {
            return;
        }
        let gradient = self.0.prepare_gradient(&x, &weight, gradient);
        let gradient = gradient.as_ref();
        if let Some(id) = x_node {
            grads.register::<Flex>(id, self.0.input_gradient(&x, &weight, gradient));
        }
        if let Some(id) = weight_node {
            grads.register::<Flex>(id, self.0.weight_gradient(&x, &weight, gradient));
        }
    }
}

impl<L: DirectLayer> Backward<Flex, 2> for LayerBackward<L> {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node] = ops.parents;
        let gradient = grads.consume::<Flex>(&ops.node);
        self.register(
            ops.state,
            &values(&gradient),
            x_node.map(|node| node.id),
            weight_node.map(|node| node.id),
            grads,
        );
    }
}

impl<L: DirectLayer> Backward<Flex, 3> for LayerBackward<L> {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node, bias_node] = ops.parents;
        let gradient = grads.consume::<Flex>(&ops.node);
        let shape = dims(&gradient);
        let gradient = values(&gradient);
        if let Some(node) = bias_node {
            let sums = semisam_kernels::grid::channel_sums(&gradient, shape[0], shape[1]);
            grads.register::<Flex>(node.id, flex_tensor(sums, &[shape[1]]));
        }
        self.register(
            ops.state,
            &gradient,
            x_node.map(|node| node.id),
            weight_node.map(|node| node.id),
            grads,
        );
    }
}
