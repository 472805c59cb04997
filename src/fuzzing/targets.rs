//! Every file reader semisam exposes to user input, each with the valid files its mutations
//! start from. A target writes an input under the file name its reader expects and reads it
//! the way the commands do; an error is the expected answer to a damaged file.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::data::{Dataset, Splits, read_image, read_label};
use crate::generalists::litemedsam::LiteMedSam;
use crate::generalists::sammed3d::{ModelConfig, check_checkpoint_with_config};
use crate::training::checkpoint::{Checkpoint, CheckpointHeader};
use crate::training::{RunConfig, load_checkpoint_model};

type Reader = Box<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// One reader under test.
pub struct Target {
    pub name: &'static str,
    /// The valid inputs mutations start from.
    pub seeds: Vec<Vec<u8>>,
    /// Where inputs are written (the readers choose the format by the name).
    pub input_path: PathBuf,
    /// Turns a (mutated) input into the file's bytes: gzip for `.nii.gz`, a fresh checksum for
    /// checkpoints whose damage should reach the parser behind the checksum.
    encode: fn(&[u8]) -> Vec<u8>,
    read: Reader,
}

impl Target {
    /// Write `input` where the reader looks and read it.
    pub fn read(&self, input: &[u8]) -> std::io::Result<Result<(), String>> {
        std::fs::write(&self.input_path, (self.encode)(input))?;
        Ok((self.read)(&self.input_path))
    }
}

/// How big the seeds may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedSet {
    /// Small files only, for a replay of a few seconds.
    Replay,
    /// Also the multi-megabyte `.pth` fixture.
    Campaign,
}

/// A target could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("fuzz target `{target}`: {message}")]
pub struct SetupError {
    target: &'static str,
    message: String,
}

fn setup(target: &'static str) -> impl Fn(String) -> SetupError {
    move |message| SetupError { target, message }
}

fn read_seed(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut MultiGzDecoder::new(bytes), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("gzip into memory")
}

fn unchanged(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

/// Replace the trailing SHA-256 of a checkpoint with the one its contents have now.
fn rehash_checkpoint(bytes: &[u8]) -> Vec<u8> {
    let Some(body) = bytes.len().checked_sub(32) else {
        return bytes.to_vec();
    };
    let mut out = bytes[..body].to_vec();
    out.extend_from_slice(&Sha256::digest(&out));
    out
}

/// Succeeds when at least one of the reads does; otherwise reports the first error.
fn any_of(results: impl IntoIterator<Item = Result<(), String>>) -> Result<(), String> {
    let mut first = None;
    for result in results {
        match result {
            Ok(()) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.unwrap_or_default())
}

fn volume_reader() -> Reader {
    Box::new(|path| {
        any_of([
            read_image(path).map(|_| ()).map_err(|e| e.to_string()),
            read_label(path).map(|_| ()).map_err(|e| e.to_string()),
        ])
    })
}

/// Grey and colour PNGs of 8 and 16 bits, as a user would pass to `sam2d`.
fn png_seeds() -> Result<Vec<Vec<u8>>, String> {
    use image::{DynamicImage, ImageBuffer, Rgb};
    let rgb8 = ImageBuffer::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 77]));
    let mut images = grey_pngs();
    images.push(DynamicImage::ImageRgb8(rgb8.clone()));
    images.push(DynamicImage::ImageRgba8(
        DynamicImage::ImageRgb8(rgb8).to_rgba8(),
    ));
    encode_pngs(&images)
}

/// The single-channel PNGs a dataset may hold: grey of 8 and 16 bits, and grey saved as RGBA.
fn grey_pngs() -> Vec<image::DynamicImage> {
    use image::{DynamicImage, ImageBuffer, Luma, Rgba};
    let gray8 = ImageBuffer::from_fn(16, 12, |x, y| Luma([(x * 12 + y) as u8]));
    let gray16 = ImageBuffer::from_fn(9, 7, |x, y| Luma([(x * 3000 + y * 17) as u16]));
    let grey_rgba = ImageBuffer::from_fn(6, 5, |x, y| {
        let v = (x * 40 + y) as u8;
        Rgba([v, v, v, 255])
    });
    vec![
        DynamicImage::ImageLuma8(gray8),
        DynamicImage::ImageLuma16(gray16),
        DynamicImage::ImageRgba8(grey_rgba),
    ]
}

