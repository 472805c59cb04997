//! Moving tensors between burn's `Tensor` and the flex backend's primitives, for the operations
//! whose forward and backward are hand-written (`conv3x3x3`, `batch_norm_relu`).

use std::borrow::Cow;

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::tensor::{Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

/// A float primitive of `Autodiff<Flex>`.
pub(crate) type TrackedFloat = burn::backend::tensor::FloatTensor<Autodiff<Flex>>;

/// A tensor that lives on flex, with or without autodiff.
pub(crate) enum FlexFloat {
    Tracked(TrackedFloat),
    Plain(FlexTensor),
}

/// The tensor's flex primitive; `None` on any other backend.
pub(crate) fn flex_float<const D: usize>(tensor: Tensor<D>) -> Option<FlexFloat> {
    if let Ok(tracked) = tensor.clone().try_into_primitive::<Autodiff<Flex>>() {
        return Some(FlexFloat::Tracked(tracked));
    }
    tensor
        .try_into_primitive::<Flex>()
        .ok()
        .map(FlexFloat::Plain)
}

pub(crate) fn from_tracked<const D: usize>(primitive: TrackedFloat) -> Tensor<D> {
    Tensor::from_primitive::<Autodiff<Flex>>(primitive)
}

pub(crate) fn from_plain<const D: usize>(primitive: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(primitive)
}

/// The tensor's values in row-major order (copied only when its layout is not contiguous).
pub(crate) fn values(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// The tensor's shape.
pub(crate) fn dims(tensor: &FlexTensor) -> Vec<usize> {
    tensor.layout().shape().to_vec()
}

/// A flex tensor holding `values`.
pub(crate) fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape.to_vec())))
}
