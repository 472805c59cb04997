//! `semisam evaluate` on real NIfTI folders (classes, missing predictions, spacing forms) and
//! `semisam report` on a run whose predictions are gone or whose folder does not exist.

mod cli_support;

use std::path::Path;

use cli_support::{demo_subset, evaluate_args, fails, succeeds, text, tiny_config, train_args};
use ndarray::{Array3, s};
use semisam::data::{Geometry, SourceFormat, Volume, write_label};

const SHAPE: [usize; 3] = [10, 10, 10];

fn write(dir: &Path, id: &str, data: Array3<u8>) {
    let spacing = 2.0;
    let mut geometry = Geometry::unknown();
    geometry.spacing = Some([spacing; 3]);
    for d in 0..3 {
        geometry.affine[d][d] = spacing;
    }
    let path = dir.join(format!("{id}.nii.gz"));
    let volume = Volume {
        data,
        geometry,
        source: SourceFormat::Nifti,
        path: path.clone(),
    };
    write_label(&volume, &path).unwrap();
}

fn cube(mut data: Array3<u8>, from: usize, to: usize, value: u8) -> Array3<u8> {
    data.slice_mut(s![from..to, from..to, from..to]).fill(value);
    data
}

/// References: `a` with classes 1 and 2, `b` with class 1 only, `c` all background.
/// Predictions: `a` exact, `b` exact plus a false class 2, `c` a false class 1.
fn write_folders(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (pred, reference) = (root.join("pred"), root.join("ref"));
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::create_dir_all(&reference).unwrap();
    let zeros = || Array3::<u8>::zeros(SHAPE);
    let a = cube(cube(zeros(), 1, 4, 1), 6, 9, 2);
    let b = cube(zeros(), 2, 5, 1);
    write(&reference, "a", a.clone());
    write(&pred, "a", a);
    write(&reference, "b", b.clone());
    write(&pred, "b", cube(b, 6, 8, 2));
    write(&reference, "c", zeros());
    write(&pred, "c", cube(zeros(), 4, 6, 1));
    (pred, reference)
}

