//! Checkpoints that cannot be trusted are refused with the file's name: weights damaged after
//! saving (checksum) and weights of another architecture than the checkpoint's configuration.

use std::path::Path;

use semisam::fuzzing::targets::write_small_checkpoint;
use semisam::training::load_checkpoint_model;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_checkpoint_loads_into_its_configured_network() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("final.ckpt");
    write_small_checkpoint(repo(), &path, &[], &[]).unwrap();
    let (config, _) = load_checkpoint_model(&path).unwrap();
    assert_eq!(config.network.base_filters, 2);
}

#[test]
fn inverted_student_bytes_are_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("final.ckpt");
    write_small_checkpoint(repo(), &path, &[], &[]).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Every byte of the student section, which runs up to the 32-byte checksum.
    let header_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    let end = bytes.len() - 32;
    for b in &mut bytes[24 + header_len..end] {
        *b = !*b;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = load_checkpoint_model(&path).err().unwrap().to_string();
    assert!(
        err.contains(
            "final.ckpt: the checkpoint is corrupt: its contents do not match the SHA-256"
        ),
        "{err}"
    );
}

#[test]
fn weights_of_another_architecture_name_the_file_and_both_architectures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.ckpt");
    write_small_checkpoint(repo(), &path, &[], &["network.architecture=unet3d"]).unwrap();
    let err = load_checkpoint_model(&path).err().unwrap().to_string();
    assert!(
        err.contains(
            "mixed.ckpt: the student weights are those of a unet3d network, but the checkpoint's \
             configuration says v_net"
        ),
        "{err}"
    );
}
