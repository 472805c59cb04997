//! Speed of the surface-distance metrics on a 256×256×128 volume with spacing (0.7, 0.7, 2.5) mm
//! (target: HD95 in under 1 s in release mode). Run with `cargo bench --bench hd95`.
//!
//! Self-timed (no criterion): criterion's dependencies would change the feature set of crates
//! shared with burn and force a rebuild of the whole dependency tree for tests.

use std::time::{Duration, Instant};

use ndarray::Array3;
use semisam::metrics::{Hd95Convention, evaluate_masks};
use semisam::morphology::distance_transform;

const SHAPE: (usize, usize, usize) = (256, 256, 128);
const SPACING: [f64; 3] = [0.7, 0.7, 2.5];
const RUNS: usize = 5;

/// An ellipsoid with a sinusoidal surface ripple (so the two masks differ irregularly).
fn rippled_ellipsoid(centre: [f64; 3], radii: [f64; 3], ripple: f64) -> Array3<bool> {
    Array3::from_shape_fn(SHAPE, |(i, j, k)| {
        let at = [i as f64, j as f64, k as f64];
        let r2: f64 = (0..3)
            .map(|d| ((at[d] - centre[d]) / radii[d]).powi(2))
            .sum();
        let angle = (at[1] - centre[1]).atan2(at[0] - centre[0]);
        r2.sqrt() <= 1.0 + ripple * (5.0 * angle).sin()
    })
}

/// CPU time of the whole process (all threads) in seconds, from /proc (Linux; USER_HZ = 100).
/// Unlike wall time it does not grow when other processes compete for the cores.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn time<T>(label: &str, mut run: impl FnMut() -> T) -> T {
    let mut result = run(); // warm-up (page faults, thread pool start)
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    let cpu_start = process_cpu_seconds();
    for _ in 0..RUNS {
        let start = Instant::now();
        result = run();
        times.push(start.elapsed());
    }
    let cpu_per_run = cpu_start
        .zip(process_cpu_seconds())
        .map(|(a, b)| (b - a) / RUNS as f64);
    times.sort();
    println!(
        "{label}: wall median {:.3} s, min {:.3} s, max {:.3} s over {RUNS} runs ({} rayon threads); \
         CPU {} s per run",
        times[RUNS / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[RUNS - 1].as_secs_f64(),
        rayon::current_num_threads(),
        cpu_per_run.map_or("n/a".to_string(), |c| format!("{c:.3}")),
    );
    result
}

fn main() {
    // Objects spanning most of the volume: the bounding-box crop of the metrics saves little.
    let reference = rippled_ellipsoid([128.0, 128.0, 64.0], [110.0, 100.0, 55.0], 0.0);
    let prediction = rippled_ellipsoid([122.0, 131.0, 66.0], [105.0, 104.0, 52.0], 0.04);
    let metrics = time(
        "dice+jaccard+hd95+asd+assd, 256x256x128, objects filling the volume",
        || {
            evaluate_masks(
                prediction.view(),
                reference.view(),
                SPACING,
                Hd95Convention::Medpy,
            )
            .expect("same shapes")
        },
    );
    println!(
        "  -> dice {:.4}, hd95 {:.3} mm, asd {:.3} mm, assd {:.3} mm",
        metrics.dice, metrics.hd95, metrics.asd, metrics.assd
    );

    // Worst case for the transform itself: the full volume, sparse features.
    let mut sparse = Array3::from_elem(SHAPE, false);
    sparse[[10, 20, 30]] = true;
    sparse[[200, 100, 100]] = true;
    let distances = time("distance_transform, full 256x256x128 volume", || {
        distance_transform(sparse.view(), SPACING)
    });
    println!(
        "  -> distance at the far corner {:.3} mm",
        distances[[255, 255, 127]]
    );
}
