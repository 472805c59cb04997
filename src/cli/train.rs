//! `semisam train`: train a specialist from a run configuration into a run folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use semisam::data::inspect::{Intensities, image_warnings};
use semisam::data::{Dataset, Splits};
use semisam::reports::curves::{curve_class_names, write_run_curves};
use semisam::reports::rescore::{HeldOut, held_out_cases};
use semisam::reports::{ReportOptions, generate};
use semisam::training::dataset::{load_training_data, make_splits, open_dataset};
use semisam::training::evaluate::evaluate_cases;
use semisam::training::run_dir::{
    NewRun, RunDir, default_run_name, default_run_prefix, is_default_run_name,
};
use semisam::training::validation::model_device;
use semisam::training::{
    RunConfig, TrainOptions, TrainOutcome, TrainingData, TrainingSetup, ValidationHook,
    load_checkpoint_model, train_with,
};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML), e.g. configs/hippocampus_cpu.toml.
    #[arg(long, required_unless_present = "dataset", conflicts_with = "dataset")]
    pub config: Option<PathBuf>,
    /// Plan the run from this dataset instead of a configuration (as `semisam plan` does); the
    /// plan and the fingerprint are saved in the run folder.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    #[command(flatten)]
    pub planning: super::plan::PlanningArgs,
    /// Override a configuration value, e.g. `--set training.iterations=200` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Train cross-validation fold K (0-based) of --folds: `--set data.fold=K`.
    #[arg(long, value_name = "K", requires = "folds")]
    pub fold: Option<usize>,
    /// The number of cross-validation folds: `--set data.folds=N`.
    #[arg(long, value_name = "N", requires = "fold")]
    pub folds: Option<usize>,
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

/// Where the run's configuration comes from.
enum Source {
    File,
    /// Planned from a dataset: the plan's text and the fingerprint, saved into the run folder.
    Planned {
        plan: Box<semisam::planning::Plan>,
        fingerprint: Box<semisam::planning::Fingerprint>,
    },
}

/// Exit status of a run stopped by Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT, what a shell reports for Ctrl-C).
const INTERRUPTED: u8 = 130;

/// Where the run goes: a folder to resume (locked), or a new one reserved but not yet created.
enum Target {
    Resume(RunDir),
    New(NewRun),
}

/// The configuration file, or the plan of `--dataset`; `name_from` stands for it in default run
/// names.
fn configuration(args: &TrainArgs) -> anyhow::Result<(RunConfig, Source, PathBuf)> {
    let planning_given = args.planning.time_budget.is_some()
        || args.planning.framework.is_some()
        || args.planning.spacing.is_some();
    match (&args.config, &args.dataset) {
        (Some(path), _) => {
            if planning_given {
                bail!(
                    "--time-budget, --framework and --spacing plan a run: use them with --dataset, not --config"
                );
            }
            let config = RunConfig::load(path, &args.set)?;
            Ok((config, Source::File, path.clone()))
        }
        (None, Some(root)) if args.resume => {
            // A resumed run keeps the plan it started with, not a fresh measurement.
            let name_from = planned_name(root);
            let run_root = match &args.name {
                Some(name) => args.runs_dir.join(name),
                None => latest_run(&args.runs_dir, &name_from, args.fold)?,
            };
            let saved = run_root.join("config.toml");
            let config = RunConfig::load(&saved, &args.set)?;
            Ok((config, Source::File, name_from))
        }
        (None, Some(root)) => {
            let (fingerprint, plan) = super::plan::plan_with_progress(root, &args.planning)?;
            let origin = format!("the plan of {}", root.display());
            let config = RunConfig::from_toml_str(&plan.toml, &args.set, &origin)?;
            let source = Source::Planned {
                plan: Box::new(plan),
                fingerprint: Box::new(fingerprint),
            };
            Ok((config, source, planned_name(root)))
        }
        (None, None) => bail!("give --config FILE or --dataset DIR"),
    }
}

/// Runs planned from a dataset are named after its folder.
fn planned_name(root: &Path) -> PathBuf {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    PathBuf::from(format!("{name}.toml"))
}

