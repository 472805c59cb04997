use super::label_cache::{LABELS_MAGIC, LABELS_MAGIC_V1};
use super::*;
use crate::frameworks::{Batch, StepIndex};
use crate::generalists::GeneralistError;
use crate::generalists::PseudoLabel;
use burn::tensor::{Device, Int};
use rand::SeedableRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Answers with the student's own confident voxels (or a fixed mask), counting its calls;
/// with `answered`, only there.
struct Echo {
    calls: Arc<AtomicUsize>,
    fixed: Option<Array3<bool>>,
    answered: Option<Array3<bool>>,
}

impl Generalist for Echo {
    fn identity(&self) -> String {
        "echo".into()
    }
    fn pseudo_label(
        &mut self,
        request: &PseudoLabelRequest<'_>,
    ) -> Result<Option<PseudoLabel>, GeneralistError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut mask = match &self.fixed {
            Some(fixed) => fixed.clone(),
            None => request.probability.mapv(|p| p > 0.5),
        };
        let known = self
            .answered
            .clone()
            .unwrap_or_else(|| Array3::from_elem(mask.raw_dim(), true));
        mask.zip_mut_with(&known, |m, &k| *m &= k);
        Ok(mask.iter().any(|&m| m).then_some(PseudoLabel {
            mask,
            known,
            prompts: 1,
        }))
    }
}

const SHAPE: [usize; 3] = [4, 6, 2];

/// One labeled + one unlabeled item; the unlabeled item's foreground probability is `fg` and
/// its patch came from the unlabeled case through `transform`.
fn context_parts(fg: &Array3<f32>, transform: ItemTransform) -> (Batch, Tensor<5>) {
    let device = Device::default();
    let [x, y, z] = SHAPE;
    let n = x * y * z;
    let images = Tensor::<5>::zeros([2, 1, x, y, z], &device);
    let labels = Tensor::<4, Int>::zeros([1, x, y, z], &device);
    let batch = Batch::new(images, labels, 1)
        .unwrap()
        .with_provenance(vec![
            provenance(ItemTransform::crop_only(SHAPE, [0; 3], SHAPE), true),
            provenance(transform, false),
        ])
        .unwrap();
    let mut values = vec![0.5f32; 2 * n]; // labeled item: uniform
    values.extend(fg.iter().map(|p| 1.0 - p));
    values.extend(fg.iter().copied());
    let probabilities = Tensor::<5>::from_data(TensorData::new(values, [2, 2, x, y, z]), &device);
    (batch, probabilities)
}

fn provenance(transform: ItemTransform, labeled: bool) -> ItemProvenance {
    ItemProvenance {
        case_id: if labeled { "lab".into() } else { "unl".into() },
        labeled,
        transform,
    }
}

fn run(
    assist: &mut SamAssist,
    fg: &Array3<f32>,
    transform: ItemTransform,
    step: usize,
) -> LossTerms {
    try_run_with_teacher(assist, fg, None, transform, step).unwrap()
}

