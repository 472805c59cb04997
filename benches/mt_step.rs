//! `cargo bench --bench mt_step -- [--patch X Y Z] [--batch B] [--labeled L] [--width F]
//! [--warmup W] [--iters N]`: times one Mean Teacher step (V-Net) on the default backend and
//! prints one JSON line, comparable to `bench/mt_step_reference.py`, naming the kernel path
//! (`SEMISAM_KERNELS=avx512|avx2|generic` forces one; a path the CPU lacks is an error).

use semisam::frameworks::benchmark::{StepBenchSettings, time_mean_teacher_step};

fn main() {
    let mut settings = StepBenchSettings::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let number = |s: &String| -> usize {
        s.parse()
            .unwrap_or_else(|_| panic!("expected a number, got {s:?}"))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--patch" => {
                settings.patch = [
                    number(&args[i + 1]),
                    number(&args[i + 2]),
                    number(&args[i + 3]),
                ];
                i += 4;
            }
            "--batch" => (settings.batch, i) = (number(&args[i + 1]), i + 2),
            "--labeled" => (settings.labeled, i) = (number(&args[i + 1]), i + 2),
            "--width" => (settings.width, i) = (number(&args[i + 1]), i + 2),
            "--warmup" => (settings.warmup, i) = (number(&args[i + 1]), i + 2),
            "--iters" => (settings.iterations, i) = (number(&args[i + 1]), i + 2),
            // cargo bench passes --bench to every bench target.
            _ => i += 1,
        }
    }
    let kernels = semisam::ops::kernel_path().unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(2);
    });
    let device = semisam::backend::default_device();
    let report = time_mean_teacher_step(&settings, &device).expect("benchmark step failed");
    let mut line = serde_json::to_value(&report).expect("report serialises");
    line["kernels"] = kernels.name().into();
    println!("{line}");
}
