//! Saved class probabilities: one NumPy `.npz` per case (as nnU-Net's `--save_probabilities`),
//! holding `probabilities`, float32 `[C, X, Y, Z]` on the input's voxel grid in the label map's
//! axis order. The label file next to it carries the geometry. Without a target spacing,
//! `probabilities.argmax(0)` is the saved label map (before any largest-component clean-up); with
//! one, each class's probability is resampled linearly while the label map's classes are
//! resampled as indicators, so the two can differ by a voxel at class borders.

use std::io::{Cursor, Write};
use std::path::Path;

use ndarray::Array4;
use ndarray_npy::WriteNpyExt;

use crate::data::DataError;

/// The array's name inside the `.npz`.
pub const PROBABILITIES_KEY: &str = "probabilities";

/// Write `probabilities` atomically as a deflate-compressed `.npz` (`numpy.load(path)["probabilities"]`).
pub fn write_probabilities(probabilities: &Array4<f32>, path: &Path) -> Result<(), DataError> {
    let mut npy = Vec::new();
    probabilities
        .as_standard_layout()
        .write_npy(&mut npy)
        .map_err(|e| DataError::invalid(path, format!("cannot encode the probabilities: {e}")))?;
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(npy.len() as u64 >= u32::MAX as u64);
    let zip_error = |e: zip::result::ZipError| {
        DataError::invalid(path, format!("cannot build the .npz archive: {e}"))
    };
    archive
        .start_file(format!("{PROBABILITIES_KEY}.npy"), options)
        .map_err(zip_error)?;
    archive
        .write_all(&npy)
        .map_err(|e| DataError::io(path, e))?;
    let bytes = archive.finish().map_err(zip_error)?.into_inner();
    crate::io_util::write_atomic(path, &bytes).map_err(DataError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::ReadNpyExt;
    use std::io::Read;

    #[test]
    fn npz_holds_the_probabilities_as_numpy_reads_them() {
        let p = Array4::from_shape_fn([2, 3, 2, 1], |(c, i, j, _)| {
            if c == 0 {
                0.25 * (i + j) as f32
            } else {
                1.0 - 0.25 * (i + j) as f32
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case.npz");
        write_probabilities(&p, &path).unwrap();
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_name("probabilities.npy").unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(Array4::<f32>::read_npy(&bytes[..]).unwrap(), p);
    }
}
