//! Annotated slice pictures: windowed grey images with label contours drawn along voxel edges,
//! side by side, under a title and a colour legend.

use std::error::Error;
use std::path::Path;

use image::RgbImage;
use ndarray::{Array2, ArrayView3, Axis};
use plotters::prelude::*;

use super::ReportError;
use super::font::FAMILY;
use super::png::render;

/// Reference contours.
pub const REFERENCE_COLOR: [u8; 3] = [0, 200, 0];
/// Prediction contours.
pub const PREDICTION_COLOR: [u8; 3] = [235, 30, 30];
/// SAM pseudo-label contours.
pub const PSEUDO_LABEL_COLOR: [u8; 3] = [255, 215, 0];

/// Slices narrower than this are magnified (integer factor) so that a person can see voxels.
const MIN_PANEL_SIDE: usize = 240;
const MAX_ZOOM: usize = 8;
const HEADER_HEIGHT: u32 = 64;
const CAPTION_HEIGHT: u32 = 30;
const GAP: u32 = 12;

/// One label map drawn as contours.
pub struct Contour<'a> {
    pub name: &'a str,
    pub color: [u8; 3],
    /// Same shape as the image; 0 is background, each other value gets its own outline.
    pub labels: ArrayView3<'a, u8>,
}

/// What to draw: slices `slices` along `axis` of `image`, windowed to `window`.
pub struct SliceFigure<'a> {
    pub title: String,
    pub image: ArrayView3<'a, f32>,
    pub window: (f32, f32),
    pub axis: usize,
    pub slices: Vec<usize>,
    pub contours: Vec<Contour<'a>>,
}

/// The grey-level window of an image: its 1st and 99th intensity percentiles, so that a few
/// extreme voxels do not wash out the picture.
pub fn intensity_window(image: ArrayView3<'_, f32>) -> (f32, f32) {
    let mut values: Vec<f32> = image.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let at = |values: &mut Vec<f32>, q: f64| {
        let k = ((values.len() - 1) as f64 * q).round() as usize;
        *values.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
    };
    let low = at(&mut values, 0.01);
    let high = at(&mut values, 0.99);
    if high > low {
        (low, high)
    } else {
        (low, low + 1.0)
    }
}

/// The `count` slices along `axis` with the most foreground voxels in `labels` (ties: lower
/// index), in increasing order; slices without foreground only when no slice has any, then the
/// middle slice.
pub fn largest_slices(labels: ArrayView3<'_, u8>, axis: usize, count: usize) -> Vec<usize> {
    let areas: Vec<usize> = labels
        .axis_iter(Axis(axis))
        .map(|s| s.iter().filter(|&&v| v > 0).count())
        .collect();
    let mut order: Vec<usize> = (0..areas.len()).filter(|&i| areas[i] > 0).collect();
    if order.is_empty() {
        return vec![areas.len() / 2];
    }
    order.sort_by(|&a, &b| areas[b].cmp(&areas[a]).then(a.cmp(&b)));
    order.truncate(count);
    order.sort_unstable();
    order
}

/// Render `figure` into an image.
pub fn render_figure(figure: &SliceFigure<'_>, path: &Path) -> Result<RgbImage, ReportError> {
    let shape = figure.image.shape();
    for contour in &figure.contours {
        if contour.labels.shape() != shape {
            return Err(ReportError::file(
                path,
                format!(
                    "{} has shape {:?} but the image has {:?}",
                    contour.name,
                    contour.labels.shape(),
                    shape
                ),
            ));
        }
    }
    if figure.axis > 2 || figure.slices.iter().any(|&s| s >= shape[figure.axis]) {
        return Err(ReportError::file(path, "slice outside the volume"));
    }
    let plane: Vec<usize> = (0..3).filter(|&d| d != figure.axis).collect();
    let (columns, rows) = (shape[plane[0]], shape[plane[1]]);
    let zoom = MIN_PANEL_SIDE
        .div_ceil(columns.min(rows).max(1))
        .clamp(1, MAX_ZOOM);
    let (panel_w, panel_h) = ((columns * zoom) as u32, (rows * zoom) as u32);
    let n = figure.slices.len() as u32;
    let width = (n * panel_w + (n + 1) * GAP).max(560);
    let height = HEADER_HEIGHT + panel_h + CAPTION_HEIGHT + GAP;

    render(width, height, path, |buffer| {
        for (p, &slice) in figure.slices.iter().enumerate() {
            let x0 = GAP + p as u32 * (panel_w + GAP);
            let panel = draw_panel(figure, slice, zoom);
            blit(buffer, width, &panel, x0, HEADER_HEIGHT);
        }
        annotate(figure, buffer, (width, height), panel_w, panel_h).map_err(|e| e.to_string())
    })
}

