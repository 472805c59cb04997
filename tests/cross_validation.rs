//! Cross-validation folds on a real MSD dataset (NIfTI cases of the demo): the splits of every
//! fold, the errors raised before a run folder exists, and a fold run through the binary.

mod cli_support;

use std::collections::BTreeSet;
use std::path::Path;

use cli_support::{demo_ids, demo_subset, fails, succeeds, text, tiny_config};
use semisam::data::Splits;
use semisam::data::folds::{FoldSpec, partition};
use semisam::training::RunConfig;
use semisam::training::dataset::make_splits;

const CASES: usize = 5;

/// The demo's five labeled cases as an MSD dataset, and the tiny supervised configuration
/// (2 labeled cases) of `iterations` at `dir/tiny.toml`.
fn setup(dir: &Path, iterations: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let dataset = dir.join("data");
    demo_subset(&dataset, CASES, |_, _| {});
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_config(&dataset, iterations, 0, "")).unwrap();
    (dataset, config)
}

fn splits_of(config: &Path, overrides: &[&str]) -> Result<Splits, String> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let config = RunConfig::load(config, &overrides).map_err(|e| e.to_string())?;
    let dataset = semisam::training::dataset::open_dataset(&config, None).unwrap();
    make_splits(&config, &dataset).map_err(|e| e.to_string())
}

#[test]
fn each_fold_validates_on_its_fold_and_labels_cases_of_the_next_folds() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = setup(dir.path(), 1);
    let ids = demo_ids(CASES);
    let folds = partition(&ids, 3, 12345);
    let mut validated = Vec::new();
    for fold in 0..3 {
        let (k, n) = (format!("data.fold={fold}"), "data.folds=3".to_owned());
        // The paper protocol: 2 labeled, the other labeled cases used without their labels.
        let splits = splits_of(&config, &["data.protocol=paper", &k, &n]).unwrap();
        let mut expected: Vec<String> = folds[fold].clone();
        expected.sort_by_key(|id| ids.iter().position(|i| i == id));
        assert_eq!(splits.validation, expected, "fold {fold}");
        let order = [folds[(fold + 1) % 3].clone(), folds[(fold + 2) % 3].clone()].concat();
        assert_eq!(splits.labeled, order[..2], "fold {fold}");
        assert_eq!(splits.unlabeled, order[2..], "fold {fold}");
        assert_eq!(
            splits.cross_validation,
            Some(FoldSpec {
                fold,
                folds: 3,
                seed: 12345
            })
        );
        let all: BTreeSet<&String> = splits
            .labeled
            .iter()
            .chain(&splits.unlabeled)
            .chain(&splits.validation)
            .collect();
        assert_eq!(
            all.len(),
            CASES,
            "fold {fold}: the three sets are disjoint and cover the cases"
        );
        validated.extend(splits.validation.clone());

        // `all` keeps the first 2 of the same order and leaves the rest out.
        let all_protocol = splits_of(&config, &[&k, &n]).unwrap();
        assert_eq!(all_protocol.labeled, splits.labeled);
        assert_eq!(all_protocol.validation, splits.validation);
        assert!(all_protocol.unlabeled.is_empty());
    }
    validated.sort();
    assert_eq!(validated, ids, "every case validates in exactly one fold");

    let other_seed = splits_of(
        &config,
        &["data.fold=0", "data.folds=3", "data.fold_seed=1"],
    )
    .unwrap();
    assert_eq!(other_seed.validation, {
        let mut v = partition(&ids, 3, 1)[0].clone();
        v.sort();
        v
    });
    let err = splits_of(&config, &["data.fold=0", "data.folds=3", "data.labeled=4"]).unwrap_err();
    assert!(
        err.ends_with(
            "data.labeled = 4 but fold 0 of 3 leaves 3 labeled case(s) outside the validation fold"
        ),
        "{err}"
    );
}

#[test]
fn impossible_folds_fail_before_a_run_folder_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = setup(dir.path(), 1);
    let runs = dir.path().join("runs");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--config",
            text(&config),
            "--runs-dir",
            text(&runs),
        ];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let cases = [
        (
            vec!["--fold", "3", "--folds", "3"],
            "data.fold = 3 but data.folds = 3: folds are numbered 0 to 2",
        ),
        (
            vec!["--fold", "0", "--folds", "6"],
            "data.folds = 6 but the dataset has 5 labeled case(s): every fold needs one",
        ),
        (
            vec!["--fold", "0", "--folds", "3", "--set", "data.validation=1"],
            "data.validation = 1 and data.folds both choose the validation cases",
        ),
        (
            vec![
                "--fold",
                "0",
                "--folds",
                "3",
                "--set",
                "data.splits_file=\"s.json\"",
            ],
            "data.splits_file (s.json) and data.folds both choose the cases: use one",
        ),
    ];
    for (extra, message) in cases {
        let stderr = train(&extra);
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
        assert!(!runs.exists(), "{extra:?} created {}", runs.display());
    }
    // --fold alone is a usage error of the command line itself.
    let out = cli_support::semisam(&["train", "--config", text(&config), "--fold", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--folds <N>"), "{stderr}");
}

#[test]
fn a_fold_run_saves_its_fold_and_scores_the_validation_fold() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = setup(dir.path(), 2);
    let runs = dir.path().join("runs");
    let stderr = succeeds(&[
        "train",
        "--config",
        text(&config),
        "--runs-dir",
        text(&runs),
        "--no-progress",
        "--fold",
        "1",
        "--folds",
        "3",
    ]);
    let folders: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let name = &folders[0];
    assert!(
        name.starts_with("tiny-fold1-") && name.len() == "tiny-fold1-".len() + 15,
        "{name}"
    );
    let run = runs.join(name);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("splits.json")).unwrap()).unwrap();
    assert_eq!(
        saved["cross_validation"],
        serde_json::json!({"fold": 1, "folds": 3, "seed": 12345}),
        "{saved}"
    );
    let splits = Splits::load(run.join("splits.json")).unwrap();
    let ids = demo_ids(CASES);
    let mut expected = partition(&ids, 3, 12345)[1].clone();
    expected.sort();
    assert_eq!(splits.validation, expected);
    assert_eq!(splits.labeled.len(), 2);
    assert!(
        stderr.contains("2 labeled, 0 unlabeled (0 without any label), 2 validation"),
        "{stderr}"
    );

    // The final metrics score exactly the validation fold.
    let per_case = std::fs::read_to_string(run.join("metrics/per_case.csv")).unwrap();
    let scored: BTreeSet<&str> = per_case
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    let expected: BTreeSet<&str> = splits.validation.iter().map(String::as_str).collect();
    assert_eq!(scored, expected);
    let config_text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config_text.contains("folds = 3") && config_text.contains("fold = 1"),
        "{config_text}"
    );
}
