//! Annotated slice pictures: windowed grey images with label contours drawn along voxel edges,
//! one colour per class, one row of panels per label map (reference, prediction, ...), under a
//! title and a class legend. Panels are stretched by the in-plane voxel spacing, so a millimetre
//! is as long across as down.

use std::error::Error;
use std::path::Path;

use image::RgbImage;
use ndarray::{Array2, ArrayView3, Axis, Zip};
use plotters::prelude::*;

use super::ReportError;
use super::font::FAMILY;
use super::png::render;

/// Contour colours of classes 1, 2, ... (class N takes entry (N - 1) modulo their number):
/// saturated hues that stand out on grey and from each other.
pub const CLASS_COLORS: [[u8; 3]; 6] = [
    [255, 60, 60],
    [40, 150, 255],
    [255, 215, 0],
    [0, 220, 120],
    [230, 80, 230],
    [0, 230, 230],
];

/// The contour colour of label value `class` (at least 1).
pub fn class_color(class: u8) -> [u8; 3] {
    CLASS_COLORS[(usize::from(class).max(1) - 1) % CLASS_COLORS.len()]
}

/// The magnified panels' shorter side reaches at least this many pixels (integer zoom of the
/// finer in-plane axis), so that a person can see voxels.
const MIN_PANEL_SIDE: usize = 240;
const MAX_ZOOM: usize = 8;
/// The coarser in-plane axis is stretched by at most this much.
const MAX_ASPECT: f64 = 8.0;
const HEADER_HEIGHT: u32 = 64;
const ROW_CAPTION_HEIGHT: u32 = 26;
const CAPTION_HEIGHT: u32 = 30;
const GAP: u32 = 12;
/// Opacity of a class's colour over the inside of its region.
const FILL_ALPHA: f32 = 0.25;

/// One label map, drawn as one row of panels.
pub struct LabelRow<'a> {
    pub name: String,
    /// Same shape as the image; 0 is background, each other value is a class.
    pub labels: ArrayView3<'a, u8>,
}

/// A slice to show, with an optional note under it (why it was chosen).
#[derive(Debug, Clone, PartialEq)]
pub struct ShownSlice {
    pub index: usize,
    pub note: Option<&'static str>,
}

/// What to draw: slices `slices` along `axis` of `image`, windowed to `window`.
pub struct SliceFigure<'a> {
    pub title: String,
    pub image: ArrayView3<'a, f32>,
    pub window: (f32, f32),
    pub axis: usize,
    /// Voxel size along each array axis (mm; any common unit).
    pub spacing: [f64; 3],
    pub slices: Vec<ShownSlice>,
    pub rows: Vec<LabelRow<'a>>,
    /// The legend: each class's value and name.
    pub classes: Vec<(u8, String)>,
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

/// The slice along `axis` where `a` and `b` (same shape) disagree on the most voxels (ties:
/// lower index); `None` where they agree everywhere.
pub fn most_disagreeing_slice(
    a: ArrayView3<'_, u8>,
    b: ArrayView3<'_, u8>,
    axis: usize,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (index, (sa, sb)) in a
        .axis_iter(Axis(axis))
        .zip(b.axis_iter(Axis(axis)))
        .enumerate()
    {
        let mut errors = 0usize;
        Zip::from(&sa)
            .and(&sb)
            .for_each(|x, y| errors += usize::from(x != y));
        if errors > 0 && best.is_none_or(|(_, most)| errors > most) {
            best = Some((index, errors));
        }
    }
    best.map(|(index, _)| index)
}

/// Pixels per voxel along the two in-plane axes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    x: f64,
    y: f64,
}

impl Scale {
    /// The finer axis gets an integer zoom that makes the shorter side at least
    /// [`MIN_PANEL_SIDE`] (at most [`MAX_ZOOM`]); the coarser is stretched by the spacing ratio.
    fn of(columns: usize, rows: usize, spacing: (f64, f64)) -> Self {
        let valid = |s: f64| if s.is_finite() && s > 0.0 { s } else { 1.0 };
        let (sx, sy) = (valid(spacing.0), valid(spacing.1));
        let unit = sx.min(sy);
        let (ax, ay) = ((sx / unit).min(MAX_ASPECT), (sy / unit).min(MAX_ASPECT));
        let shorter = (columns as f64 * ax).min(rows as f64 * ay).max(1.0);
        let zoom = ((MIN_PANEL_SIDE as f64 / shorter).ceil() as usize).clamp(1, MAX_ZOOM) as f64;
        Scale {
            x: zoom * ax,
            y: zoom * ay,
        }
    }

