//! `curves.png`: losses, λ weights, validation Dice and the learning rate over iterations, one
//! panel each. The trainer's command redraws it after every validation (atomically, so a viewer
//! never reads half a picture) and the report at the end, from the same logs.

use std::collections::BTreeMap;
use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::ReportError;
use super::font::FAMILY;
use super::history::TrainingHistory;
use super::png::{render, write_png};

pub const CURVES_FILE: &str = "curves.png";
/// Width and height of `curves.png` in pixels.
pub const CURVES_SIZE: (u32, u32) = (1000, 1440);
/// Panels, top to bottom: losses, λ weights, validation Dice, learning rate.
pub const CURVES_PANELS: u32 = 4;

/// Distinguishable line colours (Okabe–Ito, readable with the common colour-vision deficiencies).
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// How a panel draws its series.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// Noisy per-iteration values: thin raw line plus a thick moving average.
    Smoothed,
    /// Few exact values: line with a marker at each point.
    Markers,
    /// Exact per-iteration values: one line.
    Line,
}

/// The legend names of the foreground classes: `1 Anterior`, or `class 1` for a class the
/// dataset does not name.
pub fn curve_class_names(labels: &BTreeMap<u8, String>, num_classes: usize) -> Vec<String> {
    (1..num_classes)
        .map(|c| {
            labels
                .get(&(c as u8))
                .map_or_else(|| format!("class {c}"), |n| format!("{c} {n}"))
        })
        .collect()
}

/// Redraw `curves.png` of the run folder `root` from its logs; `Ok(None)` (nothing written)
/// before the first iteration is logged.
pub fn write_run_curves(
    root: &Path,
    class_names: &[String],
) -> Result<Option<PathBuf>, ReportError> {
    let history = TrainingHistory::read_run(root)?;
    if history.iterations.is_empty() {
        return Ok(None);
    }
    let path = root.join(CURVES_FILE);
    write_curves(&history, class_names, &path)?;
    Ok(Some(path))
}

/// Plot `history` into `path` (PNG, [`CURVES_SIZE`]); `class_names` label the per-class Dice
/// lines (class 1 first).
pub fn write_curves(
    history: &TrainingHistory,
    class_names: &[String],
    path: &Path,
) -> Result<(), ReportError> {
    let (width, height) = CURVES_SIZE;
    let image = render(width, height, path, |buffer| {
        draw(history, class_names, buffer).map_err(|e| e.to_string())
    })?;
    write_png(&image, path)
}

fn draw(
    history: &TrainingHistory,
    class_names: &[String],
    buffer: &mut [u8],
) -> Result<(), Box<dyn Error>> {
    let root = BitMapBackend::with_buffer(buffer, CURVES_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((CURVES_PANELS as usize, 1));
    let last_step = history.iterations.last().map_or(1, |p| p.step).max(1) as f64;

    let losses: Vec<Series> = history
        .scalar_names("loss/")
        .into_iter()
        .map(|name| Series {
            points: history.series(&name),
            name: name.trim_start_matches("loss/").to_owned(),
        })
        .collect();
    let range = value_range(&losses, None);
    panel(
        &panels[0],
        "Losses (thin: every iteration, thick: moving average)",
        "loss",
        last_step,
        range,
        &losses,
        Style::Smoothed,
        SeriesLabelPosition::UpperRight,
    )?;

    // Terms with a constant weight (the supervised ones) would flatten the ramps into the axis.
    let all_weights: Vec<Series> = history
        .scalar_names("weight/")
        .into_iter()
        .map(|name| Series {
            points: history.series(&name),
            name: format!("λ {}", name.trim_start_matches("weight/")),
        })
        .collect();
    let varying = |s: &Series| s.points.iter().any(|p| p.1 != s.points[0].1);
    let weights: Vec<Series> = if all_weights.iter().any(varying) {
        all_weights.into_iter().filter(varying).collect()
    } else {
        all_weights
    };
    let range = value_range(&weights, Some(0.0));
    panel(
        &panels[1],
        "Loss weights λ (terms whose weight changes)",
        "weight",
        last_step,
        range,
        &weights,
        Style::Smoothed,
        SeriesLabelPosition::UpperRight,
    )?;

    let mut dice = vec![Series {
        name: "mean foreground".into(),
        points: history
            .validations
            .iter()
            .map(|v| (v.step as f64, v.dice))
            .collect(),
    }];
    let classes = history
        .validations
        .iter()
        .map(|v| v.dice_per_class.len())
        .max()
        .unwrap_or(0);
    if classes > 1 {
        for c in 0..classes {
            dice.push(Series {
                name: class_names
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("class {}", c + 1)),
                points: history
                    .validations
                    .iter()
                    .filter_map(|v| Some((v.step as f64, *v.dice_per_class.get(c)?)))
                    .collect(),
            });
        }
    }
    dice.retain(|s| !s.points.is_empty());
    panel(
        &panels[2],
        "Validation Dice (student, sliding window)",
        "Dice",
        last_step,
        0.0..1.0,
        &dice,
        Style::Markers,
        // Early validations are the low ones: the upper left corner is the emptiest.
        SeriesLabelPosition::UpperLeft,
    )?;

    let lr = vec![Series {
        name: "learning rate".into(),
        points: history.series("lr"),
    }];
    let lr: Vec<Series> = lr.into_iter().filter(|s| !s.points.is_empty()).collect();
    panel(
        &panels[3],
        "Learning rate",
        "lr",
        last_step,
        value_range(&lr, Some(0.0)),
        &lr,
        Style::Line,
        SeriesLabelPosition::UpperRight,
    )?;
    root.present()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    y_label: &str,
    last_step: f64,
    y_range: Range<f64>,
    series: &[Series],
    style: Style,
    legend: SeriesLabelPosition,
) -> Result<(), Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(0f64..last_step, y_range)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_label)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if series.is_empty() {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            "no records",
            (w as i32 / 2 - 40, h as i32 / 2),
            (FAMILY, 18).into_font().color(&RGBColor(120, 120, 120)),
        ))?;
        return Ok(());
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let emphasised = match style {
            Style::Smoothed => {
                chart.draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.mix(0.3).stroke_width(1),
                ))?;
                moving_average(&s.points)
            }
            Style::Markers => {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
                s.points.clone()
            }
            Style::Line => s.points.clone(),
        };
        chart
            .draw_series(LineSeries::new(emphasised, color.stroke_width(3)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 15))
        .draw()?;
    Ok(())
}

