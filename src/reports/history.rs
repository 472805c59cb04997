//! The training history as the report needs it, read from `log.jsonl` (the CSV's columns are
//! fixed by its first row, so terms that start later, such as the SAM term, are only in the
//! JSONL log).

use std::collections::BTreeMap;
use std::path::Path;

use super::ReportError;

/// One iteration record.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationPoint {
    pub step: usize,
    pub elapsed_s: f64,
    pub iteration_s: f64,
    /// Every other numeric field (`lr`, `loss/<term>`, `weight/<term>`, diagnostics); fields
    /// logged as `null` (not finite) are absent.
    pub scalars: BTreeMap<String, f64>,
}

/// One validation record.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPoint {
    pub step: usize,
    pub dice: f64,
    pub dice_per_class: Vec<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingHistory {
    pub iterations: Vec<IterationPoint>,
    pub validations: Vec<ValidationPoint>,
}

impl TrainingHistory {
    /// Read `log.jsonl`; a missing file is an empty history (a run that has not started).
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ReportError::file(path, e)),
        };
        let mut history = TrainingHistory::default();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad =
                |message: String| ReportError::file(path, format!("line {}: {message}", n + 1));
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let object = value
                .as_object()
                .ok_or_else(|| bad("not a JSON object".into()))?;
            let number = |key: &str| object.get(key).and_then(|v| v.as_f64());
            let step = object
                .get("step")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad("no step".into()))? as usize;
            match object.get("kind").and_then(|k| k.as_str()) {
                Some("iteration") => {
                    let scalars = object
                        .iter()
                        .filter(|(k, _)| {
                            !["kind", "step", "elapsed_s", "iteration_s"].contains(&k.as_str())
                        })
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect();
                    history.iterations.push(IterationPoint {
                        step,
                        elapsed_s: number("elapsed_s").unwrap_or(f64::NAN),
                        iteration_s: number("iteration_s").unwrap_or(f64::NAN),
                        scalars,
                    });
                }
                Some("validation") => history.validations.push(ValidationPoint {
                    step,
                    dice: number("dice").unwrap_or(f64::NAN),
                    dice_per_class: object
                        .get("dice_per_class")
                        .and_then(|v| v.as_array())
                        .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
                        .unwrap_or_default(),
                    seconds: number("seconds").unwrap_or(f64::NAN),
                }),
                other => return Err(bad(format!("unknown record kind {other:?}"))),
            }
        }
        Ok(history)
    }

    /// Names of the iteration scalars starting with `prefix`, in name order.
    pub fn scalar_names(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .iterations
            .iter()
            .flat_map(|p| p.scalars.keys())
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// `(step, value)` of scalar `name` wherever it was logged.
    pub fn series(&self, name: &str) -> Vec<(f64, f64)> {
        self.iterations
            .iter()
            .filter_map(|p| Some((p.step as f64, *p.scalars.get(name)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iterations_and_validations_and_skips_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"kind":"iteration","step":1,"lr":0.01,"elapsed_s":2.5,"iteration_s":2.5,"loss/total":1.5,"weight/consistency":null}"#,
                "\n",
                r#"{"kind":"iteration","step":2,"lr":0.01,"elapsed_s":4.0,"iteration_s":1.5,"loss/total":1.0,"loss/sam":0.2,"weight/sam":0.1}"#,
                "\n",
                r#"{"kind":"validation","step":2,"dice":0.5,"dice_per_class":[0.4,0.6],"cases":2,"seconds":3.0}"#,
                "\n"
            ),
        )
        .unwrap();
        let history = TrainingHistory::read(&path).unwrap();
        assert_eq!(history.iterations.len(), 2);
        assert_eq!(history.series("loss/total"), vec![(1.0, 1.5), (2.0, 1.0)]);
        assert_eq!(history.series("loss/sam"), vec![(2.0, 0.2)]);
        assert!(history.series("weight/consistency").is_empty());
        assert_eq!(history.scalar_names("loss/"), ["loss/sam", "loss/total"]);
        assert_eq!(history.iterations[1].elapsed_s, 4.0);
        assert_eq!(
            history.validations,
            vec![ValidationPoint {
                step: 2,
                dice: 0.5,
                dice_per_class: vec![0.4, 0.6],
                seconds: 3.0
            }]
        );

        std::fs::write(&path, "{\"kind\":\"iteration\"}\n").unwrap();
        let err = TrainingHistory::read(&path).unwrap_err().to_string();
        assert!(err.ends_with("log.jsonl: line 1: no step"), "{err}");
        assert_eq!(
            TrainingHistory::read(&dir.path().join("absent.jsonl")).unwrap(),
            TrainingHistory::default()
        );
    }
}
