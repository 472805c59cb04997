//! SemiSAM training with the real LiteMedSAM as generalist (weights from `semisam weights fetch`,
//! which `scripts/test` runs first):
//! - no ground truth leaks: replacing the unlabeled cases' labels on disk by garbage, removing
//!   them, or giving the unlabeled cases as label-free images of their own folder
//!   (`data.unlabeled_root`) gives bit-identical training;
//! - a run interrupted between pseudo-label refreshes and resumed ends bit-identical to an
//!   uninterrupted one (the reused pseudo-labels travel in the checkpoint).

use std::path::Path;
use std::sync::Mutex;

mod common;
mod module_values;

use module_values::float_values;
use ndarray::Array3;
use semisam::data::{Dataset, h5};
use semisam::training::dataset::{load_training_data, make_splits, open_dataset};
use semisam::training::run_dir::RunDir;
use semisam::training::{RunConfig, TrainOptions, TrainOutcome, load_checkpoint_model, train};

/// The backend's seed is global: runs in this file must not interleave.
static SERIAL: Mutex<()> = Mutex::new(());

const CASES: [&str; 4] = ["case_a", "case_b", "case_c", "case_d"];
/// With 1 labeled and 1 validation case, the middle two of the list are unlabeled.
const UNLABELED: [&str; 2] = ["case_b", "case_c"];

fn config(root: &Path) -> RunConfig {
    config_with(root, &[])
}

fn config_with(root: &Path, overrides: &[&str]) -> RunConfig {
    common::tiny_run()
        .set("data", "root", common::toml_path(root))
        .set("data", "labeled", 1)
        .set("data", "validation", 1)
        .set("training", "iterations", 4)
        .set("training", "checkpoint_every", 2)
        .set("validation", "every", 4)
        .with_sections(
            r#"[sam]
generalist = "litemedsam"
axis = 2
weight = 1.0
iterations_per_epoch = 1
rampdown_epochs = 4.0
refresh_interval = 2
start_iteration = 0

[sam.prompts]
threshold = 0.2
box_margin = 1.0
min_slice_area = 4
"#,
        )
        .parse_with(overrides)
        .unwrap()
}

/// A bright disc stack (label 1) on a noisy background, 4 slices deep so that LiteMedSAM embeds
/// few slices.
fn case(n: usize) -> (Array3<f32>, Array3<u8>) {
    let shape = [22, 20, 4];
    let center = [10.0 + n as f32, 9.0 - 0.5 * n as f32];
    let label = Array3::from_shape_fn(shape, |(i, j, _)| {
        let d2 = (i as f32 - center[0]).powi(2) + (j as f32 - center[1]).powi(2);
        u8::from(d2 < 30.0)
    });
    let image = Array3::from_shape_fn(shape, |(i, j, k)| {
        let noise = (((i * 31 + j * 17 + k * 7 + n * 13) % 23) as f32 / 23.0 - 0.5) * 0.4;
        f32::from(label[[i, j, k]]) * 2.0 - 1.0 + noise
    });
    (image, label)
}

#[derive(PartialEq)]
enum UnlabeledLabels {
    True,
    Garbage,
    Removed,
    /// The unlabeled cases are not in `train.list` but label-free h5 files of [`pool_dir`].
    OwnFolder,
}

/// Where [`UnlabeledLabels::OwnFolder`] puts the unlabeled cases.
fn pool_dir(root: &Path) -> std::path::PathBuf {
    root.with_extension("pool")
}

/// A UA-MT style dataset (`<root>/<id>/mri_norm2.h5`, `train.list`).
fn write_dataset(root: &Path, labels: UnlabeledLabels) {
    for (n, id) in CASES.iter().enumerate() {
        let (image, mut label) = case(n);
        let unlabeled = UNLABELED.contains(id);
        let label = match labels {
            _ if !unlabeled => Some(label),
            UnlabeledLabels::True => Some(label),
            UnlabeledLabels::Garbage => {
                label.iter_mut().enumerate().for_each(|(v, l)| {
                    *l = ((v * 7 + n) % 3 == 0) as u8;
                });
                Some(label)
            }
            UnlabeledLabels::Removed | UnlabeledLabels::OwnFolder => None,
        };
        let folder = if unlabeled && labels == UnlabeledLabels::OwnFolder {
            pool_dir(root)
        } else {
            root.to_path_buf()
        };
        h5::write_case(
            &folder.join(id).join("mri_norm2.h5"),
            Some(&image),
            label.as_ref(),
        )
        .unwrap();
    }
    let listed: Vec<&str> = CASES
        .into_iter()
        .filter(|id| labels != UnlabeledLabels::OwnFolder || !UNLABELED.contains(id))
        .collect();
    std::fs::write(root.join("train.list"), listed.join("\n") + "\n").unwrap();
}

fn final_weights(run: &RunDir) -> Vec<Vec<f32>> {
    let (_, student) = load_checkpoint_model(&run.checkpoint_path("final")).unwrap();
    float_values(&student)
}

