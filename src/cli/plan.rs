//! `semisam plan`: fingerprint a dataset and write a complete, commented run configuration.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::parse_spacing;
use semisam::planning::{self, PlanOptions, PlannedFramework, parse_duration};

/// The planning options shared by `plan` and `train --dataset`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanningArgs {
    /// Wall-clock time for the whole training run, e.g. 20m, 90s, 1.5h: the iterations are
    /// fitted to it from a training step measured on this machine (default: 6000 iterations).
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<std::time::Duration>,
    /// Memory a training batch may take, in GiB (limits the patch and the network width).
    #[arg(long, default_value_t = 4.0)]
    pub memory_gib: f64,
    /// Training to set up (default: semisam when the dataset has unlabeled images, else
    /// supervised).
    #[arg(long, value_enum)]
    pub framework: Option<PlannedFramework>,
    /// Voxel spacing x,y,z (mm) for files that store none (UA-MT h5: 0.625,0.625,0.625 for LA).
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<[f64; 3]>,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Dataset folder (MSD, nnU-Net v2 or UA-MT h5 layout).
    pub dataset: PathBuf,
    /// The run configuration to write; fingerprint.json is written next to it.
    #[arg(long, default_value = "plan.toml")]
    pub out: PathBuf,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

impl PlanningArgs {
    pub fn options(&self, root: &Path) -> anyhow::Result<PlanOptions> {
        if !(self.memory_gib > 0.0 && self.memory_gib.is_finite()) {
            anyhow::bail!("--memory-gib must be positive, got {}", self.memory_gib);
        }
        Ok(PlanOptions {
            root: root.to_owned(),
            time_budget: self.time_budget,
            memory_budget: self.memory_gib * planning::rules::GIB,
            framework: self.framework,
            spacing: self.spacing,
            pixel_units: false,
        })
    }
}

/// Fingerprint and plan, with the measuring announced (it takes seconds).
pub fn plan_with_progress(
    root: &Path,
    args: &PlanningArgs,
) -> anyhow::Result<(planning::Fingerprint, planning::Plan)> {
    let options = args.options(root)?;
    if options.time_budget.is_some() {
        tracing::info!(
            "planning {}: reading every training image, then timing a few training steps on this machine",
            root.display()
        );
    } else {
        tracing::info!("planning {}: reading every training image", root.display());
    }
    planning::plan_dataset(&options).with_context(|| format!("planning {}", root.display()))
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let (fingerprint, plan) = plan_with_progress(&args.dataset, &args.planning)?;
    let fingerprint_path = args
        .out
        .parent()
        .map(|p| p.join("fingerprint.json"))
        .unwrap_or_else(|| PathBuf::from("fingerprint.json"));
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    planning::save(&plan, &fingerprint, &args.out, &fingerprint_path)?;
    let c = &plan.config;
    tracing::info!(
        "plan: {:?} width {}, patch {:?}, target spacing {:?} mm, {} iterations, batch {} ({} labeled)",
        c.network.architecture,
        c.network.base_filters,
        c.training.patch,
        c.data.target_spacing.unwrap_or_default(),
        c.training.iterations,
        c.training.batch_size,
        c.training.labeled_bs
    );
    tracing::info!(
        "wrote {} and {}; train with: semisam train --config {}",
        args.out.display(),
        fingerprint_path.display(),
        args.out.display()
    );
    Ok(())
}
