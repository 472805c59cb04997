//! Planning: from a dataset to a run configuration, as nnU-Net plans from a dataset fingerprint.
//! [`fingerprint`] reads every training image; [`rules`] turn it into target spacing,
//! normalisation, patch, network and augmentation; [`timing`] measures this machine so that
//! [`plan`] can fit the iterations into a time budget and write the commented `run.toml`.
//!
//! Planning writes the configuration that training reads, and measures a training step of the
//! frameworks to do so: it sits above `training` and `frameworks` and below the CLI.

pub mod fingerprint;
pub mod plan;
pub mod rules;
pub mod timing;

pub use fingerprint::{Fingerprint, fingerprint};
pub use plan::{Plan, PlanOptions, PlannedFramework, plan, save};

/// Why a dataset could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("measuring a training step: {0}")]
    Step(#[from] crate::frameworks::FrameworkError),
    #[error("measuring LiteMedSAM: {0}")]
    Sam(#[from] crate::generalists::litemedsam::LiteMedSamError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Budget(String),
}

/// Open the dataset at `options.root`, fingerprint it and plan a run. A dataset of PNG images
/// only, which store no pixel size, is planned in pixels unless a spacing is given.
pub fn plan_dataset(options: &PlanOptions) -> Result<(Fingerprint, Plan), PlanningError> {
    let dataset = crate::data::Dataset::open(&options.root)?;
    let mut options = options.clone();
    if options.spacing.is_none() && only_png(&dataset) {
        options.spacing = Some([1.0; 3]);
        options.pixel_units = true;
    }
    let fingerprint = fingerprint(&dataset, options.spacing)?;
    let plan = plan(&fingerprint, &options)?;
    Ok((fingerprint, plan))
}

fn only_png(dataset: &crate::data::Dataset) -> bool {
    let png = |path: &std::path::Path| {
        crate::data::format_of(path).is_ok_and(|f| f == crate::data::SourceFormat::Png)
    };
    !dataset.cases.is_empty() && dataset.cases.iter().all(|case| png(&case.image))
}

/// A duration written as a number with an optional unit: `90s`, `20m`, `1.5h` (seconds when no
/// unit is given).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, m or h, e.g. 20m)"
            ));
        }
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(std::time::Duration::from_secs_f64(v * scale)),
        _ => Err(format!(
            "{text:?}: expected a positive duration such as 90s, 20m or 1.5h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("20m").unwrap().as_secs(), 1200);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        assert!(
            parse_duration("0m")
                .unwrap_err()
                .contains("positive duration")
        );
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }
}
