//! The evaluation report over cases: per-case CSV, summary JSON and Markdown table, each written
//! atomically.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::MetricsError;
use super::binary::{EMPTY_MASK_POLICY, Hd95Convention, MaskMetrics};
use super::case::{CaseMetrics, DistanceUnit, EvaluationOptions, SpacingSource};
use super::statistics::{mean, population_std};
use crate::error::{Error, Result};
use crate::io_util::write_atomic;

const ASD_DEFINITION: &str =
    "medpy asd: mean distance from prediction surface voxels to the reference surface (directed)";
const ASSD_DEFINITION: &str = "medpy assd: mean of the pooled surface distances of both directions";
const STD_DEFINITION: &str = "population standard deviation over cases (ddof = 0)";

/// Mean ± standard deviation of one metric over cases.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricSummary {
    pub mean: f64,
    pub std: f64,
}

impl MetricSummary {
    fn of(values: &[f64]) -> Self {
        MetricSummary {
            mean: mean(values).unwrap_or(f64::NAN),
            std: population_std(values).unwrap_or(f64::NAN),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct ClassSummary {
    class: u8,
    cases: usize,
    empty_predictions: Vec<String>,
    empty_references: Vec<String>,
    dice: MetricSummary,
    jaccard: MetricSummary,
    hd95: MetricSummary,
    asd: MetricSummary,
    assd: MetricSummary,
}

#[derive(Debug, serde::Serialize)]
struct Summary<'a> {
    cases: usize,
    unit: DistanceUnit,
    spacing_source: SpacingSource,
    hd95_convention: Hd95Convention,
    hd95_definition: &'static str,
    asd_definition: &'static str,
    assd_definition: &'static str,
    empty_mask_policy: &'static str,
    std: &'static str,
    dice_and_jaccard: &'static str,
    /// Cases scored without a prediction file, as an empty prediction.
    missing_predictions: Vec<String>,
    classes: &'a [ClassSummary],
}

/// The files of a written report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    pub per_case_csv: PathBuf,
    pub summary_json: PathBuf,
    pub summary_markdown: PathBuf,
}

/// Writes `per_case.csv`, `summary.json` and `summary.md` into `dir` (created if missing).
///
/// The summary gives mean ± std per class and metric, the distance unit, the HD95 convention and
/// the empty-mask policy. A case whose `prediction` path is empty had no prediction file and was
/// scored as an empty prediction; the summary lists it. Errors: no cases, cases in different
/// units or computed with another HD95 convention than `options.hd95`, and write failures.
pub fn write_evaluation_report(
    dir: &Path,
    cases: &[CaseMetrics],
    options: &EvaluationOptions,
) -> Result<ReportPaths> {
    let invalid = |message: String| {
        Error::from(MetricsError::Report {
            dir: dir.to_path_buf(),
            message,
        })
    };
    let first = cases
        .first()
        .ok_or_else(|| invalid("no cases to report".into()))?;
    if let Some(other) = cases.iter().find(|c| c.unit != first.unit) {
        return Err(invalid(format!(
            "distances of case {} are in {} but case {} is in {}; use one spacing source for all cases",
            first.case_id,
            first.unit.symbol(),
            other.case_id,
            other.unit.symbol()
        )));
    }
    if let Some(other) = cases.iter().find(|c| c.hd95_convention != options.hd95) {
        return Err(invalid(format!(
            "case {} was evaluated with another HD95 convention",
            other.case_id
        )));
    }
    let classes = summarize(cases);
    let summary = Summary {
        cases: cases.len(),
        unit: first.unit,
        spacing_source: options.spacing,
        hd95_convention: options.hd95,
        hd95_definition: options.hd95.definition(),
        asd_definition: ASD_DEFINITION,
        assd_definition: ASSD_DEFINITION,
        empty_mask_policy: EMPTY_MASK_POLICY,
        std: STD_DEFINITION,
        dice_and_jaccard: "fractions in [0, 1]",
        missing_predictions: cases
            .iter()
            .filter(|c| c.prediction.as_os_str().is_empty())
            .map(|c| c.case_id.clone())
            .collect(),
        classes: &classes,
    };
    let paths = ReportPaths {
        per_case_csv: dir.join("per_case.csv"),
        summary_json: dir.join("summary.json"),
        summary_markdown: dir.join("summary.md"),
    };
    write_atomic(
        &paths.per_case_csv,
        &per_case_csv(cases).map_err(|e| invalid(format!("CSV: {e}")))?,
    )?;
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| invalid(format!("JSON: {e}")))?;
    write_atomic(&paths.summary_json, &json)?;
    write_atomic(&paths.summary_markdown, markdown(&summary).as_bytes())?;
    Ok(paths)
}

