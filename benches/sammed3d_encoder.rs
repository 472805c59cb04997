//! Encoder time per 128³ volume of SAM-Med3D `vit_b_ori` (random weights) on the default
//! backend. Prints one line per run so runs can be interleaved with the PyTorch reference
//! (bench/sammed3d_reference.py). Usage:
//!   cargo bench --bench sammed3d_encoder -- [RUNS]

use burn::tensor::{Device, Distribution, Tensor};
use semisam::generalists::sammed3d::{ModelConfig, SamMed3d};
use std::time::Instant;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let device = Device::default();
    let config = ModelConfig::vit_b_ori();
    let model = SamMed3d::random(&config, &device);
    let s = config.img_size;
    let volume = Tensor::<5>::random([1, 1, s, s, s], Distribution::Normal(0.0, 1.0), &device);
    let threads = rayon::current_num_threads();
    // One untimed run: first-touch allocations and lazy initialisation.
    let warm = Instant::now();
    let embedding = model.embed(volume.clone()).expect("volume fits");
    let _ = embedding.image_embedding.into_data();
    eprintln!("warm-up {:.2} s", warm.elapsed().as_secs_f64());
    for run in 0..runs {
        let start = Instant::now();
        let embedding = model.embed(volume.clone()).expect("volume fits");
        let _ = embedding.image_embedding.into_data();
        println!(
            "burn encoder vit_b_ori {s}^3 run {run}: {:.3} s ({threads} threads)",
            start.elapsed().as_secs_f64()
        );
    }
}
