//! `semisam report RUN_DIR`: regenerate a run folder's report from its files.

use std::path::PathBuf;

use semisam::reports::{ReportOptions, generate};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run folder (e.g. runs/demo-semisam).
    pub run_dir: PathBuf,
    /// Dataset folder, when it is no longer where the run's config.toml says (data.root).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let files = generate(
        &args.run_dir,
        &ReportOptions {
            data_root: args.data_root,
            rescore: true,
        },
    )?;
    if let Some(metrics) = &files.metrics {
        tracing::info!(
            "metrics re-scored from the saved predictions: {}",
            metrics.summary_markdown.display()
        );
    }
    if files.unverified_metrics {
        tracing::warn!(
            "{} has no saved prediction of the held-out cases: the scores in metrics/ cannot be re-checked and are not shown as the final model's",
            args.run_dir.join("predictions").display()
        );
    }
    if let Some(curves) = &files.curves {
        tracing::info!("curves: {}", curves.display());
    }
    tracing::info!("overlays: {} picture(s)", files.overlays.len());
    tracing::info!("report: {}", files.report.display());
    Ok(())
}
