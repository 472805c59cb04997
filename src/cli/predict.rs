//! `semisam predict`: segment new volumes with a trained checkpoint. Each input is resampled to
//! the model's grid (`data.target_spacing`) and its prediction back onto the input's own grid.

use std::path::PathBuf;

use anyhow::{Context, bail};
use semisam::inference::input_check::check_inputs;
use semisam::inference::pipeline::{PredictOptions, list_jobs, run_job};
use semisam::training::load_checkpoint_model;
use semisam::training::validation::model_device;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Checkpoint file (e.g. runs/NAME/checkpoints/final.ckpt).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// A volume (.nii, .nii.gz, .h5, .npy) or a folder of them (or of UA-MT case folders).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder: one label map per input, in the input's format and geometry.
    #[arg(long)]
    pub output: PathBuf,
    /// Sliding-window stride x,y,z in voxels of the model's grid (default: the run's
    /// inference.stride, else half the patch).
    #[arg(long, value_parser = parse_triple)]
    pub stride: Option<[usize; 3]>,
    /// Keep only the largest connected component of each class (default: the run's inference.lcc).
    #[arg(long, overrides_with = "no_lcc")]
    pub lcc: bool,
    /// Keep every component, whatever the run's configuration says.
    #[arg(long)]
    pub no_lcc: bool,
    /// Windows per forward pass (more is faster and uses more memory).
    #[arg(long, default_value_t = 1)]
    pub window_batch: usize,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_triple(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let values: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match values {
        Ok(v) if v.len() == 3 && v.iter().all(|&x| x > 0) => Ok([v[0], v[1], v[2]]),
        _ => Err(format!(
            "expected three positive integers x,y,z, got {text:?}"
        )),
    }
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let (config, model) = load_checkpoint_model(&args.checkpoint)?;
    let device = model_device(&model);
    let jobs = list_jobs(&args.input, &args.output)?;
    check_inputs(
        &args.input,
        &jobs,
        config.network.in_channels,
        config.data.modality.as_deref(),
    )?;
    if args.window_batch == 0 {
        bail!("--window-batch must be at least 1");
    }
    let options = PredictOptions {
        stride: args.stride.unwrap_or_else(|| config.inference_stride()),
        largest_component: if args.no_lcc {
            false
        } else {
            args.lcc || config.inference.lcc
        },
        window_batch: args.window_batch,
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;

    let bar = if args.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} windows {pos}/{len} [{elapsed_precise} < {eta_precise}] {wide_bar}")
                .expect("valid template"),
        );
        bar
    };
    let mut summaries = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        bar.set_prefix(format!("case {}/{} {}", n + 1, jobs.len(), job.case));
        bar.set_position(0);
        let summary = run_job(
            &model,
            &config.model_input(),
            job,
            options,
            &device,
            |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )?;
        bar.println(format!(
            "{} -> {} ({:.1} s)",
            job.input.display(),
            job.output.display(),
            summary.seconds
        ));
        summaries.push(summary);
    }
    bar.finish_and_clear();
    let summary_path = args.output.join("summary.json");
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "checkpoint": args.checkpoint,
        "stride": options.stride,
        "largest_component": options.largest_component,
        "cases": summaries,
    }))?;
    semisam::io_util::write_atomic(&summary_path, &json)?;
    eprintln!(
        "{} prediction(s) in {}; summary: {}",
        summaries.len(),
        args.output.display(),
        summary_path.display()
    );
    Ok(())
}