/// One slice, magnified, with its contours; columns are the first in-plane axis, rows the second
/// (increasing upwards).
fn draw_panel(figure: &SliceFigure<'_>, slice: usize, zoom: usize) -> RgbImage {
    let image = figure.image.index_axis(Axis(figure.axis), slice);
    let (columns, rows) = image.dim();
    let (low, high) = figure.window;
    let mut panel = RgbImage::new((columns * zoom) as u32, (rows * zoom) as u32);
    for (x, y, pixel) in panel.enumerate_pixels_mut() {
        let (i, j) = (x as usize / zoom, rows - 1 - y as usize / zoom);
        let grey = ((image[[i, j]] - low) / (high - low)).clamp(0.0, 1.0) * 255.0;
        *pixel = image::Rgb([grey as u8; 3]);
    }
    // The first contour (the reference) is drawn wider than the ones drawn over it, so that
    // where they coincide both stay visible.
    for (n, contour) in figure.contours.iter().enumerate() {
        let thickness = if n == 0 { zoom / 2 } else { zoom / 3 }.max(1) as i64;
        let labels = contour.labels.index_axis(Axis(figure.axis), slice);
        let edges = contour_pixels(&labels.to_owned(), zoom, thickness);
        for ((x, y), &edge) in edges.indexed_iter() {
            if edge {
                panel.put_pixel(x as u32, y as u32, image::Rgb(contour.color));
            }
        }
    }
    panel
}

/// Magnified pixels (x, y) that lie within `thickness` of an edge between a labelled voxel and a
/// voxel of another value (or the slice border), on the labelled side.
fn contour_pixels(labels: &Array2<u8>, zoom: usize, thickness: i64) -> Array2<bool> {
    let (columns, rows) = labels.dim();
    let (w, h) = ((columns * zoom) as i64, (rows * zoom) as i64);
    let value = |x: i64, y: i64| -> Option<u8> {
        (x >= 0 && y >= 0 && x < w && y < h)
            .then(|| labels[[x as usize / zoom, rows - 1 - y as usize / zoom]])
    };
    Array2::from_shape_fn((w as usize, h as usize), |(x, y)| {
        let (x, y) = (x as i64, y as i64);
        let here = value(x, y).unwrap_or(0);
        here > 0
            && (1..=thickness).any(|d| {
                [(d, 0), (-d, 0), (0, d), (0, -d)]
                    .iter()
                    .any(|&(dx, dy)| value(x + dx, y + dy) != Some(here))
            })
    })
}

fn blit(buffer: &mut [u8], width: u32, panel: &RgbImage, x0: u32, y0: u32) {
    for (x, y, pixel) in panel.enumerate_pixels() {
        let at = (((y0 + y) * width + x0 + x) * 3) as usize;
        buffer[at..at + 3].copy_from_slice(&pixel.0);
    }
}

