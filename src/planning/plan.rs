//! The plan: every choice of a run configuration made from the fingerprint and a time budget,
//! written as a complete, commented `run.toml` whose comments say where each value came from.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::data::Normalization;
use crate::networks::Architecture;
use crate::training::RunConfig;
use crate::training::config::ConfigError;

use super::PlanningError;
use super::fingerprint::Fingerprint;
use super::rules::{self, Choice};
use super::timing::{StepTiming, measure_slice_embedding, measure_training_step};

/// Which training the plan sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannedFramework {
    /// Mean Teacher with LiteMedSAM pseudo-labels (SemiSAM-MT).
    Semisam,
    MeanTeacher,
    Supervised,
}

/// What the user asks of the plan beyond the data.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The dataset root as the configuration should name it.
    pub root: std::path::PathBuf,
    /// Wall-clock time for the whole training run (iterations, validation, final evaluation);
    /// without it the paper's 6000 iterations.
    pub time_budget: Option<Duration>,
    /// Memory a training batch may take (bytes).
    pub memory_budget: f64,
    /// `None`: SemiSAM-MT when the dataset has unlabeled images, else supervised.
    pub framework: Option<PlannedFramework>,
    /// Spacing for files that store none (UA-MT h5), recorded as `data.spacing`.
    pub spacing: Option<[f64; 3]>,
    /// `spacing` is one pixel a side because every image is a PNG, which stores no pixel size
    /// (set by [`super::plan_dataset`]; said in the plan).
    pub pixel_units: bool,
}

/// The paper's iteration count, used when no time budget is given.
const DEFAULT_ITERATIONS: usize = 6000;
/// Below this many iterations the schedule needs the larger learning rate.
const SHORT_RUN: usize = 2000;
/// Validations over the run (also the number of periodic checkpoints).
const VALIDATIONS: usize = 4;

/// A finished plan: the configuration text and the parsed configuration it holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub toml: String,
    pub config: RunConfig,
    pub step: Option<StepTiming>,
}

/// The smallest share of labeled cases kept for validation, and at least one once there are
/// three labeled cases (the best checkpoint needs a case the model did not train on).
fn validation_cases(labeled: usize) -> Choice<usize> {
    if labeled < 3 {
        return Choice::new(
            0,
            format!("{labeled} labeled case(s): all train, none is held out for validation"),
        );
    }
    let n = labeled.div_ceil(5);
    Choice::new(
        n,
        format!("a fifth of the {labeled} labeled cases (rounded up) validate; the rest train"),
    )
}

fn triple<T: std::fmt::Display>(v: [T; 3]) -> String {
    format!("[{}, {}, {}]", v[0], v[1], v[2])
}

fn float(v: f64) -> String {
    let text = format!("{v:?}");
    if text.contains('.') || text.contains('e') {
        text
    } else {
        format!("{text}.0")
    }
}

fn comment(out: &mut String, why: &str) {
    for line in textwrap(why, 96) {
        writeln!(out, "# {line}").expect("writing to a string");
    }
}

/// Words of `text` on lines of at most `width` characters.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("at least one line");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

fn normalization_toml(n: Normalization) -> String {
    match n {
        Normalization::ZScore => "{ method = \"z_score\" }".into(),
        Normalization::Identity => "{ method = \"identity\" }".into(),
        Normalization::PercentileClip { lower, upper } => format!(
            "{{ method = \"percentile_clip\", lower = {}, upper = {} }}",
            float(lower),
            float(upper)
        ),
        Normalization::ClipZScore {
            lower,
            upper,
            mean,
            std,
        } => format!(
            "{{ method = \"clip_z_score\", lower = {}, upper = {}, mean = {}, std = {} }}",
            float(lower),
            float(upper),
            float(mean),
            float(std)
        ),
    }
}

