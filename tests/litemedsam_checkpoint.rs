//! Strict checkpoint loading: a missing or mis-shaped tensor is an error naming the key. The
//! broken checkpoints are made from the real one (weights cache; `semisam weights fetch`) by
//! renaming keys inside its pickle, so everything else about the file stays valid.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use semisam::generalists::litemedsam::LiteMedSam;
use semisam::generalists::weights_cache::{self, LITEMEDSAM};

fn real_checkpoint() -> PathBuf {
    weights_cache::locate(&LITEMEDSAM)
        .unwrap_or_else(|e| panic!("LiteMedSAM checkpoint tests need the real checkpoint: {e}"))
}

/// Copy the checkpoint to `dest`, applying same-length byte replacements to its `data.pkl`.
fn rewrite_pickle(src: &Path, dest: &Path, replacements: &[(&str, &str)]) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(dest).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.ends_with("data.pkl") {
            for (from, to) in replacements {
                assert_eq!(
                    from.len(),
                    to.len(),
                    "replacement must keep the pickle's string lengths"
                );
                let at = bytes
                    .windows(from.len())
                    .position(|w| w == from.as_bytes())
                    .unwrap_or_else(|| panic!("{from} not in pickle"));
                bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
            }
        }
        writer.start_file(name, options).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
}

fn load_error(replacements: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pth");
    rewrite_pickle(&real_checkpoint(), &path, replacements);
    match LiteMedSam::load(&path, &semisam::backend::default_device()) {
        Ok(_) => panic!("a broken checkpoint loaded: {replacements:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unmodified_rewrite_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.pth");
    rewrite_pickle(&real_checkpoint(), &path, &[]);
    LiteMedSam::load(&path, &semisam::backend::default_device()).unwrap();
}

#[test]
fn a_renamed_tensor_is_named_both_missing_and_unexpected() {
    let err = load_error(&[(
        "mask_decoder.iou_token.weight",
        "mask_decoder.iou_tokeX.weight",
    )]);
    assert!(
        err.contains("1 missing: mask_decoder.iou_token.weight")
            && err.contains("1 unexpected: mask_decoder.iou_tokeX.weight"),
        "{err}"
    );
}

#[test]
fn mis_shaped_tensor_is_named() {
    // Same-length names with different shapes: (384, 128) and (480, 160).
    let err = load_error(&[
        (
            "layers.1.blocks.0.attn.qkv.weight",
            "layers.X.blocks.0.attn.qkv.weight",
        ),
        (
            "layers.2.blocks.0.attn.qkv.weight",
            "layers.1.blocks.0.attn.qkv.weight",
        ),
        (
            "layers.X.blocks.0.attn.qkv.weight",
            "layers.2.blocks.0.attn.qkv.weight",
        ),
    ]);
    assert!(
        err.contains(
            "2 mis-shaped: image_encoder.layers.1.blocks.0.attn.qkv.weight (file [480, 160], model [384, 128]), \
             image_encoder.layers.2.blocks.0.attn.qkv.weight (file [384, 128], model [480, 160])"
        ),
        "{err}"
    );
}

#[test]
fn missing_or_foreign_file_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pth");
    let err = LiteMedSam::load(&missing, &semisam::backend::default_device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.pth") && err.contains("not found"),
        "{err}"
    );
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let err = LiteMedSam::load(&junk, &semisam::backend::default_device())
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk.pth"), "{err}");
}

/// The model and its embeddings are shared across threads by the training code.
#[test]
fn model_and_embedding_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LiteMedSam>();
    assert_send_sync::<semisam::generalists::litemedsam::Embedding>();
    assert_send_sync::<semisam::generalists::litemedsam::MaskLogits>();
}
