//! `semisam sam3d`: one SAM-Med3D inference on a volume already at the model's input size.

use anyhow::{Context, bail};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array3;
use semisam::data::{npy, read_image};
use semisam::generalists::sammed3d::{ModelConfig, PointLabel, PointPrompt, SamMed3d};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Sam3dArgs {
    /// SAM-Med3D checkpoint (.pth): `{'model_state_dict': ...}` or a bare state dict.
    #[arg(long)]
    pub weights: PathBuf,
    /// Flat JSON of architecture hyper-parameters (default: vit_b_ori).
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// Prepared volume (.npy or .nii.gz) of exactly the model's input size (128^3 for vit_b_ori).
    #[arg(long)]
    pub image: PathBuf,
    /// Click `i,j,k,label`: voxel indices in the array's axis order, label 1 positive or 0
    /// negative. Repeatable; none means a mask-only prompt.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<PointPrompt>,
    /// Low-resolution mask prompt (.npy logits, 32^3 for vit_b_ori), e.g. a previous
    /// `--out-low-res`. Without it the learnt "no mask" embedding is used.
    #[arg(long)]
    pub mask_input: Option<PathBuf>,
    /// Output: upsampled mask logits, float32, the input's shape.
    #[arg(long)]
    pub out: PathBuf,
    /// Optional output: the low-resolution logits, to feed back as `--mask-input`.
    #[arg(long)]
    pub out_low_res: Option<PathBuf>,
}

fn parse_point(text: &str) -> Result<PointPrompt, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [i, j, k, label] = parts.as_slice() else {
        return Err(format!("'{text}': expected i,j,k,label"));
    };
    let index = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("'{text}': '{s}' is not a voxel index"))
    };
    let coord = [index(i)? as f32, index(j)? as f32, index(k)? as f32];
    let label = match *label {
        "1" => PointLabel::Positive,
        "0" => PointLabel::Negative,
        other => return Err(format!("'{text}': label '{other}' is neither 1 nor 0")),
    };
    Ok(PointPrompt { coord, label })
}

fn cube_tensor(
    data: &Array3<f32>,
    side: usize,
    what: &Path,
    device: &Device,
) -> anyhow::Result<Tensor<5>> {
    let shape = data.shape();
    if shape != [side, side, side] {
        bail!(
            "{}: shape {shape:?}, the model needs {side}x{side}x{side}",
            what.display()
        );
    }
    if let Some(v) = data.iter().find(|v| !v.is_finite()) {
        bail!("{}: contains the non-finite value {v}", what.display());
    }
    let values: Vec<f32> = data.as_standard_layout().iter().copied().collect();
    Ok(Tensor::from_data(
        TensorData::new(values, [1, 1, side, side, side]),
        device,
    ))
}

fn to_array(t: Tensor<5>) -> anyhow::Result<Array3<f32>> {
    let [_, _, d, h, w] = t.dims();
    let values = t
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Array3::from_shape_vec((d, h, w), values)?)
}

pub fn run(args: Sam3dArgs) -> anyhow::Result<()> {
    let config = match &args.model_config {
        Some(path) => ModelConfig::from_json_file(path)?,
        None => ModelConfig::vit_b_ori(),
    };
    let device = Device::default();
    let image = read_image(&args.image)?;
    let volume = cube_tensor(&image.data, config.img_size, &args.image, &device)?;
    let mask_input = match &args.mask_input {
        Some(path) => {
            let mask = read_image(path)?;
            Some(cube_tensor(&mask.data, config.mask_size(), path, &device)?)
        }
        None => None,
    };
    let model = SamMed3d::load(&args.weights, &config, &device)?;
    let embedding = model.embed(volume)?;
    let decoded = model
        .decode(&embedding, &args.points, mask_input)
        .with_context(|| format!("decoding {}", args.image.display()))?;
    let iou = decoded
        .iou
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    npy::write(&to_array(decoded.logits)?, &args.out)?;
    if let Some(path) = &args.out_low_res {
        npy::write(&to_array(decoded.low_res_logits)?, path)?;
    }
    println!(
        "{}: {} click(s), predicted IoU {:.4}, logits written to {}",
        args.image.display(),
        args.points.len(),
        iou[0],
        args.out.display()
    );
    Ok(())
}
