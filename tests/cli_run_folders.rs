//! Run folders through the `semisam` binary: one writer at a time (an advisory lock), nothing
//! created when the input is bad, Ctrl-C and resume with the full command, stale temporary files
//! cleaned on resume.

mod cli_support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{
    demo_ids, demo_subset, fails, image_path, label_path, semisam, succeeds, text, tiny_config,
    train_args,
};
use semisam::data::Splits;
use semisam::training::run_dir::RunDir;

/// A three-case dataset and a configuration of `iterations` in `dir`; returns the config path.
fn setup(dir: &Path, iterations: usize) -> std::path::PathBuf {
    let dataset = dir.join("data");
    demo_subset(&dataset, 3, |_, _| {});
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_config(&dataset, iterations, 0, "")).unwrap();
    config
}

#[test]
fn a_live_run_folder_refuses_a_second_train_an_overwrite_and_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2);
    let runs = dir.path().join("runs");
    // This process plays the live run: it holds the folder's lock as `train` does.
    let live = RunDir::create(&runs, "live", false).unwrap();
    std::fs::write(live.root().join("log.jsonl"), "{}\n").unwrap();
    let train = |extra: &[&str]| fails(&train_args(&config, &runs, "live", extra));
    for extra in [&[][..], &["--overwrite"], &["--resume"]] {
        let err = train(extra);
        assert!(
            err.contains(&format!(
                "run folder {} is in use by another running semisam process",
                live.root().display()
            )),
            "train {extra:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(live.root().join("log.jsonl")).unwrap(),
        "{}\n",
        "a refused writer touched the live run"
    );
    drop(live);
    // Released (as when the process dies): the same name is an ordinary existing folder.
    let err = train(&[]);
    assert!(err.contains("already exists: pass --overwrite"), "{err}");
}

#[test]
fn a_train_that_fails_validation_leaves_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let attempt = |config: &Path| {
        let err = fails(&train_args(config, &runs, "bad", &[]));
        assert!(!runs.join("bad").exists(), "a run folder was left: {err}");
        err
    };

    // A NaN voxel in the second case's image.
    let nan_data = dir.path().join("nan");
    demo_subset(&nan_data, 3, |index, image| {
        if index == 1 {
            image.data[[3, 4, 5]] = f32::NAN;
        }
    });
    let config = dir.path().join("nan.toml");
    std::fs::write(&config, tiny_config(&nan_data, 2, 0, "")).unwrap();
    let err = attempt(&config);
    let bad_image = image_path(&nan_data, &demo_ids(2)[1]);
    assert!(err.contains(text(&bad_image)), "{err}");

    // A splits file without labeled cases.
    let good_data = dir.path().join("good");
    demo_subset(&good_data, 3, |_, _| {});
    let ids = demo_ids(3);
    let splits_file = dir.path().join("no_labeled.json");
    let splits = serde_json::json!({
        "labeled": [], "unlabeled": ids, "validation": [], "test": [], "seed": 1
    });
    std::fs::write(&splits_file, splits.to_string()).unwrap();
    let config = dir.path().join("splits.toml");
    let text_config = tiny_config(&good_data, 2, 0, "").replace(
        "labeled = 2",
        &format!("labeled = 2\nsplits_file = {splits_file:?}"),
    );
    std::fs::write(&config, text_config).unwrap();
    let err = attempt(&config);
    assert!(
        err.contains(text(&splits_file)) && err.contains("the `labeled` list is empty"),
        "{err}"
    );

    // Generalist weights that do not exist.
    let missing = dir.path().join("no_such_weights.pth");
    let sam = format!("[sam]\ngeneralist = \"litemedsam\"\nweights = {missing:?}\n");
    let config = dir.path().join("sam.toml");
    std::fs::write(&config, tiny_config(&good_data, 2, 0, &sam)).unwrap();
    let err = attempt(&config);
    assert!(err.contains(text(&missing)), "{err}");
    assert!(!runs.exists(), "the runs folder itself was created");
}

/// Spawn `semisam args` with its stderr captured.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_semisam"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the semisam binary starts")
}