/// As [`run`], with the teacher's foreground probability on the unlabeled item.
fn try_run_with_teacher(
    assist: &mut SamAssist,
    fg: &Array3<f32>,
    teacher_fg: Option<&Array3<f32>>,
    transform: ItemTransform,
    step: usize,
) -> Result<LossTerms, FrameworkError> {
    let (batch, probabilities) = context_parts(fg, transform);
    let teacher_probabilities = teacher_fg.map(|t| {
        let [x, y, z] = SHAPE;
        let mut values: Vec<f32> = t.iter().map(|p| 1.0 - p).collect();
        values.extend(t.iter().copied());
        Tensor::<5>::from_data(TensorData::new(values, [1, 2, x, y, z]), &Device::default())
    });
    let ctx = StepContext {
        index: StepIndex {
            step,
            max_steps: 6000,
        },
        batch: &batch,
        student_logits: probabilities.clone(),
        student_probabilities: probabilities,
        teacher_probabilities,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    assist.loss_terms(&ctx, &mut rng)
}

fn diagnostic(terms: &LossTerms, name: &str) -> f64 {
    terms.diagnostics.iter().find(|(n, _)| n == name).unwrap().1
}

fn assist(fixed: Option<Array3<bool>>, refresh_interval: usize) -> (SamAssist, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let generalist = Box::new(Echo {
        calls: Arc::clone(&calls),
        fixed,
        answered: None,
    });
    let config = SamConfig {
        refresh_interval,
        ..Default::default()
    };
    let image = Array3::from_shape_fn(SHAPE, |(i, j, k)| (i * 100 + j * 10 + k) as f32);
    (
        SamAssist::new(config, generalist, [("unl".to_string(), image)]),
        calls,
    )
}

#[test]
fn a_batch_without_provenance_is_refused() {
    let fg = Array3::from_elem(SHAPE, 0.9f32);
    let (mut batch, probabilities) =
        context_parts(&fg, ItemTransform::crop_only(SHAPE, [0; 3], SHAPE));
    batch.provenance.clear();
    let ctx = StepContext {
        index: StepIndex {
            step: 0,
            max_steps: 10,
        },
        batch: &batch,
        student_logits: probabilities.clone(),
        student_probabilities: probabilities,
        teacher_probabilities: None,
    };
    let (mut assist, calls) = assist(None, 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let error = assist.loss_terms(&ctx, &mut rng).unwrap_err().to_string();
    assert!(
        error.contains("does not say where its patches came from"),
        "{error}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let wrong_length = Batch::new(
        Tensor::<5>::zeros([2, 1, 4, 6, 2], &Device::default()),
        Tensor::<4, Int>::zeros([1, 4, 6, 2], &Device::default()),
        1,
    )
    .unwrap()
    .with_provenance(Vec::new())
    .unwrap_err()
    .to_string();
    assert_eq!(wrong_length, "batch: 0 item provenances for a batch of 2");
}

#[test]
fn ramp_down_matches_the_semisam_schedule() {
    let config = SamConfig::default();
    assert!((config.weight_at(0, 6000) - 0.1).abs() < 1e-12);
    assert!((config.weight_at(3000, 6000) - 0.1 * (-1.25f64).exp()).abs() < 1e-12);
    assert!((config.weight_at(6000, 6000) - 0.1 * (-5f64).exp()).abs() < 1e-12);
    // ⌊(6000 - 750)/150⌋ = 35 → 0.5 λ = 0.0462 (SemiSAM's table)
    assert!((0.5 * config.weight_at(750, 6000) - 0.0462).abs() < 5e-5);
}

#[test]
fn term_is_half_the_mean_squared_error_to_the_one_hot_pseudo_label() {
    let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
    let fixed = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
    let (mut assist, _) = assist(Some(fixed.clone()), 1);
    let terms = run(
        &mut assist,
        &fg,
        ItemTransform::crop_only(SHAPE, [0; 3], SHAPE),
        0,
    );
    let term = &terms.terms[0];
    assert_eq!(term.name, "sam");
    assert!((term.weight - 0.1).abs() < 1e-12);
    let mut sum = 0.0f64;
    for ((index, &p), &m) in fg.indexed_iter().zip(fixed.iter()) {
        let _ = index;
        let target = f64::from(u8::from(m));
        sum += (f64::from(1.0 - p) - (1.0 - target)).powi(2) + (f64::from(p) - target).powi(2);
    }
    let expected = 0.5 * sum / (2.0 * fg.len() as f64);
    let value = f64::from(term.value.clone().into_scalar::<f32>());
    assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
    assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
    assert_eq!(diagnostic(&terms, "sam/mean_area"), 2.0 * 6.0 * 2.0);
}

#[test]
fn prompts_come_from_the_teacher_when_asked() {
    // The student is confident nowhere; the teacher is confident on the first two rows.
    let student = Array3::from_elem(SHAPE, 0.2f32);
    let teacher = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);

    let (mut from_student, _) = assist(None, 1);
    let terms =
        try_run_with_teacher(&mut from_student, &student, Some(&teacher), identity, 0).unwrap();
    assert_eq!(diagnostic(&terms, "sam/items_with_term"), 0.0);

    let (mut from_teacher, _) = assist(None, 1);
    from_teacher.config.prompt_source = PromptSource::Teacher;
    let terms =
        try_run_with_teacher(&mut from_teacher, &student, Some(&teacher), identity, 0).unwrap();
    assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
    // The echoing generalist answers the teacher's confident voxels.
    let (classes, _) = from_teacher.patch_label(&provenance(identity, false));
    for (&c, &t) in classes.iter().zip(teacher.iter()) {
        assert_eq!(c, u8::from(t > 0.5));
    }

    let (mut without_teacher, _) = assist(None, 1);
    without_teacher.config.prompt_source = PromptSource::Teacher;
    let error = try_run_with_teacher(&mut without_teacher, &student, None, identity, 0)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("needs a framework with a teacher"),
        "{error}"
    );
}

