//! Short measurements on this machine that turn a time budget into iterations: one training step
//! of the planned network and batch, and one LiteMedSAM slice embedding.

use std::time::Instant;

use ndarray::Array3;

use crate::frameworks::FrameworkError;
use crate::frameworks::benchmark::{StepBenchSettings, time_mean_teacher_step};
use crate::generalists::litemedsam::{LiteMedSam, LiteMedSamError, prepare_image};
use crate::generalists::weights_cache::{self as weights, LITEMEDSAM};
use crate::networks::Architecture;

/// What a training step of the plan costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    /// Median seconds of the measured steps.
    pub seconds: f64,
    pub steps: usize,
}

/// Median time of a few Mean Teacher steps (student forward and backward on the batch, teacher
/// forward on its unlabeled items, SGD, EMA) on random data, after one warm-up step.
pub fn measure_training_step(
    architecture: Architecture,
    poolings: [usize; 3],
    classes: usize,
    width: usize,
    patch: [usize; 3],
    batch: usize,
    labeled: usize,
) -> Result<StepTiming, FrameworkError> {
    let settings = StepBenchSettings {
        patch,
        batch,
        labeled: labeled.min(batch.saturating_sub(1)).max(1),
        width,
        architecture,
        poolings,
        classes,
        warmup: 1,
        iterations: 3,
        seed: 1337,
    };
    let report = time_mean_teacher_step(&settings, &crate::backend::default_device())?;
    Ok(StepTiming {
        seconds: report.median_s,
        steps: settings.iterations,
    })
}

/// Seconds LiteMedSAM's encoder takes for one slice (every slice is resized to the model's
/// 256 x 256 input, so the cost does not depend on the slice), or `None` when its weights are not
/// in the cache.
pub fn measure_slice_embedding() -> Result<Option<f64>, LiteMedSamError> {
    let Ok(path) = weights::locate(&LITEMEDSAM) else {
        return Ok(None);
    };
    let model = LiteMedSam::load(&path, &crate::backend::default_device())?;
    let image = Array3::from_shape_fn((256, 256, 3), |(i, j, _)| ((i * 7 + j * 3) % 256) as u8);
    let prepared = prepare_image(image.view())?;
    // The first embedding pays for allocations the later ones reuse.
    model.embed(&prepared);
    let start = Instant::now();
    model.embed(&prepared);
    Ok(Some(start.elapsed().as_secs_f64()))
}
