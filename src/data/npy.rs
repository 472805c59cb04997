//! NumPy `.npy` arrays (C or Fortran order). They carry no geometry.
//!
//! The header is checked against the file's length before anything is read: `ndarray-npy`
//! allocates the declared header length and the declared array size up front, so a corrupt
//! header would otherwise abort the process instead of giving an error.

use std::path::Path;

use ndarray::Array3;
use ndarray_npy::npy::header::{Header, ReadHeaderError};
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};

use super::error::DataError;
use super::labels::labels_from_f64;
use super::volume::{Geometry, SourceFormat, Volume};

const MAGIC: &[u8] = b"\x93NUMPY";

const FORMAT: &str = "NumPy .npy";

fn format_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        format: FORMAT,
        reason: reason.into(),
    }
}

fn truncated(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = super::read_file(path)?;
    check_declared_sizes(path, &bytes)?;
    Ok(bytes)
}

/// Check that the file at `path` is an `.npy` whose header fits the file, so that any `.npy`
/// reader can then allocate what the header declares.
pub fn check_file(path: &Path) -> Result<(), DataError> {
    read_bytes(path).map(|_| ())
}

/// The header's length and the array it declares must fit in `bytes`.
fn check_declared_sizes(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if !bytes.starts_with(MAGIC) {
        return Err(format_error(path, "the magic string is missing"));
    }
    let (length_field, prefix) = match bytes.get(MAGIC.len()) {
        Some(1) => (2, MAGIC.len() + 4),
        Some(2 | 3) => (4, MAGIC.len() + 6),
        Some(major) => {
            return Err(format_error(
                path,
                format!("unsupported format version {major}"),
            ));
        }
        None => return Err(truncated(path, "the header is incomplete")),
    };
    let Some(field) = bytes.get(prefix - length_field..prefix) else {
        return Err(truncated(path, "the header is incomplete"));
    };
    let header_len = field
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let available = bytes.len() - prefix;
    if header_len > available {
        return Err(truncated(
            path,
            format!("the header declares {header_len} bytes, only {available} follow"),
        ));
    }
    let header = Header::from_reader(&mut &bytes[..prefix + header_len]).map_err(|e| match e {
        ReadHeaderError::Io(e) => truncated(path, e.to_string()),
        ReadHeaderError::Parse(e) => format_error(path, format!("unreadable header: {e}")),
    })?;
    let descriptor = header.type_descriptor.to_string();
    let descriptor = descriptor.trim_matches('\'');
    let item_size = numeric_item_size(descriptor).ok_or_else(|| {
        let expected = if descriptor.ends_with("f2") {
            "half precision is not read: save the array as float32"
        } else {
            "expected a numeric or boolean array"
        };
        DataError::invalid(
            path,
            format!("unsupported element type {descriptor} ({expected})"),
        )
    })?;
    let data = bytes.len() - prefix - header_len;
    let shape = header
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let declared = header
        .shape
        .iter()
        .try_fold(item_size, |acc, &d| acc.checked_mul(d));
    match declared {
        Some(declared) if declared <= data => Ok(()),
        Some(declared) => Err(format_error(
            path,
            format!(
                "the header declares shape {shape} of {item_size}-byte values ({declared} bytes), \
                 the file holds {data} bytes of data (cut short, or a corrupt header)"
            ),
        )),
        None => Err(format_error(
            path,
            format!("the header declares shape {shape}, more bytes than any file can hold"),
        )),
    }
}

/// Bytes per element of a numeric or boolean descriptor such as `'<f4'` or `'|b1'`.
fn numeric_item_size(descriptor: &str) -> Option<usize> {
    let text = descriptor.trim_matches('\'');
    let text = text.trim_start_matches(['<', '>', '|', '=']);
    let (kind, size) = text.split_at_checked(1)?;
    let size: usize = size.parse().ok()?;
    let valid = match kind {
        "f" => matches!(size, 4 | 8),
        "i" | "u" => matches!(size, 1 | 2 | 4 | 8),
        "b" => size == 1,
        _ => false,
    };
    valid.then_some(size)
}

/// Outcome of trying one element type.
enum Attempt<T> {
    Read(Array3<T>),
    WrongType,
}

fn attempt<T: ReadableElement + Clone>(path: &Path, bytes: &[u8]) -> Result<Attempt<T>, DataError> {
    match Array3::<T>::read_npy(bytes) {
        Ok(a) => Ok(Attempt::Read(a.as_standard_layout().into_owned())),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(Attempt::WrongType),
        Err(ReadNpyError::MissingData) => Err(DataError::Truncated {
            path: path.to_path_buf(),
            reason: "the array data ends early".into(),
        }),
        Err(ReadNpyError::WrongNdim(expected, got)) => Err(DataError::invalid(
            path,
            format!(
                "array has {got} dimensions, expected {}",
                expected.unwrap_or(3)
            ),
        )),
        Err(e) => Err(DataError::Format {
            path: path.to_path_buf(),
            format: "NumPy .npy",
            reason: e.to_string(),
        }),
    }
}

/// Read any numeric 3D array, converted to f64 (values of every supported type fit exactly
/// except 64-bit integers beyond 2^53, which no image or label holds).
fn read_as_f64(path: &Path, bytes: &[u8]) -> Result<Array3<f64>, DataError> {
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Attempt::Read(a) = attempt::<$t>(path, bytes)? {
                return Ok(a.mapv(|v| v as f64));
            }
        )*};
    }
    try_types!(f64, f32, u8, i8, u16, i16, u32, i32, u64, i64);
    if let Attempt::Read(a) = attempt::<bool>(path, bytes)? {
        return Ok(a.mapv(|v| if v { 1.0 } else { 0.0 }));
    }
    Err(DataError::invalid(
        path,
        "unsupported element type (expected a numeric or boolean array)",
    ))
}

fn volume<T>(path: &Path, data: Array3<T>) -> Volume<T> {
    Volume {
        data,
        geometry: Geometry::unknown(),
        source: SourceFormat::Npy,
        path: path.to_path_buf(),
    }
}

pub fn read_image(path: &Path) -> Result<Volume<f32>, DataError> {
    let bytes = read_bytes(path)?;
    if let Attempt::Read(a) = attempt::<f32>(path, &bytes)? {
        return Ok(volume(path, a));
    }
    Ok(volume(path, read_as_f64(path, &bytes)?.mapv(|v| v as f32)))
}

pub fn read_label(path: &Path) -> Result<Volume<u8>, DataError> {
    let bytes = read_bytes(path)?;
    if let Attempt::Read(a) = attempt::<u8>(path, &bytes)? {
        return Ok(volume(path, a));
    }
    let values = read_as_f64(path, &bytes)?;
    let shape = values.raw_dim();
    let labels = labels_from_f64(path, values.as_slice().expect("standard layout"))?;
    Ok(volume(
        path,
        Array3::from_shape_vec(shape, labels).expect("same element count"),
    ))
}

pub fn write<T: WritableElement>(data: &Array3<T>, path: &Path) -> Result<(), DataError> {
    crate::io_util::write_atomic_with(path, |w| data.write_npy(w).map_err(std::io::Error::other))
        .map_err(DataError::from)
}