fn encode_pngs(images: &[image::DynamicImage]) -> Result<Vec<Vec<u8>>, String> {
    images
        .iter()
        .map(|image| {
            let mut bytes = std::io::Cursor::new(Vec::new());
            image
                .write_to(&mut bytes, image::ImageFormat::Png)
                .map_err(|e| e.to_string())?;
            Ok(bytes.into_inner())
        })
        .collect()
}

/// Decode a PNG and convert it to the channel layout `sam2d` works on.
fn read_png(path: &Path) -> Result<(), String> {
    let decoded =
        image::open(path).map_err(|e| format!("{}: cannot decode PNG: {e}", path.display()))?;
    let samples = if decoded.color().has_color() {
        decoded.to_rgb16().len()
    } else {
        decoded.to_luma16().len()
    };
    if samples == 0 {
        return Err(format!("{}: the image has no pixels", path.display()));
    }
    Ok(())
}

/// Write a checkpoint of a small network (the demo profile with 2 base filters and `overrides`)
/// to `path`, as training writes one. The student's weights are those of the network that
/// `student_overrides` describe on top of the same settings, so a test can make them disagree.
pub fn write_small_checkpoint(
    repo: &Path,
    path: &Path,
    overrides: &[&str],
    student_overrides: &[&str],
) -> Result<(), String> {
    let profile = repo.join("configs/hippocampus_cpu.toml");
    let text = std::fs::read_to_string(&profile).map_err(|e| e.to_string())?;
    let settings = |extra: &[&str]| {
        let items: Vec<String> = std::iter::once("network.base_filters=2")
            .chain(overrides.iter().copied())
            .chain(extra.iter().copied())
            .map(str::to_string)
            .collect();
        RunConfig::from_toml_str(&text, &items, &profile.display().to_string())
            .map_err(|e| e.to_string())
    };
    let config = settings(&[])?;
    let device = Device::default();
    let student = settings(student_overrides)?
        .network
        .init_seeded(&device, 3)
        .map_err(|e| e.to_string())?
        .valid()
        .into_record()
        .into_bytes()
        .map_err(|e| e.to_string())?
        .to_vec();
    let sampler = serde_json::json!({
        "rng": {"seed": vec![7u8; 32], "stream": 0, "word_pos": "96"},
        "labeled_order": {"order": [2, 0, 3, 1], "next": 1},
        "unlabeled_order": {"order": [1, 0], "next": 0},
    });
    let header = CheckpointHeader {
        semisam_version: env!("CARGO_PKG_VERSION").to_owned(),
        step: 5,
        config: config.to_toml(),
        sampler: serde_json::from_value(sampler.clone()).map_err(|e| e.to_string())?,
        model_rng: serde_json::from_value(sampler["rng"].clone()).map_err(|e| e.to_string())?,
        best: None,
        sections: vec![],
    };
    Checkpoint {
        header,
        sections: vec![("student".into(), student)],
    }
    .save(path)
    .map_err(|e| e.to_string())
}

