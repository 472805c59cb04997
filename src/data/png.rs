//! PNG images and label maps: 2D data as nnU-Net v2 reads it (`"file_ending": ".png"`), such as
//! slices exported from a viewer. A PNG holds one slice, read as an `H x W x 1` volume (rows,
//! columns, one slice), so the planner treats it like any one-slice image.
//!
//! Only single-channel data is meaningful here: a grey PNG (8 or 16 bits) is read as is, and a
//! colour PNG whose red, green and blue agree at every pixel (grey saved as RGB) is read as its
//! grey value. A colour PNG whose channels differ is refused rather than averaged: a photo or a
//! colour-coded label map would be silently wrong. Alpha is ignored. PNG stores no voxel size.

use std::path::Path;

use image::{DynamicImage, ImageFormat};
use ndarray::{Array2, Array3, Axis};

use super::error::DataError;
use super::volume::{Geometry, SourceFormat, Volume};

fn format_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        format: "PNG",
        reason: reason.into(),
    }
}

/// The grey values of a decoded PNG, rows x columns.
fn grey_values(path: &Path, image: DynamicImage) -> Result<Array2<u16>, DataError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let colour = image.color();
    let eight_bit = colour.bytes_per_pixel() / colour.channel_count() == 1;
    let grey = colour.channel_count() <= 2;
    let pixels: Vec<[u16; 3]> = if eight_bit {
        image
            .into_rgb8()
            .pixels()
            .map(|p| p.0.map(u16::from))
            .collect()
    } else {
        image.into_rgb16().pixels().map(|p| p.0).collect()
    };
    if !grey && let Some(at) = pixels.iter().position(|[r, g, b]| r != g || g != b) {
        let [r, g, b] = pixels[at];
        return Err(DataError::invalid(
            path,
            format!(
                "colour PNG: red, green and blue differ at row {}, column {} ({r}, {g}, {b}); \
                 semisam reads single-channel images, so save it as greyscale",
                at / width,
                at % width
            ),
        ));
    }
    let values = pixels.into_iter().map(|[r, _, _]| r).collect();
    Ok(Array2::from_shape_vec((height, width), values).expect("one value per pixel"))
}

fn read_grey(path: &Path) -> Result<Array2<u16>, DataError> {
    let bytes = super::read_file(path)?;
    let image = image::load_from_memory_with_format(&bytes, ImageFormat::Png)
        .map_err(|e| format_error(path, e.to_string()))?;
    grey_values(path, image)
}

fn volume<T>(path: &Path, slice: Array2<T>) -> Volume<T> {
    Volume {
        data: slice.insert_axis(Axis(2)),
        geometry: Geometry::unknown(),
        source: SourceFormat::Png,
        path: path.to_path_buf(),
    }
}

pub fn read_image(path: &Path) -> Result<Volume<f32>, DataError> {
    Ok(volume(path, read_grey(path)?.mapv(f32::from)))
}

/// A label map: class indices 0..=255 (a 16-bit PNG may hold no larger value).
pub fn read_label(path: &Path) -> Result<Volume<u8>, DataError> {
    let grey = read_grey(path)?;
    if let Some(((row, col), &value)) = grey.indexed_iter().find(|(_, v)| **v > 255) {
        return Err(DataError::NonIntegralLabel {
            path: path.to_path_buf(),
            message: format!(
                "label value {value} at row {row}, column {col} does not fit a class index (0 to 255)"
            ),
        });
    }
    Ok(volume(path, grey.mapv(|v| v as u8)))
}

/// The one slice of an `H x W x 1` volume; other shapes do not fit a PNG.
fn single_slice<'a, T>(
    volume: &'a Array3<T>,
    path: &Path,
) -> Result<ndarray::ArrayView2<'a, T>, DataError> {
    let shape = volume.shape();
    if shape[2] != 1 || shape[0] > u32::MAX as usize || shape[1] > u32::MAX as usize {
        return Err(DataError::invalid(
            path,
            format!(
                "a PNG holds one 2D slice (H x W x 1), not a {}x{}x{} volume: write .nii.gz or .npy",
                shape[0], shape[1], shape[2]
            ),
        ));
    }
    Ok(volume.index_axis(Axis(2), 0))
}