/// The log without its timing columns (elapsed, iteration seconds, SAM seconds).
fn log_without_times(run: &RunDir) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run.log_csv_path()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let timing = |name: &str| name.ends_with("_s") || name.ends_with("seconds");
    lines
        .map(|line| {
            line.split(',')
                .zip(&header)
                .filter(|(_, name)| !timing(name))
                .map(|(cell, _)| cell.to_string())
                .collect()
        })
        .collect()
}

fn column(log: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let index = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    let kind = header.iter().position(|h| *h == "kind").unwrap();
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|cells| cells[kind] == "iteration")
        .map(|cells| cells[index].parse().unwrap())
        .collect()
}

/// Train from the dataset on disk, as `semisam train` does; `stop_at` interrupts and resumes.
fn run(dir: &Path, name: &str, labels: UnlabeledLabels, stop_at: Option<usize>) -> RunDir {
    let root = dir.join(format!("{name}-data"));
    let label_free = matches!(
        labels,
        UnlabeledLabels::Removed | UnlabeledLabels::OwnFolder
    );
    let pool = format!("data.unlabeled_root=\"{}\"", pool_dir(&root).display());
    let config = match labels {
        UnlabeledLabels::OwnFolder => config_with(&root, &[pool.as_str()]),
        _ => config(&root),
    };
    write_dataset(&root, labels);
    let dataset = open_dataset(&config, None).unwrap();
    let splits = make_splits(&config, &dataset).unwrap();
    assert_eq!(splits.unlabeled, UNLABELED);
    let expected_label_free: &[&str] = if label_free { &UNLABELED } else { &[] };
    assert_eq!(splits.label_free, expected_label_free);
    let data = load_training_data(&config, &dataset, &splits).unwrap();
    let run = RunDir::create(dir, name, false).unwrap();
    if let Some(step) = stop_at {
        let stop = TrainOptions {
            stop_at_step: Some(step),
            ..TrainOptions::default()
        };
        assert_eq!(
            train(&config, &data, &run, &stop).unwrap(),
            TrainOutcome::Interrupted { steps: step }
        );
    }
    let options = TrainOptions {
        resume: stop_at.is_some(),
        ..TrainOptions::default()
    };
    let outcome = train(&config, &data, &run, &options).unwrap();
    assert!(
        matches!(outcome, TrainOutcome::Completed { steps: 4, .. }),
        "{outcome:?}"
    );
    run
}

#[test]
fn garbage_or_missing_unlabeled_labels_give_bit_identical_semisam_training_and_resume_too() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let reference = run(dir.path(), "true-labels", UnlabeledLabels::True, None);

    // The SAM term took part: otherwise the comparisons below prove nothing.
    let with_term = column(&reference.log_csv_path(), "sam/items_with_term");
    assert!(
        with_term.iter().sum::<f64>() >= 2.0,
        "SAM terms per step: {with_term:?}"
    );
    let refreshed = column(&reference.log_csv_path(), "sam/refreshed");
    assert!(
        refreshed[1] == 0.0 || refreshed[3] == 0.0,
        "refresh interval 2 reuses labels at odd steps: {refreshed:?}"
    );

    let weights = final_weights(&reference);
    let log = log_without_times(&reference);
    for (name, labels) in [
        ("garbage-labels", UnlabeledLabels::Garbage),
        ("no-labels", UnlabeledLabels::Removed),
        ("own-folder", UnlabeledLabels::OwnFolder),
    ] {
        let other = run(dir.path(), name, labels, None);
        assert!(final_weights(&other) == weights, "{name}: weights differ");
        assert_eq!(log_without_times(&other), log, "{name}: logs differ");
    }

    // Interrupted at step 3, whose pseudo-labels were computed at step 2 and are reused.
    let resumed = run(dir.path(), "resumed", UnlabeledLabels::Garbage, Some(3));
    assert!(
        final_weights(&resumed) == weights,
        "resumed run: weights differ"
    );
    assert_eq!(log_without_times(&resumed), log, "resumed run: logs differ");
}

/// The analysis-only oracle reads the unlabeled cases' labels, and only it does.
#[test]
fn only_the_ground_truth_oracle_loads_unlabeled_labels_and_it_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write_dataset(&root, UnlabeledLabels::True);
    let dataset = Dataset::open(&root).unwrap();
    let student_prompts = config(&root);
    let splits = make_splits(&student_prompts, &dataset).unwrap();
    let data = load_training_data(&student_prompts, &dataset, &splits).unwrap();
    assert!(data.oracle_labels.is_empty());

    let oracle = config_with(&root, &["sam.prompt_source=\"ground_truth_oracle\""]);
    let data = load_training_data(&oracle, &dataset, &splits).unwrap();
    let ids: Vec<&str> = data
        .oracle_labels
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(ids, UNLABELED);
    assert_eq!(data.oracle_labels[0].1, case(1).1);

    let removed = dir.path().join("removed");
    write_dataset(&removed, UnlabeledLabels::Removed);
    let error = load_training_data(&oracle, &Dataset::open(&removed).unwrap(), &splits)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("case_b/mri_norm2.h5") && error.contains("missing dataset `label`"),
        "{error}"
    );
}
