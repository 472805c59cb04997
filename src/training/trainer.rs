//! The training loop: batches → framework step → SGD → EMA teacher → logs → validation →
//! checkpoints.
//!
//! Determinism: the batch sampler and the model's random draws (dropout, teacher noise) use two
//! ChaCha8 streams of the run's seed whose states are saved in every checkpoint; the network is
//! initialised after seeding the backend with the same seed. Validation uses no randomness and
//! does not touch the training copies. So a run interrupted after any checkpoint and resumed ends
//! with bit-identical weights on the CPU backend (tests/training_resume.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{BestScore, Checkpoint, CheckpointError, CheckpointHeader};
use super::config::RunConfig;
use super::log::{IterationRecord, LogError, TrainingLog, ValidationRecord, elapsed_at};
use super::run_dir::RunDir;
use super::validation::{EvalCase, summarize, validate_with};
use crate::data::batches::{Batch, BatchError, BatchOptions, BatchSampler, RngState, TrainingPool};
use crate::frameworks::sam_assist::SamAssist;
use crate::frameworks::{
    self, AuxiliaryLoss, Framework, FrameworkError, StepIndex, new_teacher, train_step,
    update_teacher,
};
use crate::generalists::{Generalist, GeneralistUsage};
use crate::inference::SlidingWindow;
use crate::networks::arrays::array_to_tensor;
use crate::networks::{Architecture, NetworkConfig, NetworkError, Specialist};

/// Stream of the seed used for dropout and teacher noise (the sampler uses stream 0).
const MODEL_RNG_STREAM: u64 = 1;
/// Checkpoint section of the SAM term's reused pseudo-labels.
const SAM_LABELS_SECTION: &str = "sam_labels";

/// The prepared (normalised, resampled) cases of a run.
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    pub pool: TrainingPool,
    pub validation: Vec<EvalCase>,
    /// Labels of the unlabeled cases: empty unless `sam.prompt_source = "ground_truth_oracle"`
    /// (analysis only) asked for them.
    pub oracle_labels: Vec<(String, Array3<u8>)>,
}

/// How to run, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `checkpoints/last.ckpt` of the run folder.
    pub resume: bool,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// Set (by Ctrl-C) to stop after the current iteration with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Stop as if interrupted once this many iterations are complete.
    pub stop_at_step: Option<usize>,
    /// Names of the foreground classes (class 1 first) in the validation lines; missing names
    /// read `class N`.
    pub class_names: Vec<String>,
    /// Called after each validation, once its record is in the logs.
    pub on_validation: Option<ValidationHook>,
}

/// Something to do after each validation (the command line redraws `curves.png`).
#[derive(Clone)]
pub struct ValidationHook(Arc<dyn Fn(&ValidationRecord) + Send + Sync>);

impl ValidationHook {
    pub fn new(hook: impl Fn(&ValidationRecord) + Send + Sync + 'static) -> Self {
        ValidationHook(Arc::new(hook))
    }
}

