//! LiteMedSAM parity against PyTorch fixtures (real checkpoint, float32, CPU), compacted into
//! tests/fixtures/litemedsam by its compact.py. Needs the real weights in the weights cache
//! (`semisam weights fetch`); without them every test fails with that instruction.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::TensorData;
use ndarray::{Array2, Array3, ArrayD, ArrayView2};
use ndarray_npy::{ReadableElement, read_npy};
use semisam::generalists::litemedsam::{
    Embedding, LiteMedSam, LogitWindow, PreparedImage, Prompts, postprocess_mask,
    postprocess_mask_region, prepare_image, resize_area,
};
use semisam::generalists::weights_cache::{self, LITEMEDSAM};

const CASES: [&str; 3] = ["case0_synthetic", "case1_ct", "case2_us"];
const EMBED_STRIDE: usize = 3;
const INPUT_STRIDE: usize = 3;
const PE_STRIDE: usize = 7;
const CROP: usize = 8;

const EMBEDDING_ATOL: f32 = 1e-4;
const SPARSE_ATOL: f32 = 1e-5;
const LOGITS_ATOL: f32 = 1e-3;
const IOU_ATOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litemedsam")
}

fn load<T: ReadableElement>(rel: &str) -> ArrayD<T> {
    let path = fixture_dir().join(rel);
    read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_f32(rel: &str) -> Vec<f32> {
    load::<f32>(rel).iter().copied().collect()
}

fn model() -> &'static LiteMedSam {
    static MODEL: OnceLock<LiteMedSam> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = weights_cache::locate(&LITEMEDSAM)
            .unwrap_or_else(|e| panic!("LiteMedSAM parity tests need the real checkpoint: {e}"));
        LiteMedSam::load(&path, &semisam::backend::default_device())
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

fn count_differing(a: ArrayView2<u8>, b: ArrayView2<u8>) -> usize {
    assert_eq!(a.dim(), b.dim(), "mask sizes");
    a.iter().zip(b.iter()).filter(|(x, y)| x != y).count()
}

/// Max |a − b| after checking the lengths agree.
fn max_abs_diff(what: &str, actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32], atol: f32) {
    let diff = max_abs_diff(what, actual, expected);
    assert!(diff <= atol, "{what}: max abs error {diff:e} > {atol:e}");
    eprintln!("{what}: max abs error {diff:e} (tolerance {atol:e})");
}

/// Values of a (C, H, W) row-major tensor at rows/cols 0, s, 2s, ...
fn subsample(values: &[f32], [c, h, w]: [usize; 3], stride: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for ch in 0..c {
        for i in (0..h).step_by(stride) {
            for j in (0..w).step_by(stride) {
                out.push(values[(ch * h + i) * w + j]);
            }
        }
    }
    out
}

/// The `[.., r0..r0+n, c0..c0+n]` crop of a (1, C, H, W) tensor.
fn crop(data: &TensorData, r0: usize, c0: usize, n: usize) -> Vec<f32> {
    let dims = data.shape().to_vec();
    let (c, h, w) = (dims[1], dims[2], dims[3]);
    let values = data.try_to_vec::<f32>().unwrap();
    let mut out = Vec::with_capacity(c * n * n);
    for ch in 0..c {
        for i in r0..r0 + n {
            out.extend_from_slice(&values[(ch * h + i) * w + c0..(ch * h + i) * w + c0 + n]);
        }
    }
    out
}

struct CaseRun {
    prepared: PreparedImage,
    embedding: Embedding,
    prompts: Prompts,
}

fn raw_image(case: &str) -> Array3<u8> {
    load::<u8>(&format!("{case}/raw_image.npy"))
        .into_dimensionality()
        .unwrap()
}

