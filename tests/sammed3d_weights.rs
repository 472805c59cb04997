//! Checkpoint reading and architecture anatomy of the SAM-Med3D port.

mod sammed3d_support;

use burn::tensor::Device;
use sammed3d_support::*;
use semisam::generalists::sammed3d::weights::Nesting;
use semisam::generalists::sammed3d::{
    ModelConfig, SamMed3d, SamMed3dError, StateDict, check_checkpoint_with_config,
};

#[test]
fn full_size_vit_b_ori_has_every_reference_key_and_shape() {
    let text = std::fs::read_to_string(fixture_path("state_dict_keys_vit_b_ori.json")).unwrap();
    let anatomy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected: Vec<(String, Vec<usize>)> = anatomy["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let key = entry[0].as_str().unwrap().to_string();
            let shape = entry[1].as_array().unwrap().iter();
            (key, shape.map(|v| v.as_u64().unwrap() as usize).collect())
        })
        .collect();
    assert_eq!(expected.len(), 324);

    let config = ModelConfig::from_json_file(&fixture_path("model_config_vit_b_ori.json")).unwrap();
    assert_eq!(config, ModelConfig::vit_b_ori());
    // Random weights, no forward pass: this checks the architecture only.
    let model = SamMed3d::random(&config, &Device::default());
    let actual = model.parameter_keys();
    for (want, got) in expected.iter().zip(actual) {
        assert_eq!(got, want, "first difference from the reference state dict");
    }
    assert_eq!(actual.len(), expected.len());

    let count = |prefix: &str| -> usize {
        actual
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !k.ends_with("positional_encoding_gaussian_matrix"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    };
    let counts = &anatomy["counts"];
    assert_eq!(
        count("image_encoder."),
        counts["parameters_image_encoder"].as_u64().unwrap() as usize
    );
    assert_eq!(
        count("prompt_encoder."),
        counts["parameters_prompt_encoder"].as_u64().unwrap() as usize
    );
    assert_eq!(
        count("mask_decoder."),
        counts["parameters_mask_decoder"].as_u64().unwrap() as usize
    );
    assert_eq!(count(""), 100_509_232);
}

#[test]
fn tiny_checkpoint_in_official_nesting_fits() {
    let path = fixture_path("tiny_sammed3d.pth");
    let state = StateDict::open(&path).unwrap();
    assert_eq!(state.nesting, Nesting::ModelStateDict);
    assert_eq!(state.len(), 204);
    assert_eq!(
        state.shape("image_encoder.blocks.0.attn.rel_pos_d"),
        Some(&[27, 24][..])
    );
    let report = check_checkpoint_with_config(&path, &tiny_config()).unwrap();
    assert!(report.fits(), "{report}");
    assert_eq!(report.tensors, 204);
    // 1,089,370 parameters plus the (3, 16) Fourier-feature buffer.
    assert_eq!(report.values, 1_089_370 + 48);
    assert!(
        report
            .to_string()
            .contains("nested under 'model_state_dict'"),
        "{report}"
    );
}

#[test]
fn tiny_checkpoint_does_not_fit_vit_b_ori() {
    let path = fixture_path("tiny_sammed3d.pth");
    let report = check_checkpoint_with_config(&path, &ModelConfig::vit_b_ori()).unwrap();
    assert!(!report.fits());
    // vit_b_ori has 12 blocks, the tiny model 4: blocks 4..11 are missing.
    assert!(
        report
            .problems
            .missing
            .contains(&"image_encoder.blocks.11.norm1.weight".to_string())
    );
    let pos = (
        "image_encoder.pos_embed".to_string(),
        vec![1, 8, 8, 8, 96],
        vec![1, 8, 8, 8, 768],
    );
    assert!(
        report.problems.mis_shaped.contains(&pos),
        "{:?}",
        report.problems.mis_shaped
    );
    assert!(report.problems.unexpected.is_empty());
}

#[test]
fn bare_state_dict_with_module_prefix_is_read_and_faults_are_named() {
    let path = fixture_path("bad_bare_checkpoint.pth");
    let state = StateDict::open(&path).unwrap();
    assert_eq!(state.nesting, Nesting::Bare);
    assert_eq!(
        state.shape("image_encoder.patch_embed.proj.bias"),
        Some(&[96][..])
    );

    let err = SamMed3d::load(&path, &tiny_config(), &Device::default()).unwrap_err();
    assert!(matches!(err, SamMed3dError::WeightsMismatch { .. }));
    let message = err.to_string();
    for needle in [
        "bad_bare_checkpoint.pth",
        "150 missing: image_encoder.pos_embed, image_encoder.patch_embed.proj.weight, image_encoder.blocks.0.norm1.weight",
        "1 unexpected: pixel_mean",
        "1 mis-shaped: prompt_encoder.no_mask_embed.weight (file [1, 47], model [1, 48])",
        "1 unreadable: prompt_encoder.not_a_point_embed.weight (dtype F16, expected float32)",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }

    let report = check_checkpoint_with_config(&path, &tiny_config()).unwrap();
    assert_eq!(report.nesting, Nesting::Bare);
    assert_eq!(report.tensors, 55);
    let missing_transformer = report
        .problems
        .missing
        .iter()
        .filter(|k| k.starts_with("mask_decoder.transformer."))
        .count();
    // 2 layers x (3 attentions x 8 + 4 norms x 2 + MLP 4) + final attention 8 + its norm 2.
    assert_eq!(missing_transformer, 82);
}

#[test]
fn unreadable_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    let err = StateDict::open(&garbage).err().unwrap().to_string();
    assert!(
        err.contains("garbage.pth") && err.contains("not a readable PyTorch checkpoint"),
        "{err}"
    );
    let absent = dir.path().join("absent.pth");
    let err = StateDict::open(&absent).err().unwrap().to_string();
    assert!(
        err.contains("absent.pth") && err.contains("no such file"),
        "{err}"
    );
}
