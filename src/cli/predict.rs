//! `semisam predict`: segment new volumes with a trained checkpoint, or with the mean of several
//! checkpoints' probabilities (an ensemble). Each input is resampled to the model's grid
//! (`data.target_spacing`) and its prediction back onto the input's own grid.

use std::path::PathBuf;

use anyhow::{Context, bail};
use semisam::inference::ensemble::{Ensemble, EnsembleMember};
use semisam::inference::input_check::check_inputs;
use semisam::inference::mirror::MirrorAxes;
use semisam::inference::pipeline::{JobOutputs, PredictOptions, list_jobs, run_job};
use semisam::inference::window_weights::WindowWeighting;
use semisam::training::validation::model_device;
use semisam::training::{RunConfig, load_checkpoint_model};

use super::parse_spacing;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Checkpoint file (e.g. runs/NAME/checkpoints/final.ckpt); repeat it to ensemble several
    /// models (the mean of their probabilities; they must share classes, channels,
    /// data.target_spacing and data.downsample).
    #[arg(long, required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// A volume (.nii, .nii.gz, .h5, .npy, .png) or a folder of them (or of UA-MT case folders).
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
    /// Averaging of overlapping windows: uniform or gaussian (default: the run's
    /// inference.weighting, uniform unless set).
    #[arg(long)]
    pub weighting: Option<WindowWeighting>,
    /// Mirror test-time augmentation over the axes the training flipped (or the run's
    /// inference.mirror_axes); default: the run's inference.tta.
    #[arg(long, overrides_with = "no_tta")]
    pub tta: bool,
    /// No test-time augmentation, whatever the run's configuration says.
    #[arg(long)]
    pub no_tta: bool,
    /// Also write each case's class probabilities: <case>.npz beside its label map, holding
    /// `probabilities` (float32 [C, X, Y, Z] on the input's grid; argmax = the label map before
    /// any --lcc clean-up).
    #[arg(long)]
    pub save_probabilities: bool,
    /// Voxel spacing x,y,z (mm) of inputs whose files store none (.npy, UA-MT h5), used instead
    /// of the run's data.spacing to resample them to the model's data.target_spacing.
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<[f64; 3]>,
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

/// The options of one checkpoint's run, with the command line's overrides.
fn options_for(config: &RunConfig, args: &PredictArgs) -> anyhow::Result<PredictOptions> {
    let configured = config.predict_options();
    let tta = !args.no_tta && (args.tta || config.inference.tta);
    let mirror = if tta {
        let axes = config.mirror_axes().map_err(anyhow::Error::msg)?;
        if axes.is_empty() {
            bail!(
                "--tta: the run did not train with flips (training.augment.flip = false) and sets no inference.mirror_axes, so no axis can be mirrored"
            );
        }
        axes
    } else {
        MirrorAxes::NONE
    };
    // The run's own stride was checked with its configuration.
    if let Some(stride) = args.stride {
        semisam::inference::check_stride(stride, config.model_input().window)
            .map_err(|message| anyhow::anyhow!("--stride: {message}"))?;
    }
    Ok(PredictOptions {
        stride: args.stride.unwrap_or(configured.stride),
        largest_component: if args.no_lcc {
            false
        } else {
            args.lcc || configured.largest_component
        },
        window_batch: args.window_batch,
        weighting: args.weighting.unwrap_or(configured.weighting),
        mirror,
    })
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    if args.window_batch == 0 {
        bail!("--window-batch must be at least 1");
    }
    let mut loaded = Vec::with_capacity(args.checkpoint.len());
    for path in &args.checkpoint {
        let (config, model) = load_checkpoint_model(path)?;
        let options = options_for(&config, &args)
            .with_context(|| format!("checkpoint {}", path.display()))?;
        let device = model_device(&model);
        loaded.push((path, config, model, device, options));
    }
    let members = loaded
        .iter()
        .map(|(path, config, model, device, options)| {
            let mut input = config.model_input();
            if args.spacing.is_some() {
                input.preparation.fallback_spacing = args.spacing;
            }
            EnsembleMember {
                source: path.as_path(),
                input,
                model,
                device,
                window: options.sliding_window(input.window),
            }
        })
        .collect();
    let ensemble = Ensemble::new(members)?;
    // The first checkpoint's run decides the clean-up of the ensemble's labels.
    let options = loaded[0].4;
    let outputs = JobOutputs {
        largest_component: options.largest_component,
        save_probabilities: args.save_probabilities,
    };
    let jobs = list_jobs(&args.input, &args.output)?;
    for (path, config, ..) in &loaded {
        check_inputs(
            &args.input,
            &jobs,
            config.network.in_channels,
            config.data.modality.as_deref(),
        )
        .with_context(|| format!("checkpoint {}", path.display()))?;
    }
    semisam::io_util::create_folder(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;

    let bar = semisam::progress::bar(
        !args.no_progress && super::logging::shows_info(),
        0,
        "{spinner} {prefix} windows {pos}/{len} [{elapsed_precise} < {eta_precise}] {wide_bar}",
    );
    let mut summaries = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        bar.set_prefix(format!("case {}/{} {}", n + 1, jobs.len(), job.case));
        bar.set_position(0);
        let summary = run_job(&ensemble, job, outputs, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        tracing::info!(
            "{} -> {} ({:.1} s)",
            job.input.display(),
            job.output.display(),
            summary.seconds
        );
        summaries.push(summary);
    }
    bar.finish_and_clear();
    let summary_path = args.output.join("summary.json");
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "checkpoints": args.checkpoint,
        "models": loaded.iter().map(|(path, _, _, _, o)| serde_json::json!({
            "checkpoint": path,
            "stride": o.stride,
            "weighting": o.weighting,
            "mirror_axes": o.mirror.list(),
        })).collect::<Vec<_>>(),
        "largest_component": options.largest_component,
        "probabilities": args.save_probabilities,
        "cases": summaries,
    }))?;
    semisam::io_util::write_atomic(&summary_path, &json)?;
    tracing::info!(
        "{} prediction(s) in {}; summary: {}",
        summaries.len(),
        args.output.display(),
        summary_path.display()
    );
    Ok(())
}