#[test]
fn oracle_prompts_come_from_the_ground_truth_and_need_it() {
    // The student is confident everywhere; the label marks the first two rows only.
    let student = Array3::from_elem(SHAPE, 0.9f32);
    let label = Array3::from_shape_fn(SHAPE, |(i, _, _)| u8::from(i < 2));
    // Shifted into the padding and flipped: the label is looked up on the source grid.
    let transform = ItemTransform {
        flip: [true, false],
        ..ItemTransform::crop_only(SHAPE, [1, 0, 0], SHAPE)
    };

    let (oracle, _) = assist(None, 1);
    let mut oracle = oracle.with_ground_truth([("unl".to_string(), label.clone())]);
    oracle.config.prompt_source = PromptSource::GroundTruthOracle;
    let terms = run(&mut oracle, &student, transform, 0);
    assert_eq!(diagnostic(&terms, "sam/items_with_term"), 1.0);
    let (classes, _) = oracle.patch_label(&provenance(transform, false));
    let expected = transform.apply(label.view());
    assert_eq!(classes, expected);
    assert_eq!(classes.iter().filter(|&&c| c == 1).count(), 6 * 2);

    let (mut missing, _) = assist(None, 1);
    missing.config.prompt_source = PromptSource::GroundTruthOracle;
    let error = try_run_with_teacher(&mut missing, &student, None, transform, 0)
        .unwrap_err()
        .to_string();
    assert!(error.contains("case unl has no label"), "{error}");
}

