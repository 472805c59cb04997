//! Run reports: everything a person reads after a run, regenerated from the run folder alone
//! (plus the dataset for the pictures): training curves, overlays of predictions and SAM
//! pseudo-labels on the images, re-scored metrics and `report.md` linking them.
//!
//! One job per file: [`history`] reads the logs, [`curves`] plots them, [`slices`] renders
//! annotated slices, [`overlays`] picks the cases and slices, [`pseudo_labels`] stores the
//! trainer's last SAM pseudo-labels, [`rescore`] scores saved predictions, [`report`] writes the
//! Markdown, and [`generate`] (here) runs them in order.

pub mod curves;
pub mod font;
pub mod history;
pub mod overlays;
pub mod png;
pub mod report;
pub mod rescore;
pub mod slices;

use std::path::{Path, PathBuf};

use crate::data::{DataError, Dataset, Splits};
use crate::training::RunConfig;
use crate::training::config::ConfigError;
use crate::training::run_dir::{RunDir, RunDirError, RunInfo};

/// A report could not be produced. Errors of other stages are boxed: they are large and rare.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    RunDir(Box<RunDirError>),
    #[error(transparent)]
    Config(Box<ConfigError>),
    #[error(transparent)]
    Data(Box<DataError>),
    #[error(transparent)]
    Output(Box<crate::Error>),
    #[error(transparent)]
    Metrics(Box<crate::metrics::MetricsError>),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "the run's dataset {root} cannot be opened ({source}); pass the dataset folder with --data-root if it moved"
    )]
    DatasetMissing {
        root: PathBuf,
        #[source]
        source: Box<DataError>,
    },
}

macro_rules! boxed_from {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for ReportError {
            fn from(e: $error) -> Self {
                ReportError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    RunDir(RunDirError),
    Config(ConfigError),
    Data(DataError),
    Output(crate::Error),
    Metrics(crate::metrics::MetricsError),
);

impl From<crate::io_util::WriteError> for ReportError {
    fn from(e: crate::io_util::WriteError) -> Self {
        ReportError::Output(Box::new(e.into()))
    }
}

impl From<crate::training::pseudo_labels::PseudoLabelFileError> for ReportError {
    fn from(e: crate::training::pseudo_labels::PseudoLabelFileError) -> Self {
        ReportError::File {
            path: e.path,
            message: e.message,
        }
    }
}

impl ReportError {
    pub(crate) fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        ReportError::File {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// What [`generate`] should do beyond the pictures and `report.md`.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Dataset folder to use instead of the configuration's `data.root` (a moved dataset).
    pub data_root: Option<PathBuf>,
    /// Score the saved predictions against the references again and rewrite `metrics/`
    /// (the trainer has just written them, so it passes `false`).
    pub rescore: bool,
}

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub report: PathBuf,
    pub curves: Option<PathBuf>,
    pub overlays: Vec<PathBuf>,
    pub metrics: Option<crate::metrics::ReportPaths>,
    /// `metrics/` holds scores that could not be re-scored because the saved predictions are
    /// gone: the report does not present them as the final model's.
    pub unverified_metrics: bool,
}

/// Everything the report is made from, read once.
pub struct RunContents {
    pub run: RunDir,
    pub info: RunInfo,
    pub config: RunConfig,
    pub splits: Splits,
    pub dataset: Dataset,
    pub history: history::TrainingHistory,
}

impl RunContents {
    /// Open a run folder (refusing one of another run format) with its configuration, splits,
    /// logs and dataset.
    pub fn read(root: &Path, data_root: Option<&Path>) -> Result<Self, ReportError> {
        let (run, info) = RunDir::open(root)?;
        let config = RunConfig::load(&run.config_path(), &[])?;
        let splits = Splits::load(run.splits_path())?;
        let history = history::TrainingHistory::read_run(run.root())?;
        let dataset_root = data_root.unwrap_or(&config.data.root).to_owned();
        let dataset = crate::training::dataset::open_dataset(&config, Some(dataset_root.as_path()))
            .map_err(|source| ReportError::DatasetMissing {
                root: dataset_root,
                source: Box::new(source),
            })?;
        Ok(RunContents {
            run,
            info,
            config,
            splits,
            dataset,
            history,
        })
    }
}

/// Regenerate `curves.png`, `overlays/*.png`, `report.md` (and, with `options.rescore`,
/// `metrics/`) in the run folder `root`.
pub fn generate(root: &Path, options: &ReportOptions) -> Result<ReportFiles, ReportError> {
    let contents = RunContents::read(root, options.data_root.as_deref())?;
    let run = &contents.run;
    let held_out = rescore::held_out_cases(&contents.dataset, &contents.splits);
    let metrics = if options.rescore {
        rescore::rescore(&contents, &held_out)?
    } else {
        None
    };
    // Re-scoring found no prediction: any metrics/ left are not traceable to the final model.
    let unverified_metrics = options.rescore
        && metrics.is_none()
        && run.metrics_dir().join(rescore::SUMMARY_FILE).is_file();
    let curves = if contents.history.iterations.is_empty() {
        None
    } else {
        let path = run.root().join(curves::CURVES_FILE);
        let class_names = curves::curve_class_names(
            &contents.dataset.labels,
            contents.config.network.num_classes,
        );
        curves::write_curves(&contents.history, &class_names, &path)?;
        Some(path)
    };
    let overlays = overlays::write_overlays(&contents, &held_out.ids)?;
    let report = report::write_report(
        &contents,
        &held_out,
        curves.is_some(),
        &overlays,
        !unverified_metrics,
    )?;
    Ok(ReportFiles {
        report,
        curves,
        overlays: overlays.into_iter().map(|o| o.path).collect(),
        metrics,
        unverified_metrics,
    })
}