fn prepare_case(case: &str) -> CaseRun {
    let prepared = prepare_image(raw_image(case).view()).unwrap();
    let box_orig = load_f32(&format!("{case}/box_orig.npy"));
    let bbox = prepared
        .geometry
        .scale_box([0, 1, 2, 3].map(|i| box_orig[i] as f64));
    assert_eq!(
        bbox.to_vec(),
        load_f32(&format!("{case}/box_256.npy")),
        "{case}: box scaled to 256"
    );
    let embedding = model().embed(&prepared);
    CaseRun {
        prepared,
        embedding,
        prompts: Prompts::from_box(bbox),
    }
}

fn check_case(case: &str) {
    let run = prepare_case(case);
    let expected_input = load_f32(&format!("{case}/input_s{INPUT_STRIDE}.npy"));
    let input = subsample(&run.prepared.pixels, [3, 256, 256], INPUT_STRIDE);
    assert_eq!(
        max_abs_diff(&format!("{case} input"), &input, &expected_input),
        0.0,
        "{case}: preprocessed input"
    );

    let embedding = subsample(&run.embedding.to_vec(), [256, 64, 64], EMBED_STRIDE);
    let expected = load_f32(&format!("{case}/image_embedding_s{EMBED_STRIDE}.npy"));
    assert_close(
        &format!("{case} image embedding"),
        &embedding,
        &expected,
        EMBEDDING_ATOL,
    );

    let sparse = model().sparse_embeddings(&run.prompts).unwrap();
    assert_close(
        &format!("{case} sparse"),
        &sparse,
        &load_f32(&format!("{case}/sparse_embeddings.npy")),
        SPARSE_ATOL,
    );

    let logits = model().decode(&run.embedding, &run.prompts).unwrap();
    let expected_logits = load_f32(&format!("{case}/low_res_logits.npy"));
    assert_close(
        &format!("{case} low-res logits"),
        &logits.values,
        &expected_logits,
        LOGITS_ATOL,
    );
    let expected_iou = load_f32(&format!("{case}/iou_pred.npy"))[0];
    assert_close(
        &format!("{case} iou"),
        &[logits.iou],
        &[expected_iou],
        IOU_ATOL,
    );

    let mask = postprocess_mask(&logits, &run.prepared.geometry).unwrap();
    let expected_mask: Array2<u8> = load::<u8>(&format!("{case}/mask_orig.npy"))
        .into_dimensionality()
        .unwrap();
    assert_eq!(mask.dim(), expected_mask.dim(), "{case}: mask size");
    let differing = count_differing(mask.view(), expected_mask.view());
    assert_eq!(differing, 0, "{case}: {differing} mask pixels differ");
    assert!(
        expected_mask.iter().any(|&v| v == 1),
        "{case}: fixture mask is not empty"
    );
}

#[test]
fn case0_synthetic_matches_pytorch() {
    check_case(CASES[0]);
}

#[test]
fn case1_ct_matches_pytorch() {
    check_case(CASES[1]);
}

#[test]
fn case2_us_matches_pytorch() {
    check_case(CASES[2]);
}

#[test]
fn area_resize_matches_opencv() {
    for case in &CASES[1..] {
        let raw = raw_image(case);
        let expected: Array3<u8> = load::<u8>(&format!("{case}/resized_image.npy"))
            .into_dimensionality()
            .unwrap();
        let (h, w, _) = expected.dim();
        let resized = resize_area(raw.view(), [h, w]);
        let differing = resized
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{case}: {differing} resized pixels differ from cv2.INTER_AREA"
        );
    }
}

/// Encoder stages of case 0: top-left and bottom-right crops (the latter covers the zero-padded
/// attention windows). Tolerance 1e-4 of the stage's largest magnitude.
#[test]
fn case0_encoder_stages_match_pytorch() {
    let prepared = prepare_image(raw_image(CASES[0]).view()).unwrap();
    let mut stages: Vec<(String, TensorData)> = Vec::new();
    let mut observer = |name: &str, data: TensorData| stages.push((name.to_string(), data));
    model().embed_traced(&prepared, Some(&mut observer));
    let names = [
        "patch_embed",
        "layer0_block1",
        "layer0",
        "layer1_block1",
        "layer1",
        "layer2_block5",
        "layer2",
        "layer3",
    ];
    for name in names {
        let (_, data) = stages
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("stage {name} not reported"));
        let dims = data.shape().to_vec();
        let (h, w) = (dims[2], dims[3]);
        for (corner, r0, c0) in [("tl", 0, 0), ("br", h - CROP, w - CROP)] {
            let expected = load_f32(&format!("case0_synthetic/stages/{name}_{corner}.npy"));
            let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert_close(
                &format!("stage {name} {corner}"),
                &crop(data, r0, c0, CROP),
                &expected,
                1e-4 * scale,
            );
        }
    }
}