impl std::fmt::Debug for ValidationHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidationHook")
    }
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    Completed {
        steps: usize,
        best: Option<BestScore>,
    },
    /// Stopped early; `checkpoints/last.ckpt` holds the state after `steps` iterations.
    Interrupted { steps: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Framework(#[from] FrameworkError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("SAM generalist: {0}")]
    Generalist(#[from] crate::generalists::GeneralistError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Output(#[from] crate::io_util::WriteError),
    #[error("{path}: cannot resume: {message}")]
    Resume {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{what}: {message}")]
    Record { what: &'static str, message: String },
    #[error(
        "iteration {step}: the loss is not finite ({value}); lower training.lr or check the data"
    )]
    Diverged { step: usize, value: f64 },
}

/// Everything that changes during training.
struct State {
    step: usize,
    student: Specialist,
    teacher: Option<Specialist>,
    optimizer: ModuleOptimizer,
    sampler: BatchSampler,
    rng: ChaCha8Rng,
    best: Option<BestScore>,
    /// The SAM term's reused pseudo-labels, as the checkpoint resumed from stored them.
    sam_labels: Option<Vec<u8>>,
}

/// What a run needs besides its folder, built and checked before the folder is created: the
/// framework, the batch options against the cases, and the generalist with its weights loaded.
pub struct TrainingSetup {
    framework: Box<dyn Framework>,
    batch_options: BatchOptions,
    generalist: Option<Box<dyn Generalist>>,
}

impl TrainingSetup {
    pub fn new(config: &RunConfig, data: &TrainingData) -> Result<Self, TrainingError> {
        let framework = config.framework.build()?;
        let batch_options = BatchOptions {
            batch_size: config.training.batch_size,
            labeled_bs: config.training.labeled_bs,
            patch: config.training.patch,
            augment: config.training.augment,
        };
        BatchSampler::new(batch_options, &data.pool, config.training.seed)?;
        let generalist = config
            .sam
            .as_ref()
            .map(|sam| {
                sam.generalist
                    .build(&sam.prompts, &crate::backend::default_device())
            })
            .transpose()?;
        Ok(TrainingSetup {
            framework,
            batch_options,
            generalist,
        })
    }
}

/// Train (or continue training) the run in `run` on `data`.
pub fn train(
    config: &RunConfig,
    data: &TrainingData,
    run: &RunDir,
    options: &TrainOptions,
) -> Result<TrainOutcome, TrainingError> {
    train_with(
        config,
        data,
        TrainingSetup::new(config, data)?,
        run,
        options,
    )
}

/// [`train`] with its setup built beforehand (so that nothing is written before it succeeds).
pub fn train_with(
    config: &RunConfig,
    data: &TrainingData,
    setup: TrainingSetup,
    run: &RunDir,
    options: &TrainOptions,
) -> Result<TrainOutcome, TrainingError> {
    let device = crate::backend::default_device().autodiff();
    let TrainingSetup {
        framework,
        batch_options,
        generalist,
    } = setup;
    let mut state = if options.resume {
        resume_state(config, &*framework, batch_options, &data.pool, run, &device)?
    } else {
        fresh_state(config, &*framework, batch_options, &data.pool, &device)?
    };
    let mut sam = match (&config.sam, generalist) {
        (Some(sam_config), Some(mut generalist)) => {
            generalist.show_progress(options.progress);
            let unlabeled = data
                .pool
                .unlabeled
                .iter()
                .map(|c| (c.id.clone(), c.image.clone()));
            let mut sam = SamAssist::new(sam_config.clone(), generalist, unlabeled)
                .with_ground_truth(data.oracle_labels.iter().cloned());
            if let Some(bytes) = &state.sam_labels {
                sam.import_labels(bytes)?;
            }
            Some(sam)
        }
        _ => None,
    };
    let mut log = TrainingLog::open(&run.log_jsonl_path(), &run.log_csv_path(), state.step)?;
    let iterations = config.training.iterations;
    let window = config.validation_window();
    let progress = progress_bar(options.progress, iterations, state.step);
    let started = Instant::now();
    let elapsed_before = if options.resume {
        elapsed_at(&run.log_jsonl_path(), state.step)
    } else {
        0.0
    };

    while state.step < iterations {
        let step = state.step;
        let tick = Instant::now();
        let lr = config
            .training
            .lr_schedule
            .lr(config.training.lr, step, iterations);
        let batch = state.sampler.next_batch(&data.pool);
        let mut auxiliary: Vec<&mut dyn AuxiliaryLoss> = Vec::new();
        if let Some(sam) = sam.as_mut() {
            auxiliary.push(sam);
        }
        let batch = to_framework_batch(batch, &device)?;
        let index = StepIndex {
            step,
            max_steps: iterations,
        };
        let output = train_step(
            &*framework,
            &state.student,
            state.teacher.as_ref(),
            &batch,
            index,
            &mut state.rng,
            &mut auxiliary,
        )?;
        let total = output.scalars.first().map_or(f64::NAN, |(_, v)| *v);
        if !total.is_finite() {
            return Err(TrainingError::Diverged { step, value: total });
        }
        let grads = GradientsParams::from_grads(output.loss.backward(), &state.student);
        state.student = state.optimizer.step(lr, state.student, grads);
        state.teacher = state
            .teacher
            .map(|t| update_teacher(&*framework, t, &state.student, step))
            .transpose()?;
        state.step += 1;

        let iteration_s = tick.elapsed().as_secs_f64();
        tracing::debug!(
            "iteration {}/{iterations}: loss {total:.4}, lr {lr:.3e}, {iteration_s:.2} s",
            state.step
        );
        log.iteration(&IterationRecord {
            step: state.step,
            lr,
            elapsed_s: elapsed_before + started.elapsed().as_secs_f64(),
            iteration_s,
            scalars: output.scalars,
        })?;
        progress.set_position(state.step as u64);
        progress.set_message(format!("loss {total:.4} lr {lr:.1e}"));

        let done = state.step == iterations;
        let every = config.validation.every;
        if !data.validation.is_empty() && (every > 0 && state.step % every == 0 || done) {
            progress.set_message(format!("loss {total:.4} validating"));
            let record = run_validation(
                config,
                &state.student,
                &data.validation,
                window,
                state.step,
                sam.as_mut(),
            )?;
            log.validation(&record)?;
            if state.best.is_none_or(|b| record.dice > b.dice) {
                state.best = Some(BestScore {
                    dice: record.dice,
                    step: state.step,
                });
                save(config, &state, sam.as_ref(), &run.checkpoint_path("best"))?;
            }
            if let Some(best) = state.best {
                tracing::info!(
                    "{}",
                    validation_line(&record, iterations, best, &options.class_names)
                );
            }
            log_embedding_usage(sam.as_ref());
            if let Some(hook) = &options.on_validation {
                (hook.0)(&record);
            }
        }
        let interrupted =
            options.stop.load(Ordering::SeqCst) || options.stop_at_step == Some(state.step);
        let periodic = config.training.checkpoint_every > 0
            && state.step % config.training.checkpoint_every == 0;
        if periodic || done || interrupted {
            save(config, &state, sam.as_ref(), &run.checkpoint_path("last"))?;
        }
        if interrupted && !done {
            progress.abandon_with_message(format!(
                "interrupted after iteration {}; resume with --resume",
                state.step
            ));
            return Ok(TrainOutcome::Interrupted { steps: state.step });
        }
    }
    save(config, &state, sam.as_ref(), &run.checkpoint_path("final"))?;
    if data.validation.is_empty() {
        log_embedding_usage(sam.as_ref());
    }
    if let Some(sam) = &sam {
        super::pseudo_labels::save(run.root(), &sam.pseudo_labels(), config.data.downsample)?;
    }
    progress.finish_with_message("done");
    Ok(TrainOutcome::Completed {
        steps: state.step,
        best: state.best,
    })
}

/// What SAM's answers cost since the run (or its resumption) started: encoding is the one-time
/// cost of a dataset, so a slow run says whether it is still paying it.
fn log_embedding_usage(sam: Option<&SamAssist>) {
    if let Some(usage) = sam.and_then(|sam| sam.generalist().usage())
        && usage != GeneralistUsage::default()
    {
        tracing::info!("SAM: {usage}");
    }
}

fn fresh_state(
    config: &RunConfig,
    framework: &dyn Framework,
    batch_options: BatchOptions,
    pool: &TrainingPool,
    device: &Device,
) -> Result<State, TrainingError> {
    let seed = config.training.seed;
    device.seed(seed);
    let student = config.network.init(device)?;
    let teacher = framework.uses_teacher().then(|| new_teacher(&student));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(MODEL_RNG_STREAM);
    Ok(State {
        step: 0,
        student,
        teacher,
        optimizer: sgd(config),
        sampler: BatchSampler::new(batch_options, pool, seed)?,
        rng,
        best: None,
        sam_labels: None,
    })
}

fn resume_state(
    config: &RunConfig,
    framework: &dyn Framework,
    batch_options: BatchOptions,
    pool: &TrainingPool,
    run: &RunDir,
    device: &Device,
) -> Result<State, TrainingError> {
    let path = run.checkpoint_path("last");
    let resume_error = |message: String| TrainingError::Resume {
        path: path.clone(),
        message,
    };
    if !path.is_file() {
        return Err(resume_error(
            "no checkpoint to resume from: the run stopped before its first checkpoint; start it again with --overwrite instead of --resume".into(),
        ));
    }
    let checkpoint = Checkpoint::load(&path)?;
    let saved =
        RunConfig::from_toml_str(&checkpoint.header.config, &[], &path.display().to_string())
            .map_err(|e| resume_error(format!("its configuration no longer parses: {e}")))?;
    if &saved != config {
        let changed = saved.differences(config);
        let changed = if changed.is_empty() {
            String::new()
        } else {
            format!(" ({}, as started and as given now)", changed.join("; "))
        };
        return Err(resume_error(format!(
            "the configuration differs from the one the run was started with{changed}: resume \
             without changing the config or --set"
        )));
    }
    // The run folder's config.toml is what `report` and `predict` read later: one damaged since
    // the start is written again from the checkpoint's, now that both are known to agree.
    let config_path = run.config_path();
    if RunConfig::load(&config_path, &[]).ok().as_ref() != Some(config) {
        tracing::warn!(
            "{}: does not hold the run's configuration; written again from {}",
            config_path.display(),
            path.display()
        );
        crate::io_util::write_atomic(&config_path, config.to_toml().as_bytes())
            .map_err(|e| resume_error(format!("{}: {e}", config_path.display())))?;
    }
    let section = |name: &str| {
        checkpoint
            .section(name)
            .ok_or_else(|| resume_error(format!("the checkpoint has no {name} section")))
    };
    let student = load_module(
        config.network.init(device)?,
        config,
        section("student")?,
        "student",
        &path,
    )?;
    let teacher = if framework.uses_teacher() {
        let template = new_teacher(&config.network.init(device)?);
        Some(load_module(
            template,
            config,
            section("teacher")?,
            "teacher",
            &path,
        )?)
    } else {
        None
    };
    let optimizer = sgd(config)
        .from_bytes(Bytes::from_bytes_vec(section("optimizer")?.to_vec()))
        .map_err(|e| TrainingError::Record {
            what: "optimizer",
            message: e.to_string(),
        })?;
    let sampler = BatchSampler::restore(batch_options, pool, &checkpoint.header.sampler)
        .map_err(resume_error)?;
    let rng = checkpoint
        .header
        .model_rng
        .restore()
        .map_err(resume_error)?;
    Ok(State {
        step: checkpoint.header.step,
        student,
        teacher,
        optimizer,
        sampler,
        rng,
        best: checkpoint.header.best,
        sam_labels: checkpoint.section(SAM_LABELS_SECTION).map(<[u8]>::to_vec),
    })
}

/// SGD with PyTorch's semantics: momentum without dampening, L2 weight decay added to the
/// gradient.
fn sgd(config: &RunConfig) -> ModuleOptimizer {
    let t = &config.training;
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: t.momentum,
            dampening: 0.0,
            nesterov: false,
        }))
        .with_weight_decay((t.weight_decay > 0.0).then_some(WeightDecayConfig {
            penalty: t.weight_decay as f32,
        }))
        .init()
}

