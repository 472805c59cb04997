//! Validation during training: sliding-window prediction of each validation case with the
//! student in evaluation mode, scored by foreground Dice.

use burn::module::Module;
use burn::tensor::Device;
use ndarray::Array3;

use crate::inference::predictor::predict_case;
use crate::inference::{SlidingWindow, WindowPrediction};
use crate::networks::{NetworkError, Specialist};

/// A normalised case with its reference labels.
#[derive(Debug, Clone)]
pub struct EvalCase {
    pub id: String,
    pub image: Array3<f32>,
    pub label: Array3<u8>,
}

/// Dice of each foreground class of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseDice {
    pub id: String,
    /// Classes 1..C.
    pub dice: Vec<f64>,
}

/// Dice of every foreground class of every case, predicted by `student` (put into evaluation
/// mode here; the training copy is not touched).
pub fn validate(
    student: &Specialist,
    cases: &[EvalCase],
    classes: usize,
    window: SlidingWindow,
) -> Result<Vec<CaseDice>, NetworkError> {
    validate_with(student, cases, classes, window, |_, _| Ok(()))
}

/// [`validate`], handing each case's prediction to `inspect` as well.
pub fn validate_with<E: From<NetworkError>>(
    student: &Specialist,
    cases: &[EvalCase],
    classes: usize,
    window: SlidingWindow,
    mut inspect: impl FnMut(&EvalCase, &WindowPrediction) -> Result<(), E>,
) -> Result<Vec<CaseDice>, E> {
    let model = student.valid();
    let device = model_device(&model);
    cases
        .iter()
        .map(|case| {
            let prediction =
                predict_case(&model, &case.image, classes, window, &device, |_, _| {})?;
            inspect(case, &prediction)?;
            let dice = (1..classes)
                .map(|c| dice(&prediction.labels, &case.label, c as u8))
                .collect();
            Ok(CaseDice {
                id: case.id.clone(),
                dice,
            })
        })
        .collect()
}

/// The device of the model's parameters (the evaluation copy lives on the plain device).
pub fn model_device(model: &Specialist) -> Device {
    model.devices().into_iter().next().unwrap_or_default()
}

/// Foreground Dice of `class` with the metrics module's definition (both empty → 1).
pub fn dice(prediction: &Array3<u8>, reference: &Array3<u8>, class: u8) -> f64 {
    let (p, g) = (
        prediction.mapv(|v| v == class),
        reference.mapv(|v| v == class),
    );
    crate::metrics::evaluate_masks(
        p.view(),
        g.view(),
        [1.0; 3],
        crate::metrics::Hd95Convention::default(),
    )
    .map(|m| m.dice)
    .expect("masks of one shape with unit spacing")
}

/// Per-class means over cases, and the mean of those.
pub fn summarize(cases: &[CaseDice]) -> (Vec<f64>, f64) {
    let classes = cases.first().map_or(0, |c| c.dice.len());
    let per_class: Vec<f64> = (0..classes)
        .map(|k| cases.iter().map(|c| c.dice[k]).sum::<f64>() / cases.len() as f64)
        .collect();
    let mean = if per_class.is_empty() {
        0.0
    } else {
        per_class.iter().sum::<f64>() / per_class.len() as f64
    };
    (per_class, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_by_hand() {
        let p = Array3::from_shape_vec([1, 1, 6], vec![1, 1, 0, 2, 0, 0]).unwrap();
        let g = Array3::from_shape_vec([1, 1, 6], vec![1, 0, 0, 2, 2, 0]).unwrap();
        assert_eq!(dice(&p, &g, 1), 2.0 / 3.0);
        assert_eq!(dice(&p, &g, 2), 2.0 / 3.0);
        assert_eq!(dice(&p, &g, 3), 1.0, "absent from both");
        let (per_class, mean) = summarize(&[
            CaseDice {
                id: "a".into(),
                dice: vec![0.5, 1.0],
            },
            CaseDice {
                id: "b".into(),
                dice: vec![0.7, 0.0],
            },
        ]);
        assert!((per_class[0] - 0.6).abs() < 1e-12 && (per_class[1] - 0.5).abs() < 1e-12);
        assert!((mean - 0.55).abs() < 1e-12);
    }
}