/// Decoder intermediates of case 0, fed with the Rust embedding.
#[test]
fn case0_decoder_intermediates_match_pytorch() {
    let run = prepare_case(CASES[0]);
    let mut seen: Vec<(String, TensorData)> = Vec::new();
    let mut observer = |name: &str, data: TensorData| seen.push((name.to_string(), data));
    model()
        .decode_traced(&run.embedding, &run.prompts, Some(&mut observer))
        .unwrap();
    let get = |name: &str| {
        let (_, data) = seen
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not reported"));
        data.try_to_vec::<f32>().unwrap()
    };
    let dec = "case0_synthetic/decoder";
    assert_close(
        "tokens_in",
        &get("tokens_in"),
        &load_f32(&format!("{dec}/tokens_in.npy")),
        SPARSE_ATOL,
    );
    assert_close(
        "transformer_hs",
        &get("transformer_hs"),
        &load_f32(&format!("{dec}/transformer_hs.npy")),
        1e-3,
    );
    let keys = get("transformer_keys");
    let row = 64 * 256;
    assert_close(
        "keys grid row 0",
        &keys[..row],
        &load_f32(&format!("{dec}/transformer_keys_first64.npy")),
        1e-3,
    );
    assert_close(
        "keys grid row 63",
        &keys[keys.len() - row..],
        &load_f32(&format!("{dec}/transformer_keys_last64.npy")),
        1e-3,
    );
    let (_, upscaled) = seen
        .iter()
        .find(|(n, _)| n == "upscaled")
        .expect("upscaled reported");
    assert_close(
        "upscaled tl",
        &crop(upscaled, 0, 0, 16),
        &load_f32(&format!("{dec}/upscaled_tl.npy")),
        1e-3,
    );
    assert_close(
        "upscaled br",
        &crop(upscaled, 240, 240, 16),
        &load_f32(&format!("{dec}/upscaled_br.npy")),
        1e-3,
    );
}

/// A batched decode gives the same logits as one-by-one decoding, in input order, also when
/// box-only and point prompts are mixed (different token counts).
#[test]
fn batched_decode_equals_single_decodes() {
    let run = prepare_case(CASES[0]);
    let mut prompts = vec![
        run.prompts.clone(),
        Prompts::from_box([20.0, 30.0, 120.0, 200.0]),
    ];
    prompts.insert(
        1,
        Prompts {
            bbox: None,
            points: vec![semisam::generalists::litemedsam::PointPrompt {
                x: 150.0,
                y: 110.0,
                positive: true,
            }],
        },
    );
    let batched = model()
        .decode_batch(&run.embedding, &prompts, &LogitWindow::full())
        .unwrap();
    assert_eq!(batched.len(), 3);
    for (i, p) in prompts.iter().enumerate() {
        let single = model().decode(&run.embedding, p).unwrap();
        assert_close(
            &format!("batched prompt {i}"),
            &batched[i].values,
            &single.values,
            1e-4,
        );
        assert!(
            (batched[i].iou - single.iou).abs() <= 1e-5,
            "prompt {i} iou"
        );
    }
    let expected_logits = load_f32("case0_synthetic/low_res_logits.npy");
    assert_close(
        "batched case0",
        &batched[0].values,
        &expected_logits,
        LOGITS_ATOL,
    );
}