fn annotate(
    figure: &SliceFigure<'_>,
    buffer: &mut [u8],
    size: (u32, u32),
    panel_w: u32,
    panel_h: u32,
) -> Result<(), Box<dyn Error>> {
    let root = BitMapBackend::with_buffer(buffer, size).into_drawing_area();
    let black = (FAMILY, 20).into_font().color(&BLACK);
    root.draw(&Text::new(figure.title.as_str(), (GAP as i32, 8), black))?;
    let mut x = GAP as i32;
    for contour in &figure.contours {
        let [r, g, b] = contour.color;
        root.draw(&Rectangle::new(
            [(x, 38), (x + 26, 52)],
            RGBColor(r, g, b).filled(),
        ))?;
        root.draw(&Rectangle::new([(x, 38), (x + 26, 52)], BLACK))?;
        let font = (FAMILY, 17).into_font().color(&BLACK);
        let (text_width, _) = root.estimate_text_size(contour.name, &font)?;
        root.draw(&Text::new(contour.name, (x + 32, 36), font))?;
        x += 32 + text_width as i32 + 24;
    }
    let axis_name = ["i", "j", "k"][figure.axis];
    for (p, &slice) in figure.slices.iter().enumerate() {
        let x0 = (GAP + p as u32 * (panel_w + GAP)) as i32;
        root.draw(&Text::new(
            format!("{axis_name} = {slice}"),
            (x0, (HEADER_HEIGHT + panel_h + 6) as i32),
            (FAMILY, 17).into_font().color(&BLACK),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn largest_slices_rank_by_foreground_area() {
        let mut labels = Array3::<u8>::zeros((4, 4, 5));
        labels.slice_mut(ndarray::s![.., .., 1]).fill(1); // 16
        labels.slice_mut(ndarray::s![0..2, .., 3]).fill(2); // 8
        labels[[0, 0, 4]] = 1; // 1
        assert_eq!(largest_slices(labels.view(), 2, 2), vec![1, 3]);
        assert_eq!(largest_slices(labels.view(), 2, 9), vec![1, 3, 4]);
        assert_eq!(
            largest_slices(Array3::<u8>::zeros((2, 2, 7)).view(), 2, 3),
            vec![3]
        );
    }

    #[test]
    fn contours_follow_voxel_edges_inside_the_label() {
        // One labelled voxel at column 1, row 1 (of 3x3), magnified 3x: its 3x3 block is all
        // edge (thickness 1), nothing else is.
        let mut labels = Array2::<u8>::zeros((3, 3));
        labels[[1, 1]] = 2;
        let edges = contour_pixels(&labels, 3, 1);
        let expected =
            Array2::from_shape_fn((9, 9), |(x, y)| (3..6).contains(&x) && (3..6).contains(&y));
        // The centre pixel (4, 4) has labelled neighbours only at distance 1.
        let mut expected = expected;
        expected[[4, 4]] = false;
        assert_eq!(edges, expected);
    }

    #[test]
    fn window_is_the_1st_to_99th_percentile() {
        let image = Array3::from_shape_fn((10, 10, 1), |(i, j, _)| (i * 10 + j) as f32);
        assert_eq!(intensity_window(image.view()), (1.0, 98.0));
    }

    #[test]
    fn figure_has_panels_contours_and_rejects_mismatched_labels() {
        let image = Array3::from_shape_fn((30, 40, 6), |(i, j, _)| (i + j) as f32);
        let mut reference = Array3::<u8>::zeros((30, 40, 6));
        reference
            .slice_mut(ndarray::s![10..20, 10..30, 2..4])
            .fill(1);
        let figure = SliceFigure {
            title: "case".into(),
            image: image.view(),
            window: intensity_window(image.view()),
            axis: 2,
            slices: vec![2, 3],
            contours: vec![Contour {
                name: "reference",
                color: REFERENCE_COLOR,
                labels: reference.view(),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let rendered = render_figure(&figure, &dir.path().join("x.png")).unwrap();
        // zoom 8 (240 / 30): two panels of 240 x 320, widened to the minimum width for the legend.
        assert_eq!(
            rendered.dimensions(),
            (560, HEADER_HEIGHT + 320 + CAPTION_HEIGHT + GAP)
        );
        let green = rendered.pixels().filter(|p| p.0 == REFERENCE_COLOR).count();
        // per panel: the 10x20 voxel box at zoom 8 has an 80x160 outline of thickness 4 (plus the
        // legend swatch)
        let outline = 80 * 160 - 72 * 152;
        assert!(green >= 2 * outline, "{green}");

        let wrong = Array3::<u8>::zeros((30, 40, 5));
        let figure = SliceFigure {
            contours: vec![Contour {
                name: "prediction",
                color: PREDICTION_COLOR,
                labels: wrong.view(),
            }],
            ..figure
        };
        let err = render_figure(&figure, Path::new("x.png"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prediction has shape [30, 40, 5] but the image has [30, 40, 6]"),
            "{err}"
        );
    }
}
