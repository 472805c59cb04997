//! Volume I/O through the public API: the UA-MT h5 fixture (written by h5py, gzip-chunked like
//! LA), h5 and npy round trips, and npy arrays written by numpy.

use std::path::{Path, PathBuf};

use ndarray::Array3;
use semisam::data::{SourceFormat, h5, read_image, read_label, write_image, write_label};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn uamt_case(id: &str) -> PathBuf {
    fixtures()
        .join("uamt/Training Set")
        .join(id)
        .join("mri_norm2.h5")
}

/// The formulas scripts/make_data_fixtures.py used.
fn uamt_image(shape: [usize; 3]) -> Array3<f32> {
    Array3::from_shape_fn(shape, |(x, y, z)| {
        100.0 * x as f32 + 10.0 * y as f32 + z as f32 + 0.5
    })
}

fn uamt_label(shape: [usize; 3], modulus: usize) -> Array3<u8> {
    Array3::from_shape_fn(shape, |(x, y, z)| ((x + y + z) % modulus == 0) as u8)
}

#[test]
fn h5py_gzip_fixture_reads_in_xyz_order() {
    let path = uamt_case("CASE_B");
    let image = read_image(&path).unwrap();
    assert_eq!(image.shape(), [7, 6, 5]);
    assert_eq!(image.data, uamt_image([7, 6, 5]));
    assert_eq!(image.source, SourceFormat::H5);
    assert_eq!(image.geometry.spacing, None, "UA-MT h5 stores no spacing");
    assert!(image.geometry.nifti_header.is_none());
    let label = read_label(&path).unwrap();
    assert_eq!(label.data, uamt_label([7, 6, 5], 3));
    assert_eq!(label.path, path);
}

#[test]
fn h5_round_trip_keeps_both_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pred/mri_norm2.h5");
    let image = uamt_image([9, 4, 70]);
    let label = uamt_label([9, 4, 70], 4);
    h5::write_case(&path, Some(&image), Some(&label)).unwrap();
    assert_eq!(read_image(&path).unwrap().data, image);
    assert_eq!(read_label(&path).unwrap().data, label);
}

/// Telling labeled from label-free h5 files reads only their structure: the h5py fixture (both
/// datasets), an image-only file, and files that are not HDF5 or are cut short, which are errors
/// naming the file.
#[test]
fn h5_dataset_listing_finds_the_label_or_names_the_broken_file() {
    let fixture = uamt_case("CASE_B");
    assert!(h5::has_dataset(&fixture, "label").unwrap());
    assert!(h5::has_dataset(&fixture, "image").unwrap());

    let dir = tempfile::tempdir().unwrap();
    let image_only = dir.path().join("image_only.h5");
    h5::write_case(&image_only, Some(&uamt_image([9, 4, 70])), None).unwrap();
    assert!(!h5::has_dataset(&image_only, "label").unwrap());
    assert!(h5::has_dataset(&image_only, "image").unwrap());

    let text = dir.path().join("notes.h5");
    std::fs::write(&text, "not an HDF5 file").unwrap();
    let cut = dir.path().join("cut.h5");
    let bytes = std::fs::read(&fixture).unwrap();
    std::fs::write(&cut, &bytes[..64]).unwrap();
    for broken in [&text, &cut] {
        let error = h5::has_dataset(broken, "label").unwrap_err().to_string();
        assert!(error.contains(&broken.display().to_string()), "{error}");
    }
}

#[test]
fn write_label_to_h5_writes_the_label_dataset_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = read_label(uamt_case("CASE_A")).unwrap();
    let out = dir.path().join("CASE_A.h5");
    write_label(&source, &out).unwrap();
    assert_eq!(read_label(&out).unwrap().data, source.data);
    let err = read_image(&out).unwrap_err().to_string();
    assert!(
        err.contains("missing dataset `image`") && err.contains("found: label"),
        "{err}"
    );
}

