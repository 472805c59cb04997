//! Data: medical volumes (UA-MT h5, NIfTI, npy) and 2D slices (PNG), dataset layouts, case lists and splits,
//! intensity normalisation and input validation.
//!
//! Entry points others code against: [`read_image`], [`read_label`], [`write_image`],
//! [`write_label`] (format chosen from the file extension), [`Dataset`] and [`Splits`].

pub mod augment;
pub mod batches;
pub mod case_list;
pub mod dataset;
pub mod downsample;
pub mod error;
pub mod folds;
pub mod h5;
pub mod image_folder;
pub mod inspect;
pub mod labels;
pub mod modality;
pub mod nifti_file;
pub mod normalize;
pub mod npy;
pub mod png;
pub mod preparation;
pub mod resample;
pub mod splits;
pub mod validate;
pub mod volume;

pub use case_list::{read_case_list, write_case_list};
pub use dataset::{Case, Dataset, Layout, LoadedCase};
pub use error::DataError;
pub use normalize::{Normalization, normalize};
pub use preparation::Preparation;
pub use splits::Splits;
pub use volume::{Geometry, SourceFormat, Volume};

use std::path::Path;

use rayon::prelude::*;

/// Map `items` in parallel; on failure, the error of the first failing item in `items`' order,
/// so that the same bad input always gives the same message (rayon's `collect` into a `Result`
/// keeps whichever error a thread finds first).
pub fn try_map_in_order<T, U, E, F>(items: &[T], map: F) -> Result<Vec<U>, E>
where
    T: Sync,
    U: Send,
    E: Send,
    F: Fn(&T) -> Result<U, E> + Sync + Send,
{
    let results: Vec<Result<U, E>> = items.par_iter().map(map).collect();
    results.into_iter().collect()
}

/// Extensions of single-file images and label maps, matched case-insensitively (longest
/// first, so that `.nii.gz` is not taken for `.gz`).
pub const VOLUME_EXTENSIONS: [&str; 6] = [".nii.gz", ".nii", ".hdf5", ".h5", ".npy", ".png"];

/// The readable extensions for a message: ".nii.gz, .nii, .hdf5, .h5, .npy or .png".
pub fn volume_extensions_text() -> String {
    let (last, rest) = VOLUME_EXTENSIONS.split_last().expect("extensions");
    format!("{} or {last}", rest.join(", "))
}

/// Refuse anything at `path` but a regular file: a device such as `/dev/zero` or a named pipe
/// would be read without end.
pub fn check_regular_file(path: &Path) -> Result<(), DataError> {
    let metadata = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if metadata.is_file() {
        Ok(())
    } else {
        Err(DataError::invalid(
            path,
            "not a regular file (a folder, device or pipe): expected an image or label file",
        ))
    }
}

/// The bytes of the regular file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    check_regular_file(path)?;
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// `("case", ".nii.gz")` for `case.nii.gz` (the extension as written); `None` when the name has
/// no volume extension or nothing before it.
pub fn split_volume_extension(name: &str) -> Option<(&str, &str)> {
    let lower = name.to_ascii_lowercase();
    VOLUME_EXTENSIONS
        .iter()
        .find(|ext| lower.ends_with(*ext) && lower.len() > ext.len())
        .map(|ext| name.split_at(name.len() - ext.len()))
}

/// The file format implied by a path's extension.
pub fn format_of(path: &Path) -> Result<SourceFormat, DataError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let unknown = || DataError::UnknownExtension {
        path: path.to_path_buf(),
    };
    let (_, extension) = split_volume_extension(&name).ok_or_else(unknown)?;
    Ok(match extension.to_ascii_lowercase().as_str() {
        ".h5" | ".hdf5" => SourceFormat::H5,
        ".nii" | ".nii.gz" => SourceFormat::Nifti,
        ".npy" => SourceFormat::Npy,
        ".png" => SourceFormat::Png,
        _ => return Err(unknown()),
    })
}

fn reject_empty<T>(volume: Volume<T>) -> Result<Volume<T>, DataError> {
    if volume.data.is_empty() {
        return Err(DataError::EmptyVolume {
            shape: volume.shape().to_vec(),
            path: volume.path,
        });
    }
    Ok(volume)
}

/// Read an image as f32 (for h5, the `image` dataset). Zero-size volumes are an error.
pub fn read_image(path: impl AsRef<Path>) -> Result<Volume<f32>, DataError> {
    let path = path.as_ref();
    let volume = match format_of(path)? {
        SourceFormat::H5 => h5::read_image(path)?,
        SourceFormat::Nifti => nifti_file::read_image(path)?,
        SourceFormat::Npy => npy::read_image(path)?,
        SourceFormat::Png => png::read_image(path)?,
    };
    reject_empty(volume)
}

/// Read a label map as u8 (for h5, the `label` dataset). Labels stored in other types must hold
/// integers in 0..=255. Zero-size volumes are an error.
pub fn read_label(path: impl AsRef<Path>) -> Result<Volume<u8>, DataError> {
    let path = path.as_ref();
    let volume = match format_of(path)? {
        SourceFormat::H5 => h5::read_label(path)?,
        SourceFormat::Nifti => nifti_file::read_label(path)?,
        SourceFormat::Npy => npy::read_label(path)?,
        SourceFormat::Png => png::read_label(path)?,
    };
    reject_empty(volume)
}

/// Write a label map atomically in the format of `path`'s extension, with the volume's
/// geometry (for NIfTI, its header with the data type set to uint8). An h5 output holds the
/// dataset `label` only; use [`h5::write_case`] to store the image alongside.
pub fn write_label(volume: &Volume<u8>, path: impl AsRef<Path>) -> Result<(), DataError> {
    let path = path.as_ref();
    match format_of(path)? {
        SourceFormat::H5 => h5::write_case(path, None, Some(&volume.data)),
        SourceFormat::Nifti => nifti_file::write(volume, path),
        SourceFormat::Npy => npy::write(&volume.data, path),
        SourceFormat::Png => png::write_label(volume, path),
    }
}

/// Write an image atomically in the format of `path`'s extension (for NIfTI, float32 with the
/// volume's header). An h5 output holds the dataset `image` only; PNG, which holds no floats,
/// is refused.
pub fn write_image(volume: &Volume<f32>, path: impl AsRef<Path>) -> Result<(), DataError> {
    let path = path.as_ref();
    match format_of(path)? {
        SourceFormat::H5 => h5::write_case(path, Some(&volume.data), None),
        SourceFormat::Nifti => nifti_file::write(volume, path),
        SourceFormat::Npy => npy::write(&volume.data, path),
        SourceFormat::Png => Err(png::refuse_image_write(path)),
    }
}
