//! Command-line interface: one file per subcommand.

mod bench;
mod evaluate;
mod inspect;
mod logging;
mod oracle;
mod plan;
mod predict;
mod report;
mod sam2d;
mod sam3d;
mod train;
mod weights;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "semisam",
    version,
    about = "SAM-assisted semi-supervised 3D medical image segmentation"
)]
struct Cli {
    /// Show only warnings and errors, and no progress bars.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Show debug messages as well (e.g. every training iteration's loss).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the cases of a dataset with shapes, spacing, labels, intensities and every problem found.
    Inspect(inspect::InspectArgs),
    /// Fingerprint a dataset and write a complete, commented run configuration (plan.toml).
    Plan(plan::PlanArgs),
    /// Train a specialist (optionally SAM-assisted) from a run configuration into a run folder.
    Train(train::TrainArgs),
    /// Sliding-window prediction with a trained checkpoint; outputs keep format and geometry.
    Predict(predict::PredictArgs),
    /// Fetch or locate pretrained generalist weights.
    Weights(weights::WeightsArgs),
    /// Segment one 2D image (or a volume slice) with LiteMedSAM from a box prompt.
    Sam2d(sam2d::Sam2dArgs),
    /// Run SAM-Med3D on one 3D volume with point prompts; writes the upsampled mask logits.
    Sam3d(sam3d::Sam3dArgs),
    /// Dice, Jaccard, HD95, ASD and ASSD of a folder of predictions against references.
    Evaluate(evaluate::EvaluateArgs),
    /// Regenerate a run folder's report.md, curves.png, overlays/ and metrics/ from its files.
    Report(report::ReportArgs),
    /// Benchmarks: one training step, LiteMedSAM encoder/decoder.
    Bench(bench::BenchArgs),
    /// Upper bound of the pseudo-labels: LiteMedSAM prompted from the ground truth (analysis only).
    SamOracle(oracle::OracleArgs),
}

/// `N` comma-separated numbers, e.g. `32,48,32`.
fn parse_numbers<T, const N: usize>(text: &str) -> Result<[T; N], String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let values: Vec<T> = text
        .split(',')
        .map(|v| v.trim().parse::<T>().map_err(|e| format!("`{v}`: {e}")))
        .collect::<Result<_, _>>()?;
    values
        .try_into()
        .map_err(|v: Vec<T>| format!("expected {N} comma-separated numbers, got {}", v.len()))
}

/// A voxel spacing x,y,z in mm: three positive, finite numbers.
fn parse_spacing(text: &str) -> Result<[f64; 3], String> {
    let spacing = parse_numbers::<f64, 3>(text).map_err(|e| format!("{text:?}: {e}"))?;
    if spacing.iter().all(|v| *v > 0.0 && v.is_finite()) {
        Ok(spacing)
    } else {
        Err(format!(
            "{text:?}: expected three positive spacings x,y,z in mm"
        ))
    }
}

/// Three comma-separated numbers (x,y,z).
fn parse_triple<T>(text: &str) -> Result<[T; 3], String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    parse_numbers::<T, 3>(text)
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    logging::init(match (cli.quiet, cli.verbose) {
        (true, _) => logging::Verbosity::Quiet,
        (false, true) => logging::Verbosity::Verbose,
        (false, false) => logging::Verbosity::Normal,
    });
    let result: anyhow::Result<()> = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Train(args) => match train::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Predict(args) => predict::run(args),
        Command::Weights(args) => weights::run(args),
        Command::Sam2d(args) => sam2d::run(args),
        Command::SamOracle(args) => oracle::run(args),
        Command::Sam3d(args) => sam3d::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Report(args) => report::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. The library's errors already name their source in
/// their own message (`"{path}: {source}"`) and expose it as `source()` as well, so a cause whose
/// text the line already holds is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Wrapped {
        path: String,
        #[source]
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let error = anyhow::Error::new(Wrapped {
            path: "a.ckpt".into(),
            source: not_found(),
        });
        assert_eq!(error_text(&error), "a.ckpt: no such file");
    }

    #[test]
    fn context_and_a_new_cause_are_joined() {
        let error = anyhow::Error::new(not_found()).context("reading b.toml");
        assert_eq!(error_text(&error), "reading b.toml: no such file");
        let nested = anyhow::Error::new(Wrapped {
            path: "c.nii".into(),
            source: not_found(),
        })
        .context("case 7");
        assert_eq!(error_text(&nested), "case 7: c.nii: no such file");
    }
}
