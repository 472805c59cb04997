//! Time of one SAM-Med3D pseudo-label (cube crop, embedding, N clicks, paste) through the
//! `Generalist` interface, and of the same request answered from the embedding cache (clicks
//! only). Default: the tiny fixture model (64³ cube); `vit_b_ori` times the full-size
//! architecture with random weights (128³ cube). Usage:
//!   cargo bench --bench sammed3d_pseudo_label -- [RUNS] [CLICKS] [vit_b_ori]

use burn::tensor::Device;
use ndarray::Array3;
use semisam::generalists::clicks3d::{ClickLoopConfig, SamMed3dClicks};
use semisam::generalists::sammed3d::{ModelConfig, SamMed3d};
use semisam::generalists::{Generalist, PseudoLabelRequest};
use std::path::PathBuf;
use std::time::Instant;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sammed3d")
        .join(name)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let runs = numbers.first().copied().unwrap_or(5);
    let clicks = numbers.get(1).copied().unwrap_or(5);
    let full_size = args.iter().any(|a| a == "vit_b_ori");
    let device = Device::default();
    let (model, name) = if full_size {
        let config = ModelConfig::vit_b_ori();
        (
            SamMed3d::random(&config, &device),
            "vit_b_ori (random weights)",
        )
    } else {
        let config = ModelConfig::from_json_file(&fixture("model_config_tiny.json"))
            .expect("fixture config");
        let model = SamMed3d::load(&fixture("tiny_sammed3d.pth"), &config, &device)
            .expect("fixture checkpoint");
        (model, "tiny fixture")
    };
    let side = model.config().img_size;
    let config = ClickLoopConfig {
        clicks,
        ..Default::default()
    };
    let mut generalist =
        SamMed3dClicks::new(model, "bench", config, runs + 1, &device).expect("valid settings");

    // A patch-sized region of a larger volume holding an ellipsoid the student is sure of.
    let shape = (side + side / 4, side + side / 8, side);
    let centre = [
        shape.0 as f32 * 0.45,
        shape.1 as f32 * 0.55,
        shape.2 as f32 * 0.5,
    ];
    let radii = [side as f32 * 0.2, side as f32 * 0.15, side as f32 * 0.18];
    let inside = |i: usize, j: usize, k: usize| {
        [i, j, k]
            .iter()
            .zip(centre.iter().zip(radii))
            .map(|(&x, (&c, r))| ((x as f32 - c) / r).powi(2))
            .sum::<f32>()
            < 1.0
    };
    let image = Array3::from_shape_fn(shape, |(i, j, k)| {
        let texture = ((i * 7 + j * 11 + k * 5) % 13) as f32 / 13.0 - 0.5;
        let base = if inside(i, j, k) { 1.0 } else { -0.5 };
        base + 0.3 * texture
    });
    let region = [
        side / 8..side / 8 + side * 7 / 8,
        4..4 + side * 7 / 8,
        0..side * 3 / 4,
    ];
    let probability = Array3::from_shape_fn(
        (region[0].len(), region[1].len(), region[2].len()),
        |(i, j, k)| {
            let at = (
                i + region[0].start,
                j + region[1].start,
                k + region[2].start,
            );
            if inside(at.0, at.1, at.2) { 0.9 } else { 0.1 }
        },
    );
    let mut time = |case_id: &str| {
        let request = PseudoLabelRequest {
            case_id,
            image: image.view(),
            region: region.clone(),
            probability: probability.view(),
        };
        let start = Instant::now();
        let label = generalist
            .pseudo_label(&request)
            .expect("pseudo-label")
            .expect("confident object");
        (start.elapsed().as_secs_f64(), label.prompts)
    };
    let threads = rayon::current_num_threads();
    let (warm, _) = time("warm-up");
    eprintln!("{name}, {side}^3 cube, {threads} threads: warm-up {warm:.3} s");
    let mut full = Vec::new();
    let mut cached = Vec::new();
    for run in 0..runs {
        let case = format!("case{run}");
        let (seconds, prompts) = time(&case);
        full.push(seconds);
        let (again, _) = time(&case);
        cached.push(again);
        println!(
            "run {run}: embed + {prompts} clicks {seconds:.3} s; cached embedding, clicks only {again:.3} s"
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{name}: median pseudo-label {:.3} s, from the cache {:.3} s ({runs} runs, {clicks} clicks, {threads} threads)",
        median(&mut full),
        median(&mut cached)
    );
}
