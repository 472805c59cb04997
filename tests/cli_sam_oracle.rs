//! `semisam sam-oracle` on a real case (a Hippocampus demo scan as NIfTI): one row per slicing
//! axis and, with several axes, per fusion, each with its coverage of the object.

mod cli_support;

use cli_support::{demo_subset, fails, semisam, succeeds, text, tiny_config, train_args};

/// The table's rows as (class, view, dice, dice where answered, coverage).
fn rows(stdout: &str) -> Vec<(String, String, f64, f64, f64)> {
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        "case\tclass\tdice\tslices\tseconds\tmodel_dice\tdice_answered\tmodel_dice_answered\tcoverage\tview"
    );
    lines
        .filter(|line| !line.starts_with("mean Dice"))
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 10, "{line}");
            let number = |i: usize| fields[i].parse::<f64>().unwrap();
            (
                fields[1].to_owned(),
                fields[9].to_owned(),
                number(2),
                number(6),
                number(8),
            )
        })
        .collect()
}

#[test]
fn each_axis_and_each_fusion_gets_a_row() {
    assert!(
        semisam::generalists::weights_cache::locate(
            &semisam::generalists::weights_cache::LITEMEDSAM
        )
        .is_ok(),
        "this test runs LiteMedSAM and needs its weights: run `semisam weights fetch` (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    demo_subset(&root, 1, |_, _| {});
    let embeddings = dir.path().join("embeddings");
    let oracle = |axes: &str| {
        let out = semisam(&[
            "sam-oracle",
            text(&root),
            "--axes",
            axes,
            // a third of the resolution: fewer slices to encode
            "--downsample",
            "3",
            "--embedding-dir",
            text(&embeddings),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        stdout
    };

    let stdout = oracle("0,1,2");
    let table = rows(&stdout);
    let views = ["axis 0", "axis 1", "axis 2", "mean±0", "mean±0.25", "vote"];
    for class in ["1", "2"] {
        let of_class: Vec<_> = table.iter().filter(|row| row.0 == class).collect();
        let names: Vec<&str> = of_class.iter().map(|row| row.1.as_str()).collect();
        assert_eq!(names, views, "{stdout}");
        for (_, view, dice, answered, coverage) in &of_class {
            assert!(
                (0.0..=1.0).contains(dice) && (0.0..=1.0).contains(answered),
                "{view}: {stdout}"
            );
            assert!((0.0..=1.0).contains(coverage), "{view}: {stdout}");
        }
        // The band leaves the mean's mask as it is and only takes voxels out of the answer.
        let (plain, banded) = (of_class[3], of_class[4]);
        assert_eq!(plain.2, banded.2, "{stdout}");
        assert!(banded.4 <= plain.4, "{stdout}");
        // Boxes from the ground truth reach the slices of its largest component on every axis.
        assert!(of_class[..3].iter().all(|row| row.4 > 0.5), "{stdout}");
    }
    let summaries = stdout
        .lines()
        .filter(|line| line.starts_with("mean Dice of ground-truth-prompted pseudo-labels ("))
        .count();
    assert_eq!(summaries, views.len(), "{stdout}");

    // One axis: its row only, from the stored embeddings.
    let stdout = oracle("1");
    let names: Vec<String> = rows(&stdout).into_iter().map(|row| row.1).collect();
    assert_eq!(names, ["axis 1", "axis 1"], "{stdout}");

    let out = semisam(&["sam-oracle", text(&root), "--axes", "0,3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("[sam] axis must be 0, 1 or 2, got 3"),
        "{stderr}"
    );
}

/// A setting of SAM's on a run without SAM is refused by `train` (it would turn SAM on with
/// default settings), while `sam-oracle` takes SAM's settings for such a run's checkpoint.
#[test]
fn sam_settings_turn_sam_on_only_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    demo_subset(&root, 3, |_, _| {});
    let config = dir.path().join("plain.toml");
    std::fs::write(&config, tiny_config(&root, 2, 0, "")).unwrap();
    let runs = dir.path().join("runs");
    let err = fails(&train_args(
        &config,
        &runs,
        "plain",
        &["--set", "sam.embedding_dir=\"emb\""],
    ));
    assert!(
        err.contains("\"sam.embedding_dir\": the configuration has no [sam] section")
            && err.contains("--set sam.generalist=litemedsam"),
        "{err}"
    );
    assert!(
        !runs.join("plain").exists(),
        "nothing is written on a refusal"
    );

    succeeds(&train_args(&config, &runs, "plain", &[]));
    let checkpoint = runs.join("plain").join("checkpoints").join("final.ckpt");
    let out = semisam(&[
        "sam-oracle",
        text(&root),
        "--limit",
        "1",
        "--checkpoint",
        text(&checkpoint),
        "--set",
        "sam.prompts.threshold=1.0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No probability exceeds 1: the override reached the prompts and nothing was prompted.
    let slices: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("mean Dice"))
        .map(|line| line.split('\t').nth(3).unwrap())
        .collect();
    assert!(
        !slices.is_empty() && slices.iter().all(|&n| n == "0"),
        "{stdout}"
    );
}
