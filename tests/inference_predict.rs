//! `predict` on files: outputs keep the input's format, shape and geometry.

use std::path::Path;

use semisam::data::{read_image, read_label};
use semisam::inference::pipeline::{PredictOptions, list_jobs, run_job};
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
            let summary = run_job(
                &model,
                &config.model_input(),
                &jobs[0],
                options,
                &device,
                |_, _| calls += 1,
            )
            .unwrap();
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