/// The network the configuration describes, with the weights of a checkpoint section. Weights
/// of another architecture are named as such, with the checkpoint's path.
fn load_module(
    template: Specialist,
    config: &RunConfig,
    bytes: &[u8],
    what: &'static str,
    path: &std::path::Path,
) -> Result<Specialist, TrainingError> {
    let record = || {
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(|e| {
            TrainingError::Record {
                what,
                message: format!("{}: {e}", path.display()),
            }
        })
    };
    let configured = config.network.architecture;
    let mismatch = |message: String| {
        TrainingError::Checkpoint(CheckpointError::Content {
            path: path.to_owned(),
            message,
        })
    };
    match template.try_load_record(record()?) {
        Ok(module) => Ok(module),
        Err(e) => {
            let fits = |architecture: Architecture| -> Result<bool, TrainingError> {
                let network = NetworkConfig {
                    architecture,
                    ..config.network.clone()
                };
                let device = crate::backend::default_device();
                Ok(network.init(&device)?.try_load_record(record()?).is_ok())
            };
            let other = [Architecture::VNet, Architecture::UNet3d]
                .into_iter()
                .filter(|&a| a != configured)
                .find_map(|a| fits(a).ok()?.then_some(a));
            Err(mismatch(match other {
                Some(found) => format!(
                    "the {what} weights are those of a {} network, but the checkpoint's configuration says {}",
                    found.name(),
                    configured.name()
                ),
                None => format!(
                    "the {what} weights do not fit the configured {} network: {e}",
                    configured.name()
                ),
            }))
        }
    }
}