    fn pixels(self, columns: usize, rows: usize) -> (u32, u32) {
        (
            (columns as f64 * self.x).round().max(1.0) as u32,
            (rows as f64 * self.y).round().max(1.0) as u32,
        )
    }
}

/// Render `figure` into an image.
pub fn render_figure(figure: &SliceFigure<'_>, path: &Path) -> Result<RgbImage, ReportError> {
    let shape = figure.image.shape();
    for row in &figure.rows {
        if row.labels.shape() != shape {
            return Err(ReportError::file(
                path,
                format!(
                    "{} has shape {:?} but the image has {:?}",
                    row.name,
                    row.labels.shape(),
                    shape
                ),
            ));
        }
    }
    if figure.axis > 2 || figure.slices.iter().any(|s| s.index >= shape[figure.axis]) {
        return Err(ReportError::file(path, "slice outside the volume"));
    }
    if !super::font::register() {
        return Err(ReportError::file(path, "the embedded font does not parse"));
    }
    let plane: Vec<usize> = (0..3).filter(|&d| d != figure.axis).collect();
    let (columns, rows) = (shape[plane[0]], shape[plane[1]]);
    let scale = Scale::of(
        columns,
        rows,
        (figure.spacing[plane[0]], figure.spacing[plane[1]]),
    );
    let (panel_w, panel_h) = scale.pixels(columns, rows);
    let n = figure.slices.len() as u32;
    let text_width = |text: &str, size: u32| {
        (FAMILY, size)
            .into_font()
            .box_size(text)
            .map_or(0, |(w, _)| w)
    };
    let legend_width: u32 = legend_entries(figure)
        .iter()
        .map(|(_, name)| 32 + text_width(name, 17) + 24)
        .sum();
    let width = (n * panel_w + (n + 1) * GAP)
        .max(text_width(&figure.title, 20) + 2 * GAP)
        .max(legend_width + 2 * GAP)
        .max(560);
    let row_height = ROW_CAPTION_HEIGHT + panel_h + GAP;
    let height = HEADER_HEIGHT + figure.rows.len().max(1) as u32 * row_height + CAPTION_HEIGHT;

    render(width, height, path, |buffer| {
        for (r, row) in figure.rows.iter().enumerate() {
            let y0 = HEADER_HEIGHT + r as u32 * row_height + ROW_CAPTION_HEIGHT;
            for (p, slice) in figure.slices.iter().enumerate() {
                let x0 = GAP + p as u32 * (panel_w + GAP);
                let panel = draw_panel(figure, row, slice.index, scale, (panel_w, panel_h));
                blit(buffer, width, &panel, x0, y0);
            }
        }
        annotate(figure, buffer, (width, height), (panel_w, row_height)).map_err(|e| e.to_string())
    })
}

/// The legend's colours and texts.
fn legend_entries(figure: &SliceFigure<'_>) -> Vec<([u8; 3], String)> {
    figure
        .classes
        .iter()
        .map(|(class, name)| (class_color(*class), name.clone()))
        .collect()
}

/// One slice of one label map, magnified, with each class's region tinted and outlined in its
/// colour; columns are the first in-plane axis, rows the second (increasing upwards).
fn draw_panel(
    figure: &SliceFigure<'_>,
    row: &LabelRow<'_>,
    slice: usize,
    scale: Scale,
    (width, height): (u32, u32),
) -> RgbImage {
    let image = figure.image.index_axis(Axis(figure.axis), slice);
    let labels = row.labels.index_axis(Axis(figure.axis), slice).to_owned();
    let (columns, rows) = image.dim();
    let voxel = |x: u32, y: u32| {
        let i = ((f64::from(x) / scale.x) as usize).min(columns - 1);
        let j = rows - 1 - ((f64::from(y) / scale.y) as usize).min(rows - 1);
        (i, j)
    };
    let (low, high) = figure.window;
    let thickness = (scale.x.min(scale.y) / 3.0).round().max(1.0) as i64;
    let edges = contour_pixels(&labels, scale, (width, height), thickness);
    let mut panel = RgbImage::new(width, height);
    for (x, y, pixel) in panel.enumerate_pixels_mut() {
        let (i, j) = voxel(x, y);
        let grey = ((image[[i, j]] - low) / (high - low)).clamp(0.0, 1.0) * 255.0;
        let edge = edges[[x as usize, y as usize]];
        *pixel = if edge > 0 {
            image::Rgb(class_color(edge))
        } else if labels[[i, j]] > 0 {
            let color = class_color(labels[[i, j]]);
            image::Rgb(color.map(|c| (FILL_ALPHA * f32::from(c) + (1.0 - FILL_ALPHA) * grey) as u8))
        } else {
            image::Rgb([grey as u8; 3])
        };
    }
    panel
}