#[test]
fn augmented_patches_map_back_and_forth_exactly() {
    // source 6x4x3, patch 4x6x2 after one quarter turn and a flip, window partly in padding
    let source = [6, 4, 3];
    let transform = ItemTransform {
        source_shape: source,
        origin: [0, -1, 1],
        rot90: 1,
        flip: [true, false],
        patch_shape: SHAPE,
    };
    let fg = Array3::from_shape_fn(
        SHAPE,
        |(i, j, k)| if (i + j + k) % 3 == 0 { 0.9 } else { 0.2 },
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let image = Array3::<f32>::zeros(source);
    let mut assist = SamAssist::new(
        SamConfig::default(),
        Box::new(Echo {
            calls: Arc::clone(&calls),
            fixed: None,
            answered: None,
        }),
        [("unl".to_string(), image)],
    );
    let terms = run(&mut assist, &fg, transform, 0);
    // SAM echoes the student's confident voxels: wherever the window lies inside the volume,
    // the pseudo-label must equal the student's prediction on the patch.
    assert_eq!(diagnostic(&terms, "sam/agreement_dice"), 1.0);
    let (classes, known) = assist.patch_label(&provenance(transform, false));
    let inside = transform.apply(Array3::from_elem(source, true).view());
    assert_eq!(known, inside);
    for ((&c, &k), &p) in classes.iter().zip(known.iter()).zip(fg.iter()) {
        if k {
            assert_eq!(c, u8::from(p > 0.5));
        }
    }
}

#[test]
fn refresh_interval_reuses_cached_pseudo_labels() {
    let fg = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
    let (mut assist, calls) = assist(None, 3);
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
    let refreshed: Vec<f64> = (0..7)
        .map(|step| diagnostic(&run(&mut assist, &fg, identity, step), "sam/refreshed"))
        .collect();
    assert_eq!(refreshed, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[test]
fn no_term_and_no_generalist_call_before_the_start_iteration() {
    let fg = Array3::from_elem(SHAPE, 0.9f32);
    let (mut assist, calls) = assist(None, 1);
    assist.config.start_iteration = 3;
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
    let with_term: Vec<usize> = (0..5)
        .map(|step| run(&mut assist, &fg, identity, step).terms.len())
        .collect();
    assert_eq!(with_term, vec![0, 0, 0, 1, 1]);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[test]
fn no_confident_foreground_means_no_term() {
    let fg = Array3::from_elem(SHAPE, 0.3f32);
    let (mut assist, _) = assist(None, 1);
    let terms = run(
        &mut assist,
        &fg,
        ItemTransform::crop_only(SHAPE, [0; 3], SHAPE),
        5,
    );
    assert!(terms.terms.is_empty());
    assert_eq!(diagnostic(&terms, "sam/items_without"), 1.0);
}

/// A term over an all-zero image whose generalist answers `fixed` (or echoes the student),
/// only on `answered` when given.
fn echo_assist(
    config: SamConfig,
    fixed: Option<Array3<bool>>,
    answered: Option<Array3<bool>>,
) -> SamAssist {
    let generalist = Box::new(Echo {
        calls: Arc::new(AtomicUsize::new(0)),
        fixed,
        answered,
    });
    let image = Array3::<f32>::zeros(SHAPE);
    SamAssist::new(config, generalist, [("unl".to_string(), image)])
}

/// Half the mean squared error of the two-class softmax `(1 - p, p)` to the one-hot `fixed`
/// over the voxels where `over` holds.
fn expected_term(fg: &Array3<f32>, fixed: &Array3<bool>, over: &Array3<bool>) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0usize);
    ndarray::Zip::from(fg)
        .and(fixed)
        .and(over)
        .for_each(|&p, &m, &o| {
            if o {
                let target = f64::from(u8::from(m));
                sum += 2.0 * (f64::from(p) - target).powi(2);
                count += 1;
            }
        });
    0.5 * sum / (2.0 * count as f64)
}

#[test]
fn voxels_without_an_answer_are_ignored_unless_configured_as_background() {
    let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
    let fixed = Array3::from_shape_fn(SHAPE, |(i, j, _)| i < 2 && j < 4);
    // the generalist answered on the first half of the second axis only ("prompted slices")
    let answered = Array3::from_shape_fn(SHAPE, |(_, j, _)| j < 3);
    let everywhere = Array3::from_elem(SHAPE, true);
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
    for (policy, over) in [
        (OutsidePrompts::Ignore, &answered),
        (OutsidePrompts::Background, &everywhere),
    ] {
        let config = SamConfig {
            outside_prompts: policy,
            ..Default::default()
        };
        let mut assist = echo_assist(config, Some(fixed.clone()), Some(answered.clone()));
        let terms = run(&mut assist, &fg, identity, 0);
        let value = f64::from(terms.terms[0].value.clone().into_scalar::<f32>());
        let expected = expected_term(&fg, &(&fixed & &answered), over);
        assert!(
            (value - expected).abs() < 1e-6,
            "{policy:?}: {value} vs {expected}"
        );
        // the pseudo-label area counts answered foreground: i < 2, j < 3, both k
        assert_eq!(diagnostic(&terms, "sam/mean_area"), 12.0);
    }
}

/// The unlabeled item's term with SAM answering `fixed` everywhere, under `config`.
fn term_value(config: SamConfig, fg: &Array3<f32>, teacher_fg: Option<&Array3<f32>>) -> f64 {
    let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
    let mut assist = echo_assist(config, Some(sam), None);
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
    let terms = try_run_with_teacher(&mut assist, fg, teacher_fg, identity, 0).unwrap();
    f64::from(terms.terms[0].value.clone().into_scalar::<f32>())
}

#[test]
fn agreement_weights_voxels_by_how_many_networks_side_with_sam() {
    let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
    let teacher_fg = Array3::from_shape_fn(SHAPE, |(i, j, _)| if i + j < 4 { 0.8 } else { 0.3 });
    let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
    let config = SamConfig {
        confidence: Confidence::Agreement,
        ..Default::default()
    };
    for teacher in [None, Some(&teacher_fg)] {
        let (mut weighted, mut total) = (0.0f64, 0.0f64);
        for (((&p, &m), &t), _) in fg.iter().zip(&sam).zip(&teacher_fg).zip(0..) {
            let agrees = |q: f32| f64::from(u8::from((q > 0.5) == m));
            let (agreeing, networks) = match teacher {
                Some(_) => (agrees(p) + agrees(t), 2.0),
                None => (agrees(p), 1.0),
            };
            let w = (1.0 + agreeing) / (1.0 + networks);
            weighted += w * 2.0 * (f64::from(p) - f64::from(u8::from(m))).powi(2);
            total += w;
        }
        let expected = 0.5 * weighted / (2.0 * total);
        let value = term_value(config.clone(), &fg, teacher);
        assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
    }
}

#[test]
fn dice_ce_replaces_the_squared_error() {
    // The test context passes the probabilities (1 - p, p) as the student's logits.
    let fg = Array3::from_shape_fn(SHAPE, |(i, j, k)| ((i + 2 * j + 3 * k) % 7) as f32 / 7.0);
    let sam = Array3::from_shape_fn(SHAPE, |(i, _, _)| i < 2);
    let (mut ce, mut intersection, mut denominator) = (0.0f64, 0.0f64, 0.0f64);
    for (&p, &m) in fg.iter().zip(&sam) {
        let p = f64::from(p);
        let q = p.exp() / (p.exp() + (1.0 - p).exp());
        let t = f64::from(u8::from(m));
        ce -= if m { q.ln() } else { (1.0 - q).ln() };
        intersection += q * t;
        denominator += q * q + t;
    }
    ce /= fg.len() as f64;
    let s = 1e-5;
    let dice = 1.0 - (2.0 * intersection + s) / (denominator + s);
    let config = SamConfig {
        loss: SamLoss::DiceCe,
        ..Default::default()
    };
    let value = term_value(config, &fg, None);
    let expected = 0.5 * (ce + dice);
    assert!((value - expected).abs() < 1e-5, "{value} vs {expected}");
}

#[test]
fn reused_labels_round_trip_through_checkpoint_bytes() {
    let fg = Array3::from_shape_fn(SHAPE, |(i, _, _)| if i < 2 { 0.9 } else { 0.1 });
    let answered = Array3::from_shape_fn(SHAPE, |(_, _, k)| k == 0);
    let make = || {
        let config = SamConfig {
            refresh_interval: 100,
            ..Default::default()
        };
        echo_assist(config, None, Some(answered.clone()))
    };
    let identity = ItemTransform::crop_only(SHAPE, [0; 3], SHAPE);
    let mut original = make();
    run(&mut original, &fg, identity, 0);
    let bytes = original.export_labels();
    let mut restored = make();
    restored.import_labels(&bytes).unwrap();
    let item = provenance(identity, false);
    assert_eq!(restored.patch_label(&item), original.patch_label(&item));
    assert_eq!(restored.patch_label(&item).1, answered);

    // a version-1 section (no known voxels) restores its labels as known where they cover
    let mut v1 = LABELS_MAGIC_V1.to_vec();
    v1.extend(&bytes[LABELS_MAGIC.len()..bytes.len() - answered.len()]);
    restored.import_labels(&v1).unwrap();
    assert_eq!(
        restored.patch_label(&item).1,
        Array3::from_elem(SHAPE, true)
    );

    let truncated = &bytes[..bytes.len() - 1];
    let err = restored.import_labels(truncated).unwrap_err().to_string();
    assert!(err.contains("corrupt (known voxels)"), "{err}");
}

#[test]
fn held_out_dice_scores_the_pseudo_label_against_the_reference() {
    // Three classes; the echo generalist answers p > 0.5 per class.
    let [x, y, z] = SHAPE;
    let mut probabilities = ndarray::Array4::<f32>::zeros((3, x, y, z));
    let mut reference = Array3::<u8>::zeros(SHAPE);
    // Class 1: pseudo-label 4 voxels, reference 2 of them plus 2 others → Dice 2·2/8.
    for i in 0..4 {
        probabilities[[1, i, 0, 0]] = 0.9;
    }
    for voxel in [[0, 0, 0], [1, 0, 0], [0, 2, 1], [1, 2, 1]] {
        reference[voxel] = 1;
    }
    // Class 2: absent from both → Dice 1.
    let (mut assist, calls) = assist(None, 1);
    let image = Array3::<f32>::zeros(SHAPE);
    let dice = assist
        .held_out_dice("val", &image, &probabilities, &reference)
        .unwrap();
    assert!(
        (dice - (2.0 * 2.0 / 8.0 + 1.0) / 2.0).abs() < 1e-12,
        "{dice}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 2, "one request per class");
}
