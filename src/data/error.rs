//! Everything that can be wrong with input data. Every variant names the file (or the case and
//! its files) and says what is wrong, so a user can fix the input without reading code.

use std::path::PathBuf;

fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn values_text(values: &[u8]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("{{{}}}", items.join(", "))
}

/// A mask drawn in white (255) is the usual way a binary label map goes wrong.
fn white_mask_hint(unexpected: &[u8]) -> &'static str {
    if unexpected == [255] {
        " (a mask saved as 0/255? label maps store class indices: 0, 1, 2, ...)"
    } else {
        ""
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: file not found")]
    Missing { path: PathBuf },

    #[error("{path}: cannot read or write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not the format the file name promises (or the file is truncated).
    #[error("{path}: not a valid {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },

    #[error("{path}: the file is truncated: {reason}")]
    Truncated { path: PathBuf, reason: String },

    #[error("{path}: missing dataset `{key}` (found: {found})")]
    MissingKey {
        path: PathBuf,
        key: String,
        found: String,
    },

    #[error(
        "{path}: unsupported file extension (expected {})",
        super::volume_extensions_text()
    )]
    UnknownExtension { path: PathBuf },

    #[error("{path}: empty volume (shape {})", shape_text(.shape))]
    EmptyVolume { path: PathBuf, shape: Vec<usize> },

    #[error(
        "case {case}: image {image} has shape {} but label {label} has shape {}",
        shape_text(.image_shape),
        shape_text(.label_shape)
    )]
    ShapeMismatch {
        case: String,
        image: PathBuf,
        label: PathBuf,
        image_shape: Vec<usize>,
        label_shape: Vec<usize>,
    },

    #[error("case {case}: image {image} and label {label} have different geometry: {detail}")]
    GeometryMismatch {
        case: String,
        image: PathBuf,
        label: PathBuf,
        detail: String,
    },

    #[error(
        "{path}: label values {} are outside the declared set {}{}",
        values_text(.unexpected),
        values_text(.declared),
        white_mask_hint(.unexpected)
    )]
    LabelOutOfSet {
        path: PathBuf,
        unexpected: Vec<u8>,
        declared: Vec<u8>,
    },

    #[error("{path}: {message}")]
    NonIntegralLabel { path: PathBuf, message: String },

    #[error("{path}: {count} voxel(s) are NaN or infinite (first at index {first:?})")]
    NonFinite {
        path: PathBuf,
        count: usize,
        first: [usize; 3],
    },

    #[error("{path}: duplicate case ID `{id}` ({location})")]
    DuplicateCase {
        path: PathBuf,
        id: String,
        location: String,
    },

    #[error("{path}: case `{id}` is in two splits ({first} and {second})")]
    CaseInTwoSplits {
        path: PathBuf,
        id: String,
        first: &'static str,
        second: &'static str,
    },

    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },

    #[error(transparent)]
    Normalize(#[from] crate::data::normalize::NormalizeError),
}

impl DataError {
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Classify an I/O error on `path`: a missing file gets its own message.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => DataError::Missing { path },
            std::io::ErrorKind::UnexpectedEof => DataError::Truncated {
                path,
                reason: source.to_string(),
            },
            _ => DataError::Io { path, source },
        }
    }
}

impl From<crate::io_util::WriteError> for DataError {
    fn from(e: crate::io_util::WriteError) -> Self {
        DataError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
