//! SemiSAM-MT trained end to end with the tiny fixture SAM-Med3D as generalist, and the `[sam]`
//! keys that select and configure it.

use std::path::PathBuf;

mod common;

use ndarray::Array3;
use semisam::data::batches::{LabeledCase, TrainingPool, UnlabeledCase};
use semisam::training::run_dir::RunDir;
use semisam::training::validation::EvalCase;
use semisam::training::{RunConfig, TrainOptions, TrainOutcome, TrainingData, train};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sammed3d")
        .join(name)
        .display()
        .to_string()
}

/// The tiny run with the `[sam]` section `sam` (TOML literal strings keep paths verbatim).
fn config(sam: &str) -> Result<RunConfig, String> {
    common::tiny_run().with_sections(sam).parse()
}

fn tiny_sam_section(extra: &str) -> String {
    format!(
        r#"[sam]
generalist = "sammed3d"
weights = '{}'
model_config = '{}'
clicks = 3
iterations_per_epoch = 1
{extra}

[sam.prompts]
threshold = 0.3
"#,
        fixture("tiny_sammed3d.pth"),
        fixture("model_config_tiny.json")
    )
}

/// A bright ellipsoid (label 1) on a textured background, different per case.
fn case(n: usize) -> (Array3<f32>, Array3<u8>) {
    let centre = [9.0 + 0.7 * n as f32, 8.0, 8.5 - 0.4 * n as f32];
    let label = Array3::from_shape_fn((19, 17, 18), |(i, j, k)| {
        let r2 = ((i as f32 - centre[0]) / 5.0).powi(2)
            + ((j as f32 - centre[1]) / 4.0).powi(2)
            + ((k as f32 - centre[2]) / 4.5).powi(2);
        u8::from(r2 < 1.0)
    });
    let image = Array3::from_shape_fn(label.raw_dim(), |(i, j, k)| {
        let texture = ((i * 7 + j * 11 + k * 5 + n * 3) % 13) as f32 / 13.0 - 0.5;
        1.5 * f32::from(label[[i, j, k]]) - 0.6 + 0.4 * texture
    });
    (image, label)
}

fn data() -> TrainingData {
    let labeled = (0..2)
        .map(|n| {
            let (image, label) = case(n);
            LabeledCase {
                id: format!("L{n}"),
                image,
                label,
            }
        })
        .collect();
    let unlabeled = (2..5)
        .map(|n| UnlabeledCase {
            id: format!("U{n}"),
            image: case(n).0,
        })
        .collect();
    let (image, label) = case(5);
    TrainingData {
        pool: TrainingPool { labeled, unlabeled },
        validation: vec![EvalCase {
            id: "V5".into(),
            image,
            label,
        }],
        oracle_labels: vec![],
    }
}

#[test]
fn semisam_trains_with_the_tiny_sammed3d_as_generalist() {
    let config = config(&tiny_sam_section("")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path(), "sam3d", false).unwrap();
    let outcome = train(&config, &data(), &run, &TrainOptions::default()).unwrap();
    assert!(
        matches!(outcome, TrainOutcome::Completed { steps: 3, .. }),
        "{outcome:?}"
    );

    let log = std::fs::read_to_string(run.log_jsonl_path()).unwrap();
    let iterations: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "iteration")
        .collect();
    assert_eq!(iterations.len(), 3);
    let number = |record: &serde_json::Value, key: &str| {
        record[key]
            .as_f64()
            .unwrap_or_else(|| panic!("step {}: no {key}", record["step"]))
    };
    for record in &iterations {
        for (key, value) in record.as_object().unwrap() {
            if key.starts_with("loss/") {
                let value = value.as_f64().unwrap();
                assert!(
                    value.is_finite(),
                    "step {}: {key} = {value}",
                    record["step"]
                );
            }
        }
        let with = number(record, "sam/items_with_term");
        let without = number(record, "sam/items_without");
        assert_eq!(with + without, 2.0, "two unlabeled items per batch");
    }
    let with_term: Vec<&serde_json::Value> = iterations
        .iter()
        .filter(|r| number(r, "sam/items_with_term") > 0.0)
        .collect();
    assert!(!with_term.is_empty(), "no step had a SAM term: {log}");
    for record in with_term {
        let sam = number(record, "loss/sam");
        assert!(sam.is_finite() && sam > 0.0, "loss/sam = {sam}");
        assert!(number(record, "sam/refreshed") > 0.0);
        assert!(number(record, "weight/sam") > 0.0);
    }
}

#[test]
fn sammed3d_parses_and_builds_with_its_keys() {
    let extra = "first_mask_prompt = \"none\"\nkeep_all_clicks = true\ncrop_voxel_size = 1.5\n\
                 crop_normalization = \"positive_zscore\"\nlogit_threshold = 0.5\ncache_capacity = 2";
    let config = config(&tiny_sam_section(extra)).unwrap();
    let sam = config.sam.unwrap();
    let generalist = sam
        .generalist
        .build(&sam.prompts, &semisam::backend::default_device())
        .unwrap();
    assert_eq!(
        generalist.identity(),
        format!("SAM-Med3D file:{} (3 clicks)", fixture("tiny_sammed3d.pth"))
    );
}

#[test]
fn sammed3d_without_weights_is_a_configuration_error_naming_the_key() {
    let section = format!(
        "[sam]\ngeneralist = \"sammed3d\"\nmodel_config = '{}'\n",
        fixture("model_config_tiny.json")
    );
    let err = config(&section).unwrap_err();
    assert!(
        err.contains("[sam] weights is required") && err.contains("sam_med3d_turbo.pth"),
        "{err}"
    );
}

#[test]
fn a_model_config_that_does_not_fit_the_checkpoint_is_an_error() {
    // no model_config: the vit_b_ori architecture meets the tiny checkpoint
    let section = format!(
        "[sam]\ngeneralist = \"sammed3d\"\nweights = '{}'\n",
        fixture("tiny_sammed3d.pth")
    );
    let err = build_error(&section);
    assert!(
        err.contains("does not fit the configured architecture")
            && err.contains("image_encoder.pos_embed"),
        "{err}"
    );
}

#[test]
fn unknown_and_misspelt_sam_keys_are_rejected() {
    let err = config(&tiny_sam_section("click = 4")).unwrap_err();
    assert!(err.contains("unknown field `click`"), "{err}");
    let err = config(&tiny_sam_section("crop_normalization = \"minmax\"")).unwrap_err();
    assert!(err.contains("minmax"), "{err}");
    let err = config("[sam]\ngeneralist = \"sam3d\"").unwrap_err();
    assert!(err.contains("sam3d"), "{err}");
}

/// The error of building the generalist of a `[sam]` section that parses.
fn build_error(section: &str) -> String {
    let sam = config(section).unwrap().sam.unwrap();
    sam.generalist
        .build(&sam.prompts, &semisam::backend::default_device())
        .err()
        .expect("building the generalist fails")
        .to_string()
}

#[test]
fn an_embedding_store_is_refused_for_sammed3d_when_the_configuration_is_parsed() {
    let err = config(&tiny_sam_section("embedding_dir = \"emb\"")).unwrap_err();
    assert!(
        err.contains(": [sam] embedding_dir applies to generalist = \"litemedsam\" only (line "),
        "{err}"
    );
}