fn summarize(cases: &[CaseMetrics]) -> Vec<ClassSummary> {
    let mut by_class: BTreeMap<u8, Vec<(&str, &MaskMetrics)>> = BTreeMap::new();
    for case in cases {
        for class in &case.classes {
            by_class
                .entry(class.class)
                .or_default()
                .push((&case.case_id, &class.metrics));
        }
    }
    by_class
        .into_iter()
        .map(|(class, rows)| {
            let column = |pick: fn(&MaskMetrics) -> f64| {
                MetricSummary::of(&rows.iter().map(|(_, m)| pick(m)).collect::<Vec<_>>())
            };
            let ids_where = |pick: fn(&MaskMetrics) -> bool| {
                rows.iter()
                    .filter(|(_, m)| pick(m))
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>()
            };
            ClassSummary {
                class,
                cases: rows.len(),
                empty_predictions: ids_where(|m| m.prediction_empty),
                empty_references: ids_where(|m| m.reference_empty),
                dice: column(|m| m.dice),
                jaccard: column(|m| m.jaccard),
                hd95: column(|m| m.hd95),
                asd: column(|m| m.asd),
                assd: column(|m| m.assd),
            }
        })
        .collect()
}

fn per_case_csv(cases: &[CaseMetrics]) -> std::result::Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "case_id",
        "class",
        "dice",
        "jaccard",
        "hd95",
        "asd",
        "assd",
        "unit",
        "prediction_empty",
        "reference_empty",
        "prediction",
        "reference",
    ])?;
    for case in cases {
        for class in &case.classes {
            let m = &class.metrics;
            writer.write_record([
                case.case_id.clone(),
                class.class.to_string(),
                m.dice.to_string(),
                m.jaccard.to_string(),
                m.hd95.to_string(),
                m.asd.to_string(),
                m.assd.to_string(),
                case.unit.symbol().to_string(),
                m.prediction_empty.to_string(),
                m.reference_empty.to_string(),
                case.prediction.display().to_string(),
                case.reference.display().to_string(),
            ])?;
        }
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

fn markdown(summary: &Summary) -> String {
    let unit = summary.unit.symbol();
    let mut out = String::from("# Evaluation\n\n");
    let _ = writeln!(out, "{} cases; distances in {unit}.\n", summary.cases);
    let _ = writeln!(
        out,
        "| class | cases | Dice (%) | Jaccard (%) | HD95 ({unit}) | ASD ({unit}) | ASSD ({unit}) |\n|---|---|---|---|---|---|---|"
    );
    let cell =
        |s: MetricSummary, scale: f64| format!("{:.2} ± {:.2}", s.mean * scale, s.std * scale);
    for class in summary.classes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            class.class,
            class.cases,
            cell(class.dice, 100.0),
            cell(class.jaccard, 100.0),
            cell(class.hd95, 1.0),
            cell(class.asd, 1.0),
            cell(class.assd, 1.0)
        );
    }
    let _ = writeln!(out, "\nValues are mean ± {}.\n", summary.std);
    let _ = writeln!(
        out,
        "- HD95 ({}): {}",
        serde_json::to_string(&summary.hd95_convention)
            .unwrap_or_default()
            .trim_matches('"'),
        summary.hd95_definition
    );
    let _ = writeln!(out, "- ASD: {}", summary.asd_definition);
    let _ = writeln!(out, "- ASSD: {}", summary.assd_definition);
    let _ = writeln!(out, "- Empty-mask policy: {}", summary.empty_mask_policy);
    if !summary.missing_predictions.is_empty() {
        let _ = writeln!(
            out,
            "- No prediction file, scored as an empty prediction ({} cases): {}",
            summary.missing_predictions.len(),
            summary.missing_predictions.join(", ")
        );
    }
    for class in summary.classes {
        for (what, ids) in [
            ("empty prediction", &class.empty_predictions),
            ("empty reference", &class.empty_references),
        ] {
            if !ids.is_empty() {
                let _ = writeln!(
                    out,
                    "- Class {}, {what} ({} cases): {}",
                    class.class,
                    ids.len(),
                    ids.join(", ")
                );
            }
        }
    }
    out
}