#[test]
fn numpy_fortran_float64_and_int64_arrays_are_read() {
    let image = read_image(fixtures().join("npy/image_f64_fortran.npy")).unwrap();
    let expected = Array3::from_shape_fn([3, 4, 2], |(x, y, z)| {
        x as f32 - 0.5 * y as f32 + 10.0 * z as f32
    });
    assert_eq!(image.data, expected);
    assert!(image.data.is_standard_layout());
    assert_eq!(image.source, SourceFormat::Npy);
    let label = read_label(fixtures().join("npy/label_i64.npy")).unwrap();
    assert_eq!(
        label.data,
        Array3::from_shape_fn([3, 4, 2], |(x, y, z)| ((x * y + z) % 3) as u8)
    );
}

#[test]
fn npy_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = read_image(uamt_case("CASE_T")).unwrap();
    image.data[[1, 2, 0]] = -3.25;
    write_image(&image, dir.path().join("img.npy")).unwrap();
    assert_eq!(
        read_image(dir.path().join("img.npy")).unwrap().data,
        image.data
    );
    let label = read_label(uamt_case("CASE_T")).unwrap();
    write_label(&label, dir.path().join("lbl.npy")).unwrap();
    assert_eq!(
        read_label(dir.path().join("lbl.npy")).unwrap().data,
        label.data
    );
}

#[test]
fn h5_image_written_as_nifti_has_unknown_geometry_codes() {
    // No spacing is stored in h5, so the NIfTI output must not claim one (codes 0, pixdim 1).
    let dir = tempfile::tempdir().unwrap();
    let image = read_image(uamt_case("CASE_T")).unwrap();
    let out = dir.path().join("case.nii.gz");
    write_image(&image, &out).unwrap();
    let back = read_image(&out).unwrap();
    assert_eq!(back.data, image.data);
    let header = back.geometry.nifti_header.unwrap();
    assert_eq!((header.qform_code, header.sform_code), (0, 0));
    assert_eq!(&header.pixdim[1..4], &[1.0, 1.0, 1.0]);
}