/// For each magnified pixel (x, y) that lies within `thickness` pixels of an edge between a
/// labelled voxel and a voxel of another value (or the slice border), on the labelled side: its
/// label; 0 elsewhere.
fn contour_pixels(
    labels: &Array2<u8>,
    scale: Scale,
    (width, height): (u32, u32),
    thickness: i64,
) -> Array2<u8> {
    let (columns, rows) = labels.dim();
    let (w, h) = (i64::from(width), i64::from(height));
    let value = |x: i64, y: i64| -> Option<u8> {
        (x >= 0 && y >= 0 && x < w && y < h).then(|| {
            let i = ((x as f64 / scale.x) as usize).min(columns - 1);
            let j = ((y as f64 / scale.y) as usize).min(rows - 1);
            labels[[i, rows - 1 - j]]
        })
    };
    Array2::from_shape_fn((w as usize, h as usize), |(x, y)| {
        let (x, y) = (x as i64, y as i64);
        let here = value(x, y).unwrap_or(0);
        let edge = here > 0
            && (1..=thickness).any(|d| {
                [(d, 0), (-d, 0), (0, d), (0, -d)]
                    .iter()
                    .any(|&(dx, dy)| value(x + dx, y + dy) != Some(here))
            });
        if edge { here } else { 0 }
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
    (panel_w, row_height): (u32, u32),
) -> Result<(), Box<dyn Error>> {
    let root = BitMapBackend::with_buffer(buffer, size).into_drawing_area();
    let black = (FAMILY, 20).into_font().color(&BLACK);
    root.draw(&Text::new(figure.title.as_str(), (GAP as i32, 8), black))?;
    let mut x = GAP as i32;
    for ([r, g, b], name) in legend_entries(figure) {
        root.draw(&Rectangle::new(
            [(x, 38), (x + 26, 52)],
            RGBColor(r, g, b).filled(),
        ))?;
        root.draw(&Rectangle::new([(x, 38), (x + 26, 52)], BLACK))?;
        let font = (FAMILY, 17).into_font().color(&BLACK);
        let (text_width, _) = root.estimate_text_size(&name, &font)?;
        root.draw(&Text::new(name, (x + 32, 36), font))?;
        x += 32 + text_width as i32 + 24;
    }
    for (r, row) in figure.rows.iter().enumerate() {
        let y = HEADER_HEIGHT + r as u32 * row_height + 2;
        root.draw(&Text::new(
            row.name.as_str(),
            (GAP as i32, y as i32),
            (FAMILY, 18).into_font().color(&BLACK),
        ))?;
    }
    let axis_name = ["i", "j", "k"][figure.axis];
    let captions_y = HEADER_HEIGHT + figure.rows.len().max(1) as u32 * row_height + 4;
    for (p, slice) in figure.slices.iter().enumerate() {
        let x0 = (GAP + p as u32 * (panel_w + GAP)) as i32;
        let caption = match slice.note {
            Some(note) => format!("{axis_name} = {} ({note})", slice.index),
            None => format!("{axis_name} = {}", slice.index),
        };
        root.draw(&Text::new(
            caption,
            (x0, captions_y as i32),
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
    fn the_most_disagreeing_slice_counts_every_wrong_voxel() {
        let reference = Array3::<u8>::zeros((4, 4, 5));
        let mut prediction = reference.clone();
        prediction[[0, 0, 1]] = 1;
        prediction.slice_mut(ndarray::s![0..2, 0..2, 3]).fill(2);
        assert_eq!(
            most_disagreeing_slice(reference.view(), prediction.view(), 2),
            Some(3)
        );
        assert_eq!(
            most_disagreeing_slice(reference.view(), prediction.view(), 0),
            Some(0)
        );
        assert_eq!(
            most_disagreeing_slice(reference.view(), reference.view(), 2),
            None
        );
    }

    #[test]
    fn contours_follow_voxel_edges_inside_the_label() {
        // One voxel of class 2 at column 1, row 1 (of 3x3), magnified 3x: its 3x3 block is all
        // edge (thickness 1) but its centre, nothing else is.
        let mut labels = Array2::<u8>::zeros((3, 3));
        labels[[1, 1]] = 2;
        let scale = Scale { x: 3.0, y: 3.0 };
        let edges = contour_pixels(&labels, scale, (9, 9), 1);
        let mut expected = Array2::from_shape_fn((9, 9), |(x, y)| {
            u8::from((3..6).contains(&x) && (3..6).contains(&y)) * 2
        });
        expected[[4, 4]] = 0;
        assert_eq!(edges, expected);
    }

    #[test]
    fn panels_follow_the_in_plane_spacing() {
        // 30 columns of 1 mm, 40 rows of 2.5 mm: zoom 8 on the finer axis, rows 2.5x taller.
        assert_eq!(Scale::of(30, 40, (1.0, 2.5)), Scale { x: 8.0, y: 20.0 });
        assert_eq!(Scale::of(30, 40, (1.0, 2.5)).pixels(30, 40), (240, 800));
        // Isotropic: the shorter side reaches 240 pixels.
        assert_eq!(Scale::of(60, 40, (0.7, 0.7)), Scale { x: 6.0, y: 6.0 });
        // A missing or absurd spacing draws square voxels; the stretch is bounded.
        assert_eq!(Scale::of(30, 40, (0.0, f64::NAN)), Scale { x: 8.0, y: 8.0 });
        assert_eq!(
            Scale::of(300, 300, (1.0, 100.0)),
            Scale {
                x: 1.0,
                y: MAX_ASPECT
            }
        );
    }

    #[test]
    fn window_is_the_1st_to_99th_percentile() {
        let image = Array3::from_shape_fn((10, 10, 1), |(i, j, _)| (i * 10 + j) as f32);
        assert_eq!(intensity_window(image.view()), (1.0, 98.0));
    }

    fn shown(indices: &[usize]) -> Vec<ShownSlice> {
        indices
            .iter()
            .map(|&index| ShownSlice { index, note: None })
            .collect()
    }

    #[test]
    fn figure_has_a_row_per_label_map_a_colour_per_class_and_rejects_mismatched_labels() {
        let image = Array3::from_shape_fn((30, 40, 6), |(i, j, _)| (i + j) as f32);
        let mut reference = Array3::<u8>::zeros((30, 40, 6));
        reference
            .slice_mut(ndarray::s![10..20, 10..30, 2..4])
            .fill(1);
        reference.slice_mut(ndarray::s![2..6, 2..6, 2..4]).fill(2);
        let prediction = Array3::<u8>::zeros((30, 40, 6));
        let figure = SliceFigure {
            title: "case".into(),
            image: image.view(),
            window: intensity_window(image.view()),
            axis: 2,
            spacing: [1.0, 1.0, 3.0],
            slices: shown(&[2, 3]),
            rows: vec![
                LabelRow {
                    name: "reference".into(),
                    labels: reference.view(),
                },
                LabelRow {
                    name: "prediction".into(),
                    labels: prediction.view(),
                },
            ],
            classes: vec![(1, "Anterior".into()), (2, "Posterior".into())],
        };
        let dir = tempfile::tempdir().unwrap();
        let rendered = render_figure(&figure, &dir.path().join("x.png")).unwrap();
        // zoom 8 (240 / 30): two panels of 240 x 320 per row, widened to the minimum width.
        let row = ROW_CAPTION_HEIGHT + 320 + GAP;
        assert_eq!(
            rendered.dimensions(),
            (560, HEADER_HEIGHT + 2 * row + CAPTION_HEIGHT)
        );
        let count = |color: [u8; 3], rows: std::ops::Range<u32>| {
            rendered
                .enumerate_pixels()
                .filter(|(_, y, p)| rows.contains(y) && p.0 == color)
                .count()
        };
        let first_row = HEADER_HEIGHT..HEADER_HEIGHT + row;
        // per panel: the 10x20 voxel box at zoom 8 has an 80x160 outline of thickness 3
        let outline = 80 * 160 - 74 * 154;
        assert!(count(class_color(1), first_row.clone()) >= 2 * outline);
        let small = 32 * 32 - 26 * 26;
        assert!(count(class_color(2), first_row.clone()) >= 2 * small);
        // The empty prediction's row has no contour; the legend has both colours.
        let second_row = HEADER_HEIGHT + row..HEADER_HEIGHT + 2 * row;
        assert_eq!(count(class_color(1), second_row.clone()), 0);
        assert_eq!(count(class_color(2), second_row), 0);
        assert!(count(class_color(1), 0..HEADER_HEIGHT) > 0);
        assert!(count(class_color(2), 0..HEADER_HEIGHT) > 0);

        let wrong = Array3::<u8>::zeros((30, 40, 5));
        let figure = SliceFigure {
            rows: vec![LabelRow {
                name: "prediction".into(),
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
