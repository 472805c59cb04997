//! `predict` on files: outputs keep the input's format, shape and geometry; saved
//! probabilities, test-time mirroring and ensembles on a real (tiny) trained network.

use std::path::Path;

use ndarray::{Array3, Array4, Axis};
use semisam::data::{Volume, read_image, read_label};
use semisam::inference::ensemble::{Ensemble, EnsembleMember};
use semisam::inference::mirror::MirrorAxes;
use semisam::inference::pipeline::{
    JobOutputs, PredictOptions, PredictionSummary, list_jobs, run_job,
};
use semisam::inference::window_weights::WindowWeighting;
use semisam::networks::Specialist;
use semisam::training::run_dir::RunDir;
use semisam::training::validation::model_device;
use semisam::training::{RunConfig, TrainOptions, TrainingData, load_checkpoint_model, train};

fn config(downsample: usize) -> RunConfig {
    let text = format!(
        r#"
[data]
root = "unused"
labeled = 1
downsample = {downsample}

[network]
architecture = "v_net"
in_channels = 1
num_classes = 3
base_filters = 2
dropout = false

[framework]
kind = "supervised"

[training]
iterations = 1
batch_size = 1
labeled_bs = 1
patch = [16, 16, 16]
lr = 0.01
"#
    );
    RunConfig::from_toml_str(&text, &[], "test.toml").unwrap()
}

/// A checkpoint of a one-iteration run on one synthetic case.
fn checkpoint(dir: &Path, downsample: usize) -> std::path::PathBuf {
    let image = ndarray::Array3::from_shape_fn([20, 20, 20], |(i, j, k)| ((i + j + k) % 5) as f32);
    let label = image.mapv(|v| (v as u8) % 3);
    let data = TrainingData {
        pool: semisam::data::batches::TrainingPool {
            labeled: vec![semisam::data::batches::LabeledCase {
                id: "c".into(),
                image,
                label,
            }],
            unlabeled: vec![],
        },
        validation: vec![],
        oracle_labels: vec![],
    };
    let run = RunDir::create(dir, "run", false).unwrap();
    train(&config(downsample), &data, &run, &TrainOptions::default()).unwrap();
    run.checkpoint_path("final")
}

#[test]
fn nifti_and_h5_predictions_keep_the_input_geometry() {
    let dir = tempfile::tempdir().unwrap();
    for downsample in [1, 2] {
        let (config, model) = load_checkpoint_model(&checkpoint(
            &dir.path().join(downsample.to_string()),
            downsample,
        ))
        .unwrap();
        assert_eq!(config.data.downsample, downsample);
        let device = model_device(&model);
        let options = PredictOptions {
            stride: [8, 8, 8],
            largest_component: downsample == 2,
            window_batch: 2,
            weighting: WindowWeighting::Gaussian,
            mirror: MirrorAxes::NONE,
        };
        let ensemble = single(&config, &model, &device, options);
        let outputs = JobOutputs {
            largest_component: options.largest_component,
            save_probabilities: false,
        };
        let out = dir.path().join(format!("out{downsample}"));
        for input in [
            "tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz",
            "tests/fixtures/data/uamt/Training Set/CASE_A",
        ] {
            let input = Path::new(input);
            let jobs = list_jobs(input, &out).unwrap();
            assert_eq!(jobs.len(), 1);
            let mut calls = 0;
            let summary = run_job(&ensemble, &jobs[0], outputs, |_, _| calls += 1).unwrap();
            assert!(calls > 0);
            let source = read_image(&jobs[0].input).unwrap();
            let written = read_label(&summary.output).unwrap();
            assert_eq!(written.source, source.source);
            assert_eq!(written.shape(), source.shape(), "{}", input.display());
            assert_eq!(written.geometry.affine, source.geometry.affine);
            assert_eq!(written.geometry.spacing, source.geometry.spacing);
            if let (Some(a), Some(b)) = (
                &written.geometry.nifti_header,
                &source.geometry.nifti_header,
            ) {
                assert_eq!(
                    (a.qform_code, a.sform_code, a.pixdim, a.dim),
                    (b.qform_code, b.sform_code, b.pixdim, b.dim)
                );
                assert_eq!(
                    (a.srow_x, a.srow_y, a.srow_z),
                    (b.srow_x, b.srow_y, b.srow_z)
                );
            }
            assert_eq!(
                summary.voxels_per_class.iter().sum::<usize>(),
                written.data.len()
            );
            assert!(written.data.iter().all(|&v| v < 3));
        }
        assert!(out.join("hippocampus_001.nii.gz").is_file());
        assert!(out.join("CASE_A.h5").is_file());
    }
}

