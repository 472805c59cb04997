//! train_step wiring for each framework on a tiny V-Net.

use approx::assert_relative_eq;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::networks::{Architecture, NetworkConfig};

const PATCH: [usize; 3] = [16, 16, 16];

fn tiny_student(device: &Device) -> Specialist {
    NetworkConfig {
        architecture: Architecture::VNet,
        in_channels: 1,
        num_classes: 2,
        base_filters: 2,
        dropout: true,
        poolings: NetworkConfig::default_poolings(),
    }
    .init(device)
    .unwrap()
}

/// 3 items, the first labeled with a cube of foreground.
fn batch(device: &Device) -> Batch {
    let [x, y, z] = PATCH;
    let voxels = x * y * z;
    let images: Vec<f32> = (0..3 * voxels)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let labels: Vec<i64> = (0..voxels)
        .map(|i| {
            let (a, b, c) = (i / (y * z), (i / z) % y, i % z);
            i64::from((4..12).contains(&a) && (4..12).contains(&b) && (4..12).contains(&c))
        })
        .collect();
    Batch::new(
        Tensor::from_data(TensorData::new(images, [3, 1, x, y, z]), device),
        Tensor::<4, Int>::from_data(TensorData::new(labels, [1, x, y, z]), device),
        1,
    )
    .unwrap()
}

fn scalar(output: &StepOutput, name: &str) -> f64 {
    output
        .scalars
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no scalar {name} in {:?}", output.scalars))
        .1
}

fn run(framework: &dyn Framework, step: usize, seed: u64) -> StepOutput {
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let teacher = new_teacher(&student);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    train_step(
        framework,
        &student,
        Some(&teacher),
        &batch(&device),
        StepIndex {
            step,
            max_steps: 6000,
        },
        &mut rng,
        &mut [],
    )
    .unwrap()
}

fn assert_total_is_weighted_sum(output: &StepOutput, terms: &[&str]) {
    let expected: f64 = terms
        .iter()
        .map(|t| scalar(output, &format!("weight/{t}")) * scalar(output, &format!("loss/{t}")))
        .sum();
    assert_relative_eq!(scalar(output, "loss/total"), expected, epsilon = 1e-5);
}

#[test]
fn mean_teacher_step_terms_weights_and_gradient() {
    let framework = MeanTeacher::new(MeanTeacherConfig::default()).unwrap();
    let output = run(&framework, 0, 1);
    assert_eq!(scalar(&output, "weight/ce"), 1.0);
    assert_eq!(scalar(&output, "weight/dice"), 1.0);
    assert_relative_eq!(scalar(&output, "weight/consistency"), 0.1 * (-5.0f64).exp());
    let consistency = scalar(&output, "loss/consistency");
    assert!(consistency > 0.0 && consistency < 1.0, "{consistency}");
    assert_total_is_weighted_sum(&output, &["ce", "dice", "consistency"]);
    assert_eq!(output.student_probabilities.dims(), [3, 2, 16, 16, 16]);
    assert!(!output.student_probabilities.is_require_grad());
    let grads = output.loss.backward();
    drop(grads);
    // Step 3000: ⌊3000/150⌋ = 20 of 40 epochs.
    let later = run(&framework, 3000, 1);
    assert_relative_eq!(scalar(&later, "weight/consistency"), 0.1 * (-1.25f64).exp());
}

#[test]
fn loss_backward_reaches_the_student_only() {
    let device = Device::default().autodiff();
    let framework = MeanTeacher::new(MeanTeacherConfig::default()).unwrap();
    let student = tiny_student(&device);
    let teacher = new_teacher(&student);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let index = StepIndex {
        step: 0,
        max_steps: 10,
    };
    let output = train_step(
        &framework,
        &student,
        Some(&teacher),
        &batch(&device),
        index,
        &mut rng,
        &mut [],
    )
    .unwrap();
    let grads = burn::optim::GradientsParams::from_grads(output.loss.backward(), &student);
    assert!(!grads.is_empty());
    let teacher_grads = {
        let output = train_step(
            &framework,
            &student,
            Some(&teacher),
            &batch(&device),
            index,
            &mut rng,
            &mut [],
        )
        .unwrap();
        burn::optim::GradientsParams::from_grads(output.loss.backward(), &teacher)
    };
    assert_eq!(teacher_grads.len(), 0);
}

