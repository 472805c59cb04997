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
use semisam::generalists::weights_cache::{self, LITEMEDSAM};

use super::parse_numbers;

#[derive(clap::Args)]
pub struct Sam2dArgs {
    /// Input image: .png (grey or RGB), .npy (H×W, H×W×3, or a volume with --slice), or a NIfTI
    /// volume (.nii, .nii.gz) with --slice (not needed when the volume is one slice thick).
    #[arg(long)]
    pub image: PathBuf,
    /// Slice index for 3-D inputs.
    #[arg(long)]
    pub slice: Option<usize>,
    /// Axis of the volume the slice is taken along (0, 1 or 2).
    #[arg(long, default_value_t = 2)]
    pub axis: usize,
    /// Box prompt in original pixel coordinates: x0,y0,x1,y1 (x = column, y = row); a box
    /// reaching past the image is clipped to it.
    #[arg(long = "box", value_parser = parse_box, allow_hyphen_values = true)]
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

fn parse_box(text: &str) -> Result<[f64; 4], String> {
    let b = parse_numbers::<f64, 4>(text)?;
    if b[2] < b[0] || b[3] < b[1] {
        return Err(format!("box {text}: need x0 <= x1 and y0 <= y1"));
    }
    Ok(b)
}

fn parse_point(text: &str) -> Result<(f64, f64, bool), String> {
    let [x, y, label] = parse_numbers::<f64, 3>(text)?;
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
        None => weights_cache::locate(&LITEMEDSAM)?,
    };
    let device = semisam::backend::default_device();
    LiteMedSam::load(&path, &device)
        .with_context(|| format!("loading LiteMedSAM from {}", path.display()))
}

