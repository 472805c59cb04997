//! Weight schedules of the semi-supervised frameworks (docs/method.md §4). All take the 0-based
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

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn sigmoid_rampup_hand_values() {
        assert_relative_eq!(sigmoid_rampup(0.0, 40.0), (-5.0f64).exp());
        // Half-way: exp(-5 · 0.5²) = exp(-1.25).
        assert_relative_eq!(
            sigmoid_rampup(20.0, 40.0),
            0.286_504_796_860_190_1,
            epsilon = 1e-12
        );
        assert_eq!(sigmoid_rampup(40.0, 40.0), 1.0);
        assert_eq!(sigmoid_rampup(90.0, 40.0), 1.0);
        assert_relative_eq!(sigmoid_rampup(-3.0, 40.0), (-5.0f64).exp());
        assert_eq!(sigmoid_rampup(5.0, 0.0), 1.0);
    }

    #[test]
    fn consistency_weight_steps_every_150_iterations() {
        let ramp = RampUp::CONSISTENCY;
        let first = 0.1 * (-5.0f64).exp(); // 0.000673795
        assert_relative_eq!(ramp.at(0), first, epsilon = 1e-15);
        assert_relative_eq!(ramp.at(149), first, epsilon = 1e-15);
        // ⌊150/150⌋ = 1: 0.1 · exp(-5 · (39/40)²).
        assert_relative_eq!(
            ramp.at(150),
            0.1 * (-5.0f64 * 0.975 * 0.975).exp(),
            epsilon = 1e-15
        );
        assert_relative_eq!(ramp.at(3000), 0.028_650_479_686_019_01, epsilon = 1e-12);
        assert_relative_eq!(ramp.at(6000), 0.1);
        assert_relative_eq!(ramp.at(9999), 0.1);
    }

    #[test]
    fn ema_decay_warms_up_then_caps() {
        assert_eq!(ema_decay(0, 0.99), 0.0);
        assert_eq!(ema_decay(1, 0.99), 0.5);
        assert_relative_eq!(ema_decay(9, 0.99), 0.9);
        assert_relative_eq!(ema_decay(98, 0.99), 1.0 - 1.0 / 99.0);
        assert_relative_eq!(ema_decay(99, 0.99), 0.99, epsilon = 1e-12);
        assert_eq!(ema_decay(5000, 0.99), 0.99);
    }

    #[test]
    fn uncertainty_threshold_rises_from_0_521_to_ln2() {
        let ln2 = std::f64::consts::LN_2;
        assert_relative_eq!(
            uncertainty_threshold(0, 6000, 2),
            (0.75 + 0.25 * (-5.0f64).exp()) * ln2,
            epsilon = 1e-15
        );
        assert_relative_eq!(
            uncertainty_threshold(0, 6000, 2),
            0.521_028_0,
            epsilon = 1e-7
        );
        assert_relative_eq!(
            uncertainty_threshold(3000, 6000, 2),
            (0.75 + 0.25 * (-1.25f64).exp()) * ln2,
            epsilon = 1e-15
        );
        assert_relative_eq!(uncertainty_threshold(6000, 6000, 2), ln2);
        assert_relative_eq!(uncertainty_threshold(6000, 6000, 3), 3.0f64.ln());
    }
}