/// Centred moving average over about 1/25 of the points (at least 1).
fn moving_average(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let half = points.len() / 50;
    (0..points.len())
        .map(|i| {
            let window = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let mean = window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

/// The range of every finite value, padded by 5% (and including `floor` when given).
fn value_range(series: &[Series], floor: Option<f64>) -> Range<f64> {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if let Some(floor) = floor {
        low = low.min(floor);
    }
    if !low.is_finite() || !high.is_finite() {
        return 0.0..1.0;
    }
    if high - low < 1e-12 {
        high = low + low.abs().max(1.0) * 0.1;
    }
    let pad = 0.05 * (high - low);
    let bottom = if floor == Some(low) { low } else { low - pad };
    bottom..high + pad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::history::{IterationPoint, ValidationPoint};

    #[test]
    fn moving_average_and_ranges() {
        let points: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, (i % 2) as f64)).collect();
        let smooth = moving_average(&points);
        assert_eq!(smooth.len(), 100);
        // half-window 2: five points, alternating 0/1
        assert!((smooth[50].1 - 0.4).abs() < 1e-12, "{}", smooth[50].1);
        let series = [Series {
            name: "x".into(),
            points: vec![(1.0, 2.0), (2.0, 4.0), (3.0, f64::NAN)],
        }];
        let range = value_range(&series, None);
        assert!((range.start - 1.9).abs() < 1e-12 && (range.end - 4.1).abs() < 1e-12);
        let range = value_range(&series, Some(0.0));
        assert!(range.start == 0.0 && (range.end - 4.2).abs() < 1e-12);
        assert_eq!(value_range(&[], None), 0.0..1.0);
    }

    #[test]
    fn curves_png_has_the_documented_size() {
        let iterations = (1..=30)
            .map(|step| IterationPoint {
                step,
                elapsed_s: step as f64,
                iteration_s: 1.0,
                scalars: [
                    ("lr".to_string(), 0.01 * (1.0 - step as f64 / 40.0)),
                    ("loss/total".to_string(), 1.0 / step as f64),
                    ("loss/ce".to_string(), 0.5 / step as f64),
                    ("weight/ce".to_string(), 1.0),
                    ("weight/consistency".to_string(), step as f64 / 300.0),
                ]
                .into_iter()
                .collect(),
            })
            .collect();
        let history = TrainingHistory {
            iterations,
            validations: vec![
                ValidationPoint {
                    step: 15,
                    dice: 0.4,
                    dice_per_class: vec![0.3, 0.5],
                    seconds: 1.0,
                },
                ValidationPoint {
                    step: 30,
                    dice: 0.6,
                    dice_per_class: vec![0.5, 0.7],
                    seconds: 1.0,
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CURVES_FILE);
        write_curves(&history, &["Anterior".into(), "Posterior".into()], &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), CURVES_SIZE);
        // Lines were drawn: the first colour appears in every panel, the learning rate's
        // included (the bottom quarter).
        let panel_height = CURVES_SIZE.1 / CURVES_PANELS;
        for panel in 0..CURVES_PANELS {
            let rows = panel * panel_height..(panel + 1) * panel_height;
            assert!(
                image
                    .enumerate_pixels()
                    .any(|(_, y, p)| rows.contains(&y) && p.0 == [0, 114, 178]),
                "panel {panel} has no line"
            );
        }
    }
}