/// Plan a run for the dataset of `fingerprint`.
pub fn plan(fingerprint: &Fingerprint, options: &PlanOptions) -> Result<Plan, PlanningError> {
    if fingerprint.channels != 1 {
        return Err(PlanningError::Unsupported(format!(
            "{}: dataset.json declares {} channels; semisam trains on single-channel volumes",
            fingerprint.dataset.display(),
            fingerprint.channels
        )));
    }
    let classes = fingerprint
        .labels
        .keys()
        .max()
        .map_or(2, |&v| v as usize + 1);
    let labeled = fingerprint.labeled_cases();
    let unlabeled = fingerprint.unlabeled_cases();
    if labeled == 0 {
        return Err(PlanningError::Unsupported(format!(
            "{}: no labeled training case to learn from",
            fingerprint.dataset.display()
        )));
    }
    let framework = match options.framework {
        Some(f) => Choice::new(f, "chosen on the command line"),
        None if unlabeled > 0 => Choice::new(
            PlannedFramework::Semisam,
            format!(
                "{unlabeled} unlabeled image(s): Mean Teacher with LiteMedSAM pseudo-labels (SemiSAM)"
            ),
        ),
        None => Choice::new(
            PlannedFramework::Supervised,
            "no unlabeled image: supervised training on the labeled cases",
        ),
    };
    let semi_supervised = framework.value != PlannedFramework::Supervised;
    if semi_supervised && unlabeled == 0 {
        return Err(PlanningError::Unsupported(format!(
            "{}: a semi-supervised framework needs unlabeled images and the dataset has none",
            fingerprint.dataset.display()
        )));
    }
    let validation = validation_cases(labeled);
    let spacing = rules::target_spacing(fingerprint);
    let normalization = rules::normalization(fingerprint);
    let median_shape = rules::median_resampled_shape(fingerprint, spacing.value);
    let (batch_size, labeled_bs) = if semi_supervised { (4, 2) } else { (2, 2) };
    let batch_why = if semi_supervised {
        "4 items, 2 of them labeled (UA-MT's and SemiSAM's batch)"
    } else {
        "2 labeled items per step"
    };
    let architecture = rules::architecture();
    let augment = rules::augmentation(fingerprint);

    // Width 16 (the papers') when its batch fits the memory budget and, with a time budget, when
    // the budget still affords a short run's iterations at that width; width 8 otherwise.
    let axis = rules::sam_axis(spacing.value, median_shape);
    let poolings = rules::poolings(median_shape);
    let multiples = crate::networks::side_multiples(poolings.value);
    let mut width = 16;
    let mut patch = rules::patch(
        median_shape,
        multiples,
        batch_size,
        width,
        options.memory_budget,
    );
    let mut width_why =
        "16 (the papers' width): a batch of the planned patch fits the memory budget".to_owned();
    if rules::training_bytes(patch.value, batch_size, width) > options.memory_budget {
        width = 8;
        patch = rules::patch(
            median_shape,
            multiples,
            batch_size,
            width,
            options.memory_budget,
        );
        width_why = "8: at width 16 even the smallest patch exceeds the memory budget".to_owned();
    }
    let needed = rules::training_bytes(patch.value, batch_size, width);
    if needed > options.memory_budget {
        return Err(PlanningError::Budget(format!(
            "a memory budget of {:.3} GiB is too small to train: the smallest batch ({batch_size} patches of {}x{}x{} at width {width}) needs about {:.3} GiB",
            options.memory_budget / rules::GIB,
            patch.value[0],
            patch.value[1],
            patch.value[2],
            needed / rules::GIB
        )));
    }

    // LiteMedSAM embeds the slices it is prompted on: those where the student finds the object,
    // expected to be the share of slices that hold foreground in the labeled cases.
    let foreground_share = fingerprint.foreground_slice_share(axis.value);
    let sam_slices: usize = if framework.value == PlannedFramework::Semisam {
        let slices: usize = fingerprint
            .cases
            .iter()
            .filter(|c| !c.labeled)
            .map(|c| {
                crate::data::resample::resampled_shape(c.shape, c.spacing, spacing.value)
                    [axis.value]
            })
            .sum();
        (slices as f64 * foreground_share).ceil() as usize
    } else {
        0
    };
    let (iterations, step) = match options.time_budget {
        None => (
            Choice::new(
                DEFAULT_ITERATIONS,
                "no --time-budget: the paper's 6000 iterations",
            ),
            None,
        ),
        Some(budget) => {
            let mut timing = measure_training_step(
                architecture.value,
                poolings.value,
                classes,
                width,
                patch.value,
                batch_size,
                labeled_bs,
            )?;
            let sam_seconds = if sam_slices > 0 {
                measure_slice_embedding()?.map(|s| (s, s * sam_slices as f64))
            } else {
                None
            };
            let mut fit = fit_iterations(budget, timing, sam_seconds.map(|(_, t)| t));
            if width == 16 && fit < SHORT_RUN {
                let narrow = measure_training_step(
                    architecture.value,
                    poolings.value,
                    classes,
                    8,
                    patch.value,
                    batch_size,
                    labeled_bs,
                )?;
                width = 8;
                width_why = format!(
                    "8: at width 16 a step took {:.2} s and the time budget would afford only {fit} iterations",
                    timing.seconds
                );
                timing = narrow;
                fit = fit_iterations(budget, timing, sam_seconds.map(|(_, t)| t));
            }
            if fit == 0 {
                return Err(PlanningError::Budget(format!(
                    "the time budget of {} s leaves no time for training: one step takes {:.2} s on this machine",
                    budget.as_secs(),
                    timing.seconds
                )));
            }
            let sam_note = match sam_seconds {
                Some((per_slice, total)) => format!(
                    "; LiteMedSAM embeds each of about {sam_slices} unlabeled slices once (the labeled cases hold foreground in {:.0} % of theirs) at {per_slice:.2} s (measured), {total:.0} s set aside", foreground_share * 100.0
                ),
                None if sam_slices > 0 => {
                    "; LiteMedSAM's weights are not fetched yet, so its embedding time is not set aside".into()
                }
                None => String::new(),
            };
            (
                Choice::new(
                    fit,
                    format!(
                        "fits --time-budget {} s: a training step measured {:.2} s on this machine (median of {} steps, load {}), a fifth of the budget set aside for validation and the final evaluation{sam_note}",
                        budget.as_secs(),
                        timing.seconds,
                        timing.steps,
                        load_average()
                    ),
                ),
                Some(timing),
            )
        }
    };
    let iterations_value = iterations.value;
    let short = iterations_value < SHORT_RUN;
    let lr = if short { 0.1 } else { 0.01 };
    let lr_why = if short {
        format!(
            "a short run (< {SHORT_RUN} iterations): SGD from 0.1 with the poly decay; 0.01, the paper's rate for 6000 iterations, left Hippocampus at 0 Dice after 200"
        )
    } else {
        "the paper's 0.01 with the poly decay".to_owned()
    };
    let epoch = (iterations_value / 40).max(1);
    let every = (iterations_value / VALIDATIONS).max(1);

    let mut out = String::new();
    writeln!(
        out,
        "# Planned by `semisam plan` from {} ({} labeled and {} unlabeled training images, modality {}).\n# Each value's comment says where it came from; every key is documented in src/training/config.rs.\n",
        fingerprint.dataset.display(),
        labeled,
        unlabeled,
        fingerprint.modality.as_deref().unwrap_or("not declared")
    )
    .expect("writing to a string");
    out.push_str("[data]\n");
    writeln!(
        out,
        "root = {}",
        toml_string(&options.root.display().to_string())
    )
    .expect("string");
    comment(
        &mut out,
        "every labeled case trains except the validation ones; every image without a label is unlabeled",
    );
    writeln!(out, "protocol = \"all\"").expect("string");
    comment(&mut out, &validation.why);
    writeln!(out, "validation = {}", validation.value).expect("string");
    comment(&mut out, &normalization.why);
    writeln!(
        out,
        "normalization = {}",
        normalization_toml(normalization.value)
    )
    .expect("string");
    if let Some(s) = options.spacing {
        comment(
            &mut out,
            if options.pixel_units {
                "PNG stores no pixel size: planned in pixels (give the real size with plan --spacing for distances in mm)"
            } else {
                "the files store no spacing: given on the command line"
            },
        );
        writeln!(out, "spacing = {}", triple(s.map(float_value))).expect("string");
    }
    comment(&mut out, &spacing.why);
    writeln!(
        out,
        "target_spacing = {}",
        triple(spacing.value.map(float_value))
    )
    .expect("string");
    comment(
        &mut out,
        "dataset.json's modality; predict refuses inputs declared otherwise",
    );
    match &fingerprint.modality {
        Some(m) => writeln!(out, "modality = {}", toml_string(m)).expect("string"),
        None => writeln!(out, "# modality: not declared by the dataset").expect("string"),
    }

    out.push_str("\n[network]\n");
    comment(&mut out, &architecture.why);
    writeln!(
        out,
        "architecture = \"{}\"",
        architecture_name(architecture.value)
    )
    .expect("string");
    writeln!(out, "in_channels = 1").expect("string");
    comment(
        &mut out,
        &format!(
            "background and {}",
            fingerprint
                .labels
                .iter()
                .filter(|(v, _)| **v > 0)
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    writeln!(out, "num_classes = {classes}").expect("string");
    comment(&mut out, &width_why);
    writeln!(out, "base_filters = {width}").expect("string");
    writeln!(out, "dropout = true").expect("string");
    if poolings.value != crate::networks::NetworkConfig::default_poolings() {
        comment(&mut out, &poolings.why);
        writeln!(out, "poolings = {}", triple(poolings.value)).expect("string");
    }

    out.push_str("\n[framework]\n");
    comment(&mut out, &framework.why);
    if semi_supervised {
        writeln!(out, "kind = \"mean_teacher\"\n").expect("string");
        out.push_str("[framework.teacher.consistency]\nweight = 0.1\nrampup_epochs = 40.0\n");
        comment(
            &mut out,
            "the paper ramps up over its whole run (40 epochs of 150 of its 6000 iterations): the same share of this run",
        );
        writeln!(out, "iterations_per_epoch = {epoch}").expect("string");
    } else {
        writeln!(out, "kind = \"supervised\"").expect("string");
    }

    out.push_str("\n[training]\n");
    comment(&mut out, &iterations.why);
    writeln!(out, "iterations = {iterations_value}").expect("string");
    comment(&mut out, batch_why);
    writeln!(out, "batch_size = {batch_size}\nlabeled_bs = {labeled_bs}").expect("string");
    comment(&mut out, &patch.why);
    writeln!(out, "patch = {}", triple(patch.value)).expect("string");
    comment(&mut out, &lr_why);
    writeln!(out, "lr = {}", float(lr)).expect("string");
    writeln!(out, "lr_schedule = {{ kind = \"poly\", power = 0.9 }}").expect("string");
    writeln!(out, "momentum = 0.9\nweight_decay = 1e-4\nseed = 1337").expect("string");
    writeln!(out, "checkpoint_every = {every}").expect("string");
    comment(&mut out, &augment.why);
    writeln!(
        out,
        "augment = {{ rot90 = {}, flip = {} }}",
        augment.value.0, augment.value.1
    )
    .expect("string");

    out.push_str("\n[validation]\n");
    comment(&mut out, &format!("{VALIDATIONS} validations over the run"));
    writeln!(
        out,
        "every = {}",
        if validation.value > 0 { every } else { 0 }
    )
    .expect("string");
    out.push_str("\n[inference]\n");
    comment(&mut out, "windows overlap by half the patch");
    writeln!(
        out,
        "stride = {}",
        triple(patch.value.map(|p| (p / 2).max(1)))
    )
    .expect("string");
    writeln!(out, "lcc = false").expect("string");

    if framework.value == PlannedFramework::Semisam {
        out.push_str("\n[sam]\ngeneralist = \"litemedsam\"\n");
        comment(&mut out, &axis.why);
        writeln!(out, "axis = {}", axis.value).expect("string");
        writeln!(out, "weight = 0.1\nrampdown_epochs = 40.0").expect("string");
        comment(&mut out, "the consistency ramp's time scale");
        writeln!(out, "iterations_per_epoch = {epoch}").expect("string");
        comment(
            &mut out,
            "a case's pseudo-label is recomputed at most 10 times over the run (slice embeddings are cached)",
        );
        writeln!(out, "refresh_interval = {}", (iterations_value / 10).max(1)).expect("string");
        comment(
            &mut out,
            "the student prompts SAM once it has trained for 40 % of the run: an untrained student's boxes are noise",
        );
        writeln!(out, "start_iteration = {}", iterations_value * 2 / 5).expect("string");
        out.push_str("\n[sam.prompts]\n");
        comment(
            &mut out,
            if short {
                "a short run's student is rarely above 0.5 on small structures: its 0.3-confident region prompts SAM"
            } else {
                "the student's confident region (p > 0.5) prompts SAM"
            },
        );
        writeln!(out, "threshold = {}", if short { 0.3 } else { 0.5 }).expect("string");
        writeln!(out, "box_margin = 1.0\nmin_slice_area = 4").expect("string");
    }

    let config = RunConfig::from_toml_str(&out, &[], "the planned configuration")
        .map_err(|e: ConfigError| PlanningError::Unsupported(e.to_string()))?;
    Ok(Plan {
        toml: out,
        config,
        step,
    })
}

/// Iterations that fit the budget once validation, the final evaluation (a fifth of the budget)
/// and SAM's embeddings are set aside.
fn fit_iterations(budget: Duration, step: StepTiming, sam_seconds: Option<f64>) -> usize {
    let available = budget.as_secs_f64() * 0.8 - sam_seconds.unwrap_or(0.0);
    if available <= 0.0 || step.seconds <= 0.0 {
        return 0;
    }
    (available / step.seconds).floor() as usize
}

fn float_value(v: f64) -> FloatText {
    FloatText(v)
}

/// A float printed as TOML (always with a decimal point).
struct FloatText(f64);

impl std::fmt::Display for FloatText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&float(self.0))
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn architecture_name(a: Architecture) -> &'static str {
    match a {
        Architecture::VNet => "v_net",
        Architecture::UNet3d => "unet3d",
    }
}

/// The 1-minute load average (other jobs inflate a timing), or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Write the plan and the fingerprint next to each other (atomically).
pub fn save(
    plan: &Plan,
    fingerprint: &Fingerprint,
    plan_path: &Path,
    fingerprint_path: &Path,
) -> Result<(), crate::Error> {
    crate::io_util::write_atomic(plan_path, plan.toml.as_bytes())?;
    let json = serde_json::to_vec_pretty(fingerprint).expect("the fingerprint is plain data");
    crate::io_util::write_atomic(fingerprint_path, &json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_wrap_and_floats_stay_floats() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.625), "0.625");
        assert_eq!(textwrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(validation_cases(2).value, 0);
        assert_eq!(validation_cases(5).value, 1);
        assert_eq!(validation_cases(8).value, 2);
    }
}
