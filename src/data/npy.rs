//! NumPy `.npy` arrays (C or Fortran order). They carry no geometry.

use std::path::Path;

use ndarray::Array3;
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};

use super::error::DataError;
use super::labels::labels_from_f64;
use super::volume::{Geometry, SourceFormat, Volume};

const MAGIC: &[u8] = b"\x93NUMPY";

fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !bytes.starts_with(MAGIC) {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "NumPy .npy",
            reason: "the magic string is missing".into(),
        });
    }
    Ok(bytes)
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
