//! End to end, through the `semisam` binary: a tiny SemiSAM-MT run (LiteMedSAM pseudo-labels) on a
//! synthetic NIfTI dataset, then every artefact of the run folder is opened and checked, `semisam
//! report` must regenerate identical metrics, and the workflow's refusals (existing run name,
//! run folder of another format) must say what is wrong.
//!
//! Needs the LiteMedSAM weights (`semisam weights fetch`, which scripts/test runs first).

use std::path::Path;

mod cli_support;
mod common;

use cli_support::{semisam, succeeds as ok};

use ndarray::Array3;
use semisam::data::{Geometry, SourceFormat, Splits, Volume, read_image, read_label};
use semisam::reports::curves::CURVES_SIZE;
use semisam::training::RunConfig;
use semisam::training::checkpoint::Checkpoint;
use semisam::training::pseudo_labels::PseudoLabelEntry;

/// Four slices along the SAM axis (shorter than the patch, which pads): LiteMedSAM embeds each
/// slice of a pseudo-labelled case, and four keep the test's time small.
const SHAPE: [usize; 3] = [20, 18, 4];
const ITERATIONS: usize = 8;
const CASES: [&str; 5] = ["blob_0", "blob_1", "blob_2", "blob_3", "blob_4"];

/// Anisotropic spacing, a flipped first axis and an offset origin: a prediction that lost any of
/// them would be caught.
fn geometry() -> Geometry {
    let spacing = [1.5, 1.0, 2.0];
    Geometry {
        spacing: Some(spacing),
        affine: [
            [-1.5, 0.0, 0.0, 30.0],
            [0.0, 1.0, 0.0, -12.5],
            [0.0, 0.0, 2.0, 4.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        nifti_header: None,
    }
}

/// A bright ellipsoid (label 1) on a noisy background, a little different per case.
fn case(n: usize) -> (Array3<f32>, Array3<u8>) {
    let center = [9.0 + n as f32 * 0.5, 8.0, 1.5 + n as f32 * 0.1];
    let label = Array3::from_shape_fn(SHAPE, |(i, j, k)| {
        let d = ((i as f32 - center[0]) / 5.0).powi(2)
            + ((j as f32 - center[1]) / 4.0).powi(2)
            + ((k as f32 - center[2]) / 2.5).powi(2);
        u8::from(d < 1.0)
    });
    let image = Array3::from_shape_fn(SHAPE, |(i, j, k)| {
        let noise = ((i * 31 + j * 17 + k * 7 + n * 13) % 23) as f32 / 23.0 - 0.5;
        100.0 + 300.0 * f32::from(label[[i, j, k]]) + 40.0 * noise
    });
    (image, label)
}

fn write_dataset(root: &Path) {
    let mut training = Vec::new();
    for (n, id) in CASES.iter().enumerate() {
        let (image, label) = case(n);
        let image_path = root.join(format!("imagesTr/{id}.nii.gz"));
        let label_path = root.join(format!("labelsTr/{id}.nii.gz"));
        std::fs::create_dir_all(image_path.parent().unwrap()).unwrap();
        std::fs::create_dir_all(label_path.parent().unwrap()).unwrap();
        semisam::data::write_image(
            &Volume {
                data: image,
                geometry: geometry(),
                source: SourceFormat::Nifti,
                path: image_path.clone(),
            },
            &image_path,
        )
        .unwrap();
        semisam::data::write_label(
            &Volume {
                data: label,
                geometry: geometry(),
                source: SourceFormat::Nifti,
                path: label_path.clone(),
            },
            &label_path,
        )
        .unwrap();
        training.push(serde_json::json!({
            "image": format!("./imagesTr/{id}.nii.gz"),
            "label": format!("./labelsTr/{id}.nii.gz"),
        }));
    }
    let json = serde_json::json!({
        "name": "blobs",
        "labels": {"0": "background", "1": "blob"},
        "training": training,
        "test": [],
    });
    std::fs::write(root.join("dataset.json"), json.to_string()).unwrap();
}

fn splits() -> Splits {
    let ids = |r: std::ops::Range<usize>| CASES[r].iter().map(|s| s.to_string()).collect();
    Splits {
        labeled: ids(0..2),
        unlabeled: ids(2..3),
        validation: ids(3..4),
        test: ids(4..5),
        seed: 5,
        label_free: vec![],
        cross_validation: None,
    }
}

fn config_text(dataset: &Path, splits_file: &Path) -> String {
    common::tiny_run()
        .set("data", "root", common::toml_path(dataset))
        .set("data", "splits_file", common::toml_path(splits_file))
        .set("training", "iterations", ITERATIONS)
        .set("training", "batch_size", 2)
        .set("training", "seed", 21)
        .set("training", "checkpoint_every", 4)
        .set("validation", "every", 4)
        .set("inference", "stride", "[8, 8, 8]")
        .set("framework.teacher.consistency", "weight", 0.1)
        .set("framework.teacher.consistency", "rampup_epochs", "4.0")
        .set("framework.teacher.consistency", "iterations_per_epoch", 1)
        .with_sections(
            r#"[sam]
generalist = "litemedsam"
axis = 2
weight = 0.1
rampdown_epochs = 4.0
iterations_per_epoch = 1
# One pseudo-label per case for the whole run, keeping SAM's cost small.
refresh_interval = 1000

# An 8-iteration student is confident nowhere: every voxel counts as confident so that SAM is
# prompted (with a box around the patch) and pseudo-labels exist to be saved and shown.
[sam.prompts]
threshold = 0.0
"#,
        )
        .text()
}

fn fails(args: &[&str]) -> String {
    let out = semisam(args);
    assert!(!out.status.success(), "semisam {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `](target)` of a Markdown file, relative to its folder.
fn link_targets(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().to_owned())
        .collect()
}

#[test]
fn tiny_semisam_run_produces_a_complete_run_folder_and_report() {
    if let Err(e) = semisam::generalists::weights_cache::locate(
        &semisam::generalists::weights_cache::LITEMEDSAM,
    ) {
        panic!(
            "this end-to-end test trains with LiteMedSAM pseudo-labels and needs its weights: run `semisam weights fetch` (scripts/test does) — {e}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("blobs");
    write_dataset(&dataset);
    let splits_file = dir.path().join("splits.json");
    splits().save(&splits_file).unwrap();
    let config_path = dir.path().join("tiny.toml");
    std::fs::write(&config_path, config_text(&dataset, &splits_file)).unwrap();
    let runs = dir.path().join("runs");
    let (config_arg, runs_arg) = (config_path.to_str().unwrap(), runs.to_str().unwrap());
    let train = [
        "train",
        "--config",
        config_arg,
        "--runs-dir",
        runs_arg,
        "--name",
        "tiny",
        "--no-progress",
    ];
    let stderr = ok(&train);
    let run = runs.join("tiny");
    assert!(
        stderr.contains(&format!("report: {}", run.join("report.md").display())),
        "{stderr}"
    );

    // Configuration and splits.
    let saved = RunConfig::load(&run.join("config.toml"), &[]).unwrap();
    assert_eq!(saved, RunConfig::load(&config_path, &[]).unwrap());
    assert_eq!(Splits::load(run.join("splits.json")).unwrap(), splits());
    let info: serde_json::Value = serde_json::from_str(&read(&run.join("run.json"))).unwrap();
    assert_eq!(info["run_format"], 1);
    assert_eq!(info["name"], "tiny");

    // Logs: one CSV row and one JSONL record per iteration and per validation, validations at
    // 4 and 8.
    let csv_text = read(&run.join("log.csv"));
    let mut csv = csv::Reader::from_reader(csv_text.as_bytes());
    let header = csv.headers().unwrap().clone();
    assert_eq!((&header[0], &header[1]), ("step", "kind"));
    assert!(header.iter().any(|h| h == "loss/total"), "{header:?}");
    let dice_column = header.iter().position(|h| h == "dice").unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    let csv_steps = |kind: &str| {
        rows.iter()
            .filter(|r| &r[1] == kind)
            .map(|r| r[0].parse().unwrap())
            .collect::<Vec<usize>>()
    };
    assert_eq!(csv_steps("iteration"), (1..=ITERATIONS).collect::<Vec<_>>());
    assert_eq!(csv_steps("validation"), [4, ITERATIONS]);
    assert!(
        rows.iter()
            .filter(|r| &r[1] == "validation")
            .all(|r| (0.0..=1.0).contains(&r[dice_column].parse::<f64>().unwrap())),
        "{csv_text}"
    );
    let records: Vec<serde_json::Value> = read(&run.join("log.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = |kind: &str| {
        records
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds("iteration"),
        (1..=ITERATIONS as u64).collect::<Vec<_>>()
    );
    assert_eq!(kinds("validation"), [4, ITERATIONS as u64]);
    assert!(
        records.iter().any(|r| r.get("loss/sam").is_some()),
        "the SAM term never entered the loss"
    );

    // Checkpoints.
    for (name, step) in [("last", ITERATIONS), ("final", ITERATIONS)] {
        let checkpoint = Checkpoint::load(&run.join(format!("checkpoints/{name}.ckpt"))).unwrap();
        assert_eq!(checkpoint.header.step, step, "{name}");
    }
    let best = Checkpoint::load(&run.join("checkpoints/best.ckpt")).unwrap();
    assert!([4, ITERATIONS].contains(&best.header.step));

    // The test case's prediction keeps the input's grid and geometry.
    let image = read_image(dataset.join("imagesTr/blob_4.nii.gz")).unwrap();
    let prediction = read_label(run.join("predictions/blob_4.nii.gz")).unwrap();
    assert_eq!(prediction.shape(), SHAPE);
    assert_eq!(prediction.geometry.spacing, image.geometry.spacing);
    assert_eq!(prediction.geometry.affine, image.geometry.affine);
    assert_eq!(prediction.geometry.affine, geometry().affine);
    assert!(prediction.data.iter().all(|&v| v <= 1));
    let predicted: Vec<String> = std::fs::read_dir(run.join("predictions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(predicted, ["blob_4.nii.gz"]);

    // Metrics of the test case.
    let per_case = read(&run.join("metrics/per_case.csv"));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(per_case.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][1]), ("blob_4", "1"));
    let dice: f64 = rows[0][2].parse().unwrap();
    assert!((0.0..=1.0).contains(&dice), "{dice}");
    let summary: serde_json::Value =
        serde_json::from_str(&read(&run.join("metrics/summary.json"))).unwrap();
    assert_eq!(summary["cases"], 1);
    assert_eq!(summary["unit"], "mm");
    assert_eq!(
        summary["classes"][0]["dice"]["mean"].as_f64().unwrap(),
        dice
    );
    assert!(read(&run.join("metrics/summary.md")).contains("Dice"));

    // Pictures.
    let curves = image::open(run.join("curves.png")).unwrap();
    assert_eq!((curves.width(), curves.height()), CURVES_SIZE);
    let pseudo: Vec<PseudoLabelEntry> =
        serde_json::from_str(&read(&run.join("pseudo_labels/index.json"))).unwrap();
    assert_eq!(pseudo.len(), 1);
    assert_eq!(
        (pseudo[0].case_id.as_str(), pseudo[0].grid),
        ("blob_2", SHAPE)
    );
    let overlays = vec![
        "blob_4.png".to_string(),
        "blob_2_pseudo_label.png".to_string(),
    ];
    for name in &overlays {
        let picture = image::open(run.join("overlays").join(name)).unwrap();
        assert!(picture.width() >= 560 && picture.height() > 240, "{name}");
    }

    // report.md links to everything above, and every link resolves.
    let report = read(&run.join("report.md"));
    let targets = link_targets(&report);
    for expected in [
        "config.toml",
        "splits.json",
        "log.jsonl",
        "log.csv",
        "checkpoints/final.ckpt",
        "metrics/per_case.csv",
        "metrics/summary.md",
        "curves.png",
        "overlays/blob_4.png",
    ] {
        assert!(
            targets.iter().any(|t| t == expected),
            "{expected} not linked:\n{report}"
        );
    }
    for target in &targets {
        assert!(
            run.join(target).exists(),
            "report.md links to missing {target}"
        );
    }
    assert!(
        report.contains(&format!("Iterations: {ITERATIONS} of {ITERATIONS}")),
        "{report}"
    );

    // `semisam report` re-scores the saved predictions into identical metrics files.
    let metric_files = ["per_case.csv", "summary.json", "summary.md"];
    let before: Vec<Vec<u8>> = metric_files
        .iter()
        .map(|f| std::fs::read(run.join("metrics").join(f)).unwrap())
        .collect();
    std::fs::remove_file(run.join("curves.png")).unwrap();
    std::fs::remove_dir_all(run.join("overlays")).unwrap();
    std::fs::remove_file(run.join("report.md")).unwrap();
    let run_arg = run.to_str().unwrap();
    ok(&["report", run_arg]);
    for (file, bytes) in metric_files.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(run.join("metrics").join(file)).unwrap(),
            bytes,
            "metrics/{file} changed when re-scored"
        );
    }
    assert_eq!(read(&run.join("report.md")), report);
    for name in overlays
        .iter()
        .map(|n| format!("overlays/{n}"))
        .chain(["curves.png".into()])
    {
        assert!(run.join(&name).is_file(), "{name} not regenerated");
    }

    // A moved dataset: a clear error, and --data-root finds it.
    let moved = dir.path().join("moved");
    std::fs::rename(&dataset, &moved).unwrap();
    let err = fails(&["report", run_arg]);
    assert!(
        err.contains("pass the dataset folder with --data-root if it moved"),
        "{err}"
    );
    ok(&["report", run_arg, "--data-root", moved.to_str().unwrap()]);
    std::fs::rename(&moved, &dataset).unwrap();

    // sam-oracle from the trained model; --set changes the checkpoint's prompt settings.
    let checkpoint = run.join("checkpoints").join("final.ckpt");
    let oracle = |extra: &[&str]| {
        let mut args = vec![
            "sam-oracle",
            dataset.to_str().unwrap(),
            "--limit",
            "1",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = semisam(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "semisam {args:?} failed:\n{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The `slices` column: how many slices were prompted, per (case, class).
        let slices: Vec<usize> = stdout
            .lines()
            .skip(1)
            .filter(|line| !line.starts_with("mean Dice"))
            .map(|line| line.split('\t').nth(3).unwrap().parse().unwrap())
            .collect();
        assert!(!slices.is_empty(), "{stdout}");
        slices
    };
    assert!(oracle(&[]).iter().any(|&n| n > 0));
    assert!(
        oracle(&["--set", "sam.prompts.threshold=1.0"])
            .iter()
            .all(|&n| n == 0),
        "no probability exceeds 1: nothing may be prompted"
    );
    let err = fails(&[
        "sam-oracle",
        dataset.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--set",
        "sam.prompts.no_such_key=1",
    ]);
    assert!(
        err.contains("no_such_key") && err.contains(checkpoint.to_str().unwrap()),
        "{err}"
    );
    let err = fails(&[
        "sam-oracle",
        dataset.to_str().unwrap(),
        "--set",
        "sam.prompts.threshold=1.0",
    ]);
    assert!(err.contains("--checkpoint"), "{err}");

    // The same name again is refused unless --overwrite.
    let err = fails(&train);
    assert!(
        err.contains("already exists: pass --overwrite to replace it or --resume to continue it"),
        "{err}"
    );

    // A run folder of another format: clear errors on --resume and on report.
    let run_json = run.join("run.json");
    let mut info = info;
    info["run_format"] = 99.into();
    std::fs::write(&run_json, info.to_string()).unwrap();
    let mut resume: Vec<&str> = train.to_vec();
    resume.push("--resume");
    let expected = "(run format 99); this semisam";
    let err = fails(&resume);
    assert!(
        err.contains(expected) && err.contains("start a new run"),
        "{err}"
    );
    let err = fails(&["report", run_arg]);
    assert!(
        err.contains(expected) && err.contains("start a new run"),
        "{err}"
    );
}

#[test]
fn link_targets_are_read_from_markdown() {
    let targets = link_targets("see [a](x/y.png) and ![b](c.md), not (d)");
    assert_eq!(targets, ["x/y.png", "c.md"]);
}

#[test]
fn a_wrong_generalist_key_stops_train_before_any_folder_or_case() {
    let dir = tempfile::tempdir().unwrap();
    // The dataset does not exist: the configuration must fail before anything reads it.
    let config_path = dir.path().join("run.toml");
    let missing = dir.path().join("no-dataset");
    std::fs::write(
        &config_path,
        config_text(&missing, &missing.join("splits.json")),
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let (config_arg, runs_arg) = (config_path.to_str().unwrap(), runs.to_str().unwrap());
    for (set, message) in [
        ("sam.axis=3", "[sam] axis must be 0, 1 or 2, got 3"),
        (
            "sam.generalist=\"sammed3d\"",
            "[sam] weights is required for generalist = \"sammed3d\"",
        ),
    ] {
        let stderr = fails(&[
            "train",
            "--config",
            config_arg,
            "--runs-dir",
            runs_arg,
            "--set",
            set,
            "--no-progress",
        ]);
        assert!(stderr.contains(message), "{set}: {stderr}");
        assert!(!runs.exists(), "{set}: a runs folder was created");
    }
}