pub fn run(args: Sam2dArgs) -> anyhow::Result<()> {
    if args.bbox.is_none() && args.points.is_empty() {
        bail!("give a --box and/or at least one --point");
    }
    let is_png = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "{}: the mask is written as a PNG; name the output file .png",
            args.out.display()
        );
    }
    let image = read_rgb(&args.image, args.slice, args.axis)?;
    let (h, w, _) = image.dim();
    if h == 0 || w == 0 {
        bail!("{}: the image is empty ({w}x{h})", args.image.display());
    }
    for &(x, y, _) in &args.points {
        if !(0.0..w as f64).contains(&x) || !(0.0..h as f64).contains(&y) {
            bail!("point ({x}, {y}) lies outside the {w}x{h} image");
        }
    }
    let bbox = args
        .bbox
        .map(|b| box_inside(b, w, h))
        .transpose()
        .with_context(|| format!("{}", args.image.display()))?;
    let model = load_model(args.weights.as_deref())?;
    let prepared = prepare_image(image.view())?;
    let geometry = prepared.geometry;
    let prompts = Prompts {
        bbox: bbox.map(|b| geometry.scale_box(b)),
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

/// The box clipped to the pixels of a `w`x`h` image (with a warning when that changes it); a
/// box that misses the image entirely is an error.
fn box_inside(b: [f64; 4], w: usize, h: usize) -> anyhow::Result<[f64; 4]> {
    let (x_max, y_max) = ((w - 1) as f64, (h - 1) as f64);
    if b[2] < 0.0 || b[3] < 0.0 || b[0] > x_max || b[1] > y_max {
        bail!(
            "box {},{},{},{} lies outside the {w}x{h} image (x in 0..={x_max}, y in 0..={y_max})",
            b[0],
            b[1],
            b[2],
            b[3]
        );
    }
    let clipped = [
        b[0].max(0.0),
        b[1].max(0.0),
        b[2].min(x_max),
        b[3].min(y_max),
    ];
    if clipped != b {
        tracing::warn!(
            "box {},{},{},{} reaches outside the {w}x{h} image; clipped to {},{},{},{}",
            b[0],
            b[1],
            b[2],
            b[3],
            clipped[0],
            clipped[1],
            clipped[2],
            clipped[3]
        );
    }
    Ok(clipped)
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

/// Read an image as (H, W, 3) uint8, the model's input.
///
/// 8-bit data (8-bit PNGs, `u8` npy) is used as it is. Anything else (16-bit PNGs, other npy
/// types) is min-max scaled to [0, 255] over the whole array (volume or image) and truncated,
/// like upstream's MR preprocessing without the percentile clip: a 16-bit PNG's full range is
/// not assumed to be used. A NaN or infinite value is an error (it would flatten the scaling).
fn read_rgb(path: &Path, slice: Option<usize>, axis: usize) -> anyhow::Result<Array3<u8>> {
    let name = path.to_string_lossy().to_lowercase();
    // A NIfTI file is always a volume: its last axis is never colour.
    let mut is_volume = false;
    let (array, eight_bit) = if name.ends_with(".png") {
        read_png(path)?
    } else if name.ends_with(".npy") {
        semisam::data::npy::check_file(path)?;
        read_npy_as_f64(path)?
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        is_volume = true;
        let volume = semisam::data::read_image(path)?;
        (volume.data.mapv(f64::from).into_dyn(), false)
    } else {
        bail!(
            "{}: unsupported image type (use .png, .npy, .nii or .nii.gz)",
            path.display()
        );
    };
    let slice = match slice {
        None if is_volume && array.shape().get(axis) == Some(&1) => Some(0),
        other => other,
    };
    let non_finite = array.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        bail!(
            "{}: {non_finite} pixel(s) are NaN or infinite; the image cannot be scaled to the model's 0-255 input",
            path.display()
        );
    }
    let array = if eight_bit {
        array
    } else {
        minmax_to_u8_range(array)
    };
    let plane: ArrayD<f64> = match (array.ndim(), slice) {
        (2, None) => array,
        (3, None) if !is_volume && array.shape()[2] == 3 => array,
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
        (2, Some(k)) => bail!(
            "{}: --slice {k} picks a slice of a volume, but this is a 2-D image: leave --slice out",
            path.display()
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

/// A PNG's pixels at their own bit depth (grey: H×W; colour: H×W×3, alpha dropped), and
/// whether they are 8-bit.
fn read_png(path: &Path) -> anyhow::Result<(ArrayD<f64>, bool)> {
    let decoded =
        image::open(path).with_context(|| format!("{}: cannot decode PNG", path.display()))?;
    let colour = decoded.color();
    let eight_bit = match colour.bits_per_pixel() / u16::from(colour.channel_count()) {
        8 => true,
        16 => false,
        bits => bail!(
            "{}: {bits}-bit PNG channels are not supported (use 8 or 16 bits)",
            path.display()
        ),
    };
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let array = match (colour.has_color(), eight_bit) {
        (true, true) => to_array(&[h, w, 3], decoded.to_rgb8().into_raw())?,
        (true, false) => to_array(&[h, w, 3], decoded.to_rgb16().into_raw())?,
        (false, true) => to_array(&[h, w], decoded.to_luma8().into_raw())?,
        (false, false) => to_array(&[h, w], decoded.to_luma16().into_raw())?,
    };
    Ok((array, eight_bit))
}

fn to_array<T: Into<f64>>(shape: &[usize], pixels: Vec<T>) -> anyhow::Result<ArrayD<f64>> {
    Ok(ArrayD::from_shape_vec(
        shape.to_vec(),
        pixels.into_iter().map(Into::into).collect(),
    )?)
}

fn minmax_to_u8_range(array: ArrayD<f64>) -> ArrayD<f64> {
    let min = array.iter().copied().fold(f64::INFINITY, f64::min);
    let max = array.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = (max - min).max(1e-8);
    array.mapv(|v| ((v - min) / range * 255.0).floor())
}

/// An npy array as f64, and whether it was `u8` (used unscaled).
fn read_npy_as_f64(path: &Path) -> anyhow::Result<(ArrayD<f64>, bool)> {
    use ndarray_npy::read_npy;
    if let Ok(a) = read_npy::<_, ArrayD<u8>>(path) {
        return Ok((a.mapv(f64::from), true));
    }
    macro_rules! try_type {
        ($($t:ty),*) => {$(
            if let Ok(a) = read_npy::<_, ArrayD<$t>>(path) {
                return Ok((a.mapv(|v| v as f64), false));
            }
        )*};
    }
    try_type!(f32, f64, i16, u16, i32, u32, i64, i8);
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
    /// Timed repetitions of each decoder measurement (default: `--repeats`); a decode costs a
    /// few percent of an encode, so its median needs more of them.
    #[arg(long)]
    pub decoder_repeats: Option<usize>,
    /// Untimed warm-up runs of the encoder (the decoder gets one more).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Checkpoint to use instead of the weights cache.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Also time the encoder on this many images as one batch (reported per image), to see
    /// whether batching the slices a run encodes would pay.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
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
    if args.decoder_repeats == Some(0) {
        bail!("--decoder-repeats must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
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
    let batch = (args.batch > 1).then(|| {
        let images = vec![image.clone(); args.batch];
        time_runs(args.warmup, args.repeats, || {
            model.embed_batch(&images);
        })
    });
    let rss_encoder = peak_rss_mib();
    let decoder_repeats = args.decoder_repeats.unwrap_or(args.repeats);
    let decoder = time_runs(args.warmup + 1, decoder_repeats, || {
        model.decode(&embedding, &prompts).expect("valid prompt");
    });
    // What a training refresh decodes per slice: the logits under a 64x64-pixel patch.
    let patch_window = LogitWindow {
        cell_rows: 24..40,
        cell_cols: 24..40,
    };
    let decoder_window = time_runs(args.warmup + 1, decoder_repeats, || {
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
    if let Some(batch) = &batch {
        println!(
            "  encoder, batch of {}: {} = {:.1} ms per image",
            args.batch,
            fmt(batch),
            batch.median_ms / args.batch as f64
        );
    }
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
            "encoder_batch": args.batch,
            "encoder_batch_median_ms_per_image": batch
                .as_ref()
                .map(|b| b.median_ms / args.batch as f64),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_pixels_reach_the_model_at_their_own_bit_depth() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (7u32, 5u32);
        let value = |x: u32, y: u32| (x * 31 + y * 17) as u8;
        let grey = dir.path().join("grey.png");
        image::GrayImage::from_fn(w, h, |x, y| image::Luma([value(x, y)]))
            .save(&grey)
            .unwrap();
        let rgb = read_rgb(&grey, None, 2).unwrap();
        assert_eq!(rgb.dim(), (5, 7, 3));
        for ((y, x, _), &v) in rgb.indexed_iter() {
            assert_eq!(v, value(x as u32, y as u32), "grey pixel ({x}, {y})");
        }

        let colour = dir.path().join("colour.png");
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([value(x, y), 3, 250]))
            .save(&colour)
            .unwrap();
        let rgb = read_rgb(&colour, None, 2).unwrap();
        for ((y, x, c), &v) in rgb.indexed_iter() {
            assert_eq!(v, [value(x as u32, y as u32), 3, 250][c], "({x}, {y}, {c})");
        }

        // 16-bit: min-max scaled over the image, so a narrow range still spans 0..=255.
        let deep = dir.path().join("deep.png");
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, _| {
            image::Luma([1000 + x as u16 * 100])
        })
        .save(&deep)
        .unwrap();
        let rgb = read_rgb(&deep, None, 2).unwrap();
        let row: Vec<u8> = (0..7).map(|x| rgb[[0, x, 0]]).collect();
        assert_eq!(row, [0, 42, 85, 127, 170, 212, 255]);
    }

    /// A NIfTI file is a volume even when its last axis has three entries (never RGB); its
    /// intensities are scaled over the whole volume, as a .npy volume's are.
    #[test]
    fn nifti_volumes_are_sliced_never_read_as_colour() {
        use semisam::data::{Geometry, SourceFormat, Volume, write_image};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, shape: (usize, usize, usize)| {
            let path = dir.path().join(name);
            let data = ndarray::Array3::from_shape_fn(shape, |(i, j, k)| {
                (i * 100 + j * 10 + k) as f32 - 50.0
            });
            let volume = Volume {
                data,
                geometry: Geometry::unknown(),
                source: SourceFormat::Nifti,
                path: path.clone(),
            };
            write_image(&volume, &path).unwrap();
            path
        };
        let three = write("three.nii.gz", (6, 5, 3));
        let err = read_rgb(&three, None, 2).unwrap_err().to_string();
        assert!(err.contains("needs --slice K"), "{err}");
        let rgb = read_rgb(&three, Some(2), 2).unwrap();
        assert_eq!(rgb.dim(), (6, 5, 3));
        // Over the volume, -50 ..= 492 maps to 0 ..= 255 (truncated).
        let scaled = |v: f64| ((v + 50.0) / 542.0 * 255.0) as u8;
        assert_eq!(rgb[[0, 0, 0]], scaled(2.0 - 50.0));
        assert_eq!(rgb[[5, 4, 1]], 255);
        assert_eq!(rgb[[3, 1, 2]], scaled(312.0 - 50.0));
        let across = read_rgb(&three, Some(4), 1).unwrap();
        assert_eq!(across.dim(), (6, 3, 3));

        let thin = write("thin.nii", (6, 5, 1));
        assert_eq!(read_rgb(&thin, None, 2).unwrap().dim(), (6, 5, 3));
    }

    #[test]
    fn boxes_are_clipped_to_the_image_or_refused_outside_it() {
        assert_eq!(
            box_inside([-3.0, 2.0, 9.0, 20.0], 8, 6).unwrap(),
            [0.0, 2.0, 7.0, 5.0]
        );
        assert_eq!(
            box_inside([1.0, 1.0, 2.0, 2.0], 8, 6).unwrap(),
            [1.0, 1.0, 2.0, 2.0]
        );
        let err = box_inside([8.5, 0.0, 12.0, 3.0], 8, 6)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "box 8.5,0,12,3 lies outside the 8x6 image (x in 0..=7, y in 0..=5)"
        );
    }
}