/// Write a 2x3x4 float32 NIfTI and rewrite its `dim` field (bytes 40..56) to `dims`.
fn nifti_with_dims(dir: &Path, name: &str, dims: &[u16]) -> PathBuf {
    let path = dir.join(name);
    let data = Array3::from_shape_fn([2, 3, 4], |(i, j, k)| (i * 12 + j * 4 + k) as f32);
    let volume = semisam::data::Volume {
        data,
        geometry: semisam::data::Geometry::unknown(),
        source: SourceFormat::Npy,
        path: PathBuf::from("memory"),
    };
    write_image(&volume, &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mut dim = [1u16; 8];
    dim[0] = dims.len() as u16;
    dim[1..=dims.len()].copy_from_slice(dims);
    for (n, d) in dim.iter().enumerate() {
        bytes[40 + 2 * n..42 + 2 * n].copy_from_slice(&d.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn nifti_with_a_singleton_fourth_axis_reads_as_3d() {
    let dir = tempfile::tempdir().unwrap();
    let path = nifti_with_dims(dir.path(), "t1.nii", &[2, 3, 4, 1]);
    let image = read_image(&path).unwrap();
    assert_eq!(image.shape(), [2, 3, 4]);
    assert_eq!(image.data[[1, 2, 3]], 23.0);
}

/// A 2D NIfTI is read as one slice and written back 2D (a 3D one-slice volume stays 3D).
#[test]
fn a_2d_nifti_stays_2d_when_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let dims_of = |path: &Path| -> Vec<u16> {
        let bytes = std::fs::read(path).unwrap();
        (0..4)
            .map(|n| u16::from_le_bytes([bytes[40 + 2 * n], bytes[41 + 2 * n]]))
            .collect()
    };
    for (name, dims, written) in [
        ("flat.nii", &[2u16, 3][..], [2u16, 2, 3, 1]),
        ("thin.nii", &[2, 3, 1][..], [3, 2, 3, 1]),
    ] {
        let path = nifti_with_dims(dir.path(), name, dims);
        let image = read_image(&path).unwrap();
        assert_eq!(image.shape(), [2, 3, 1]);
        let out = dir.path().join(format!("out_{name}"));
        write_image(&image, &out).unwrap();
        assert_eq!(dims_of(&out), written, "{name}");
        assert_eq!(read_image(&out).unwrap().data, image.data);
    }
}

#[test]
fn multi_channel_nifti_is_refused_with_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = nifti_with_dims(dir.path(), "two_channels.nii", &[2, 3, 2, 2]);
    let err = read_image(&path).unwrap_err().to_string();
    assert!(
        err.contains("two_channels.nii")
            && err
                .contains("volume has shape [2, 3, 2, 2]; semisam reads single-channel 3D volumes"),
        "{err}"
    );
}

/// Write a 2x3x4 NIfTI with spacing (0.5, 0.75, 2) and an sform when `with_sform`, then store
/// `pixdim[1]` as `first_pixdim` (bytes 80..84).
fn nifti_with_pixdim(dir: &Path, name: &str, with_sform: bool, first_pixdim: f32) -> PathBuf {
    let path = dir.join(name);
    let spacing = [0.5, 0.75, 2.0];
    let mut geometry = semisam::data::Geometry::unknown();
    if with_sform {
        geometry.spacing = Some(spacing);
        for (d, (row, s)) in geometry.affine.iter_mut().zip(spacing).enumerate() {
            row[d] = -s;
            row[3] = 10.0;
        }
    }
    let volume = semisam::data::Volume {
        data: Array3::<f32>::zeros([2, 3, 4]),
        geometry,
        source: SourceFormat::Npy,
        path: PathBuf::from("memory"),
    };
    write_image(&volume, &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[80..84].copy_from_slice(&first_pixdim.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The warnings `read` logs.
fn warnings_of<T>(read: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    let value = tracing::subscriber::with_default(subscriber, read);
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    (value, text)
}

/// Where pixdim and the sform give different voxel sizes, pixdim is used (as ITK reads it) and
/// the file is named in a warning; where they agree, nothing is said.
#[test]
fn pixdim_that_disagrees_with_the_sform_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let disagreeing = nifti_with_pixdim(dir.path(), "disagree.nii", true, 0.875);
    let (image, warnings) = warnings_of(|| read_image(&disagreeing).unwrap());
    assert_eq!(image.geometry.spacing, Some([0.875, 0.75, 2.0]));
    assert!(
        warnings.contains(&format!(
            "{}: pixdim gives voxel size [0.875, 0.75, 2.0] mm but the sform [0.5, 0.75, 2.0] mm; \
             using pixdim",
            disagreeing.display()
        )),
        "{warnings}"
    );
    let agreeing = nifti_with_pixdim(dir.path(), "agree.nii", true, 0.5);
    let (image, warnings) = warnings_of(|| read_image(&agreeing).unwrap());
    assert_eq!(image.geometry.spacing, Some([0.5, 0.75, 2.0]));
    assert!(warnings.is_empty(), "{warnings}");
}

/// A pixdim that is no voxel size (negative, NaN, zero) gives way to the sform's column
/// lengths; without an sform the spacing is unknown rather than a wrong number.
#[test]
fn unusable_pixdim_takes_the_sform_voxel_size_or_leaves_the_spacing_unknown() {
    let dir = tempfile::tempdir().unwrap();
    for (n, pixdim) in [-0.5f32, f32::NAN, 0.0].into_iter().enumerate() {
        let with_sform = nifti_with_pixdim(dir.path(), &format!("s{n}.nii"), true, pixdim);
        let image = read_image(&with_sform).unwrap();
        assert_eq!(
            image.geometry.spacing,
            Some([0.5, 0.75, 2.0]),
            "pixdim {pixdim}"
        );
        assert_eq!(image.geometry.affine[0][0], -0.5);
        let without = nifti_with_pixdim(dir.path(), &format!("u{n}.nii"), false, pixdim);
        assert_eq!(read_image(&without).unwrap().geometry.spacing, None);
    }
    let valid = nifti_with_pixdim(dir.path(), "valid.nii", false, 0.875);
    assert_eq!(
        read_label(&valid).unwrap().geometry.spacing,
        Some([0.875, 1.0, 1.0])
    );
}