/// The record of `module` with its batch-norm running statistics brought up to date: burn keeps
/// the latest update pending until the next forward pass, and a checkpoint without it would
/// resume from statistics one step old. `valid()` applies the pending update.
fn module_bytes(module: &Specialist, what: &'static str) -> Result<Vec<u8>, TrainingError> {
    module
        .valid()
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| TrainingError::Record {
            what,
            message: e.to_string(),
        })
}

fn save(
    config: &RunConfig,
    state: &State,
    sam: Option<&SamAssist>,
    path: &std::path::Path,
) -> Result<(), TrainingError> {
    let mut sections = vec![(
        "student".to_string(),
        module_bytes(&state.student, "student")?,
    )];
    if let Some(teacher) = &state.teacher {
        sections.push(("teacher".to_string(), module_bytes(teacher, "teacher")?));
    }
    let optimizer = state
        .optimizer
        .into_bytes()
        .map_err(|e| TrainingError::Record {
            what: "optimizer",
            message: e.to_string(),
        })?;
    sections.push(("optimizer".to_string(), optimizer.to_vec()));
    if let Some(sam) = sam {
        sections.push((SAM_LABELS_SECTION.to_string(), sam.export_labels()));
    }
    let checkpoint = Checkpoint {
        header: CheckpointHeader {
            semisam_version: env!("CARGO_PKG_VERSION").to_owned(),
            step: state.step,
            config: config.to_toml(),
            sampler: state.sampler.state(),
            model_rng: RngState::capture(&state.rng),
            best: state.best,
            sections: vec![],
        },
        sections,
    };
    checkpoint.save(path)?;
    Ok(())
}

