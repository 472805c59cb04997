//! `semisam sam2d`: segment one 2-D image (or one slice of a volume) with LiteMedSAM from a box
//! and/or point prompts; `semisam bench sam2d` ([`run_bench`]): encoder/decoder latency and
//! peak memory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use ndarray::{Array2, Array3, ArrayD, Axis, Ix2, Ix3};
use semisam::generalists::litemedsam::{
    ImageGeometry, LiteMedSam, LogitWindow, PointPrompt, PreparedImage, Prompts, gray_to_rgb,
    postprocess_mask, prepare_image,
};
use semisam::generalists::weights::{self, LITEMEDSAM};

#[derive(clap::Args)]
pub struct Sam2dArgs {
    /// Input image: .png (grey or RGB), .npy (H×W, H×W×3, or a volume with --slice).
    #[arg(long)]
    pub image: PathBuf,
    /// Slice index for 3-D inputs.
    #[arg(long)]
    pub slice: Option<usize>,
    /// Axis of the volume the slice is taken along (0, 1 or 2).
    #[arg(long, default_value_t = 2)]
    pub axis: usize,
    /// Box prompt in original pixel coordinates: x0,y0,x1,y1 (x = column, y = row).
    #[arg(long = "box", value_parser = parse_box)]
    pub bbox: Option<[f64; 4]>,
    /// Point prompt x,y,label (label 1 = foreground, 0 = background); repeatable.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<(f64, f64, bool)>,
    /// Output mask (.png, 0/255).
    #[arg(long)]
    pub out: PathBuf,
    /// Checkpoint to use instead of the weights cache.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

fn parse_numbers<const N: usize>(text: &str) -> Result<[f64; N], String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|e| format!("`{v}`: {e}")))
        .collect::<Result<_, _>>()?;
    values
        .try_into()
        .map_err(|v: Vec<f64>| format!("expected {N} comma-separated numbers, got {}", v.len()))
}

fn parse_box(text: &str) -> Result<[f64; 4], String> {
    let b = parse_numbers::<4>(text)?;
    if b[2] < b[0] || b[3] < b[1] {
        return Err(format!("box {text}: need x0 <= x1 and y0 <= y1"));
    }
    Ok(b)
}

fn parse_point(text: &str) -> Result<(f64, f64, bool), String> {
    let [x, y, label] = parse_numbers::<3>(text)?;
    match label {
        0.0 => Ok((x, y, false)),
        1.0 => Ok((x, y, true)),
        _ => Err(format!(
            "point {text}: label must be 0 (background) or 1 (foreground)"
        )),
    }
}

pub fn load_model(weights_override: Option<&Path>) -> anyhow::Result<LiteMedSam> {
    let path = match weights_override {
        Some(p) => p.to_path_buf(),
        None => weights::locate(&LITEMEDSAM)?,
    };
    let device = semisam::backend::default_device();
    LiteMedSam::load(&path, &device)
        .with_context(|| format!("loading LiteMedSAM from {}", path.display()))
}

pub fn run(args: Sam2dArgs) -> anyhow::Result<()> {
    if args.bbox.is_none() && args.points.is_empty() {
        bail!("give a --box and/or at least one --point");
    }
    let image = read_rgb(&args.image, args.slice, args.axis)?;
    let (h, w, _) = image.dim();
    for &(x, y, _) in &args.points {
        if !(0.0..w as f64).contains(&x) || !(0.0..h as f64).contains(&y) {
            bail!("point ({x}, {y}) lies outside the {w}x{h} image");
        }
    }
    let model = load_model(args.weights.as_deref())?;
    let prepared = prepare_image(image.view())?;
    let geometry = prepared.geometry;
    let prompts = Prompts {
        bbox: args.bbox.map(|b| geometry.scale_box(b)),
        points: args
            .points
            .iter()
            .map(|&(x, y, positive)| {
                let (x, y) = geometry.scale_point(x, y);
                PointPrompt { x, y, positive }
            })
            .collect(),
    };
    let embedding = model.embed(&prepared);
    let logits = model.decode(&embedding, &prompts)?;
    let mask = postprocess_mask(&logits, &geometry)?;
    write_mask_png(&args.out, &mask)?;
    let pixels = mask.iter().filter(|&&v| v > 0).count();
    println!(
        "{}: {pixels} foreground pixels of {}x{}, predicted IoU {:.4}",
        args.out.display(),
        w,
        h,
        logits.iou
    );
    Ok(())
}

