//! The V-Net and 3D U-Net ports against PyTorch: the same parameters (written in state-dict
//! order by scripts/make_nets_fixtures.py) must give the same outputs.

use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::ArrayD;
use semisam::networks::{UNet3d, VNet};

fn fixture(name: &str) -> ArrayD<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nets")
        .join(name);
    ndarray_npy::read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensor5(array: ArrayD<f32>, device: &Device) -> Tensor<5> {
    let shape: [usize; 5] = array.shape().try_into().expect("a 5-D fixture");
    let values: Vec<f32> = array.iter().copied().collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Overwrites every float tensor (parameters and running statistics) in traversal order, which
/// matches PyTorch's state-dict order for these modules.
struct LoadInOrder {
    values: Vec<f32>,
    offset: usize,
}

impl ModuleMapper for LoadInOrder {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let count = shape.num_elements();
        let slice = self.values[self.offset..self.offset + count].to_vec();
        self.offset += count;
        param.map(|old| Tensor::from_data(TensorData::new(slice, shape), &old.device()))
    }
}

fn load<M: Module>(module: M, state: &str) -> M {
    let values: Vec<f32> = fixture(state).iter().copied().collect();
    let mut loader = LoadInOrder { values, offset: 0 };
    let module = module.map(&mut loader);
    assert_eq!(loader.offset, loader.values.len(), "{state}: unused values");
    module
}

fn assert_close(actual: Tensor<5>, expected: ArrayD<f32>, tolerance: f32) {
    assert_eq!(actual.dims().as_slice(), expected.shape());
    let actual = actual.into_data().try_to_vec::<f32>().unwrap();
    let mut worst = 0.0f32;
    for (a, e) in actual.iter().zip(expected.iter()) {
        worst = worst.max((a - e).abs() / (1.0 + e.abs()));
    }
    assert!(worst < tolerance, "worst relative error {worst}");
}

#[test]
fn vnet_matches_pytorch_in_eval_and_train_mode() {
    let device = Device::default();
    let input = tensor5(fixture("input_2x1x32x16x16.npy"), &device);
    // Autodiff device, no generator: batch statistics, dropout off (PyTorch train(), p = 0).
    let autodiff = device.clone().autodiff();
    let net = load(VNet::new(1, 2, 2, true, &autodiff), "vnet_w2_state.npy");
    let train = net
        .forward(input.clone().to_device(&autodiff), None)
        .unwrap();
    assert_close(train, fixture("vnet_w2_train_out.npy"), 1e-4);
    // Plain device: running statistics (PyTorch eval()).
    let net = load(VNet::new(1, 2, 2, true, &device), "vnet_w2_state.npy");
    let eval = net.forward(input, None).unwrap();
    assert_close(eval, fixture("vnet_w2_eval_out.npy"), 1e-4);
}

#[test]
fn unet3d_matches_pytorch() {
    let device = Device::default();
    let input = tensor5(fixture("input_2x1x32x16x16.npy"), &device);
    let net = load(UNet3d::new(1, 3, 2, true, &device), "unet3d_w2_state.npy");
    let out = net.forward(input, None).unwrap();
    assert_close(out, fixture("unet3d_w2_out.npy"), 1e-4);
}
