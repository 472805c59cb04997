//! Seeded network initialisation is reproducible.
//!
//! This test has its own process: burn's device RNG is global, so a unit test drawing random
//! tensors on another thread between `seed` and the parameter draws would change the weights.

use burn::tensor::{Device, Distribution, Tensor};
use semisam::networks::{Architecture, NetworkConfig};

#[test]
fn seeded_init_is_reproducible() {
    let config = NetworkConfig {
        architecture: Architecture::VNet,
        in_channels: 1,
        num_classes: 2,
        base_filters: 2,
        dropout: false,
        poolings: NetworkConfig::default_poolings(),
    };
    let device = Device::default();
    let x = Tensor::<5>::random([1, 1, 16, 16, 16], Distribution::Default, &device);
    let outputs: Vec<Vec<f32>> = [5u64, 5, 6]
        .iter()
        .map(|&seed| {
            let net = config.init_seeded(&device, seed).unwrap();
            let y = net.forward(x.clone(), None).unwrap();
            y.into_data().try_to_vec::<f32>().unwrap()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
    assert_ne!(outputs[0], outputs[2]);
}
