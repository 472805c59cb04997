//! The evaluation report: per-case CSV, summary JSON and Markdown, and its refusals.

use std::path::PathBuf;

use semisam::metrics::{
    CaseMetrics, ClassMetrics, DistanceUnit, EMPTY_MASK_POLICY, EvaluationOptions, Hd95Convention,
    MaskMetrics, write_evaluation_report,
};

fn case(id: &str, dice: f64, hd95: f64, unit: DistanceUnit) -> CaseMetrics {
    let metrics = MaskMetrics {
        dice,
        jaccard: dice / (2.0 - dice),
        hd95,
        asd: hd95 / 4.0,
        assd: hd95 / 2.0,
        prediction_empty: dice == 0.0,
        reference_empty: false,
    };
    CaseMetrics {
        case_id: id.to_string(),
        prediction: PathBuf::from(format!("pred/{id}.nii.gz")),
        reference: PathBuf::from(format!("ref/{id}.nii.gz")),
        unit,
        spacing: [1.0, 1.0, 2.0],
        hd95_convention: Hd95Convention::Medpy,
        classes: vec![ClassMetrics { class: 1, metrics }],
    }
}

#[test]
fn report_holds_per_case_rows_and_mean_std_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        case("a", 0.5, 4.0, DistanceUnit::Millimetre),
        case("b", 1.0, 2.0, DistanceUnit::Millimetre),
        case("c", 0.0, 9.0, DistanceUnit::Millimetre),
    ];
    let paths = write_evaluation_report(dir.path(), &cases, &EvaluationOptions::default()).unwrap();

    let csv = std::fs::read_to_string(&paths.per_case_csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "case_id,class,dice,jaccard,hd95,asd,assd,unit,prediction_empty,reference_empty,prediction,reference"
    );
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[1],
        "a,1,0.5,0.3333333333333333,4,1,2,mm,false,false,pred/a.nii.gz,ref/a.nii.gz"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.summary_json).unwrap()).unwrap();
    assert_eq!(summary["unit"], "mm");
    assert_eq!(summary["hd95_convention"], "medpy");
    assert_eq!(summary["empty_mask_policy"], EMPTY_MASK_POLICY);
    assert_eq!(summary["cases"], 3);
    let class = &summary["classes"][0];
    assert_eq!(class["class"], 1);
    assert_eq!(class["empty_predictions"], serde_json::json!(["c"]));
    // Dice 0.5, 1, 0: mean 0.5, population std sqrt(1/6).
    assert!((class["dice"]["mean"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert!((class["dice"]["std"].as_f64().unwrap() - (1.0f64 / 6.0).sqrt()).abs() < 1e-12);
    // HD95 4, 2, 9: mean 5, population std sqrt(26/3).
    assert!((class["hd95"]["mean"].as_f64().unwrap() - 5.0).abs() < 1e-12);
    assert!((class["hd95"]["std"].as_f64().unwrap() - (26.0f64 / 3.0).sqrt()).abs() < 1e-12);

    let markdown = std::fs::read_to_string(&paths.summary_markdown).unwrap();
    assert!(
        markdown.contains(
            "| class | cases | Dice (%) | Jaccard (%) | HD95 (mm) | ASD (mm) | ASSD (mm) |"
        ),
        "{markdown}"
    );
    assert!(markdown.contains("| 1 | 3 | 50.00 ± 40.82 |"), "{markdown}");
    assert!(markdown.contains(EMPTY_MASK_POLICY), "{markdown}");
    assert!(
        markdown.contains("Class 1, empty prediction (1 cases): c"),
        "{markdown}"
    );
}

#[test]
fn report_refuses_mixed_units_and_no_cases() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = [
        case("a", 0.5, 4.0, DistanceUnit::Millimetre),
        case("b", 1.0, 2.0, DistanceUnit::Voxel),
    ];
    let error = write_evaluation_report(dir.path(), &mixed, &EvaluationOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("distances of case a are in mm but case b is in voxel"),
        "{error}"
    );
    let error = write_evaluation_report(dir.path(), &[], &EvaluationOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("no cases"), "{error}");
    let monai = EvaluationOptions {
        hd95: Hd95Convention::Monai,
        ..Default::default()
    };
    let error = write_evaluation_report(dir.path(), &mixed[..1], &monai)
        .unwrap_err()
        .to_string();
    assert!(error.contains("another HD95 convention"), "{error}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written on refusal"
    );
}
