//! Files whose headers declare more than they hold, or nonsense, give a clear error naming the
//! file, before anything of the declared size is allocated.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use semisam::data::{npy, read_image, read_label};
use semisam::fuzzing::BoundedAllocator;

/// Any allocation above 1 GiB aborts this test binary: the readers must refuse first.
#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator::new(1 << 30);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assert_says(err: impl std::fmt::Display, file: &str, problem: &str) {
    let text = err.to_string();
    assert!(text.contains(file), "error does not name `{file}`: {text}");
    assert!(
        text.contains(problem),
        "error does not say `{problem}`: {text}"
    );
}

/// A version 1.0 `.npy` with this header dictionary and `data` after it.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn npy_declaring_a_huge_array_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.npy");
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }";
    fs::write(&path, npy_bytes(dict, &[0; 64])).unwrap();
    for err in [
        read_image(&path).unwrap_err().to_string(),
        read_label(&path).unwrap_err().to_string(),
        npy::check_file(&path).unwrap_err().to_string(),
    ] {
        assert_says(
            err,
            "huge.npy",
            "the header declares shape 100000x100000x100000 of 4-byte values \
             (4000000000000000 bytes), the file holds 64 bytes of data",
        );
    }
}

#[test]
fn npy_element_types_semisam_does_not_read_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (descr, problem) in [
        (
            "<f2",
            "unsupported element type <f2 (half precision is not read: save the array as float32)",
        ),
        (
            "<c8",
            "unsupported element type <c8 (expected a numeric or boolean array)",
        ),
    ] {
        let path = dir.path().join("typed.npy");
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2, 2), }}");
        fs::write(&path, npy_bytes(&dict, &[0; 64])).unwrap();
        assert_says(read_image(&path).unwrap_err(), "typed.npy", problem);
    }
}

#[test]
fn npy_shape_whose_size_overflows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overflow.npy");
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }";
    fs::write(&path, npy_bytes(dict, &[])).unwrap();
    assert_says(
        read_image(&path).unwrap_err(),
        "overflow.npy",
        "more bytes than any file can hold",
    );
}

#[test]
fn npy_header_length_beyond_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long_header.npy");
    // Format 2.0: a 4-byte header length, here 4 GiB - 1.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(b"{'descr': '<f4'");
    fs::write(&path, bytes).unwrap();
    assert_says(
        read_image(&path).unwrap_err(),
        "long_header.npy",
        "the header declares 4294967295 bytes, only 15 follow",
    );
}

/// The uncompressed NIfTI fixture (5x4x3 float64, little-endian) with `edit` applied.
fn edited_nifti(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs::read(fixtures().join("data/nifti/qform_only_float64.nii")).unwrap();
    edit(&mut bytes);
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn set_dim(bytes: &mut [u8], index: usize, value: i16) {
    bytes[40 + 2 * index..42 + 2 * index].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn nifti_dimensions_that_make_no_sense_are_header_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            0,
            -35,
            "dim[0] = -35: the number of dimensions must be 1 to 7",
        ),
        (0, 0, "dim[0] = 0: the number of dimensions must be 1 to 7"),
        (1, -35, "dim[1] = -35: every axis needs at least one voxel"),
        (3, 0, "dim[3] = 0: every axis needs at least one voxel"),
    ];
    for (index, value, problem) in cases {
        let name = format!("dim{index}_{value}.nii");
        let path = edited_nifti(dir.path(), &name, |b| set_dim(b, index, value));
        let err = read_image(&path).unwrap_err().to_string();
        assert_says(&err, &name, problem);
        assert!(err.contains("the header is corrupt"), "{err}");
        assert!(!err.contains("truncated"), "{err}");
    }
}

#[test]
fn nifti_declaring_more_voxels_than_the_file_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_nifti(dir.path(), "big.nii", |b| {
        for axis in 1..=3 {
            set_dim(b, axis, 32767);
        }
    });
    assert_says(
        read_image(&path).unwrap_err(),
        "big.nii",
        "voxel data holds 480 bytes, the header declares 281449207693304",
    );
}

#[test]
fn gzip_nifti_declaring_more_than_gzip_can_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(fixtures().join("data/nifti/qform_only_float64.nii")).unwrap();
    for axis in 1..=3 {
        set_dim(&mut bytes, axis, 2000);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&bytes).unwrap();
    let packed = encoder.finish().unwrap();
    let path = dir.path().join("bomb.nii.gz");
    fs::write(&path, &packed).unwrap();
    assert_says(
        read_image(&path).unwrap_err(),
        "bomb.nii.gz",
        &format!(
            "the header declares 64000000352 bytes of header and voxel data, more than a {}-byte \
             gzip file can hold",
            packed.len()
        ),
    );
}

#[test]
fn nifti_extension_sizes_that_do_not_chain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_nifti(dir.path(), "extension.nii", |b| {
        // Announce extensions up to byte 368 and give the one there a negative size.
        b[108..112].copy_from_slice(&368f32.to_le_bytes());
        b[348] = 1;
        b.splice(352..352, (-16i32).to_le_bytes().into_iter().chain([0; 12]));
    });
    assert_says(
        read_image(&path).unwrap_err(),
        "extension.nii",
        "the extension at byte 352 declares -16 bytes",
    );
}