/// `(case, class) -> (dice, hd95)` from per_case.csv.
fn per_case(out: &Path) -> Vec<(String, u8, f64, f64)> {
    let text = std::fs::read_to_string(out.join("per_case.csv")).unwrap();
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_owned(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
                r[4].parse().unwrap(),
            )
        })
        .collect()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn every_class_of_the_reference_folder_is_scored_on_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, reference) = write_folders(dir.path());
    let out = dir.path().join("out");
    let args = evaluate_args(&pred, &reference, &out, &[]);
    succeeds(&args);
    let rows = per_case(&out);
    let dice: Vec<(&str, u8, f64)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    assert_eq!(
        dice,
        [
            ("a", 1, 1.0),
            ("a", 2, 1.0),
            ("b", 1, 1.0),
            // A false positive of a class the case's reference lacks scores 0 ...
            ("b", 2, 0.0),
            // ... and an all-background reference is scored, not an abort.
            ("c", 1, 0.0),
            ("c", 2, 1.0),
        ]
    );
    let summary = summary(&out);
    assert_eq!(summary["cases"], 3);
    for class in summary["classes"].as_array().unwrap() {
        assert_eq!(class["cases"], 3, "{class}");
    }
    let class_2 = &summary["classes"][1];
    assert!((class_2["dice"]["mean"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);

    // --classes picks; values outside it are named.
    let only_2 = dir.path().join("only_2");
    let err = succeeds(&evaluate_args(
        &pred,
        &reference,
        &only_2,
        &["--classes", "2"],
    ));
    assert!(
        err.contains("predictions hold label value(s) [1] that are not scored"),
        "{err}"
    );
    assert_eq!(per_case(&only_2).len(), 3);

    // An image passed as a prediction: its many values are summarised, and the case named.
    write(
        &pred,
        "a",
        Array3::from_shape_fn(SHAPE, |(i, j, _)| (i * 10 + j) as u8),
    );
    let err = succeeds(&evaluate_args(
        &pred,
        &reference,
        &dir.path().join("image"),
        &[],
    ));
    assert!(
        err.contains("predictions hold label value(s) [3, 4, 5, 6, 7, 8, 9, 10] and 89 more that are not scored")
            && err.contains("the prediction of case a holds 100 distinct values: is it an image rather than a label map?"),
        "{err}"
    );

    // Nothing to score: every reference is background and no class is named.
    std::fs::remove_file(reference.join("a.nii.gz")).unwrap();
    std::fs::remove_file(reference.join("b.nii.gz")).unwrap();
    std::fs::remove_file(pred.join("a.nii.gz")).unwrap();
    std::fs::remove_file(pred.join("b.nii.gz")).unwrap();
    let err = fails(&args);
    assert!(
        err.contains(
            "no reference holds a foreground label; name the classes to score with --classes"
        ),
        "{err}"
    );
}

/// A prediction of the right shape and spacing but written on another grid (its origin moved)
/// would be scored voxel by voxel against the wrong anatomy; a class named twice would score
/// every case twice. Both are refused before anything is written.
#[test]
fn a_prediction_on_another_grid_or_a_class_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, reference) = write_folders(dir.path());
    let out = dir.path().join("out");
    let err = fails(&evaluate_args(
        &pred,
        &reference,
        &out,
        &["--classes", "1,1"],
    ));
    assert!(err.contains("--classes names class 1 twice"), "{err}");

    // predict writes its summary.json beside the predictions; an evaluation report written into
    // that folder (under any spelling of it) would replace it.
    std::fs::write(pred.join("summary.json"), "{}").unwrap();
    let same_folder = pred.join("..").join(pred.file_name().unwrap());
    let err = fails(&evaluate_args(&pred, &reference, &same_folder, &[]));
    assert!(
        err.contains(&format!(
            "--out {} is the --pred folder {}",
            same_folder.display(),
            std::fs::canonicalize(&pred).unwrap().display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(pred.join("summary.json")).unwrap(),
        "{}"
    );
    let err = fails(&evaluate_args(&pred, &reference, &reference, &[]));
    assert!(err.contains("is the --ref folder"), "{err}");

    let moved = pred.join("b.nii.gz");
    let mut volume = semisam::data::read_label(&moved).unwrap();
    volume.geometry.affine[0][3] += 30.0;
    volume.geometry.nifti_header = None;
    write_label(&volume, &moved).unwrap();
    let err = fails(&evaluate_args(&pred, &reference, &out, &[]));
    assert!(
        err.contains(&format!(
            "prediction {} does not lie on the grid of reference {} (affine entry [0][3] is 30 vs 0): it was written for another image",
            moved.display(),
            reference.join("b.nii.gz").display()
        )),
        "{err}"
    );
    assert!(!out.exists());
    // A spacing given on the command line overrides the files' geometry, as it says.
    succeeds(&evaluate_args(
        &pred,
        &reference,
        &out,
        &["--spacing", "2,2,2"],
    ));
}

#[test]
fn a_reference_without_prediction_is_an_error_or_scored_empty_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, reference) = write_folders(dir.path());
    std::fs::remove_file(pred.join("b.nii.gz")).unwrap();
    let out = dir.path().join("out");
    let err = fails(&evaluate_args(&pred, &reference, &out, &[]));
    assert!(
        err.contains(&format!(
            "{}: no prediction for reference case(s) [\"b\"]",
            pred.display()
        )) && err.contains("--missing-as-empty"),
        "{err}"
    );
    assert!(!out.exists());
    let err = succeeds(&evaluate_args(
        &pred,
        &reference,
        &out,
        &["--missing-as-empty"],
    ));
    assert!(
        err.contains("scored as empty predictions: [\"b\"]"),
        "{err}"
    );
    let b: Vec<(u8, f64)> = per_case(&out)
        .into_iter()
        .filter(|r| r.0 == "b")
        .map(|r| (r.1, r.2))
        .collect();
    assert_eq!(b, [(1, 0.0), (2, 1.0)]);
    assert_eq!(summary(&out)["cases"], 3);
    assert_eq!(
        summary(&out)["missing_predictions"],
        serde_json::json!(["b"])
    );
    let markdown = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        markdown.starts_with("# Evaluation\n\n3 cases;"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- No prediction file, scored as an empty prediction (1 cases): b"),
        "{markdown}"
    );
}

