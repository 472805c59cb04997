//! `cargo bench --bench conv3d_ops -- [--iters N] [--width F]`: per-layer cost of the V-Net's 3D
//! convolutions (forward, gradient of the input, gradient of the weight) and batch norm + ReLU at
//! the LA CPU profile's shapes (batch 4, patch 64 x 64 x 48, width 8; `--width 16` doubles every
//! channel count but the image's), one JSON line per layer and
//! pass. Every layer runs as in the networks (the direct kernels where they apply, on the path
//! `SEMISAM_KERNELS` forces or the best the CPU has; a forced path the CPU lacks is an error).
//! `bench/conv3d_reference.py` prints the same lines for PyTorch.

use std::time::Instant;

use burn::module::Param;
use burn::nn::conv::{Conv3dConfig, ConvTranspose3dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig3d};
use burn::tensor::{Device, Distribution, Tensor};

/// (name, in channels, out channels, spatial size of the input, kind)
const LAYERS: &[(&str, usize, usize, [usize; 3], &str)] = &[
    ("stage1 3x3x3", 1, 8, [64, 64, 48], "conv3"),
    ("stage1 3x3x3", 8, 8, [64, 64, 48], "conv3"),
    ("stage2 3x3x3", 16, 16, [32, 32, 24], "conv3"),
    ("stage3 3x3x3", 32, 32, [16, 16, 12], "conv3"),
    ("stage4 3x3x3", 64, 64, [8, 8, 6], "conv3"),
    ("stage5 3x3x3", 128, 128, [4, 4, 3], "conv3"),
    ("down 2x2x2/2", 8, 16, [64, 64, 48], "down"),
    ("up T2x2x2/2", 16, 8, [32, 32, 24], "up"),
    ("stage1 batchnorm+relu", 8, 8, [64, 64, 48], "bnrelu"),
    ("stage2 batchnorm+relu", 16, 16, [32, 32, 24], "bnrelu"),
];

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
    };
    let iters = option("--iters", 5);
    let width = option("--width", 8);
    // Channel counts of the layers above are for width 8; the image keeps its one channel.
    let scaled = |channels: usize| {
        if channels == 1 {
            1
        } else {
            channels * width / 8
        }
    };
    let kernels = semisam::ops::kernel_path().unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(2);
    });
    let batch = 4;
    let device = Device::default().autodiff();
    for &(name, cin, cout, [x, y, z], kind) in LAYERS {
        let (cin, cout) = (scaled(cin), scaled(cout));
        let forward: Box<dyn Fn(Tensor<5>) -> Tensor<5>> = match kind {
            "conv3" => {
                let conv = Conv3dConfig::new([cin, cout], [3, 3, 3])
                    .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                    .init(&device);
                // The networks' path: the direct kernels where they apply.
                Box::new(move |input| semisam::ops::conv3x3x3(&conv, input))
            }
            "bnrelu" => {
                let norm = BatchNormConfig::new(cout).init(&device);
                // The networks' path: fused in training where it applies.
                Box::new(move |input| semisam::ops::batch_norm_relu(&norm, input))
            }
            "down" => {
                let conv = Conv3dConfig::new([cin, cout], [2, 2, 2])
                    .with_stride([2, 2, 2])
                    .init(&device);
                Box::new(move |input| semisam::ops::down_conv(&conv, input))
            }
            _ => {
                let conv = ConvTranspose3dConfig::new([cin, cout], [2, 2, 2])
                    .with_stride([2, 2, 2])
                    .init(&device);
                Box::new(move |input| semisam::ops::up_conv(&conv, input))
            }
        };
        let input = Param::from_tensor(Tensor::<5>::random(
            [batch, cin, x, y, z],
            Distribution::Normal(0.0, 1.0),
            &device,
        ))
        .val();
        let (mut forward_times, mut backward_times) = (Vec::new(), Vec::new());
        for i in 0..iters + 1 {
            let started = Instant::now();
            let output = forward(input.clone());
            let _ = output.clone().inner().into_data();
            let forward_s = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let gradients = output.sum().backward();
            let grad = input.grad(&gradients).expect("input gradient");
            let _ = grad.into_data();
            let backward_s = started.elapsed().as_secs_f64();
            if i > 0 {
                forward_times.push(forward_s);
                backward_times.push(backward_s);
            }
        }
        for (pass, times) in [("forward", forward_times), ("backward", backward_times)] {
            println!(
                "{{\"impl\":\"semisam (burn flex)\",\"kernels\":\"{}\",\"width\":{width},\"layer\":\"{name} {cin}->{cout}\",\"pass\":\"{pass}\",\"median_s\":{:.5}}}",
                kernels.name(),
                median(times)
            );
        }
    }
}
