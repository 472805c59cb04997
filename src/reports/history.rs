//! The training history as the report needs it, read from `log.jsonl`, or from `log.csv` in a
//! run folder that has only the table: with its validation rows (a `kind` column) or, as written
//! before those existed, iteration rows alone.

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

    /// The history of the run folder `root`: its `log.jsonl`, else its `log.csv`.
    pub fn read_run(root: &Path) -> Result<Self, ReportError> {
        let jsonl = root.join("log.jsonl");
        let csv = root.join("log.csv");
        if !jsonl.is_file() && csv.is_file() {
            Self::read_csv(&csv)
        } else {
            Self::read(&jsonl)
        }
    }

    /// Read `log.csv`; a missing file is an empty history. Rows without a `kind` (logs written
    /// before validation rows existed) are iterations; empty and `NaN` cells are absent.
    pub fn read_csv(path: &Path) -> Result<Self, ReportError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ReportError::file(path, e)),
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Ok(Self::default());
        };
        let columns: Vec<&str> = header.split(',').collect();
        if columns.first() != Some(&"step") {
            return Err(ReportError::file(
                path,
                "line 1: the header does not start with step",
            ));
        }
        let mut history = TrainingHistory::default();
        for (n, line) in lines {
            let bad =
                |message: String| ReportError::file(path, format!("line {}: {message}", n + 1));
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != columns.len() {
                return Err(bad(format!(
                    "{} cells under a header of {}",
                    cells.len(),
                    columns.len()
                )));
            }
            let row: BTreeMap<&str, &str> = columns.iter().copied().zip(cells).collect();
            let step = row["step"]
                .parse::<usize>()
                .map_err(|_| bad(format!("step {:?} is not a count", row["step"])))?;
            let number = |key: &str| -> Result<Option<f64>, ReportError> {
                match row.get(key).copied().unwrap_or("") {
                    "" => Ok(None),
                    cell => cell
                        .parse::<f64>()
                        .map(|v| v.is_finite().then_some(v))
                        .map_err(|_| bad(format!("{key} {cell:?} is not a number"))),
                }
            };
            match row.get("kind").copied().unwrap_or("") {
                "" | "iteration" => {
                    let mut scalars = BTreeMap::new();
                    for &column in &columns {
                        if ITERATION_FIELDS.contains(&column) || is_validation_field(column) {
                            continue;
                        }
                        if let Some(value) = number(column)? {
                            scalars.insert(column.to_owned(), value);
                        }
                    }
                    history.iterations.push(IterationPoint {
                        step,
                        elapsed_s: number("elapsed_s")?.unwrap_or(f64::NAN),
                        iteration_s: number("iteration_s")?.unwrap_or(f64::NAN),
                        scalars,
                    });
                }
                "validation" => {
                    // Classes 1, 2, ... up to the first without a column or a value.
                    let dice_per_class = (1..)
                        .map(|c| format!("dice/{c}"))
                        .map_while(|key| {
                            let present = row.get(key.as_str()).is_some_and(|v| !v.is_empty());
                            present.then(|| number(&key))
                        })
                        .map(|value| value.map(|v| v.unwrap_or(f64::NAN)))
                        .collect::<Result<Vec<f64>, _>>()?;
                    history.validations.push(ValidationPoint {
                        step,
                        dice: number("dice")?.unwrap_or(f64::NAN),
                        dice_per_class,
                        seconds: number("validation_s")?.unwrap_or(f64::NAN),
                    });
                }
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

/// Columns of `log.csv` that are not iteration scalars.
const ITERATION_FIELDS: [&str; 4] = ["step", "kind", "elapsed_s", "iteration_s"];

fn is_validation_field(column: &str) -> bool {
    ["dice", "validation_cases", "validation_s", "sam_dice"].contains(&column)
        || column.starts_with("dice/")
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

    #[test]
    fn validation_rows_round_trip_through_log_csv_and_old_tables_still_read() {
        use crate::training::log::{IterationRecord, TrainingLog, ValidationRecord};
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        let mut log = TrainingLog::open(&jsonl, &csv, 0).unwrap();
        for step in 1..=4 {
            let mut scalars = vec![("loss/total".to_string(), 1.0 / step as f64)];
            if step > 2 {
                scalars.push(("loss/sam".to_string(), 0.125));
            }
            log.iteration(&IterationRecord {
                step,
                lr: 0.01 / step as f64,
                elapsed_s: step as f64,
                iteration_s: 0.5,
                scalars,
            })
            .unwrap();
            if step % 2 == 0 {
                log.validation(&ValidationRecord {
                    step,
                    dice: 0.1 * step as f64,
                    dice_per_class: vec![0.3, 0.1 * step as f64 - 0.1],
                    cases: 2,
                    seconds: 1.5,
                    sam_dice: (step == 4).then_some(0.625),
                })
                .unwrap();
            }
        }
        drop(log);
        let from_csv = TrainingHistory::read_csv(&csv).unwrap();
        let from_jsonl = TrainingHistory::read(&jsonl).unwrap();
        assert_eq!(from_csv, from_jsonl);
        assert_eq!(
            from_csv.validations,
            vec![
                ValidationPoint {
                    step: 2,
                    dice: 0.2,
                    dice_per_class: vec![0.3, 0.2 - 0.1],
                    seconds: 1.5
                },
                ValidationPoint {
                    step: 4,
                    dice: 0.4,
                    dice_per_class: vec![0.3, 0.4 - 0.1],
                    seconds: 1.5
                },
            ]
        );
        assert_eq!(
            from_csv.series("loss/sam"),
            vec![(3.0, 0.125), (4.0, 0.125)]
        );
        assert_eq!(from_csv.series("lr")[3], (4.0, 0.0025));
        // Without log.jsonl, a run folder's history comes from its table.
        std::fs::remove_file(&jsonl).unwrap();
        assert_eq!(TrainingHistory::read_run(dir.path()).unwrap(), from_csv);

        // The table as written before validation rows: iterations only, NaN cells absent.
        std::fs::write(
            &csv,
            "step,lr,elapsed_s,iteration_s,loss/total,weight/consistency\n1,0.01,2.500,2.500,1.5,NaN\n2,0.01,4.000,1.500,1,NaN\n",
        )
        .unwrap();
        let old = TrainingHistory::read_csv(&csv).unwrap();
        assert!(old.validations.is_empty());
        assert_eq!(old.series("loss/total"), vec![(1.0, 1.5), (2.0, 1.0)]);
        assert!(old.series("weight/consistency").is_empty());
        assert_eq!(old.iterations[1].elapsed_s, 4.0);

        std::fs::write(&csv, "step,kind,lr\n1,iteration,0.1\n2,valid,\n").unwrap();
        let err = TrainingHistory::read_csv(&csv).unwrap_err().to_string();
        assert!(
            err.ends_with("log.csv: line 3: unknown record kind \"valid\""),
            "{err}"
        );
        std::fs::write(&csv, "step,lr\n1,0.1,7\n").unwrap();
        let err = TrainingHistory::read_csv(&csv).unwrap_err().to_string();
        assert!(
            err.ends_with("log.csv: line 2: 3 cells under a header of 2"),
            "{err}"
        );
    }
}
