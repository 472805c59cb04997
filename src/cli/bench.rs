//! `semisam bench train-step`: time one Mean Teacher training step (V-Net or U-Net) on the default
//! backend; compare with `bench/mt_step_reference.py` run with the same settings.
//! `SEMISAM_KERNELS=avx512|avx2|generic` forces the kernel path (a path the CPU lacks is an
//! error); the printed line names the path that ran.

use semisam::frameworks::benchmark::{StepBenchSettings, time_mean_teacher_step};
use semisam::networks::Architecture;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(clap::Subcommand)]
pub enum BenchTarget {
    /// One Mean Teacher step: student and teacher forward, CE + Dice + consistency, backward,
    /// SGD, EMA. Prints one JSON line with the per-step times.
    TrainStep(TrainStepArgs),
    /// LiteMedSAM encoder and decoder latency and peak memory.
    Sam2d(super::sam2d::Sam2dBenchArgs),
}

#[derive(clap::Args)]
pub struct TrainStepArgs {
    /// Patch size X Y Z (each a multiple of 16, or of 2^poolings along the axis).
    #[arg(long, num_args = 3, default_values_t = [64, 64, 48])]
    pub patch: Vec<usize>,
    /// The network: the V-Net (as `bench/mt_step_reference.py`) or the 3D U-Net.
    #[arg(long, value_enum, default_value = "v-net")]
    pub architecture: BenchArchitecture,
    /// 2x poolings along X Y Z (U-Net only), e.g. `4 4 0` for one-slice patches.
    #[arg(long, num_args = 3, default_values_t = [4, 4, 4])]
    pub poolings: Vec<usize>,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Labeled items in the batch (the rest are unlabeled).
    #[arg(long, default_value_t = 2)]
    pub labeled: usize,
    /// Base filters of the network.
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchArchitecture {
    VNet,
    Unet3d,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Sam2d(sam) => super::sam2d::run_bench(sam),
        BenchTarget::TrainStep(step) => {
            let patch: [usize; 3] =
                step.patch.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!("--patch takes three sizes, got {:?}", step.patch)
                })?;
            let poolings: [usize; 3] = step.poolings.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("--poolings takes three counts, got {:?}", step.poolings)
            })?;
            let architecture = match step.architecture {
                BenchArchitecture::VNet => Architecture::VNet,
                BenchArchitecture::Unet3d => Architecture::UNet3d,
            };
            let settings = StepBenchSettings {
                patch,
                architecture,
                poolings,
                batch: step.batch,
                labeled: step.labeled,
                width: step.width,
                warmup: step.warmup,
                iterations: step.iters,
                seed: step.seed,
                ..StepBenchSettings::default()
            };
            let kernels = semisam::ops::kernel_path()?;
            let report = time_mean_teacher_step(&settings, &semisam::backend::default_device())?;
            let mut line = serde_json::to_value(&report)?;
            line["kernels"] = kernels.name().into();
            println!("{line}");
            Ok(())
        }
    }
}