/// Decoding only a window of the logit grid (what a training patch needs) gives the full decode's
/// logits there, and the region's mask is the full mask cropped: the PyTorch reference mask too.
#[test]
fn windowed_decode_equals_the_full_decode_cropped() {
    for case in CASES {
        let run = prepare_case(case);
        let geometry = run.prepared.geometry;
        let [h, _] = geometry.original_hw;
        let reference: Array2<u8> = load::<u8>(&format!("{case}/mask_orig.npy"))
            .into_dimensionality()
            .unwrap();
        // From a few pixels above-left of the reference mask to its centre: the region cuts
        // through the mask, as a training patch does.
        let foreground: Vec<(usize, usize)> = reference
            .indexed_iter()
            .filter(|&(_, &v)| v == 1)
            .map(|(at, _)| at)
            .collect();
        let extent = |pick: fn(&(usize, usize)) -> usize| {
            let lo = foreground.iter().map(pick).min().unwrap();
            let hi = foreground.iter().map(pick).max().unwrap();
            lo.saturating_sub(7)..(lo + hi) / 2 + 1
        };
        let (rows, cols) = (extent(|p| p.0), extent(|p| p.1));
        let window = LogitWindow::covering(&geometry, rows.clone(), cols.clone());
        assert!(
            window.height() < 256 && window.width() < 256,
            "{case}: {window:?}"
        );
        let full = model().decode(&run.embedding, &run.prompts).unwrap();
        let windowed = model()
            .decode_batch(&run.embedding, std::slice::from_ref(&run.prompts), &window)
            .unwrap()
            .remove(0);
        let expected: Vec<f32> = (0..window.height())
            .flat_map(|y| {
                let row = 4 * window.cell_rows.start + y;
                let start = row * 256 + 4 * window.cell_cols.start;
                full.values[start..start + window.width()].to_vec()
            })
            .collect();
        assert_close(&format!("{case} window"), &windowed.values, &expected, 1e-5);

        let region =
            postprocess_mask_region(&windowed, &geometry, rows.clone(), cols.clone()).unwrap();
        let full_mask = postprocess_mask(&full, &geometry).unwrap();
        assert_eq!(
            region,
            full_mask.slice(ndarray::s![rows.clone(), cols.clone()])
        );
        let differing = count_differing(
            region.view(),
            reference.slice(ndarray::s![rows.clone(), cols.clone()]),
        );
        assert_eq!(differing, 0, "{case}: {differing} mask pixels differ");
        assert!(
            region.iter().any(|&v| v == 1),
            "{case}: region holds foreground"
        );

        // A window that misses part of the region is refused, naming the region.
        let err = postprocess_mask_region(&windowed, &geometry, 0..h, cols).unwrap_err();
        assert!(err.to_string().contains("do not cover"), "{err}");
    }
}

/// The dense positional encoding (`get_dense_pe`) at a 7-strided subsample of the grid.
#[test]
fn dense_positional_encoding_matches_pytorch() {
    let pe = subsample(
        &model().dense_positional_encoding(),
        [256, 64, 64],
        PE_STRIDE,
    );
    assert_close(
        "image_pe",
        &pe,
        &load_f32(&format!("shared/image_pe_s{PE_STRIDE}.npy")),
        1e-5,
    );
}

#[test]
fn empty_prompt_is_rejected() {
    let run = prepare_case(CASES[1]);
    let err = model()
        .decode(&run.embedding, &Prompts::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("box or at least one point"),
        "{err}"
    );
}

