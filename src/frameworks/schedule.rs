//! Weight schedules of the semi-supervised frameworks (SPEC §4). All take the 0-based
//! iteration index `step` of the training loop.

/// Sigmoid ramp of Laine & Aila: `exp(-5 (1 - clip(x, 0, L)/L)²)`, and 1 when `L = 0`.
pub fn sigmoid_rampup(x: f64, length: f64) -> f64 {
    if length == 0.0 {
        return 1.0;
    }
    let phase = 1.0 - x.clamp(0.0, length) / length;
    (-5.0 * phase * phase).exp()
}

/// A weight that ramps up with the sigmoid ramp over "epochs" of a fixed number of iterations:
/// `weight · r(⌊step / iterations_per_epoch⌋, rampup_epochs)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampUp {
    pub weight: f64,
    pub rampup_epochs: f64,
    pub iterations_per_epoch: usize,
}

impl RampUp {
    /// The consistency weight of UA-MT and SemiSAM: 0.1 · r(⌊t/150⌋, 40).
    pub const CONSISTENCY: RampUp = RampUp {
        weight: 0.1,
        rampup_epochs: 40.0,
        iterations_per_epoch: 150,
    };

    pub fn at(&self, step: usize) -> f64 {
        let epoch = (step / self.iterations_per_epoch.max(1)) as f64;
        self.weight * sigmoid_rampup(epoch, self.rampup_epochs)
    }
}

/// EMA decay of the Mean Teacher: `min(1 - 1/(step + 1), max_decay)`; 0 at step 0, so the
/// teacher starts as a copy of the student.
pub fn ema_decay(step: usize, max_decay: f64) -> f64 {
    (1.0 - 1.0 / (step as f64 + 1.0)).min(max_decay)
}

/// UA-MT entropy threshold `(0.75 + 0.25 · r(step, max_steps)) · ln C`; ln C is the largest
/// possible entropy (ln 2 for the binary task of the paper).
pub fn uncertainty_threshold(step: usize, max_steps: usize, num_classes: usize) -> f64 {
    (0.75 + 0.25 * sigmoid_rampup(step as f64, max_steps as f64)) * (num_classes as f64).ln()
}