fn checkpoint_reader() -> Reader {
    Box::new(|path| {
        load_checkpoint_model(path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// Every reader, with seeds from the repository at `repo`, writing inputs under `work`.
pub fn targets(repo: &Path, work: &Path, seeds: SeedSet) -> Result<Vec<Target>, SetupError> {
    let fixtures = repo.join("tests/fixtures");
    let data = fixtures.join("data");
    let folder = |name: &'static str| -> Result<PathBuf, SetupError> {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| setup(name)(e.to_string()))?;
        Ok(dir)
    };
    let mut targets = Vec::new();
    let mut add = |name: &'static str,
                   file_name: &str,
                   seeds: Result<Vec<Vec<u8>>, String>,
                   encode: fn(&[u8]) -> Vec<u8>,
                   read: Reader|
     -> Result<(), SetupError> {
        targets.push(Target {
            name,
            seeds: seeds.map_err(setup(name))?,
            input_path: folder(name)?.join(file_name),
            encode,
            read,
        });
        Ok(())
    };
    let files = |paths: &[PathBuf]| -> Result<Vec<Vec<u8>>, String> {
        paths.iter().map(|p| read_seed(p)).collect()
    };

    let npy = files(&[
        data.join("npy/image_f64_fortran.npy"),
        data.join("npy/label_i64.npy"),
    ]);
    add("npy", "input.npy", npy, unchanged, volume_reader())?;

    let nifti = files(&[
        data.join("nifti/aniso_int16.nii.gz"),
        data.join("nifti/label_float32.nii.gz"),
        data.join("nifti/scaled_uint8.nii.gz"),
        data.join("msd/labelsTr/hippocampus_001.nii.gz"),
    ])
    .and_then(|packed| {
        packed
            .iter()
            .map(|p| gunzip(p))
            .collect::<Result<Vec<_>, _>>()
    })
    .and_then(|mut seeds| {
        seeds.push(read_seed(&data.join("nifti/qform_only_float64.nii"))?);
        Ok(seeds)
    });
    add(
        "nifti",
        "input.nii",
        nifti.clone(),
        unchanged,
        volume_reader(),
    )?;
    add("nifti-gz", "input.nii.gz", nifti, gzip, volume_reader())?;

    let cases = data.join("uamt/Training Set");
    let h5 = files(&[
        cases.join("CASE_A/mri_norm2.h5"),
        cases.join("CASE_T/mri_norm2.h5"),
    ]);
    add("h5", "mri_norm2.h5", h5, unchanged, volume_reader())?;

    add(
        "png",
        "input.png",
        png_seeds(),
        unchanged,
        Box::new(read_png),
    )?;
    // The same files as a dataset's images and label maps (nnU-Net v2 `.png`).
    add(
        "png-volume",
        "input.png",
        encode_pngs(&grey_pngs()),
        unchanged,
        volume_reader(),
    )?;

    // The dataset's volumes stay in place; only dataset.json is mutated.
    let dataset_root = folder("dataset-json")?;
    for sub in ["imagesTr", "labelsTr"] {
        let dir = dataset_root.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| setup("dataset-json")(e.to_string()))?;
        for case in ["hippocampus_001.nii.gz", "hippocampus_003.nii.gz"] {
            std::fs::copy(data.join("msd").join(sub).join(case), dir.join(case))
                .map_err(|e| setup("dataset-json")(e.to_string()))?;
        }
    }
    let dataset = files(&[data.join("msd/dataset.json")]);
    let read_dataset: Reader = Box::new(|path| {
        let root = path.parent().expect("dataset.json has a folder");
        let dataset = Dataset::open(root).map_err(|e| e.to_string())?;
        match dataset.cases.first() {
            Some(case) => dataset
                .load_case(case)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    });
    add(
        "dataset-json",
        "dataset.json",
        dataset,
        unchanged,
        read_dataset,
    )?;

    let splits = files(&[repo.join("tests/fixtures/data/splits.json")]);
    let read_splits: Reader =
        Box::new(|path| Splits::load(path).map(|_| ()).map_err(|e| e.to_string()));
    add("splits", "splits.json", splits, unchanged, read_splits)?;

    let configs = files(&[
        repo.join("configs/la_paper.toml"),
        repo.join("configs/hippocampus_cpu_semisam.toml"),
        repo.join("configs/la_cpu_sammed3d_semisam.toml"),
    ]);
    let read_config: Reader = Box::new(|path| {
        let config = RunConfig::load(path, &[]).map_err(|e| e.to_string())?;
        config.validate()
    });
    add("run-config", "run.toml", configs, unchanged, read_config)?;

    let seed_path = folder("checkpoint")?.join("seed.ckpt");
    let checkpoint = write_small_checkpoint(repo, &seed_path, &[], &[])
        .and_then(|()| files(std::slice::from_ref(&seed_path)));
    let reader = checkpoint_reader();
    add(
        "checkpoint",
        "input.ckpt",
        checkpoint.clone(),
        unchanged,
        reader,
    )?;
    let reader = checkpoint_reader();
    add(
        "checkpoint-rehashed",
        "input.ckpt",
        checkpoint,
        rehash_checkpoint,
        reader,
    )?;

    let sammed3d = fixtures.join("sammed3d");
    let mut pth_files = vec![sammed3d.join("bad_bare_checkpoint.pth")];
    if seeds == SeedSet::Campaign {
        pth_files.push(sammed3d.join("tiny_sammed3d.pth"));
    }
    let tiny = ModelConfig::from_json_file(&sammed3d.join("model_config_tiny.json"))
        .map_err(|e| setup("pth")(e.to_string()))?;
    let read_pth: Reader = Box::new(move |path| {
        let sammed3d = check_checkpoint_with_config(path, &tiny)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let litemedsam = LiteMedSam::load(path, &Device::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        any_of([sammed3d, litemedsam])
    });
    add("pth", "input.pth", files(&pth_files), unchanged, read_pth)?;

    Ok(targets)
}
