//! PNG output of the report's pictures, through the atomic writer.

use std::path::Path;

use image::{ImageEncoder, RgbImage};

use super::ReportError;

/// Encode `image` as PNG and write it to `path` atomically.
pub fn write_png(image: &RgbImage, path: &Path) -> Result<(), ReportError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ReportError::file(path, format!("PNG encoding: {e}")))?;
    crate::io_util::write_atomic(path, &bytes)?;
    Ok(())
}

/// An RGB canvas of `width` x `height` that plotters can draw on; `draw` fills it.
pub fn render(
    width: u32,
    height: u32,
    path: &Path,
    draw: impl FnOnce(&mut [u8]) -> Result<(), String>,
) -> Result<RgbImage, ReportError> {
    if !super::font::register() {
        return Err(ReportError::file(path, "the embedded font does not parse"));
    }
    let mut buffer = vec![255u8; width as usize * height as usize * 3];
    draw(&mut buffer).map_err(|e| ReportError::file(path, format!("drawing: {e}")))?;
    RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| ReportError::file(path, "drawing buffer has the wrong size"))
}