fn single<'a>(
    config: &'a RunConfig,
    model: &'a Specialist,
    device: &'a burn::tensor::Device,
    options: PredictOptions,
) -> Ensemble<'a> {
    let input = config.model_input();
    Ensemble::new(vec![EnsembleMember {
        source: Path::new("model.ckpt"),
        input,
        model,
        device,
        window: options.sliding_window(input.window),
    }])
    .unwrap()
}

fn options(weighting: WindowWeighting, mirror: MirrorAxes) -> PredictOptions {
    PredictOptions {
        stride: [8, 8, 8],
        largest_component: false,
        window_batch: 2,
        weighting,
        mirror,
    }
}

/// The class of highest probability at each voxel (the first one on ties).
fn argmax(probabilities: &Array4<f32>) -> Array3<u8> {
    semisam::networks::arrays::argmax_classes(probabilities.view())
}

fn read_npz_probabilities(path: &Path) -> Array4<f32> {
    use ndarray_npy::ReadNpyExt;
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    archive
        .by_name("probabilities.npy")
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    Array4::<f32>::read_npy(&bytes[..]).unwrap()
}

/// Predict `input` into `out` with its probabilities saved; the summary and what was written.
fn predict_saving_probabilities(
    ensemble: &Ensemble,
    input: &Path,
    out: &Path,
) -> (PredictionSummary, Volume<u8>, Array4<f32>) {
    let job = &list_jobs(input, out).unwrap()[0];
    let outputs = JobOutputs {
        largest_component: false,
        save_probabilities: true,
    };
    let summary = run_job(ensemble, job, outputs, |_, _| {}).unwrap();
    let labels = read_label(&summary.output).unwrap();
    let probabilities = read_npz_probabilities(summary.probabilities.as_ref().unwrap());
    (summary, labels, probabilities)
}

#[test]
fn saved_probabilities_reproduce_the_saved_labels() {
    let dir = tempfile::tempdir().unwrap();
    // Down-sampled by 2: the probabilities come back to the input grid like the labels do.
    let (config, model) = load_checkpoint_model(&checkpoint(dir.path(), 2)).unwrap();
    let device = model_device(&model);
    let ensemble = single(
        &config,
        &model,
        &device,
        options(WindowWeighting::Gaussian, MirrorAxes::NONE),
    );
    let input = Path::new("tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz");
    let out = dir.path().join("out");
    let (summary, labels, probabilities) = predict_saving_probabilities(&ensemble, input, &out);
    assert_eq!(summary.probabilities, Some(out.join("hippocampus_001.npz")));
    let shape = labels.shape();
    assert_eq!(probabilities.shape(), &[3, shape[0], shape[1], shape[2]]);
    for voxel in probabilities.lanes(Axis(0)) {
        assert!((voxel.sum() - 1.0).abs() < 1e-5);
    }
    assert_eq!(argmax(&probabilities), labels.data);
    // The argmax is not trivially background everywhere (the model has seen one iteration).
    assert!(
        probabilities
            .index_axis(Axis(0), 0)
            .iter()
            .any(|&p| p < 0.999)
    );
}

