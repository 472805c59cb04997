//! Test support: a hand-written layer against burn's own, forward and every gradient.

use burn::tensor::{Distribution, Tensor};

pub(crate) fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// `max |a - b|` over `max(1, max |b|)`.
pub(crate) fn relative<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    max_abs_diff(a, b) / scale.max(1.0)
}

/// Runs `direct` and `reference` on `x` (on an autodiff device) and checks that the outputs and
/// the gradients of `x` and of every parameter in `parameters` agree within `1e-5` (relative),
/// under a random linear functional of the output.
pub(crate) fn check_against_burn(
    what: &str,
    x: Tensor<5>,
    parameters: &[(&str, Tensor<5>)],
    bias: Option<Tensor<1>>,
    direct: impl Fn(Tensor<5>) -> Tensor<5>,
    reference: impl Fn(Tensor<5>) -> Tensor<5>,
) {
    let x_direct = x.clone().detach().require_grad();
    let x_burn = x.detach().require_grad();
    let (a, b) = (direct(x_direct.clone()), reference(x_burn.clone()));
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    let error = relative(a.clone().detach(), b.clone().detach());
    assert!(error < 1e-5, "{what}: forward differs by {error}");
    let probe = Tensor::<5>::random(a.dims(), Distribution::Normal(0.0, 1.0), &a.device());
    let ga = (a * probe.clone()).sum().backward();
    let gb = (b * probe).sum().backward();
    let error = relative(x_direct.grad(&ga).unwrap(), x_burn.grad(&gb).unwrap());
    assert!(error < 1e-5, "{what}: input gradient differs by {error}");
    for (name, parameter) in parameters {
        let error = relative(parameter.grad(&ga).unwrap(), parameter.grad(&gb).unwrap());
        assert!(error < 1e-5, "{what}: {name} gradient differs by {error}");
    }
    if let Some(bias) = bias {
        let error = relative(bias.grad(&ga).unwrap(), bias.grad(&gb).unwrap());
        assert!(error < 1e-5, "{what}: bias gradient differs by {error}");
    }
}