fn logged_iterations(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Wait until the run has logged more than `after` iterations, then Ctrl-C it; returns its exit
/// code and stderr.
fn interrupt(mut child: Child, run: &Path, after: usize) -> (Option<i32>, String) {
    let start = Instant::now();
    while logged_iterations(run) <= after {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("train ended ({status}) before it could be interrupted:\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no iteration logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: sends a signal to our own child process, which is still running.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn ctrl_c_exits_130_with_the_full_resume_command_and_resume_cleans_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 1_000_000);
    let runs = dir.path().join("my runs");
    let run = runs.join("sig");
    let args = train_args(&config, &runs, "sig", &["--set", "training.lr=0.02"]);
    let (code, err) = interrupt(spawn(&args), &run, 0);
    assert_eq!(code, Some(130), "{err}");
    let expected = format!(
        "continue with: semisam train --config {} --runs-dir '{}' --name sig --set training.lr=0.02 --resume --no-progress",
        config.display(),
        runs.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(run.join("checkpoints/last.ckpt").is_file());

    // A checkpoint write killed half-way leaves its temporary file; resuming removes it.
    let stale = run.join("checkpoints/.last.ckpt.99999.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let done = logged_iterations(&run);
    let mut resume = args.to_vec();
    resume.push("--resume");
    let (code, err) = interrupt(spawn(&resume), &run, done);
    assert_eq!(code, Some(130), "{err}");
    assert!(!stale.exists(), "{err}");
    assert!(
        err.contains(&format!("removed {}", stale.display())),
        "{err}"
    );
}

#[test]
fn resuming_a_run_killed_before_its_first_checkpoint_says_how_to_restart_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2);
    let runs = dir.path().join("runs");
    let early = RunDir::create(&runs, "early", false).unwrap();
    Splits {
        labeled: vec!["a".into()],
        unlabeled: vec![],
        validation: vec![],
        test: vec![],
        seed: 1,
        label_free: vec![],
        cross_validation: None,
    }
    .save(early.splits_path())
    .unwrap();
    drop(early);
    let err = fails(&train_args(&config, &runs, "early", &["--resume"]));
    let restart = format!(
        "start it again with: semisam train --config {} --runs-dir {} --name early --overwrite",
        config.display(),
        runs.display()
    );
    assert!(
        err.contains("the run stopped before its first checkpoint") && err.contains(&restart),
        "{err}"
    );
    // And the printed command works.
    let out = succeeds(&train_args(&config, &runs, "early", &["--overwrite"]));
    assert!(out.contains("finished 2 iterations"), "{out}");
    assert!(
        semisam(&["report", text(&runs.join("early"))])
            .status
            .success()
    );

    // A finished run without its last.ckpt is not offered --overwrite, which would erase it.
    std::fs::remove_file(runs.join("early/checkpoints/last.ckpt")).unwrap();
    let err = fails(&train_args(&config, &runs, "early", &["--resume"]));
    assert!(
        err.contains("checkpoints/last.ckpt, the checkpoint a run resumes from, is missing or not a file, but the folder holds checkpoints/final.ckpt")
            && !err.contains("--overwrite"),
        "{err}"
    );
    assert!(runs.join("early/checkpoints/final.ckpt").is_file());
}

/// A three-case dataset (the last validating) and a configuration of `iterations` that
/// validates after every iteration.
fn validating_setup(dir: &Path, iterations: usize) -> std::path::PathBuf {
    let dataset = dir.join("data");
    demo_subset(&dataset, 3, |_, _| {});
    let config = dir.join("tiny.toml");
    let text = tiny_config(&dataset, iterations, 1, "").replace("every = 0", "every = 1");
    std::fs::write(&config, text).unwrap();
    config
}

fn validation_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("validation ") && l.contains(": Dice Anterior "))
        .collect()
}

#[test]
fn validations_reach_the_terminal_train_log_log_csv_and_curves_while_training() {
    let dir = tempfile::tempdir().unwrap();
    let config = validating_setup(dir.path(), 1_000_000);
    let runs = dir.path().join("runs");
    let run = runs.join("live");
    let args = train_args(&config, &runs, "live", &[]);
    let (code, err) = interrupt(spawn(&args), &run, 2);
    assert_eq!(code, Some(130), "{err}");
    // Each validation is one line with the dataset's class names, the mean and the best.
    let shown = validation_lines(&err);
    assert!(!shown.is_empty(), "{err}");
    assert!(
        shown[0].starts_with("validation 1/1000000: Dice Anterior ")
            && shown[0].contains(", Posterior ")
            && shown[0].contains(", mean ")
            && shown[0].ends_with(" at 1)"),
        "{err}"
    );
    // train.log holds the same lines (with time and level).
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert_eq!(validation_lines(&log).len(), shown.len(), "{log}");
    assert!(log.contains("INFO run folder: "), "{log}");
    // curves.png was drawn by the validations (an interrupted run writes no report), with its
    // fourth panel, the learning rate.
    let curves = image::open(run.join("curves.png")).unwrap().to_rgb8();
    assert_eq!(curves.dimensions(), semisam::reports::curves::CURVES_SIZE);
    let lr_panel = curves.height() * 3 / semisam::reports::curves::CURVES_PANELS;
    assert!(
        curves
            .enumerate_pixels()
            .any(|(_, y, p)| y > lr_panel && p.0 == [0, 114, 178]),
        "no learning-rate line"
    );
    // log.csv has the validation rows.
    let table = std::fs::read_to_string(run.join("log.csv")).unwrap();
    assert!(table.starts_with("step,kind,lr,"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("1,validation,")),
        "{table}"
    );

    // Resumed with --quiet: no information on the terminal, but how to continue is still
    // said; train.log is appended to, and no row of log.csv appears twice.
    let done = logged_iterations(&run);
    let mut resume = args.to_vec();
    resume.extend(["--resume", "--quiet"]);
    let (code, err) = interrupt(spawn(&resume), &run, done);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        !err.contains("run folder:") && validation_lines(&err).is_empty(),
        "{err}"
    );
    assert!(err.contains("warning: interrupted after "), "{err}");
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert_eq!(log.matches("INFO run folder: ").count(), 2, "{log}");
    let table = std::fs::read_to_string(run.join("log.csv")).unwrap();
    let mut keys: Vec<(&str, &str)> = table
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split(',');
            (cells.next().unwrap(), cells.next().unwrap())
        })
        .collect();
    let rows = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), rows, "{table}");
}

