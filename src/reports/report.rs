//! `report.md`: one page that links every part of the run folder, with the metrics table, the
//! run's timing, the curves and the overlays. Links are relative, so the folder can be moved.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::history::ValidationPoint;
use super::overlays::{Overlay, OverlayKind};
use super::rescore::HeldOut;
use super::{ReportError, RunContents};
use crate::metrics::{DistanceUnit, MetricSummary};

pub const REPORT_FILE: &str = "report.md";

/// The part of `metrics/summary.json` the report shows.
#[derive(Debug, Deserialize)]
struct Summary {
    cases: usize,
    unit: DistanceUnit,
    classes: Vec<ClassSummary>,
}

#[derive(Debug, Deserialize)]
struct ClassSummary {
    class: u8,
    dice: MetricSummary,
    jaccard: MetricSummary,
    hd95: MetricSummary,
    asd: MetricSummary,
    assd: MetricSummary,
}

/// Write `report.md` into the run folder; returns its path. Without `metrics_verified` (the
/// saved predictions are gone, so `metrics/` could not be re-scored) the metrics are not shown
/// as the final model's.
pub fn write_report(
    contents: &RunContents,
    held_out: &HeldOut,
    curves: bool,
    overlays: &[Overlay],
    metrics_verified: bool,
) -> Result<PathBuf, ReportError> {
    let root = contents.run.root();
    let path = root.join(REPORT_FILE);
    let mut md = String::new();
    let info = &contents.info;
    let _ = writeln!(md, "# semisam run `{}`\n", info.name);
    let _ = writeln!(
        md,
        "Written by semisam {} (run format {}), started {}. Regenerate this page and its pictures with `semisam report <run folder>`.\n",
        info.semisam_version, info.run_format, info.created
    );
    if let Some(command) = &info.command {
        let _ = writeln!(md, "Command: `{}`\n", command.join(" "));
    }
    let unknown = || "unknown".to_owned();
    let _ = writeln!(
        md,
        "Build and machine: commit {}, backend {}, kernels {}, CPU features {}.\n",
        info.git_commit.clone().unwrap_or_else(unknown),
        info.backend.clone().unwrap_or_else(unknown),
        info.kernels.clone().unwrap_or_else(|| "none".into()),
        if info.cpu_features.is_empty() {
            unknown()
        } else {
            info.cpu_features.join(", ")
        }
    );

    let splits = &contents.splits;
    let config = &contents.config;
    // Named as config.toml spells them.
    let table = toml::from_str::<toml::Table>(&config.to_toml()).unwrap_or_default();
    let setting = |section: &str, key: &str| {
        table
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(|v| v.as_str())
            .map(|v| format!("`{v}`"))
    };
    let framework = setting("framework", "kind").unwrap_or_else(|| "?".into());
    let network = setting("network", "architecture").unwrap_or_else(|| "?".into());
    let sam = setting("sam", "generalist").unwrap_or_else(|| "none".into());
    md.push_str("| Part | Where |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| Configuration | [config.toml](config.toml): framework {framework}, network {network}, SAM assistance: {sam} |"
    );
    let _ = writeln!(
        md,
        "| Splits | [splits.json](splits.json): {} labeled, {} unlabeled, {} validation, {} test |",
        splits.labeled.len(),
        splits.unlabeled.len(),
        splits.validation.len(),
        splits.test.len()
    );
    let _ = writeln!(md, "| Logs | {} |", links(root, &["log.jsonl", "log.csv"]));
    let checkpoints = ["final", "best", "last"].map(|n| format!("checkpoints/{n}.ckpt"));
    let checkpoints: Vec<&str> = checkpoints.iter().map(String::as_str).collect();
    let _ = writeln!(md, "| Checkpoints | {} |", links(root, &checkpoints));
    let _ = writeln!(
        md,
        "| Predictions | [predictions/](predictions/) (final model, {} split) |",
        held_out.split
    );
    md.push('\n');

    md.push_str("## Timing\n\n");
    timing(&mut md, contents);

    let _ = writeln!(
        md,
        "## Metrics: final model on the {} split\n",
        held_out.split
    );
    if metrics_verified {
        metrics_table(&mut md, contents, &root.join("metrics"))?;
    } else {
        let _ = writeln!(
            md,
            "Not shown: [metrics/](metrics/) holds scores of an earlier evaluation, but [predictions/](predictions/) holds no prediction of the {} cases to re-score, so they cannot be confirmed as the final model's. Predict those cases with `semisam predict --checkpoint checkpoints/final.ckpt` into predictions/ and run `semisam report` again.\n",
            held_out.split
        );
    }

    md.push_str("## Training curves\n\n");
    if curves {
        let _ = writeln!(md, "![Training curves]({})\n", super::curves::CURVES_FILE);
    } else {
        md.push_str("No iteration has been logged yet.\n\n");
    }

    let (mut predictions, pseudo): (Vec<&Overlay>, Vec<&Overlay>) = overlays
        .iter()
        .partition(|o| o.kind == OverlayKind::Prediction);
    // The worst cases first: they are the ones to look at.
    predictions.sort_by(|a, b| a.mean_dice().total_cmp(&b.mean_dice()));
    let _ = writeln!(md, "## Held-out cases ({} split)\n", held_out.split);
    if predictions.is_empty() && contents.run.checkpoint_path("final").is_file() {
        md.push_str("No saved predictions in predictions/.\n\n");
    } else if predictions.is_empty() {
        md.push_str("No saved predictions (the run has not finished).\n\n");
    } else {
        md.push_str("Worst case first. Each picture shows the slices with the largest reference area and the slice with the most wrong voxels; top row: reference, bottom row: prediction of the final model; one colour per class.\n\n");
        overlay_sections(&mut md, root, &predictions);
    }
    if !pseudo.is_empty() {
        md.push_str("## SAM pseudo-labels of unlabeled training cases\n\n");
        md.push_str("The last pseudo-label the generalist produced for the case during training (bottom row), on the training grid; top row: the case's reference, which training never read.\n\n");
        overlay_sections(&mut md, root, &pseudo);
    }
    crate::io_util::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// Markdown links to the files of `names` that exist.
fn links(root: &Path, names: &[&str]) -> String {
    let present: Vec<String> = names
        .iter()
        .filter(|n| root.join(n).is_file())
        .map(|n| format!("[{n}]({n})"))
        .collect();
    if present.is_empty() {
        "none yet".into()
    } else {
        present.join(", ")
    }
}

fn timing(md: &mut String, contents: &RunContents) {
    let history = &contents.history;
    let planned = contents.config.training.iterations;
    let Some(last) = history.iterations.last() else {
        let _ = writeln!(md, "No iteration logged yet (of {planned}).\n");
        return;
    };
    let mean = history
        .iterations
        .iter()
        .map(|p| p.iteration_s)
        .sum::<f64>()
        / history.iterations.len() as f64;
    let validation: f64 = history.validations.iter().map(|v| v.seconds).sum();
    let _ = writeln!(
        md,
        "- Iterations: {} of {planned}\n- Training time: {} ({mean:.2} s per iteration on average)\n- Validation: {} passes, {} in all (included in the training time)\n",
        last.step,
        duration(last.elapsed_s),
        history.validations.len(),
        duration(validation)
    );
    // The first pass with the highest Dice, as the trainer chooses best.ckpt.
    let mut best: Option<&ValidationPoint> = None;
    for v in &history.validations {
        if best.is_none_or(|b| v.dice > b.dice) {
            best = Some(v);
        }
    }
    if let Some(best) = best {
        let _ = writeln!(
            md,
            "Best validation mean foreground Dice: {:.4} at iteration {} ([best.ckpt](checkpoints/best.ckpt)).\n",
            best.dice, best.step
        );
    }
}

fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unknown".into();
    }
    let total = seconds.round() as u64;
    match (total / 3600, total % 3600 / 60, total % 60) {
        (0, 0, _) => format!("{seconds:.1} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn metrics_table(
    md: &mut String,
    contents: &RunContents,
    metrics_dir: &Path,
) -> Result<(), ReportError> {
    let summary_path = metrics_dir.join(super::rescore::SUMMARY_FILE);
    if !summary_path.is_file() {
        md.push_str("No metrics yet (the run has not finished).\n\n");
        return Ok(());
    }
    let text =
        std::fs::read_to_string(&summary_path).map_err(|e| ReportError::file(&summary_path, e))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|e| ReportError::file(&summary_path, e))?;
    let unit = match summary.unit {
        DistanceUnit::Millimetre => "mm",
        DistanceUnit::Voxel => "voxels",
    };
    let _ = writeln!(
        md,
        "Mean ± standard deviation over {} cases.\n\n| Class | Dice | Jaccard | HD95 ({unit}) | ASD ({unit}) | ASSD ({unit}) |\n|---|---|---|---|---|---|",
        summary.cases
    );
    let cell =
        |m: &MetricSummary, digits: usize| format!("{:.digits$} ± {:.digits$}", m.mean, m.std);
    for class in &summary.classes {
        let name = contents
            .dataset
            .labels
            .get(&class.class)
            .map_or(String::new(), |n| format!(" {n}"));
        let _ = writeln!(
            md,
            "| {}{name} | {} | {} | {} | {} | {} |",
            class.class,
            cell(&class.dice, 4),
            cell(&class.jaccard, 4),
            cell(&class.hd95, 2),
            cell(&class.asd, 2),
            cell(&class.assd, 2)
        );
    }
    md.push_str("\nPer case: [metrics/per_case.csv](metrics/per_case.csv); definitions and conventions: [metrics/summary.md](metrics/summary.md), [metrics/summary.json](metrics/summary.json).\n\n");
    Ok(())
}

fn overlay_sections(md: &mut String, root: &Path, overlays: &[&Overlay]) {
    for overlay in overlays {
        let relative = overlay
            .path
            .strip_prefix(root)
            .unwrap_or(&overlay.path)
            .to_string_lossy()
            .replace('\\', "/");
        let slices: Vec<String> = overlay.slices.iter().map(|s| s.to_string()).collect();
        let dice = if overlay.dice.is_empty() {
            String::new()
        } else {
            format!(" (mean Dice {:.3})", overlay.mean_dice())
        };
        let _ = writeln!(
            md,
            "### {}{dice}\n\nSlices {}.\n\n![{}]({relative})\n",
            overlay.case_id,
            slices.join(", "),
            overlay.case_id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7300.0), "2 h 1 min");
        assert_eq!(duration(f64::NAN), "unknown");
    }
}