fn write_mask_png(path: &Path, mask: &Array2<u8>) -> anyhow::Result<()> {
    let (h, w) = mask.dim();
    let pixels: Vec<u8> = mask.iter().map(|&v| if v > 0 { 255 } else { 0 }).collect();
    let buffer =
        image::GrayImage::from_raw(w as u32, h as u32, pixels).context("mask buffer size")?;
    semisam::io_util::write_atomic_with(path, |out| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        buffer
            .write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        out.write_all(bytes.get_ref())
    })?;
    Ok(())
}

/// Read an image as (H, W, 3) uint8. Non-uint8 data is min-max scaled to [0, 255] over the
/// whole array (volume or image) and truncated, like upstream's MR preprocessing without the
/// percentile clip.
fn read_rgb(path: &Path, slice: Option<usize>, axis: usize) -> anyhow::Result<Array3<u8>> {
    let name = path.to_string_lossy().to_lowercase();
    let array: ArrayD<f64> = if name.ends_with(".png") {
        let decoded =
            image::open(path).with_context(|| format!("{}: cannot decode PNG", path.display()))?;
        if decoded.color().has_color() {
            let rgb = decoded.to_rgb16();
            let (w, h) = rgb.dimensions();
            Array3::from_shape_vec(
                (h as usize, w as usize, 3),
                rgb.into_raw().into_iter().map(f64::from).collect(),
            )?
            .into_dyn()
        } else {
            let gray = decoded.to_luma16();
            let (w, h) = gray.dimensions();
            Array2::from_shape_vec(
                (h as usize, w as usize),
                gray.into_raw().into_iter().map(f64::from).collect(),
            )?
            .into_dyn()
        }
    } else if name.ends_with(".npy") {
        semisam::data::npy::check_file(path)?;
        read_npy_as_f64(path)?
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        bail!(
            "{}: NIfTI input is not wired into `sam2d` yet; export the slice as .npy or .png",
            path.display()
        );
    } else {
        bail!(
            "{}: unsupported image type (use .png or .npy)",
            path.display()
        );
    };
    let is_u8 = if name.ends_with(".png") {
        image::open(path)
            .map(|d| matches!(d.color(), image::ColorType::L8 | image::ColorType::Rgb8))
            .unwrap_or(false)
    } else {
        ndarray_npy::read_npy::<_, ArrayD<u8>>(path).is_ok()
    };
    let array = if is_u8 {
        array
    } else {
        minmax_to_u8_range(array)
    };
    let plane: ArrayD<f64> = match (array.ndim(), slice) {
        (2, None) => array,
        (3, None) if array.shape()[2] == 3 => array,
        (3, Some(k)) => {
            if axis > 2 || k >= array.shape()[axis] {
                bail!(
                    "{}: slice {k} along axis {axis} is outside shape {:?}",
                    path.display(),
                    array.shape()
                );
            }
            array.index_axis(Axis(axis), k).to_owned()
        }
        (3, None) => bail!(
            "{}: a volume of shape {:?} needs --slice K [--axis A]",
            path.display(),
            array.shape()
        ),
        (n, _) => bail!(
            "{}: expected a 2-D image or a 3-D volume, got {n} dimensions",
            path.display()
        ),
    };
    let plane_u8 = plane.mapv(|v| v as u8);
    Ok(match plane_u8.ndim() {
        2 => gray_to_rgb(plane_u8.into_dimensionality::<Ix2>()?.view()),
        _ => plane_u8.into_dimensionality::<Ix3>()?,
    })
}

fn minmax_to_u8_range(array: ArrayD<f64>) -> ArrayD<f64> {
    let min = array.iter().copied().fold(f64::INFINITY, f64::min);
    let max = array.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = (max - min).max(1e-8);
    array.mapv(|v| ((v - min) / range * 255.0).floor())
}

fn read_npy_as_f64(path: &Path) -> anyhow::Result<ArrayD<f64>> {
    use ndarray_npy::read_npy;
    macro_rules! try_type {
        ($($t:ty),*) => {$(
            if let Ok(a) = read_npy::<_, ArrayD<$t>>(path) {
                return Ok(a.mapv(|v| v as f64));
            }
        )*};
    }
    try_type!(u8, f32, f64, i16, u16, i32, u32, i64, i8);
    bail!(
        "{}: not a readable .npy of a numeric type (u8/i8/i16/u16/i32/u32/i64/f32/f64, C order)",
        path.display()
    )
}