/// The fixture with its voxels moved to `vox_offset` behind zero padding and an extender of
/// zeros: a valid NIfTI-1 file (nibabel and ITK read it).
fn padded_nifti(dir: &Path, name: &str, vox_offset: usize, cut: usize) -> PathBuf {
    edited_nifti(dir, name, |b| {
        b[108..112].copy_from_slice(&(vox_offset as f32).to_le_bytes());
        assert_eq!(&b[348..352], &[0; 4], "the fixture has no extensions");
        b.splice(352..352, vec![0; vox_offset - 352]);
        b.truncate(b.len() - cut);
    })
}

#[test]
fn nifti_voxels_are_read_at_vox_offset_after_padding() {
    let dir = tempfile::tempdir().unwrap();
    let plain = read_image(fixtures().join("data/nifti/qform_only_float64.nii")).unwrap();
    let padded = read_image(padded_nifti(dir.path(), "padded.nii", 512, 0)).unwrap();
    assert_eq!(padded.data, plain.data);
    assert_eq!(padded.geometry.spacing, plain.geometry.spacing);
    assert_eq!(padded.geometry.affine, plain.geometry.affine);

    let short = padded_nifti(dir.path(), "short.nii", 512, 8);
    assert_says(
        read_image(&short).unwrap_err(),
        "short.nii",
        "voxel data holds 472 bytes, the header declares 480",
    );
    let beyond = edited_nifti(dir.path(), "beyond.nii", |b| {
        b[108..112].copy_from_slice(&1e9f32.to_le_bytes());
    });
    assert_says(
        read_image(&beyond).unwrap_err(),
        "beyond.nii",
        "the voxel data starts at byte 1000000000 (vox_offset), beyond the end of the 832-byte file",
    );
}

/// A device or a pipe named like a scan would be read without end, a folder cannot be read:
/// each reader refuses them by what they are, before reading.
#[cfg(unix)]
#[test]
fn what_is_not_a_regular_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe.nii");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    fs::create_dir(dir.path().join("folder.nii.gz")).unwrap();
    let mut names = vec!["pipe.nii".to_string(), "folder.nii.gz".to_string()];
    for extension in ["nii", "nii.gz", "npy", "png", "h5"] {
        let name = format!("zero.{extension}");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(&name)).unwrap();
        names.push(name);
    }
    for name in names {
        let path = dir.path().join(&name);
        for err in [
            read_image(&path).unwrap_err().to_string(),
            read_label(&path).unwrap_err().to_string(),
        ] {
            assert_says(&err, &name, "not a regular file (a folder, device or pipe)");
        }
    }
}

#[test]
fn sammed3d_weights_check_on_a_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("weights.pth");
    fs::create_dir(&folder).unwrap();
    let err = semisam::generalists::sammed3d::check_checkpoint(&folder)
        .err()
        .unwrap();
    assert_says(err, "weights.pth", "is a directory, not a checkpoint file");
    let err = semisam::generalists::litemedsam::LiteMedSam::load(
        &folder,
        &burn::tensor::Device::default(),
    )
    .err()
    .unwrap();
    assert_says(err, "weights.pth", "is a directory, not a checkpoint file");
}

#[test]
fn h5_with_damaged_addresses_is_corrupt_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes =
        fs::read(fixtures().join("data/uamt/Training Set/CASE_A/mri_norm2.h5")).unwrap();
    // The root group's object header address (superblock version 0), overwritten: it now
    // points far beyond the end of a file that is as long as its superblock says.
    bytes[0x40..0x48].fill(0xa5);
    let path = dir.path().join("damaged.h5");
    fs::write(&path, &bytes).unwrap();
    let err = read_image(&path).unwrap_err().to_string();
    assert_says(
        &err,
        "damaged.h5",
        "not a valid HDF5 file: the file is corrupt: HDF5 format error: unexpected EOF: need",
    );
    assert!(!err.contains("truncated"), "{err}");

    // The same file cut short is still reported as truncated, with both lengths.
    let cut = dir.path().join("cut.h5");
    let original = fs::read(fixtures().join("data/uamt/Training Set/CASE_A/mri_norm2.h5")).unwrap();
    fs::write(&cut, &original[..4000]).unwrap();
    assert_says(
        read_image(&cut).unwrap_err(),
        "cut.h5",
        "the file is truncated: 4000 bytes of the 9992 its superblock declares",
    );
}

#[test]
fn h5_declaring_more_than_it_holds_allocates_nothing_of_that_size() {
    // Found by the fuzz harness under a 64 MiB bound: a mutated UA-MT file (9 KB) for which
    // the h5 reader allocated a 635 MiB fill buffer before finding the data damaged.
    let path = fixtures().join("data/fuzz/h5_oversized_fill.h5");
    let err = read_image(&path).unwrap_err();
    assert_says(err, "h5_oversized_fill.h5", "HDF5");
    let largest = semisam::fuzzing::alloc_bound::largest_allocation();
    assert!(largest < 64 << 20, "largest allocation {largest} bytes");
}