/// The student of a checkpoint, ready for inference, with the run's configuration.
pub fn load_checkpoint_model(
    path: &std::path::Path,
) -> Result<(RunConfig, Specialist), TrainingError> {
    let checkpoint = Checkpoint::load(path)?;
    let config =
        RunConfig::from_toml_str(&checkpoint.header.config, &[], &path.display().to_string())
            .map_err(|e| TrainingError::Resume {
                path: path.to_owned(),
                message: format!("its configuration does not parse: {e}"),
            })?;
    let device = crate::backend::default_device();
    let bytes = checkpoint
        .section("student")
        .ok_or_else(|| TrainingError::Record {
            what: "student",
            message: format!("{}: the checkpoint has no student section", path.display()),
        })?;
    let model = load_module(
        config.network.init(&device)?,
        &config,
        bytes,
        "student",
        path,
    )?
    .valid();
    Ok((config, model))
}

fn run_validation(
    config: &RunConfig,
    student: &Specialist,
    cases: &[EvalCase],
    window: SlidingWindow,
    step: usize,
    sam: Option<&mut SamAssist>,
) -> Result<ValidationRecord, TrainingError> {
    let tick = Instant::now();
    let mut sam = sam.filter(|s| s.config().validation_dice);
    let mut sam_dice = Vec::new();
    let dice = validate_with(
        student,
        cases,
        config.network.num_classes,
        window,
        |case, prediction| -> Result<(), TrainingError> {
            if let Some(sam) = sam.as_deref_mut() {
                sam_dice.push(sam.held_out_dice(
                    &case.id,
                    &case.image,
                    &prediction.probabilities,
                    &case.label,
                )?);
            }
            Ok(())
        },
    )?;
    let (dice_per_class, mean) = summarize(&dice);
    Ok(ValidationRecord {
        step,
        dice: mean,
        dice_per_class,
        cases: cases.len(),
        seconds: tick.elapsed().as_secs_f64(),
        sam_dice: (!sam_dice.is_empty())
            .then(|| sam_dice.iter().sum::<f64>() / sam_dice.len() as f64),
    })
}

