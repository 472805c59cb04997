//! `semisam train`: train a specialist from a run configuration into a run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use semisam::data::{Dataset, Splits};
use semisam::inference::pipeline::PredictOptions;
use semisam::reports::rescore::{HeldOut, held_out_cases};
use semisam::reports::{ReportOptions, generate};
use semisam::training::dataset::{load_training_data, make_splits};
use semisam::training::evaluate::evaluate_cases;
use semisam::training::run_dir::{RunDir, default_run_name};
use semisam::training::validation::model_device;
use semisam::training::{RunConfig, TrainOptions, TrainOutcome, load_checkpoint_model, train};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML), e.g. configs/hippocampus_cpu.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a configuration value, e.g. `--set training.iterations=200` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue the run from its last checkpoint (with the same configuration).
    #[arg(long)]
    pub resume: bool,
    /// Run folder name (default: the config's file stem and the UTC start time).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing run folder of the same name.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Folder that holds the run folders.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// No progress bar (e.g. when logging to a file).
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config, &args.set)?;
    // The dataset and the splits are checked before a run folder is created for them.
    let dataset = Dataset::open(&config.data.root)
        .with_context(|| format!("opening the dataset of {}", args.config.display()))?;
    let (run, splits) = if args.resume {
        let root = match &args.name {
            Some(name) => args.runs_dir.join(name),
            None => latest_run(&args.runs_dir, &args.config)?,
        };
        let run = RunDir::open(&root)?.0;
        let splits = Splits::load(run.splits_path())?;
        (run, splits)
    } else {
        let splits = make_splits(&config, &dataset)?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| default_run_name(&args.config, std::time::SystemTime::now()));
        let run = RunDir::create(&args.runs_dir, &name, args.overwrite)?;
        semisam::io_util::write_atomic(&run.config_path(), config.to_toml().as_bytes())?;
        splits.save(run.splits_path())?;
        (run, splits)
    };
    eprintln!("run folder: {}", run.root().display());
    eprintln!(
        "cases: {} labeled, {} unlabeled, {} validation",
        splits.labeled.len(),
        splits.unlabeled.len(),
        splits.validation.len()
    );
    if config.uses_ground_truth_oracle() {
        eprintln!(
            "warning: sam.prompt_source = \"ground_truth_oracle\" prompts SAM from the unlabeled \
             cases' ground truth: an upper bound for analysis, not a semi-supervised result"
        );
    }
    let loading = std::time::Instant::now();
    let data = load_training_data(&config, &dataset, &splits)?;
    eprintln!(
        "loaded and prepared in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the user does not want to wait for the checkpoint.
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after the current iteration (Ctrl-C again to abort without a checkpoint)"
        );
    })
    .context("installing the Ctrl-C handler")?;

    let options = TrainOptions {
        resume: args.resume,
        progress: !args.no_progress,
        stop,
        stop_at_step: None,
    };
    match train(&config, &data, &run, &options)? {
        TrainOutcome::Completed { steps, best } => {
            eprintln!("finished {steps} iterations");
            if let Some(best) = best {
                eprintln!(
                    "best validation Dice {:.4} at iteration {}",
                    best.dice, best.step
                );
            }
            eprintln!("checkpoints: {}", run.checkpoints_dir().display());
            evaluate_final_model(&config, &dataset, &splits, &run, !args.no_progress)?;
            let report = generate(run.root(), &ReportOptions::default()).with_context(|| {
                format!(
                    "training finished but its report could not be written (retry with `semisam report {}`)",
                    run.root().display()
                )
            })?;
            eprintln!("report: {}", report.report.display());
        }
        TrainOutcome::Interrupted { steps } => {
            eprintln!(
                "interrupted after {steps} iterations; continue with: semisam train --config {} --resume --name {} (and the same --set options)",
                args.config.display(),
                run.root()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Predict and score the held-out cases (the test split, else the validation split) with the
/// final model, into the run's predictions/ and metrics/ folders.
fn evaluate_final_model(
    config: &RunConfig,
    dataset: &Dataset,
    splits: &Splits,
    run: &RunDir,
    progress: bool,
) -> anyhow::Result<()> {
    let HeldOut { split, ids } = held_out_cases(dataset, splits);
    if ids.is_empty() {
        eprintln!("no labeled test or validation case: skipping the final evaluation");
        return Ok(());
    }
    let (_, model) = load_checkpoint_model(&run.checkpoint_path("final"))?;
    let device = model_device(&model);
    let options = PredictOptions::from_config(config);
    let bar = if progress {
        indicatif::ProgressBar::new(ids.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} evaluating {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let results = evaluate_cases(
        &model,
        config,
        dataset,
        &ids,
        options,
        &device,
        &run.predictions_dir(),
        &run.metrics_dir(),
        |id| {
            bar.set_message(id.to_owned());
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    for case in &results {
        let dice: Vec<String> = case
            .classes
            .iter()
            .map(|c| format!("{:.4}", c.metrics.dice))
            .collect();
        eprintln!("{split} {}: Dice {}", case.case_id, dice.join(" "));
    }
    eprintln!(
        "final-model metrics on the {split} split: {}",
        run.metrics_dir().display()
    );
    Ok(())
}

/// The most recent run folder named after `config`'s stem (default names sort by time).
fn latest_run(runs_dir: &Path, config: &Path) -> anyhow::Result<PathBuf> {
    let prefix = default_run_name(config, std::time::UNIX_EPOCH);
    let prefix = &prefix[..prefix.len() - "19700101-000000".len()];
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .with_context(|| format!("{}: cannot list run folders", runs_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some(path) => Ok(path),
        None => bail!(
            "no run folder {}* in {} to resume; pass --name",
            prefix,
            runs_dir.display()
        ),
    }
}