#[test]
fn quiet_and_verbose_runs_and_what_the_run_folder_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = validating_setup(dir.path(), 2);
    let runs = dir.path().join("runs");
    // --quiet: a successful run prints nothing at all on stderr.
    let quiet = succeeds(&train_args(&config, &runs, "quiet", &["--quiet"]));
    assert_eq!(quiet, "", "--quiet printed information");
    let log = std::fs::read_to_string(runs.join("quiet/train.log")).unwrap();
    assert!(log.contains("finished 2 iterations"), "{log}");
    // --verbose adds each iteration's loss.
    let verbose = succeeds(&train_args(&config, &runs, "verbose", &["--verbose"]));
    assert!(verbose.contains("debug: iteration 2/2: loss "), "{verbose}");
    assert!(verbose.contains("finished 2 iterations"), "{verbose}");
    assert_eq!(validation_lines(&verbose).len(), 2, "{verbose}");

    // run.json: how the run was made.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("quiet/run.json")).unwrap())
            .unwrap();
    let command: Vec<&str> = info["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(&command[1..3], ["train", "--config"]);
    assert!(command.contains(&"--quiet"));
    assert_eq!(info["semisam_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        info["git_commit"].is_null() || info["git_commit"].is_string(),
        "{info}"
    );
    assert_eq!(info["backend"], "flex");
    assert!(
        ["avx512", "avx2", "generic"].contains(&info["kernels"].as_str().unwrap()),
        "{info}"
    );
    assert!(info["cpu_features"].is_array(), "{info}");

    // The overlay of the validation case: one colour per class, both classes of its reference.
    let overlays = runs.join("quiet/overlays");
    let id = &demo_ids(3)[2];
    let picture = image::open(overlays.join(format!("{id}.png")))
        .unwrap()
        .to_rgb8();
    for class in [1, 2] {
        let color = semisam::reports::slices::class_color(class);
        let pixels = picture.pixels().filter(|p| p.0 == color).count();
        // More than the legend's swatch (26 x 14 pixels): contours in the panels.
        assert!(pixels > 400, "class {class}: {pixels} pixels of {color:?}");
    }
    assert_ne!(
        semisam::reports::slices::class_color(1),
        semisam::reports::slices::class_color(2)
    );
}

/// A patch many times the images' size would train on padding and exhaust the memory: refused
/// with the largest image's size before a run folder exists.
#[test]
fn a_patch_far_larger_than_every_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 2);
    let runs = dir.path().join("runs");
    let err = fails(&train_args(
        &config,
        &runs,
        "huge",
        &["--set", "training.patch=[512, 512, 512]"],
    ));
    assert!(
        err.contains("training.patch [512, 512, 512] is more than twice the largest training image along axis 0 ("),
        "{err}"
    );
    assert!(!runs.join("huge").exists());
}

/// Labels that teach less than the configuration assumes are named before training: a labeled
/// case without foreground, and classes of `num_classes` that no label holds.
#[test]
fn labels_without_foreground_or_without_a_configured_class_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), 1);
    let dataset = dir.path().join("data");
    // the first case, one of the two labeled ones, loses its foreground
    for id in &demo_ids(1) {
        let path = label_path(&dataset, id);
        let mut label = semisam::data::read_label(&path).unwrap();
        label.data.fill(0);
        semisam::data::write_label(&label, &path).unwrap();
    }
    let runs = dir.path().join("runs");
    let stderr = succeeds(&train_args(
        &config,
        &runs,
        "warned",
        &["--set", "network.num_classes=5"],
    ));
    assert!(
        stderr.contains("its label holds no foreground, so it teaches background only"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "network.num_classes = 5, but no labeled or validation case holds class(es) 3, 4:"
        ),
        "{stderr}"
    );
}