#[test]
fn spacing_is_accepted_comma_separated_and_as_three_values() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, reference) = write_folders(dir.path());
    let run = |name: &str, spacing: &[&str]| {
        let out = dir.path().join(name);
        let mut extra = vec!["--spacing"];
        extra.extend_from_slice(spacing);
        let stderr = succeeds(&evaluate_args(&pred, &reference, &out, &extra));
        // The files store 2 mm: the override is announced, not applied silently.
        assert!(
            stderr.contains(
                "--spacing 0.5 x 0.5 x 0.5 mm replaces the spacing stored in 3 reference file(s), e.g. 2 x 2 x 2 mm in"
            ),
            "{stderr}"
        );
        out
    };
    let commas = run("commas", &["0.5,0.5,0.5"]);
    let separate = run("separate", &["0.5", "0.5", "0.5"]);
    let rows = per_case(&commas);
    assert_eq!(rows, per_case(&separate));
    // Case b's false class 2: the image diagonal at the given 0.5 mm, not the files' 2 mm.
    let diagonal = (3.0f64 * 25.0).sqrt();
    let b2 = rows.iter().find(|r| r.0 == "b" && r.1 == 2).unwrap();
    assert!((b2.3 - diagonal).abs() < 1e-9, "{b2:?}");
    let out = dir.path().join("two");
    let err = fails(&evaluate_args(
        &pred,
        &reference,
        &out,
        &["--spacing", "0.5,0.5"],
    ));
    assert!(err.contains("--spacing needs three values x,y,z"), "{err}");
}

#[test]
fn report_does_not_present_metrics_whose_predictions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("data");
    demo_subset(&dataset, 3, |_, _| {});
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, tiny_config(&dataset, 2, 1, "")).unwrap();
    let runs = dir.path().join("runs");
    succeeds(&train_args(&config, &runs, "done", &[]));
    let run = runs.join("done");
    let report = || std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report().contains("Mean ± standard deviation over 1 cases."));

    // Another dataset with the same case IDs (each held-out label replaced by the run's own
    // prediction, so every score moves) is not passed off as the run's references.
    let other = dir.path().join("other");
    demo_subset(&other, 3, |_, _| {});
    for entry in std::fs::read_dir(run.join("predictions")).unwrap() {
        let path = entry.unwrap().path();
        let id = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".nii.gz", "");
        std::fs::copy(&path, other.join(format!("labelsTr/{id}.nii.gz"))).unwrap();
    }
    let recorded = std::fs::read(run.join("metrics/per_case.csv")).unwrap();
    let err = fails(&["report", text(&run), "--data-root", text(&other)]);
    assert!(
        err.contains(&format!("{}: case hippocampus_", other.display()))
            && err.contains("these are not the references the run was evaluated on"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(run.join("metrics/per_case.csv")).unwrap(),
        recorded
    );
    succeeds(&["report", text(&run), "--data-root", text(&dataset)]);
    assert_eq!(
        std::fs::read(run.join("metrics/per_case.csv")).unwrap(),
        recorded
    );
    // A damaged record cannot vouch for anything: re-scoring replaces it, with a warning.
    std::fs::write(
        run.join("metrics/per_case.csv"),
        "case_id,class\nx,not a class\n",
    )
    .unwrap();
    let err = succeeds(&["report", text(&run)]);
    assert!(
        err.contains("the re-scored metrics replace it unchecked"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(run.join("metrics/per_case.csv")).unwrap(),
        recorded
    );

    for entry in std::fs::read_dir(run.join("predictions")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let err = succeeds(&["report", text(&run)]);
    assert!(
        err.contains(
            "the scores in metrics/ cannot be re-checked and are not shown as the final model's"
        ),
        "{err}"
    );
    let page = report();
    assert!(!page.contains("Mean ± standard deviation"), "{page}");
    assert!(
        page.contains("Not shown: [metrics/](metrics/) holds scores of an earlier evaluation"),
        "{page}"
    );

    let missing = dir.path().join("runs/never");
    let err = fails(&["report", text(&missing)]);
    assert!(
        err.contains(&format!("run folder {} does not exist", missing.display())),
        "{err}"
    );
}