#[test]
fn ua_mt_step_has_half_supervision_and_the_threshold_of_the_step() {
    let framework = UncertaintyAwareMeanTeacher::new(Default::default()).unwrap();
    let output = run(&framework, 3000, 2);
    assert_eq!(scalar(&output, "weight/ce"), 0.5);
    assert_eq!(scalar(&output, "weight/dice"), 0.5);
    assert_relative_eq!(
        scalar(&output, "ua_mt/threshold"),
        (0.75 + 0.25 * (-1.25f64).exp()) * std::f64::consts::LN_2
    );
    let fraction = scalar(&output, "ua_mt/mask_fraction");
    assert!((0.0..=1.0).contains(&fraction), "{fraction}");
    assert_total_is_weighted_sum(&output, &["ce", "dice", "consistency"]);
}

#[test]
fn supervised_only_has_no_teacher_and_no_consistency() {
    let framework = SupervisedOnly::new(1.0).unwrap();
    assert!(!framework.uses_teacher());
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let index = StepIndex {
        step: 0,
        max_steps: 10,
    };
    let output = train_step(
        &framework,
        &student,
        None,
        &batch(&device),
        index,
        &mut rng,
        &mut [],
    )
    .unwrap();
    let names: Vec<&str> = output.scalars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "loss/total",
            "loss/ce",
            "weight/ce",
            "loss/dice",
            "weight/dice"
        ]
    );
    assert_total_is_weighted_sum(&output, &["ce", "dice"]);
    let teacher = new_teacher(&student);
    let same = update_teacher(&framework, teacher, &student, 0).unwrap();
    assert_eq!(same.num_params(), student.num_params());
}

#[test]
fn mean_teacher_without_teacher_is_an_error() {
    let framework = MeanTeacher::new(MeanTeacherConfig::default()).unwrap();
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let index = StepIndex {
        step: 0,
        max_steps: 10,
    };
    let err = train_step(
        &framework,
        &student,
        None,
        &batch(&device),
        index,
        &mut rng,
        &mut [],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mean_teacher needs a teacher network but none was given"
    );
}

#[test]
fn same_seed_same_step_different_seed_different_noise() {
    let framework = MeanTeacher::new(MeanTeacherConfig::default()).unwrap();
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let teacher = new_teacher(&student);
    let batch = batch(&device);
    let consistency = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let index = StepIndex {
            step: 10,
            max_steps: 100,
        };
        let output = train_step(
            &framework,
            &student,
            Some(&teacher),
            &batch,
            index,
            &mut rng,
            &mut [],
        )
        .unwrap();
        scalar(&output, "loss/consistency")
    };
    let a = consistency(9);
    assert_eq!(a, consistency(9));
    assert_ne!(a, consistency(10));
}

/// A stand-in for the SAM term: a fixed weight times the mean unlabeled foreground probability.
struct MeanForeground;

impl AuxiliaryLoss for MeanForeground {
    fn name(&self) -> &str {
        "mean_foreground"
    }

    fn loss_terms(
        &mut self,
        ctx: &StepContext,
        _rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError> {
        let mut terms = LossTerms::default();
        let p = ctx.unlabeled_probabilities();
        let [u, _, x, y, z] = p.dims();
        terms.push(
            "mean_foreground",
            0.25,
            p.narrow(1, 1, 1).reshape([u, x, y, z]).mean(),
        );
        Ok(terms)
    }
}

#[test]
fn auxiliary_terms_add_to_any_framework() {
    let framework = SupervisedOnly::new(1.0).unwrap();
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let index = StepIndex {
        step: 0,
        max_steps: 10,
    };
    let mut extra = MeanForeground;
    let output = train_step(
        &framework,
        &student,
        None,
        &batch(&device),
        index,
        &mut rng,
        &mut [&mut extra],
    )
    .unwrap();
    assert_eq!(scalar(&output, "weight/mean_foreground"), 0.25);
    let foreground = scalar(&output, "loss/mean_foreground");
    assert!(foreground > 0.0 && foreground < 1.0);
    assert_total_is_weighted_sum(&output, &["ce", "dice", "mean_foreground"]);
}

/// Records the teacher probabilities an auxiliary loss is shown.
#[derive(Default)]
struct TeacherProbe {
    seen: Option<Option<[usize; 5]>>,
}

impl AuxiliaryLoss for TeacherProbe {
    fn name(&self) -> &str {
        "probe"
    }

