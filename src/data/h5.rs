//! UA-MT `mri_norm2.h5` files: datasets `image` (float32) and `label` (uint8), axis order
//! (x, y, z), gzip-compressed. Read and written with the pure-Rust `hdf5-pure` crate, so no system
//! HDF5 library is needed. These files store no voxel spacing.

use std::io;
use std::path::Path;

use hdf5_pure::{DType, FileBuilder};
use ndarray::Array3;

use super::error::DataError;
use super::labels::labels_from_f64;
use super::volume::{Geometry, SourceFormat, Volume};

/// Dataset holding the intensities.
pub const IMAGE_KEY: &str = "image";
/// Dataset holding the segmentation.
pub const LABEL_KEY: &str = "label";

/// Chunk edge used when writing; small enough that gzip stays fast, large enough to compress.
const WRITE_CHUNK: u64 = 64;
const WRITE_DEFLATE_LEVEL: u32 = 4;

fn open(path: &Path) -> Result<hdf5_pure::File, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "HDF5",
            reason: "the HDF5 signature is missing".into(),
        });
    }
    hdf5_pure::File::from_bytes(bytes).map_err(|e| classify(path, e))
}

/// A file that starts like HDF5 but breaks while parsing is almost always cut short; say so.
fn classify(path: &Path, err: hdf5_pure::Error) -> DataError {
    let reason = err.to_string();
    let lower = reason.to_lowercase();
    let truncated = [
        "eof",
        "end of",
        "truncat",
        "out of bounds",
        "beyond",
        "short",
        "exceeds",
    ];
    if truncated.iter().any(|w| lower.contains(w)) {
        DataError::Truncated {
            path: path.to_path_buf(),
            reason,
        }
    } else {
        DataError::Format {
            path: path.to_path_buf(),
            format: "HDF5",
            reason,
        }
    }
}

fn dataset(
    file: &hdf5_pure::File,
    path: &Path,
    key: &str,
) -> Result<hdf5_pure::Dataset, DataError> {
    let names = file.root().datasets().map_err(|e| classify(path, e))?;
    if !names.iter().any(|n| n == key) {
        let found = if names.is_empty() {
            "no datasets".to_string()
        } else {
            names.join(", ")
        };
        return Err(DataError::MissingKey {
            path: path.to_path_buf(),
            key: key.into(),
            found,
        });
    }
    file.dataset(key).map_err(|e| classify(path, e))
}

fn shape3(ds: &hdf5_pure::Dataset, path: &Path, key: &str) -> Result<[usize; 3], DataError> {
    let shape = ds.shape().map_err(|e| classify(path, e))?;
    match shape.as_slice() {
        &[x, y, z] => Ok([x as usize, y as usize, z as usize]),
        other => Err(DataError::invalid(
            path,
            format!("dataset `{key}` has {} dimensions, expected 3", other.len()),
        )),
    }
}

fn into_array<T>(
    path: &Path,
    key: &str,
    shape: [usize; 3],
    values: Vec<T>,
) -> Result<Array3<T>, DataError> {
    let n = values.len();
    Array3::from_shape_vec(shape, values).map_err(|_| DataError::Truncated {
        path: path.to_path_buf(),
        reason: format!("dataset `{key}` holds {n} values for shape {shape:?}"),
    })
}

fn volume<T>(path: &Path, data: Array3<T>) -> Volume<T> {
    Volume {
        data,
        geometry: Geometry::unknown(),
        source: SourceFormat::H5,
        path: path.to_path_buf(),
    }
}

/// Read the `image` dataset as f32 (other numeric stored types are converted).
pub fn read_image(path: &Path) -> Result<Volume<f32>, DataError> {
    let file = open(path)?;
    let ds = dataset(&file, path, IMAGE_KEY)?;
    let shape = shape3(&ds, path, IMAGE_KEY)?;
    let values = ds.read_f32().map_err(|e| classify(path, e))?;
    Ok(volume(path, into_array(path, IMAGE_KEY, shape, values)?))
}

/// Read the `label` dataset as u8. Labels stored in another type are accepted only when every
/// value is an integer in 0..=255.
pub fn read_label(path: &Path) -> Result<Volume<u8>, DataError> {
    let file = open(path)?;
    let ds = dataset(&file, path, LABEL_KEY)?;
    let shape = shape3(&ds, path, LABEL_KEY)?;
    let dtype = ds.dtype().map_err(|e| classify(path, e))?;
    let values = match dtype {
        DType::U8 => ds.read_u8().map_err(|e| classify(path, e))?,
        DType::F32
        | DType::F64
        | DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U16
        | DType::U32
        | DType::U64 => labels_from_f64(path, &ds.read_f64().map_err(|e| classify(path, e))?)?,
        other => {
            return Err(DataError::invalid(
                path,
                format!("dataset `label` has non-numeric type {other}"),
            ));
        }
    };
    Ok(volume(path, into_array(path, LABEL_KEY, shape, values)?))
}

/// Whether the file holds a dataset named `key`; only the file's structure is parsed.
pub fn has_dataset(path: &Path, key: &str) -> Result<bool, DataError> {
    let file = open(path)?;
    let names = file.root().datasets().map_err(|e| classify(path, e))?;
    Ok(names.iter().any(|n| n == key))
}

/// Write a UA-MT style file holding `label`, and `image` when given (atomic, gzip-compressed).
pub fn write_case(
    path: &Path,
    image: Option<&Array3<f32>>,
    label: Option<&Array3<u8>>,
) -> Result<(), DataError> {
    let mut builder = FileBuilder::new();
    if let Some(image) = image {
        let values: Vec<f32> = image.iter().copied().collect();
        let ds = builder.create_dataset(IMAGE_KEY);
        ds.with_f32_data(&values)
            .with_shape(&shape_u64(image.shape()));
        compress(ds, image.shape());
    }
    if let Some(label) = label {
        let values: Vec<u8> = label.iter().copied().collect();
        let ds = builder.create_dataset(LABEL_KEY);
        ds.with_u8_data(&values)
            .with_shape(&shape_u64(label.shape()));
        compress(ds, label.shape());
    }
    crate::io_util::write_atomic_with(path, |w| builder.finish_to(w).map_err(io::Error::other))
        .map_err(DataError::from_output)
}

fn shape_u64(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

fn compress(ds: &mut hdf5_pure::DatasetBuilder, shape: &[usize]) {
    // Zero-size datasets cannot be chunked; they are stored contiguous.
    if shape.iter().all(|&d| d > 0) {
        let chunks: Vec<u64> = shape.iter().map(|&d| (d as u64).min(WRITE_CHUNK)).collect();
        ds.with_chunks(&chunks).with_deflate(WRITE_DEFLATE_LEVEL);
    }
}