#[test]
fn saved_probabilities_are_resampled_back_from_the_target_spacing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, model) = load_checkpoint_model(&checkpoint(dir.path(), 1)).unwrap();
    let device = model_device(&model);
    let input = Path::new("tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz");
    let image = read_image(input).unwrap();
    let spacing = image.geometry.spacing.unwrap();
    // Twice as coarse along x: the model predicts on half as many x voxels.
    config.data.target_spacing = Some([2.0 * spacing[0], spacing[1], spacing[2]]);
    let ensemble = single(
        &config,
        &model,
        &device,
        options(WindowWeighting::Uniform, MirrorAxes::NONE),
    );
    let coarse = ensemble.probabilities(&image, |_, _| {}).unwrap();
    let [x, y, z] = image.shape();
    assert_eq!(
        coarse.shape(),
        &[3, (x as f64 / 2.0).round() as usize, y, z]
    );
    let (_, labels, saved) =
        predict_saving_probabilities(&ensemble, input, &dir.path().join("out"));
    assert_eq!(labels.shape(), [x, y, z]);
    assert_eq!(saved.shape(), &[3, x, y, z]);
    assert_eq!(
        saved,
        config
            .preparation()
            .restore_probabilities(&coarse, [x, y, z])
    );
    for voxel in saved.lanes(Axis(0)) {
        assert!((voxel.sum() - 1.0).abs() < 1e-5);
    }
    let agreeing = argmax(&saved)
        .iter()
        .zip(&labels.data)
        .filter(|(a, b)| a == b)
        .count();
    // The label map's classes are resampled as indicators, the probabilities linearly: they may
    // part only at class borders.
    assert!(agreeing * 100 >= labels.data.len() * 99, "{agreeing}");
}

#[test]
fn tta_equals_the_mean_of_explicitly_mirrored_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = load_checkpoint_model(&checkpoint(dir.path(), 1)).unwrap();
    let device = model_device(&model);
    // 24 x 32 x 16 with windows of 16 and stride 8: the window grid is symmetric under mirroring,
    // so mirroring each window equals mirroring the whole volume.
    let image = Volume {
        data: Array3::from_shape_fn([24, 32, 16], |(i, j, k)| {
            ((i * 7 + j * 3 + k * 5) % 11) as f32 + 0.1 * i as f32
        }),
        ..read_image("tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz").unwrap()
    };
    let axes = MirrorAxes([true, true, false]);
    let tta = single(
        &config,
        &model,
        &device,
        options(WindowWeighting::Gaussian, axes),
    )
    .probabilities(&image, |_, _| {})
    .unwrap();
    let plain = single(
        &config,
        &model,
        &device,
        options(WindowWeighting::Gaussian, MirrorAxes::NONE),
    );
    let mut expected = Array4::<f32>::zeros(tta.raw_dim());
    for flip in axes.combinations() {
        let mut mirrored = image.data.clone();
        for (axis, &f) in flip.iter().enumerate() {
            if f {
                mirrored.invert_axis(Axis(axis));
            }
        }
        let input = Volume {
            data: mirrored.as_standard_layout().into_owned(),
            ..image.clone()
        };
        let mut prediction = plain.probabilities(&input, |_, _| {}).unwrap();
        for (axis, &f) in flip.iter().enumerate() {
            if f {
                prediction.invert_axis(Axis(axis + 1));
            }
        }
        expected += &prediction;
    }
    expected /= 4.0;
    let unmirrored = plain.probabilities(&image, |_, _| {}).unwrap();
    let largest = |a: &Array4<f32>, b: &Array4<f32>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        largest(&tta, &unmirrored) > 1e-4,
        "mirroring changes the answer"
    );
    assert!(largest(&tta, &expected) < 1e-5);
}