/// The on-disk store's bytes give back the same half-precision embedding and geometry (bit for
/// bit), and the features are the encoder's rounded to f16.
#[test]
fn slice_embeddings_round_trip_through_bytes() {
    use semisam::generalists::slicewise::SliceModel;
    use semisam::generalists::slicewise::litemedsam::LiteMedSamSlices;
    let slices = LiteMedSamSlices::new(model().clone(), "test");
    let slice = Array2::from_shape_fn((40, 70), |(i, j)| ((i * 7 + j * 3) % 50) as f32);
    let embedding = slices.embed(slice.view()).unwrap();
    assert_eq!(embedding.features.len(), 256 * 64 * 64);
    assert_eq!(
        LiteMedSamSlices::embedding_bytes(&embedding),
        2 * 256 * 64 * 64 + std::mem::size_of_val(&embedding)
    );
    let bytes = slices.embedding_to_bytes(&embedding);
    assert_eq!(bytes.len(), 32 + 2 * 256 * 64 * 64);
    assert_eq!(slices.embedding_from_bytes(&bytes).unwrap(), embedding);
    for short in [&bytes[..bytes.len() - 2], &bytes[..31]] {
        let err = slices.embedding_from_bytes(short).unwrap_err().to_string();
        assert_eq!(err, "not a LiteMedSAM slice embedding");
    }
    // what the f32 store (format 1) wrote is not read as half precision, but is read as f32
    let features: Vec<f32> = embedding
        .features
        .iter()
        .map(|v| v.to_f32() * 1.0001)
        .collect();
    let mut f32_payload = bytes[..32].to_vec();
    f32_payload.extend(features.iter().flat_map(|v| v.to_le_bytes()));
    assert!(slices.embedding_from_bytes(&f32_payload).is_err());
    let converted = slices
        .embedding_from_format1(&f32_payload)
        .unwrap()
        .unwrap();
    assert_eq!(converted.geometry, embedding.geometry);
    let expected: Vec<half::f16> = features.iter().map(|&v| half::f16::from_f32(v)).collect();
    assert_eq!(converted.features, expected);
    assert!(slices.embedding_from_format1(&bytes).is_err());
}

/// f16 rounding stays within half a unit in the last place of f16 (2^-11 relative, or 2^-25
/// absolute below the normal range).
#[test]
fn half_precision_round_trip_error_is_bounded() {
    let run = prepare_case("case1_ct");
    let full = run.embedding.to_vec();
    let half = model()
        .embedding_from_half(&run.embedding.to_half())
        .unwrap()
        .to_vec();
    let mut worst_relative = 0.0f32;
    for (a, b) in full.iter().zip(&half) {
        let error = (a - b).abs();
        assert!(
            error <= a.abs() * 2f32.powi(-11) + 2f32.powi(-25),
            "{a} became {b}"
        );
        if a.abs() > 1e-3 {
            worst_relative = worst_relative.max(error / a.abs());
        }
    }
    let scale = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("f16 round trip: worst relative error {worst_relative:e} (|features| <= {scale})");
    assert!(
        model()
            .embedding_from_half(&run.embedding.to_half()[1..])
            .is_none()
    );
}

/// Masks decoded from half-precision embeddings (as the slice cache and store keep them) are
/// the f32 masks up to a few boundary pixels.
#[test]
fn half_precision_embeddings_keep_the_masks() {
    for case in CASES {
        let run = prepare_case(case);
        let half = model()
            .embedding_from_half(&run.embedding.to_half())
            .unwrap();
        let geometry = &run.prepared.geometry;
        let full = model().decode(&run.embedding, &run.prompts).unwrap();
        let rounded = model().decode(&half, &run.prompts).unwrap();
        let full = postprocess_mask(&full, geometry).unwrap();
        let rounded = postprocess_mask(&rounded, geometry).unwrap();
        let differing = count_differing(full.view(), rounded.view());
        let both = full
            .iter()
            .zip(&rounded)
            .filter(|(a, b)| **a == 1 && **b == 1)
            .count();
        let sizes = full.iter().chain(&rounded).filter(|v| **v == 1).count();
        let dice = 2.0 * both as f64 / sizes as f64;
        eprintln!(
            "{case}: {differing} of {} mask pixels differ (f16 vs f32 embedding), Dice {dice:.5}",
            full.len()
        );
        assert!(sizes > 0, "{case}: empty masks");
        assert!(
            differing as f64 <= 1e-3 * full.len() as f64 && dice >= 0.995,
            "{case}: {differing} pixels differ, Dice {dice}"
        );
    }
}