fn to_framework_batch(batch: Batch, device: &Device) -> Result<frameworks::Batch, FrameworkError> {
    let images = array_to_tensor(batch.images.view(), device);
    let shape: [usize; 4] = std::array::from_fn(|d| batch.labels.shape()[d]);
    let labels: Vec<i64> = batch.labels.iter().map(|&v| i64::from(v)).collect();
    let labels = Tensor::<4, Int>::from_data(TensorData::new(labels, shape), device);
    frameworks::Batch::new(images, labels, batch.labeled_bs)?.with_provenance(batch.items)
}

/// `validation 20/100: Dice Anterior 0.8123, Posterior 0.7712, mean 0.7917 (best 0.7917 at 20)`.
pub fn validation_line(
    record: &ValidationRecord,
    iterations: usize,
    best: BestScore,
    class_names: &[String],
) -> String {
    let mut line = format!("validation {}/{iterations}: Dice ", record.step);
    if record.dice_per_class.len() > 1 {
        for (c, dice) in record.dice_per_class.iter().enumerate() {
            let name = class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("class {}", c + 1));
            line.push_str(&format!("{name} {dice:.4}, "));
        }
        line.push_str("mean ");
    }
    line.push_str(&format!(
        "{:.4} (best {:.4} at {})",
        record.dice, best.dice, best.step
    ));
    if let Some(sam) = record.sam_dice {
        line.push_str(&format!("; SAM pseudo-labels {sam:.4}"));
    }
    line
}

fn progress_bar(visible: bool, iterations: usize, start: usize) -> indicatif::ProgressBar {
    let bar = crate::progress::bar(
        visible,
        iterations as u64,
        "{spinner} train {pos}/{len} [{elapsed_precise} < {eta_precise}] {wide_bar} {msg}",
    );
    bar.set_position(start as u64);
    bar.reset_eta();
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lines_name_the_classes_the_mean_and_the_best() {
        let mut record = ValidationRecord {
            step: 20,
            dice: 0.7917,
            dice_per_class: vec![0.8123, 0.7712],
            cases: 2,
            seconds: 1.0,
            sam_dice: None,
        };
        let best = BestScore {
            dice: 0.8,
            step: 10,
        };
        let names = ["Anterior".to_string()];
        assert_eq!(
            validation_line(&record, 100, best, &names),
            "validation 20/100: Dice Anterior 0.8123, class 2 0.7712, mean 0.7917 (best 0.8000 at 10)"
        );
        record.dice_per_class.truncate(1);
        record.sam_dice = Some(0.5);
        assert_eq!(
            validation_line(&record, 100, best, &names),
            "validation 20/100: Dice 0.7917 (best 0.8000 at 10); SAM pseudo-labels 0.5000"
        );
    }
}