#[test]
fn ensembling_two_identical_checkpoints_equals_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = checkpoint(dir.path(), 1);
    let second = dir.path().join("copy.ckpt");
    std::fs::copy(&first, &second).unwrap();
    let (config_a, model_a) = load_checkpoint_model(&first).unwrap();
    let (config_b, model_b) = load_checkpoint_model(&second).unwrap();
    let device = model_device(&model_a);
    let settings = options(WindowWeighting::Gaussian, MirrorAxes::NONE);
    let make = |source: &'static str, config: &RunConfig, model| EnsembleMember {
        source: Path::new(source),
        input: config.model_input(),
        model,
        device: &device,
        window: settings.sliding_window([16, 16, 16]),
    };
    let one = Ensemble::new(vec![make("a.ckpt", &config_a, &model_a)]).unwrap();
    let two = Ensemble::new(vec![
        make("a.ckpt", &config_a, &model_a),
        make("b.ckpt", &config_b, &model_b),
    ])
    .unwrap();
    let input = Path::new("tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz");
    let outputs = JobOutputs {
        largest_component: false,
        save_probabilities: true,
    };
    let mut windows = Vec::new();
    for (name, ensemble) in [("one", &one), ("two", &two)] {
        let job = &list_jobs(input, &dir.path().join(name)).unwrap()[0];
        let mut total = 0;
        run_job(ensemble, job, outputs, |_, t| total = t).unwrap();
        windows.push(total);
    }
    assert_eq!(
        windows[1],
        2 * windows[0],
        "progress counts both members' windows"
    );
    let read = |name: &str| {
        (
            read_label(dir.path().join(name).join("hippocampus_001.nii.gz"))
                .unwrap()
                .data,
            read_npz_probabilities(&dir.path().join(name).join("hippocampus_001.npz")),
        )
    };
    assert_eq!(read("one"), read("two"));

    // Members must agree on what they predict.
    let mut two_classes = config_b.clone();
    two_classes.network.num_classes = 2;
    let err = Ensemble::new(vec![
        make("a.ckpt", &config_a, &model_a),
        make("b.ckpt", &two_classes, &model_b),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "b.ckpt cannot be ensembled with a.ckpt: its network.num_classes is 2, not 3"
    );
    // ... and on the grid they predict on.
    let mismatch = |edit: fn(&mut RunConfig)| {
        let mut other = config_b.clone();
        edit(&mut other);
        Ensemble::new(vec![
            make("a.ckpt", &config_a, &model_a),
            make("b.ckpt", &other, &model_b),
        ])
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        mismatch(|c| c.data.target_spacing = Some([1.0, 1.0, 2.0])),
        "b.ckpt cannot be ensembled with a.ckpt: its data.target_spacing is [1.0, 1.0, 2.0], not unset"
    );
    assert_eq!(
        mismatch(|c| c.data.downsample = 2),
        "b.ckpt cannot be ensembled with a.ckpt: its data.downsample is 2, not 1"
    );
    assert_eq!(
        mismatch(|c| c.network.in_channels = 2),
        "b.ckpt cannot be ensembled with a.ckpt: its network.in_channels is 2, not 1"
    );
}

/// Predicting a folder into itself would replace each image by its label map, and two inputs
/// of one case would write one file: both are refused before any model runs, and the images
/// stay as they were.
#[test]
fn outputs_never_replace_inputs_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let fixture = Path::new("tests/fixtures/data/msd/imagesTr/hippocampus_001.nii.gz");
    let image = images.join("hippocampus_001.nii.gz");
    std::fs::copy(fixture, &image).unwrap();
    let original = std::fs::read(&image).unwrap();
    // the same folder, however it is spelled, and a single file predicted beside itself
    let round_about = images.join("..").join("images");
    for (input, output) in [
        (&images, &images),
        (&images, &round_about),
        (&image, &images),
    ] {
        let err = list_jobs(input, output).unwrap_err().to_string();
        assert!(
            err.ends_with("hippocampus_001.nii.gz: is one of the input volumes, which its prediction would overwrite: write to a folder apart from the inputs"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&image).unwrap(), original);
    assert_eq!(
        list_jobs(&images, &dir.path().join("out")).unwrap().len(),
        1
    );

    // a channel-suffixed copy of the same case would land on the same output name
    std::fs::copy(fixture, images.join("hippocampus_001_0000.nii.gz")).unwrap();
    let err = list_jobs(&images, &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would hold the predictions of both")
            && err.contains("hippocampus_001_0000.nii.gz"),
        "{err}"
    );

    // one case as .nii and as .nii.gz: two output files, but one case twice for `evaluate`
    std::fs::remove_file(images.join("hippocampus_001_0000.nii.gz")).unwrap();
    let plain = semisam::data::read_image(&image).unwrap();
    semisam::data::write_image(&plain, images.join("hippocampus_001.nii")).unwrap();
    let err = list_jobs(&images, &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would be a second prediction of case hippocampus_001, from")
            && err.contains("keep one file per case in the input folder"),
        "{err}"
    );
}
