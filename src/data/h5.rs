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

/// Deflate shrinks data by at most about 1032:1: no dataset of a file holds more bytes than
/// this many per byte of the file.
const MAX_DEFLATE_RATIO: u64 = 1032;
const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// An open file and what its superblock says about its length, to tell a file cut short from
/// one whose structure is damaged.
struct H5File {
    file: hdf5_pure::File,
    length: u64,
    declared_length: Option<u64>,
}

fn open(path: &Path) -> Result<H5File, DataError> {
    let bytes = super::read_file(path)?;
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "HDF5",
            reason: "the HDF5 signature is missing".into(),
        });
    }
    let length = bytes.len() as u64;
    let declared_length = declared_file_length(&bytes);
    let classify_open = |e| classify(path, e, length, declared_length);
    let file = hdf5_pure::File::from_bytes(bytes).map_err(classify_open)?;
    Ok(H5File {
        file,
        length,
        declared_length,
    })
}

impl H5File {
    fn error(&self, path: &Path, err: hdf5_pure::Error) -> DataError {
        classify(path, err, self.length, self.declared_length)
    }

    /// A dataset's `what` (its shape or chunk shape) of `value_bytes`-byte values may not
    /// declare more bytes than the file can hold, compressed at deflate's best.
    fn check_holds(
        &self,
        path: &Path,
        key: &str,
        what: &str,
        dims: &[u64],
        value_bytes: u64,
    ) -> Result<(), DataError> {
        let bytes = dims
            .iter()
            .try_fold(value_bytes, |acc, &d| acc.checked_mul(d));
        let capacity = self.length.saturating_mul(MAX_DEFLATE_RATIO);
        if bytes.is_some_and(|b| b <= capacity) {
            return Ok(());
        }
        let dims: Vec<String> = dims.iter().map(u64::to_string).collect();
        Err(DataError::Format {
            path: path.to_path_buf(),
            format: "HDF5",
            reason: format!(
                "the file is corrupt: dataset `{key}` declares {what} {} of {value_bytes}-byte \
                 values, more than a {}-byte file can hold even compressed",
                dims.join("x"),
                self.length
            ),
        })
    }
}

/// The end-of-file address the superblock records (plus its base address): the length of the
/// file as it was written. `None` when the superblock cannot be read.
fn declared_file_length(bytes: &[u8]) -> Option<u64> {
    // The superblock sits at byte 0, 512, 1024, 2048, ...
    let start = std::iter::once(0)
        .chain((9..40).map(|p| 1usize << p))
        .take_while(|&p| p + SIGNATURE.len() <= bytes.len())
        .find(|&p| &bytes[p..p + SIGNATURE.len()] == SIGNATURE)?;
    let field = |at: usize| bytes.get(start + at).copied();
    let (offset_size, base_at) = match field(8)? {
        0 => (field(13)?, 24),
        1 => (field(13)?, 28),
        2 | 3 => (field(9)?, 12),
        _ => return None,
    };
    let width = usize::from(offset_size);
    if !matches!(width, 2 | 4 | 8) {
        return None;
    }
    let address = |at: usize| -> Option<u64> {
        let raw = bytes.get(start + at..start + at + width)?;
        Some(
            raw.iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    };
    let base = address(base_at)?;
    let end_of_file = address(base_at + 2 * width)?;
    base.checked_add(end_of_file)
}

/// A file shorter than its superblock says was cut short; any other parse failure means the
/// file's structure is damaged (its addresses and sizes cannot be trusted).
fn classify(
    path: &Path,
    err: hdf5_pure::Error,
    length: u64,
    declared_length: Option<u64>,
) -> DataError {
    let reason = err.to_string();
    match declared_length {
        Some(declared) if length < declared => DataError::Truncated {
            path: path.to_path_buf(),
            reason: format!("{length} bytes of the {declared} its superblock declares ({reason})"),
        },
        _ => DataError::Format {
            path: path.to_path_buf(),
            format: "HDF5",
            reason: format!("the file is corrupt: {reason}"),
        },
    }
}

fn dataset(file: &H5File, path: &Path, key: &str) -> Result<hdf5_pure::Dataset, DataError> {
    let names = file
        .file
        .root()
        .datasets()
        .map_err(|e| file.error(path, e))?;
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
    file.file.dataset(key).map_err(|e| file.error(path, e))
}

/// The dataset's 3D shape, when the file can hold that many values.
fn shape3(
    file: &H5File,
    ds: &hdf5_pure::Dataset,
    path: &Path,
    key: &str,
) -> Result<[usize; 3], DataError> {
    let shape = ds.shape().map_err(|e| file.error(path, e))?;
    let &[x, y, z] = shape.as_slice() else {
        return Err(DataError::invalid(
            path,
            format!("dataset `{key}` has {} dimensions, expected 3", shape.len()),
        ));
    };
    // The reader sizes its buffers by the shape, the chunk shape and the stored element size.
    let value_bytes = ds.element_size().map_err(|e| file.error(path, e))?;
    file.check_holds(path, key, "shape", &shape, value_bytes)?;
    if let Some(chunk) = ds.chunk_shape().map_err(|e| file.error(path, e))? {
        file.check_holds(path, key, "chunk shape", &chunk, value_bytes)?;
    }
    Ok([x as usize, y as usize, z as usize])
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
    let shape = shape3(&file, &ds, path, IMAGE_KEY)?;
    let values = ds.read_f32().map_err(|e| file.error(path, e))?;
    Ok(volume(path, into_array(path, IMAGE_KEY, shape, values)?))
}

/// Read the `label` dataset as u8. Labels stored in another type are accepted only when every
/// value is an integer in 0..=255.
pub fn read_label(path: &Path) -> Result<Volume<u8>, DataError> {
    let file = open(path)?;
    let ds = dataset(&file, path, LABEL_KEY)?;
    let shape = shape3(&file, &ds, path, LABEL_KEY)?;
    let dtype = ds.dtype().map_err(|e| file.error(path, e))?;
    let values = match dtype {
        DType::U8 => ds.read_u8().map_err(|e| file.error(path, e))?,
        DType::F32
        | DType::F64
        | DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U16
        | DType::U32
        | DType::U64 => labels_from_f64(path, &ds.read_f64().map_err(|e| file.error(path, e))?)?,
        other => {
            return Err(DataError::invalid(
                path,
                format!("dataset `label` has non-numeric type {other}"),
            ));
        }
    };
    Ok(volume(path, into_array(path, LABEL_KEY, shape, values)?))
}

/// Whether the file holds a dataset named `key`. The file is opened for streaming reads, so only
/// its structure is read from disk, not the datasets: listing a folder of scans stays cheap. Any
/// problem is reported with the path; [`read_image`] and [`read_label`] classify it further.
pub fn has_dataset(path: &Path, key: &str) -> Result<bool, DataError> {
    let corrupt = |e: hdf5_pure::Error| DataError::Format {
        path: path.to_path_buf(),
        format: "HDF5",
        reason: format!("the file is corrupt: {e}"),
    };
    super::check_regular_file(path)?;
    let file = hdf5_pure::File::open_streaming(path).map_err(corrupt)?;
    let names = file.root().datasets().map_err(corrupt)?;
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
        .map_err(DataError::from)
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
