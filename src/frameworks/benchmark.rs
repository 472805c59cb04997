//! Timing of one Mean Teacher training step (V-Net by default), the Rust side of
//! `bench/mt_step_reference.py`: student forward, teacher forward on the noisy unlabeled
//! items, CE + Dice + consistency, backward, SGD (lr 0.01, momentum 0.9 without dampening,
//! weight decay 1e-4), EMA update, loss read back.

use std::time::Instant;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig, decay::WeightDecayConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{
    Batch, Framework, FrameworkError, MeanTeacher, MeanTeacherConfig, StepIndex, new_teacher,
    train_step, update_teacher,
};
use crate::networks::{Architecture, NetworkConfig};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepBenchSettings {
    pub patch: [usize; 3],
    pub batch: usize,
    pub labeled: usize,
    pub width: usize,
    pub architecture: Architecture,
    /// 2x poolings per axis (`NetworkConfig::poolings`).
    pub poolings: [usize; 3],
    /// Output classes, background included.
    pub classes: usize,
    pub warmup: usize,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for StepBenchSettings {
    fn default() -> Self {
        Self {
            patch: [64, 64, 48],
            batch: 4,
            labeled: 2,
            width: 16,
            architecture: Architecture::VNet,
            poolings: NetworkConfig::default_poolings(),
            classes: 2,
            warmup: 2,
            iterations: 10,
            seed: 1337,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepBenchReport {
    pub implementation: &'static str,
    pub settings: StepBenchSettings,
    pub median_s: f64,
    pub min_s: f64,
    pub times_s: Vec<f64>,
    pub last_loss: f64,
}

/// Runs `warmup + iterations` Mean Teacher steps on random data and times each one.
pub fn time_mean_teacher_step(
    settings: &StepBenchSettings,
    device: &Device,
) -> Result<StepBenchReport, FrameworkError> {
    if settings.iterations == 0 {
        return Err(FrameworkError::Config("iterations must be positive".into()));
    }
    let device = device.clone().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let network = NetworkConfig {
        architecture: settings.architecture,
        in_channels: 1,
        num_classes: settings.classes,
        base_filters: settings.width,
        dropout: true,
        poolings: settings.poolings,
    };
    let mut student = network.init_seeded(&device, settings.seed)?;
    let mut teacher = new_teacher(&student);
    let framework = MeanTeacher::new(MeanTeacherConfig::default())?;
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
        .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
        .init();

    let [x, y, z] = settings.patch;
    let voxels = x * y * z;
    let images: Vec<f32> = (0..settings.batch * voxels)
        .map(|_| rng.r#gen::<f32>() * 2.0 - 1.0)
        .collect();
    // Binary labels keep the reference script's 30 % foreground.
    let classes = settings.classes.max(2) as i64;
    let labels: Vec<i64> = (0..settings.labeled * voxels)
        .map(|_| match classes {
            2 => i64::from(rng.gen_bool(0.3)),
            _ => rng.gen_range(0..classes),
        })
        .collect();
    let images = Tensor::<5>::from_data(
        TensorData::new(images, [settings.batch, 1, x, y, z]),
        &device,
    );
    let labels = Tensor::<4, Int>::from_data(
        TensorData::new(labels, [settings.labeled, x, y, z]),
        &device,
    );
    let batch = Batch::new(images, labels, settings.labeled)?;

    let total = settings.warmup + settings.iterations;
    let mut times = Vec::with_capacity(settings.iterations);
    let mut last_loss = f64::NAN;
    for step in 0..total {
        let start = Instant::now();
        let output = train_step(
            &framework,
            &student,
            Some(&teacher),
            &batch,
            StepIndex {
                step,
                max_steps: total,
            },
            &mut rng,
            &mut [],
        )?;
        let grads = GradientsParams::from_grads(output.loss.backward(), &student);
        student = optimizer.step(0.01, student, grads);
        teacher = update_teacher(&framework, teacher, &student, step)?;
        last_loss = output
            .scalars
            .iter()
            .find(|(name, _)| name == "loss/total")
            .map(|(_, value)| *value)
            .unwrap_or(f64::NAN);
        let elapsed = start.elapsed().as_secs_f64();
        if step >= settings.warmup {
            times.push(elapsed);
        }
    }
    debug_assert!(framework.uses_teacher());
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median_s = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Ok(StepBenchReport {
        implementation: "semisam (burn)",
        settings: settings.clone(),
        median_s,
        min_s: sorted[0],
        times_s: times,
        last_loss,
    })
}
