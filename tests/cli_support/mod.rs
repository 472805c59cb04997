//! Shared by the command-line tests: the `semisam` binary, small MSD datasets made of real NIfTI
//! cases of the embedded Hippocampus demo, and a tiny training configuration.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use semisam::data::{Volume, read_image, read_label, write_image, write_label};

pub fn demo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/hippocampus")
}

/// The ids of the demo's first `n` training cases, in dataset.json order.
pub fn demo_ids(n: usize) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo_root().join("dataset.json")).unwrap())
            .unwrap();
    json["training"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .map(|entry| {
            let image = entry["image"].as_str().unwrap();
            image
                .rsplit('/')
                .next()
                .unwrap()
                .trim_end_matches(".nii.gz")
                .to_owned()
        })
        .collect()
}

pub fn image_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!("imagesTr/{id}.nii.gz"))
}

pub fn label_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!("labelsTr/{id}.nii.gz"))
}

/// An MSD dataset in `root` with the demo's first `n` cases, each image passed through `edit`
/// (by case index) before it is written.
pub fn demo_subset(root: &Path, n: usize, mut edit: impl FnMut(usize, &mut Volume<f32>)) {
    let ids = demo_ids(n);
    let mut training = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let mut image = read_image(image_path(&demo_root(), id)).unwrap();
        edit(index, &mut image);
        let label = read_label(label_path(&demo_root(), id)).unwrap();
        std::fs::create_dir_all(root.join("imagesTr")).unwrap();
        std::fs::create_dir_all(root.join("labelsTr")).unwrap();
        write_image(&image, image_path(root, id)).unwrap();
        write_label(&label, label_path(root, id)).unwrap();
        training.push(serde_json::json!({
            "image": format!("./imagesTr/{id}.nii.gz"),
            "label": format!("./labelsTr/{id}.nii.gz"),
        }));
    }
    let json = serde_json::json!({
        "name": "hippocampus subset",
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "training": training,
        "test": [],
    });
    std::fs::write(root.join("dataset.json"), json.to_string()).unwrap();
}

/// A supervised V-Net small enough that an iteration takes a fraction of a second; `extra` is
/// appended (more sections, e.g. `[sam]`).
pub fn tiny_config(dataset: &Path, iterations: usize, validation: usize, extra: &str) -> String {
    format!(
        r#"
[data]
root = {dataset:?}
labeled = 2
validation = {validation}

[network]
architecture = "v_net"
in_channels = 1
num_classes = 3
base_filters = 2
dropout = false

[framework]
kind = "supervised"

[training]
iterations = {iterations}
batch_size = 2
labeled_bs = 2
patch = [16, 16, 16]
lr = 0.01
seed = 3
checkpoint_every = 5

[validation]
every = 0
stride = [16, 16, 16]

[inference]
stride = [16, 16, 16]
{extra}
"#
    )
}

pub fn semisam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_semisam"))
        .args(args)
        .output()
        .expect("the semisam binary runs")
}

/// Runs `semisam args`, asserts it succeeded, returns its stderr.
pub fn succeeds(args: &[&str]) -> String {
    let out = semisam(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "semisam {args:?} failed:\n{stderr}");
    stderr
}

/// Runs `semisam args`, asserts it failed with exit status 1, returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = semisam(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "semisam {args:?} should fail with status 1:\n{stderr}"
    );
    stderr
}

pub fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `train --config CONFIG --runs-dir RUNS --name NAME --no-progress` followed by `extra`.
pub fn train_args<'a>(
    config: &'a Path,
    runs: &'a Path,
    name: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--config",
        text(config),
        "--runs-dir",
        text(runs),
        "--name",
        name,
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    args
}

/// `evaluate --pred PRED --ref REFERENCE --out OUT` followed by `extra`.
pub fn evaluate_args<'a>(
    pred: &'a Path,
    reference: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "evaluate",
        "--pred",
        text(pred),
        "--ref",
        text(reference),
        "--out",
        text(out),
    ];
    args.extend_from_slice(extra);
    args
}