/// Write a label map as an 8-bit grey PNG of class indices, atomically.
pub fn write_label(volume: &Volume<u8>, path: &Path) -> Result<(), DataError> {
    let slice = single_slice(&volume.data, path)?;
    let (height, width) = slice.dim();
    let pixels: Vec<u8> = slice.iter().copied().collect();
    let image = image::GrayImage::from_raw(width as u32, height as u32, pixels)
        .expect("one byte per pixel");
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| format_error(path, e.to_string()))?;
    crate::io_util::write_atomic(path, bytes.get_ref()).map_err(DataError::from)
}

/// Float images have no lossless PNG form.
pub fn refuse_image_write(path: &Path) -> DataError {
    DataError::invalid(
        path,
        "PNG stores 8- or 16-bit integers, not a float image: write .nii.gz or .npy",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, image: DynamicImage) {
        image.save_with_format(path, ImageFormat::Png).unwrap();
    }

    #[test]
    fn grey_pngs_read_at_their_own_bit_depth_rows_first() {
        let dir = tempfile::tempdir().unwrap();
        let eight = dir.path().join("eight.png");
        write(
            &eight,
            DynamicImage::ImageLuma8(image::GrayImage::from_fn(3, 2, |x, y| {
                image::Luma([(10 * y + x) as u8])
            })),
        );
        let image = read_image(&eight).unwrap();
        assert_eq!(image.shape(), [2, 3, 1]);
        assert_eq!(image.data[[1, 2, 0]], 12.0);
        assert_eq!(image.source, SourceFormat::Png);
        assert_eq!(image.geometry.spacing, None);

        let sixteen = dir.path().join("sixteen.png");
        write(
            &sixteen,
            DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(2, 2, |x, y| {
                image::Luma([1000 * y as u16 + x as u16])
            })),
        );
        assert_eq!(read_image(&sixteen).unwrap().data[[1, 1, 0]], 1001.0);
        let err = read_label(&sixteen).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: label value 1000 at row 1, column 0 does not fit a class index (0 to 255)",
                sixteen.display()
            )
        );
    }

    #[test]
    fn grey_saved_as_rgb_is_read_and_true_colour_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let grey_rgb = dir.path().join("grey_rgb.png");
        write(
            &grey_rgb,
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(2, 2, |x, _| {
                let v = 100 + x as u8;
                image::Rgba([v, v, v, 7])
            })),
        );
        let label = read_label(&grey_rgb).unwrap();
        assert_eq!(
            label.data.iter().copied().collect::<Vec<_>>(),
            [100, 101, 100, 101]
        );

        let colour = dir.path().join("colour.png");
        write(
            &colour,
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(2, 2, |x, y| {
                if (x, y) == (1, 1) {
                    image::Rgb([255, 0, 0])
                } else {
                    image::Rgb([0, 0, 0])
                }
            })),
        );
        let err = read_image(&colour).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: colour PNG: red, green and blue differ at row 1, column 1 (255, 0, 0); \
                 semisam reads single-channel images, so save it as greyscale",
                colour.display()
            )
        );
    }

    #[test]
    fn labels_round_trip_and_other_shapes_or_bytes_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.png");
        let data = Array3::from_shape_fn((4, 5, 1), |(i, j, _)| ((i + j) % 3) as u8);
        let label = Volume {
            data: data.clone(),
            geometry: Geometry::unknown(),
            source: SourceFormat::Png,
            path: path.clone(),
        };
        write_label(&label, &path).unwrap();
        assert_eq!(read_label(&path).unwrap().data, data);

        let thick = Volume {
            data: Array3::<u8>::zeros((4, 5, 2)),
            ..label
        };
        let err = write_label(&thick, &path).unwrap_err().to_string();
        assert!(err.contains("not a 4x5x2 volume"), "{err}");
        assert_eq!(
            read_label(&path).unwrap().data,
            data,
            "the file is untouched"
        );

        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let err = read_image(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a valid PNG file", path.display())),
            "{err}"
        );
        let missing = dir.path().join("absent.png");
        assert_eq!(
            read_image(&missing).unwrap_err().to_string(),
            format!("{}: file not found", missing.display())
        );
    }

    #[test]
    fn a_white_mask_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("white.png");
        write(
            &path,
            DynamicImage::ImageLuma8(image::GrayImage::from_fn(3, 3, |x, _| {
                image::Luma([if x == 1 { 255 } else { 0 }])
            })),
        );
        let label = read_label(&path).unwrap();
        let err = crate::data::validate::check_label_values(&label, &[0, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: label values {{255}} are outside the declared set {{0, 1}} (a mask saved \
                 as 0/255? label maps store class indices: 0, 1, 2, ...)",
                path.display()
            )
        );
    }
}
