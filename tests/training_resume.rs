//! An interrupted-and-resumed run must end with exactly the weights of an uninterrupted one.

use std::sync::Mutex;

mod common;
mod module_values;

use module_values::float_values;
use ndarray::Array3;
use semisam::data::batches::{LabeledCase, TrainingPool, UnlabeledCase};
use semisam::training::checkpoint::Checkpoint;
use semisam::training::run_dir::RunDir;
use semisam::training::validation::EvalCase;
use semisam::training::{
    RunConfig, TrainOptions, TrainOutcome, TrainingData, load_checkpoint_model, train,
};

/// The backend's seed is global: runs in this file must not interleave.
static SERIAL: Mutex<()> = Mutex::new(());

fn config(framework: &str) -> RunConfig {
    common::tiny_run()
        .set("framework", "kind", format!("{framework:?}"))
        .set("training", "iterations", 6)
        .set("training", "checkpoint_every", 2)
        .set("training", "seed", 11)
        .build()
}

/// A bright sphere (label 1) on a noisy background, different per case.
fn case(n: usize) -> (Array3<f32>, Array3<u8>) {
    let shape = [20, 18, 17];
    let center = [8.0 + n as f32, 9.0, 8.0 - 0.5 * n as f32];
    let label = Array3::from_shape_fn(shape, |(i, j, k)| {
        let d2 = (i as f32 - center[0]).powi(2)
            + (j as f32 - center[1]).powi(2)
            + (k as f32 - center[2]).powi(2);
        u8::from(d2 < 25.0)
    });
    let image = Array3::from_shape_fn(shape, |(i, j, k)| {
        let noise = (((i * 31 + j * 17 + k * 7 + n * 13) % 23) as f32 / 23.0 - 0.5) * 0.6;
        f32::from(label[[i, j, k]]) * 2.0 - 1.0 + noise
    });
    (image, label)
}

fn data() -> TrainingData {
    let labeled = (0..2).map(|n| {
        let (image, label) = case(n);
        LabeledCase {
            id: format!("L{n}"),
            image,
            label,
        }
    });
    let unlabeled = (2..5).map(|n| UnlabeledCase {
        id: format!("U{n}"),
        image: case(n).0,
    });
    let (image, label) = case(5);
    TrainingData {
        pool: TrainingPool {
            labeled: labeled.collect(),
            unlabeled: unlabeled.collect(),
        },
        validation: vec![EvalCase {
            id: "V5".into(),
            image,
            label,
        }],
        oracle_labels: vec![],
    }
}

/// The rows of log.csv without its timing columns (`elapsed_s`, `iteration_s`, `validation_s`).
fn csv_without_times(run: &RunDir) -> Vec<String> {
    let text = std::fs::read_to_string(run.log_csv_path()).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    text.lines()
        .map(|l| {
            let cells: Vec<&str> = l
                .split(',')
                .zip(&header)
                .filter(|(_, name)| !name.ends_with("_s"))
                .map(|(cell, _)| cell)
                .collect();
            cells.join(",")
        })
        .collect()
}

fn check_resume_is_bit_identical(framework: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = config(framework);
    let data = data();

    let straight = RunDir::create(dir.path(), "straight", false).unwrap();
    let outcome = train(&config, &data, &straight, &TrainOptions::default()).unwrap();
    assert!(
        matches!(outcome, TrainOutcome::Completed { steps: 6, .. }),
        "{outcome:?}"
    );

    // Interrupted after iteration 3 (between the periodic checkpoints at 2 and 4).
    let resumed = RunDir::create(dir.path(), "resumed", false).unwrap();
    let stop = TrainOptions {
        stop_at_step: Some(3),
        ..TrainOptions::default()
    };
    assert_eq!(
        train(&config, &data, &resumed, &stop).unwrap(),
        TrainOutcome::Interrupted { steps: 3 }
    );
    assert_eq!(
        Checkpoint::load(&resumed.checkpoint_path("last"))
            .unwrap()
            .header
            .step,
        3
    );
    assert!(!resumed.checkpoint_path("final").exists());
    // The run folder's configuration, damaged meanwhile, is restored from the checkpoint's.
    std::fs::write(resumed.config_path(), "[data\ngarbage").unwrap();
    let resume = TrainOptions {
        resume: true,
        ..TrainOptions::default()
    };
    assert_eq!(train(&config, &data, &resumed, &resume).unwrap(), outcome);
    assert_eq!(
        RunConfig::load(&resumed.config_path(), &[]).unwrap(),
        config
    );

    for name in ["final", "last"] {
        let a = Checkpoint::load(&straight.checkpoint_path(name)).unwrap();
        let b = Checkpoint::load(&resumed.checkpoint_path(name)).unwrap();
        assert_eq!(a.header.step, 6);
        assert_eq!(a.header.sampler, b.header.sampler);
        assert_eq!(a.header.model_rng, b.header.model_rng);
    }
    let (_, student_a) = load_checkpoint_model(&straight.checkpoint_path("final")).unwrap();
    let (_, student_b) = load_checkpoint_model(&resumed.checkpoint_path("final")).unwrap();
    let (wa, wb) = (float_values(&student_a), float_values(&student_b));
    assert_eq!(wa.len(), wb.len());
    assert!(wa == wb, "student weights differ after resume");
    // The weights did move: the final student differs from a freshly initialised network.
    let init = config
        .network
        .init(&semisam::backend::default_device())
        .unwrap();
    assert!(float_values(&init) != wa);

    // The teacher (if any) and the logs match too (apart from timings).
    let teacher = |run: &RunDir| {
        Checkpoint::load(&run.checkpoint_path("final"))
            .unwrap()
            .section("teacher")
            .map(<[u8]>::len)
    };
    assert_eq!(teacher(&straight), teacher(&resumed));
    assert_eq!(csv_without_times(&straight), csv_without_times(&resumed));
    assert_eq!(
        csv_without_times(&straight).len(),
        9,
        "header + 6 iterations + 2 validations"
    );
    let validations = std::fs::read_to_string(straight.log_jsonl_path())
        .unwrap()
        .matches("\"validation\"")
        .count();
    assert_eq!(validations, 2, "validation at steps 3 and 6");
}

#[test]
fn mean_teacher_resume_is_bit_identical() {
    check_resume_is_bit_identical("mean_teacher");
}

#[test]
fn ua_mt_resume_is_bit_identical() {
    check_resume_is_bit_identical("ua_mt");
}

#[test]
fn resume_with_another_configuration_is_refused() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = config("supervised");
    let run = RunDir::create(dir.path(), "r", false).unwrap();
    let stop = TrainOptions {
        stop_at_step: Some(1),
        ..TrainOptions::default()
    };
    train(&config, &data(), &run, &stop).unwrap();
    let mut changed = config.clone();
    changed.training.lr = 0.1;
    let resume = TrainOptions {
        resume: true,
        ..TrainOptions::default()
    };
    let err = train(&changed, &data(), &run, &resume)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "last.ckpt: cannot resume: the configuration differs from the one the run was \
             started with (training.lr: {}, 0.1, as started and as given now)",
            toml::Value::Float(config.training.lr)
        )),
        "{err}"
    );
}