#[derive(clap::Args)]
pub struct Sam2dBenchArgs {
    /// Timed repetitions of each part (median reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Untimed warm-up runs of the encoder (the decoder gets one more).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Checkpoint to use instead of the weights cache.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Also write the result as one JSON object to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Process CPU seconds (user + system) from /proc, to expose contention (CPU/wall < threads).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size in MiB (`VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

struct Timing {
    median_ms: f64,
    all_ms: Vec<f64>,
    cpu_per_wall: Option<f64>,
}

fn time_runs(warmup: usize, repeats: usize, mut run: impl FnMut()) -> Timing {
    for _ in 0..warmup {
        run();
    }
    let mut all_ms = Vec::with_capacity(repeats);
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    for _ in 0..repeats {
        let start = Instant::now();
        run();
        all_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu_per_wall = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) / wall);
    let mut sorted = all_ms.clone();
    sorted.sort_by(f64::total_cmp);
    Timing {
        median_ms: sorted[sorted.len() / 2],
        all_ms,
        cpu_per_wall,
    }
}

/// A deterministic 256x256 test image (smooth background with a bright disc).
fn bench_image() -> PreparedImage {
    let image = Array3::from_shape_fn((256, 256, 3), |(i, j, _)| {
        let (y, x) = (i as f64, j as f64);
        let disc = ((x - 140.0).powi(2) + (y - 110.0).powi(2)).sqrt() < 40.0;
        if disc {
            200
        } else {
            (40.0 + 20.0 * (x / 17.0).sin() * (y / 23.0).cos()) as u8
        }
    });
    prepare_image(image.view()).expect("valid bench image")
}

pub fn run_bench(args: Sam2dBenchArgs) -> anyhow::Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let threads = rayon::current_num_threads();
    let rss_start = peak_rss_mib();
    let model = load_model(args.weights.as_deref())?;
    let rss_loaded = peak_rss_mib();
    let image = bench_image();
    let geometry: ImageGeometry = image.geometry;
    let prompts = Prompts::from_box(geometry.scale_box([100.0, 70.0, 180.0, 150.0]));
    let mut embedding = None;
    let encoder = time_runs(args.warmup, args.repeats, || {
        embedding = Some(model.embed(&image))
    });
    let embedding = embedding.expect("encoder ran");
    let rss_encoder = peak_rss_mib();
    let decoder = time_runs(args.warmup + 1, args.repeats, || {
        model.decode(&embedding, &prompts).expect("valid prompt");
    });
    // What a training refresh decodes per slice: the logits under a 64x64-pixel patch.
    let patch_window = LogitWindow {
        cell_rows: 24..40,
        cell_cols: 24..40,
    };
    let decoder_window = time_runs(args.warmup + 1, args.repeats, || {
        model
            .decode_batch(&embedding, std::slice::from_ref(&prompts), &patch_window)
            .expect("valid prompt");
    });
    let rss_peak = peak_rss_mib();
    let fmt = |t: &Timing| {
        let all: Vec<String> = t.all_ms.iter().map(|v| format!("{v:.1}")).collect();
        let load = t
            .cpu_per_wall
            .map(|c| format!(", cpu/wall {c:.2}"))
            .unwrap_or_default();
        format!(
            "median {:.1} ms (runs: {}{load})",
            t.median_ms,
            all.join(", ")
        )
    };
    let mib = |v: Option<f64>| {
        v.map(|v| format!("{v:.0} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("LiteMedSAM (burn, {threads} threads)");
    println!("  encoder: {}", fmt(&encoder));
    println!("  decoder: {}", fmt(&decoder));
    println!("  decoder, 16x16-token window: {}", fmt(&decoder_window));
    println!(
        "  peak RSS: start {}, after load {}, after encoder {}, final {}",
        mib(rss_start),
        mib(rss_loaded),
        mib(rss_encoder),
        mib(rss_peak)
    );
    if let Some(path) = &args.json {
        let value = serde_json::json!({
            "impl": "burn",
            "threads": threads,
            "encoder_ms": encoder.all_ms,
            "encoder_median_ms": encoder.median_ms,
            "encoder_cpu_per_wall": encoder.cpu_per_wall,
            "decoder_ms": decoder.all_ms,
            "decoder_median_ms": decoder.median_ms,
            "decoder_cpu_per_wall": decoder.cpu_per_wall,
            "decoder_window_median_ms": decoder_window.median_ms,
            "peak_rss_mib": rss_peak,
            "rss_after_load_mib": rss_loaded,
        });
        semisam::io_util::write_atomic(path, format!("{value}\n").as_bytes())?;
    }
    Ok(())
}