pub fn run(mut args: TrainArgs) -> anyhow::Result<ExitCode> {
    // --fold and --folds are overrides like any other, so a resume command repeats them.
    if let (Some(fold), Some(folds)) = (args.fold, args.folds) {
        args.set
            .extend([format!("data.fold={fold}"), format!("data.folds={folds}")]);
    }
    // Everything that can fail on the user's input (configuration, dataset, splits, cases,
    // generalist weights) is checked before a run folder is created or emptied.
    super::logging::start_run_log();
    let (config, source, name_from) = configuration(&args)?;
    let dataset = open_dataset(&config, None).with_context(|| {
        let root = &config.data.root;
        let relative = match std::env::current_dir() {
            Ok(here) if root.is_relative() && !root.exists() => format!(
                " (data.root {} is read from the current folder {}, not from the configuration's)",
                root.display(),
                here.display()
            ),
            _ => String::new(),
        };
        format!("opening the dataset of {}{relative}", name_from.display())
    })?;
    let (target, splits, name) = if args.resume {
        let root = match &args.name {
            Some(name) => args.runs_dir.join(name),
            None => latest_run(&args.runs_dir, &name_from, config.data.fold)?,
        };
        let name = file_name(&root);
        let run = RunDir::open_to_resume(&root)?.0;
        if !run.checkpoint_path("last").is_file() {
            // A folder holding other checkpoints or predictions has results that an overwrite
            // would erase: say what is missing instead of offering `--overwrite`.
            let results: Vec<&str> = [
                "checkpoints/final.ckpt",
                "checkpoints/best.ckpt",
                "metrics/per_case.csv",
            ]
            .into_iter()
            .filter(|item| root.join(item).exists())
            .collect();
            if !results.is_empty() {
                bail!(
                    "{}: checkpoints/last.ckpt, the checkpoint a run resumes from, is missing or not a file, but the folder holds {}: nothing was changed; restore last.ckpt to resume, or start a new run under another --name",
                    root.display(),
                    results.join(", ")
                );
            }
            bail!(
                "{}: the run stopped before its first checkpoint, so there is nothing to resume; start it again with: {}",
                root.display(),
                command_line(&args, &name, "--overwrite")
            );
        }
        for file in run.removed_temp_files() {
            tracing::info!("removed {} (left by an interrupted write)", file.display());
        }
        let splits = Splits::load(run.splits_path())?;
        (Target::Resume(run), splits, name)
    } else {
        let splits = make_splits(&config, &dataset)?;
        let name = args.name.clone().unwrap_or_else(|| {
            default_run_name(&name_from, config.data.fold, std::time::SystemTime::now())
        });
        let new_run = RunDir::reserve(&args.runs_dir, &name, args.overwrite)?;
        (Target::New(new_run), splits, name)
    };
    tracing::info!(
        "cases: {} labeled, {} unlabeled ({} without any label), {} validation",
        splits.labeled.len(),
        splits.unlabeled.len(),
        splits.label_free.len(),
        splits.validation.len()
    );
    if config.uses_ground_truth_oracle() {
        tracing::warn!(
            "sam.prompt_source = \"ground_truth_oracle\" prompts SAM from the unlabeled \
             cases' ground truth: an upper bound for analysis, not a semi-supervised result"
        );
    }
    let loading = std::time::Instant::now();
    let data = load_training_data(&config, &dataset, &splits)?;
    for (id, warning) in data_warnings(&data, config.training.patch) {
        tracing::warn!("case {id}: {warning}");
    }
    check_patch_fits(
        &data,
        config.training.patch,
        config.network.side_multiples(),
    )?;
    if let Some(sam) = &config.sam {
        check_sam_slices(&data, sam.generalist.slicing_axes())?;
    }
    for warning in label_warnings(&data, config.network.num_classes) {
        tracing::warn!("{warning}");
    }
    let setup = TrainingSetup::new(&config, &data)?;
    tracing::info!(
        "loaded and prepared in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let run = match target {
        Target::Resume(run) => run,
        Target::New(new_run) => {
            let run = new_run.with_command(std::env::args().collect()).create()?;
            semisam::io_util::write_atomic(&run.config_path(), config.to_toml().as_bytes())?;
            splits.save(run.splits_path())?;
            if let Source::Planned { plan, fingerprint } = &source {
                semisam::planning::save(
                    plan,
                    fingerprint,
                    &run.root().join("plan.toml"),
                    &run.root().join("fingerprint.json"),
                )?;
                tracing::info!(
                    "planned: {} iterations, patch {:?}, target spacing {:?} mm (plan.toml in the run folder)",
                    config.training.iterations,
                    config.training.patch,
                    config.data.target_spacing.unwrap_or_default()
                );
            }
            run
        }
    };
    let train_log = run.root().join(TRAIN_LOG);
    super::logging::write_run_log(&train_log)
        .with_context(|| format!("{}: cannot open the run's log", train_log.display()))?;
    tracing::info!("run folder: {}", run.root().display());

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: the user does not want to wait for the checkpoint.
            std::process::exit(i32::from(INTERRUPTED));
        }
        tracing::info!(
            "stopping after the current iteration (Ctrl-C again to abort without a checkpoint)"
        );
    })
    .context("installing the Ctrl-C handler")?;

    let progress = !args.no_progress && super::logging::shows_info();
    let options = TrainOptions {
        resume: args.resume,
        progress,
        stop,
        stop_at_step: None,
        class_names: (1..config.network.num_classes)
            .map(|c| class_name(&dataset, c))
            .collect(),
        on_validation: Some(redraw_curves(&run, &dataset, config.network.num_classes)),
    };
    match train_with(&config, &data, setup, &run, &options)? {
        TrainOutcome::Completed { steps, best } => {
            tracing::info!("finished {steps} iterations");
            if let Some(best) = best {
                tracing::info!(
                    "best validation Dice {:.4} at iteration {}",
                    best.dice,
                    best.step
                );
            }
            tracing::info!("checkpoints: {}", run.checkpoints_dir().display());
            evaluate_final_model(&config, &dataset, &splits, &run, progress)?;
            let report = generate(run.root(), &ReportOptions::default()).with_context(|| {
                format!(
                    "training finished but its report could not be written (retry with `semisam report {}`)",
                    run.root().display()
                )
            })?;
            tracing::info!("report: {}", report.report.display());
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Interrupted { steps } => {
            // A warning, so that `--quiet` still says how to continue.
            tracing::warn!(
                "interrupted after {steps} iterations; continue with: {}",
                command_line(&args, &name, "--resume")
            );
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// The run's console output, kept in its folder.
const TRAIN_LOG: &str = "train.log";

/// The dataset's name of foreground class `class`.
fn class_name(dataset: &Dataset, class: usize) -> String {
    dataset
        .labels
        .get(&(class as u8))
        .cloned()
        .unwrap_or_else(|| format!("class {class}"))
}

/// Redraws `curves.png` after each validation, so that a run can be followed while it trains; a
/// failure is a warning, never the end of training.
fn redraw_curves(run: &RunDir, dataset: &Dataset, num_classes: usize) -> ValidationHook {
    let root = run.root().to_owned();
    let names = curve_class_names(&dataset.labels, num_classes);
    ValidationHook::new(move |_| {
        if let Err(e) = write_run_curves(&root, &names) {
            tracing::warn!("curves.png not redrawn: {e}");
        }
    })
}

/// Warnings about the prepared cases (constant images, images smaller than the patch).
fn data_warnings(data: &TrainingData, patch: [usize; 3]) -> Vec<(String, String)> {
    let images = training_images(data).chain(data.validation.iter().map(|c| (&c.id, &c.image)));
    images
        .flat_map(|(id, image)| {
            image_warnings(image, Intensities::Prepared, Some(patch))
                .into_iter()
                .map(move |w| (id.clone(), w))
        })
        .collect()
}

/// Labels that teach less than the configuration says: a labeled case with no foreground, and
/// classes of `network.num_classes` that no label holds (never taught, they skew every mean).
fn label_warnings(data: &TrainingData, num_classes: usize) -> Vec<String> {
    use semisam::data::labels::values_present;
    let labeled: Vec<(&String, Vec<u8>)> = data
        .pool
        .labeled
        .iter()
        .map(|case| (&case.id, values_present(&case.label)))
        .collect();
    let mut warnings: Vec<String> = labeled
        .iter()
        .filter(|(_, values)| values == &[0])
        .map(|(id, _)| {
            format!("case {id}: its label holds no foreground, so it teaches background only")
        })
        .collect();
    let validation = data.validation.iter().map(|c| values_present(&c.label));
    let seen: std::collections::BTreeSet<usize> = labeled
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .chain(validation.flatten())
        .map(usize::from)
        .collect();
    let never: Vec<String> = (1..num_classes)
        .filter(|class| !seen.contains(class))
        .map(|class| class.to_string())
        .collect();
    if !never.is_empty() && !seen.is_empty() {
        warnings.push(format!(
            "network.num_classes = {num_classes}, but no labeled or validation case holds class(es) {}: they are never taught, and their scores skew every mean (Dice 1 where neither the prediction nor the label holds them, 0 where the network predicts them)",
            never.join(", ")
        ));
    }
    warnings
}

/// The prepared images training draws patches from, labeled and unlabeled, with their IDs.
fn training_images(data: &TrainingData) -> impl Iterator<Item = (&String, &ndarray::Array3<f32>)> {
    let labeled = data.pool.labeled.iter().map(|c| (&c.id, &c.image));
    labeled.chain(data.pool.unlabeled.iter().map(|c| (&c.id, &c.image)))
}

/// A patch side more than twice the largest prepared image along it trains mostly on padding,
/// and its activations can exhaust the memory before the first step: refused before any output.
fn check_patch_fits(
    data: &TrainingData,
    patch: [usize; 3],
    multiples: [usize; 3],
) -> anyhow::Result<()> {
    let shapes: Vec<&[usize]> = training_images(data)
        .map(|(_, image)| image.shape())
        .collect();
    for d in 0..3 {
        let Some(largest) = shapes.iter().map(|shape| shape[d]).max() else {
            return Ok(());
        };
        let enough = largest.next_multiple_of(multiples[d]);
        if patch[d] > enough.max(2 * largest) {
            bail!(
                "training.patch {patch:?} is more than twice the largest training image along axis {d} ({largest} voxels on the run's grid): its patches would be mostly padding, at a memory cost that grows with their volume; {enough} covers the images along that axis"
            );
        }
    }
    Ok(())
}

/// LiteMedSAM segments slices across each of its axes: an image one voxel thin along an in-plane
/// axis would give it strips one voxel wide (a one-slice image cut across x instead of z), so
/// such a run is refused before any output.
fn check_sam_slices(data: &TrainingData, axes: &[usize]) -> anyhow::Result<()> {
    for &axis in axes {
        for case in &data.pool.unlabeled {
            let shape = case.image.shape();
            if let Some(thin) = (0..3).find(|&d| d != axis && shape[d] == 1) {
                bail!(
                    "LiteMedSAM's slicing axis {axis} (sam.axis) cuts case {} ({}x{}x{} on the run's grid) into strips one voxel wide along axis {thin}: slice across axis {thin} instead (sam.axis = {thin})",
                    case.id,
                    shape[0],
                    shape[1],
                    shape[2]
                );
            }
        }
    }
    Ok(())
}

/// The `semisam train` command that continues (`--resume`) or restarts (`--overwrite`) this
/// run, with every option that locates it and the same `--set` overrides.
fn command_line(args: &TrainArgs, name: &str, mode: &str) -> String {
    let mut words = vec!["semisam".to_owned(), "train".to_owned()];
    match (&args.config, &args.dataset) {
        (Some(config), _) => {
            words.extend(["--config".to_owned(), shell_word(&config.to_string_lossy())])
        }
        (None, Some(dataset)) => words.extend([
            "--dataset".to_owned(),
            shell_word(&dataset.to_string_lossy()),
        ]),
        (None, None) => {}
    }
    words.extend([
        "--runs-dir".to_owned(),
        shell_word(&args.runs_dir.to_string_lossy()),
        "--name".to_owned(),
        shell_word(name),
    ]);
    for set in &args.set {
        words.push("--set".to_owned());
        words.push(shell_word(set));
    }
    words.push(mode.to_owned());
    if args.no_progress {
        words.push("--no-progress".to_owned());
    }
    words.join(" ")
}

/// `text` quoted for a POSIX shell when it holds anything but safe characters.
fn shell_word(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
        tracing::info!("no labeled test or validation case: skipping the final evaluation");
        return Ok(());
    }
    let (_, model) = load_checkpoint_model(&run.checkpoint_path("final"))?;
    let device = model_device(&model);
    let options = config.predict_options();
    let bar = semisam::progress::bar(
        progress,
        ids.len() as u64,
        "{spinner} evaluating {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
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
        tracing::info!("{split} {}: Dice {}", case.case_id, dice.join(" "));
    }
    tracing::info!(
        "final-model metrics on the {split} split: {}",
        run.metrics_dir().display()
    );
    Ok(())
}

/// The most recent run folder named after `config`'s stem and `fold` (default names sort by
/// time).
fn latest_run(runs_dir: &Path, config: &Path, fold: Option<usize>) -> anyhow::Result<PathBuf> {
    let prefix = default_run_prefix(config, fold);
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .with_context(|| format!("{}: cannot list run folders", runs_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| is_default_run_name(&e.file_name().to_string_lossy(), &prefix))
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