    fn loss_terms(
        &mut self,
        ctx: &StepContext,
        _rng: &mut dyn RngCore,
    ) -> Result<LossTerms, FrameworkError> {
        self.seen = Some(ctx.teacher_probabilities.as_ref().map(|t| t.dims()));
        Ok(LossTerms::default())
    }
}

#[test]
fn auxiliary_losses_see_the_teacher_probabilities_of_teacher_frameworks() {
    let device = Device::default().autodiff();
    let student = tiny_student(&device);
    let teacher = new_teacher(&student);
    let index = StepIndex {
        step: 0,
        max_steps: 10,
    };
    let batch = batch(&device);
    let [_, _, x, y, z] = batch.images.dims();
    let frameworks: [(Box<dyn Framework>, bool); 3] = [
        (Box::new(SupervisedOnly::new(1.0).unwrap()), false),
        (
            Box::new(MeanTeacher::new(Default::default()).unwrap()),
            true,
        ),
        (
            Box::new(UncertaintyAwareMeanTeacher::new(Default::default()).unwrap()),
            true,
        ),
    ];
    for (framework, has_teacher) in frameworks {
        let mut probe = TeacherProbe::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let teacher = has_teacher.then_some(&teacher);
        train_step(
            &*framework,
            &student,
            teacher,
            &batch,
            index,
            &mut rng,
            &mut [&mut probe],
        )
        .unwrap();
        let expected = has_teacher.then_some([batch.unlabeled_count(), 2, x, y, z]);
        assert_eq!(probe.seen, Some(expected), "{}", framework.name());
    }
}

#[test]
fn batch_rejects_inconsistent_labels() {
    let device = Device::default();
    let images = Tensor::<5>::zeros([3, 1, 16, 16, 16], &device);
    let labels = Tensor::<4, Int>::zeros([2, 16, 16, 16], &device);
    let err = Batch::new(images.clone(), labels, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch: labels have shape [2, 16, 16, 16], expected [1, 16, 16, 16] for images [3, 1, 16, 16, 16]"
    );
    let labels = Tensor::<4, Int>::zeros([1, 16, 16, 16], &device);
    let err = Batch::new(images, labels, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch: labeled_bs 4 must be in 1..=3 (the batch size)"
    );
}

#[test]
fn config_from_toml_with_defaults_and_unknown_keys_rejected() {
    let text = "kind = \"ua_mt\"\nmc_passes = 4\n[teacher]\nema_decay = 0.999\n";
    let config: FrameworkConfig = toml::from_str(text).unwrap();
    let FrameworkConfig::UaMt(ua) = &config else {
        panic!("{config:?}")
    };
    assert_eq!(ua.mc_passes, 4);
    assert_eq!(ua.mc_batch_repeat, 2);
    assert_eq!(ua.teacher.ema_decay, 0.999);
    assert_eq!(ua.supervised_weight, 0.5);
    assert_eq!(config.build().unwrap().name(), "ua_mt");
    let mt: FrameworkConfig = toml::from_str("kind = \"mean_teacher\"").unwrap();
    assert_eq!(
        mt,
        FrameworkConfig::MeanTeacher(MeanTeacherConfig::default())
    );
    let err = toml::from_str::<FrameworkConfig>("kind = \"mean_teacher\"\nema = 0.9").unwrap_err();
    assert!(err.to_string().contains("unknown field `ema`"), "{err}");
}
