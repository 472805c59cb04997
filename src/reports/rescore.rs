//! Which cases a run is evaluated on, where their predictions are, and scoring the saved
//! predictions against the references again (the same metrics files as the end of training).

use std::path::PathBuf;

use super::{ReportError, RunContents};
use crate::data::{Dataset, Splits, read_label};
use crate::metrics::{CaseMetrics, ReportPaths, evaluate_pair, write_evaluation_report};
use crate::training::evaluate::evaluation_options;
use crate::training::run_dir::RunDir;

/// The summary file of `metrics/` (see `metrics::write_evaluation_report`).
pub const SUMMARY_FILE: &str = "summary.json";

/// The cases the final model is evaluated on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOut {
    /// `test` or `validation`.
    pub split: &'static str,
    pub ids: Vec<String>,
}

/// The test cases that have a reference, else the validation cases.
pub fn held_out_cases(dataset: &Dataset, splits: &Splits) -> HeldOut {
    let labeled_test: Vec<String> = splits
        .test
        .iter()
        .filter(|id| dataset.case(id).is_some_and(|c| c.label.is_some()))
        .cloned()
        .collect();
    if labeled_test.is_empty() {
        HeldOut {
            split: "validation",
            ids: splits.validation.clone(),
        }
    } else {
        HeldOut {
            split: "test",
            ids: labeled_test,
        }
    }
}

/// The saved prediction of case `id` (`predictions/<id>.<nii.gz|h5|npy>`), if any.
pub fn prediction_file(run: &RunDir, id: &str) -> Option<PathBuf> {
    ["nii.gz", "nii", "h5", "npy"]
        .iter()
        .map(|ext| run.predictions_dir().join(format!("{id}.{ext}")))
        .find(|p| p.is_file())
}

/// Score the saved predictions of the held-out cases and rewrite `metrics/`. `None` when the run
/// has no predictions (it did not finish); an error when only some held-out cases have one.
pub fn rescore(
    contents: &RunContents,
    held_out: &HeldOut,
) -> Result<Option<ReportPaths>, ReportError> {
    let run = &contents.run;
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for id in &held_out.ids {
        match prediction_file(run, id) {
            Some(file) => files.push((id.clone(), file)),
            None => missing.push(id.as_str()),
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    if let Some(missing) = missing.first() {
        return Err(ReportError::file(
            &run.predictions_dir(),
            format!(
                "no prediction of {} case {missing}: the final evaluation did not complete",
                held_out.split
            ),
        ));
    }
    let classes: Vec<u8> = (1..contents.config.network.num_classes as u8).collect();
    let options = evaluation_options(&contents.config);
    let mut results = Vec::with_capacity(files.len());
    for (id, file) in files {
        let case = contents.dataset.case(&id).ok_or_else(|| {
            ReportError::file(
                &contents.dataset.root,
                format!("case {id} of the run is not in the dataset"),
            )
        })?;
        let reference = contents.dataset.load_case(case)?.label.ok_or_else(|| {
            ReportError::file(&case.image, format!("case {id} has no reference label"))
        })?;
        let prediction = read_label(&file)?;
        let mut metrics = evaluate_pair(&prediction, &reference, &classes, options)?;
        metrics.case_id = id;
        results.push(metrics);
    }
    check_recorded_scores(run, &contents.dataset.root, &results)?;
    Ok(Some(write_evaluation_report(
        &run.metrics_dir(),
        &results,
        &options,
    )?))
}

/// One row of `metrics/per_case.csv` (the other columns are not needed).
#[derive(serde::Deserialize)]
struct RecordedScore {
    case_id: String,
    class: u8,
    dice: f64,
}

/// The saved predictions are the ones the end of training scored: re-scored against the same
/// references they give the same Dice, to the bit. A case that scores otherwise has other
/// references (another dataset with the same case IDs under `--data-root`, or edited labels),
/// and replacing the recorded metrics with those scores would pass them off as the run's.
fn check_recorded_scores(
    run: &RunDir,
    dataset_root: &std::path::Path,
    results: &[CaseMetrics],
) -> Result<(), ReportError> {
    let recorded_path = run.metrics_dir().join("per_case.csv");
    let Ok(mut reader) = csv::Reader::from_path(&recorded_path) else {
        return Ok(());
    };
    let mut recorded = std::collections::HashMap::new();
    for row in reader.deserialize::<RecordedScore>() {
        match row {
            Ok(row) => recorded.insert((row.case_id, row.class), row.dice),
            // A damaged file is what re-scoring replaces; it cannot vouch for the references.
            Err(e) => {
                tracing::warn!(
                    "{}: unreadable ({e}); the re-scored metrics replace it unchecked",
                    recorded_path.display()
                );
                return Ok(());
            }
        };
    }
    for case in results {
        for class in &case.classes {
            let key = (case.case_id.clone(), class.class);
            let Some(&before) = recorded.get(&key) else {
                continue;
            };
            let now = class.metrics.dice;
            let same = (before.is_nan() && now.is_nan()) || (before - now).abs() <= 1e-9;
            if !same {
                return Err(ReportError::file(
                    dataset_root,
                    format!(
                        "case {} class {} scores Dice {now:.4} against this dataset's reference but {before:.4} when the run was scored ({}): these are not the references the run was evaluated on; point --data-root at the run's dataset, or delete {} to score against these references anyway",
                        case.case_id,
                        class.class,
                        recorded_path.display(),
                        run.metrics_dir().display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Case, Layout};

    fn case(id: &str, labeled: bool) -> Case {
        Case {
            id: id.into(),
            image: format!("{id}.nii.gz").into(),
            label: labeled.then(|| format!("{id}_label.nii.gz").into()),
        }
    }

    #[test]
    fn test_cases_with_references_else_validation() {
        let dataset = Dataset {
            root: "root".into(),
            layout: Layout::Msd,
            cases: vec![case("v", true), case("t1", false), case("t2", true)],
            labels: Default::default(),
            training_ids: vec!["v".into()],
            unlabeled_ids: vec![],
            test_ids: vec!["t1".into(), "t2".into()],
        };
        let mut splits = Splits {
            labeled: vec![],
            unlabeled: vec![],
            validation: vec!["v".into()],
            test: vec!["t1".into(), "t2".into()],
            seed: 0,
            label_free: vec![],
            cross_validation: None,
        };
        assert_eq!(
            held_out_cases(&dataset, &splits),
            HeldOut {
                split: "test",
                ids: vec!["t2".into()]
            }
        );
        splits.test = vec!["t1".into()];
        assert_eq!(
            held_out_cases(&dataset, &splits),
            HeldOut {
                split: "validation",
                ids: vec!["v".into()]
            }
        );
    }
}
