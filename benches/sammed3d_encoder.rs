//! Encoder time per 128³ volume of SAM-Med3D `vit_b_ori` (random weights) on the default
//! backend. Prints one line per run so runs can be interleaved with the PyTorch reference
//! (bench/sammed3d_reference.py). Usage:
//!   cargo bench --bench sammed3d_encoder -- [RUNS]

use burn::tensor::{Device, Distribution, Tensor};
use semisam::generalists::sammed3d::{ModelConfig, PointLabel, PointPrompt, SamMed3d};
use std::time::Instant;

/// CPU seconds (user + system, all threads) of this process so far, from /proc/self/stat
/// (clock ticks of 1/100 s), so that a loaded machine shows as wall time above CPU time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

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
    let _ = embedding.image_embedding.clone().into_data();
    eprintln!("warm-up {:.2} s", warm.elapsed().as_secs_f64());
    // One decoding step as SemiSAM's click 0 (a click and an all-zero mask prompt), which
    // also exercises the full-size decoder and the 32^3 -> 128^3 upsampling.
    let m = config.mask_size();
    let click = PointPrompt {
        coord: [64.0, 60.0, 70.0],
        label: PointLabel::Positive,
    };
    for step in 0..2 {
        let start = Instant::now();
        let zeros = Tensor::<5>::zeros([1, 1, m, m, m], &device);
        let decoded = model
            .decode(&embedding, &[click], Some(zeros))
            .expect("prompts fit");
        let _ = decoded.logits.into_data();
        println!(
            "burn decode step {step}: {:.3} s wall",
            start.elapsed().as_secs_f64()
        );
    }
    for run in 0..runs {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let embedding = model.embed(volume.clone()).expect("volume fits");
        let _ = embedding.image_embedding.into_data();
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu_start).map(|(end, begin)| end - begin);
        println!(
            "burn encoder vit_b_ori {s}^3 run {run}: {wall:.3} s wall, {:.2} s CPU ({threads} threads)",
            cpu.unwrap_or(f64::NAN)
        );
    }
}
