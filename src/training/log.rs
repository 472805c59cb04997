//! Per-iteration logs: `log.jsonl` and `log.csv`, one record per iteration and per validation.
//! Lines are appended and flushed as training goes, so a crash loses at most the current line; on
//! resume both files are cut back to the checkpoint's step so that a resumed run's logs read like
//! an uninterrupted one's.
//!
//! `log.csv` has one column per field, named in its header: `step`, `kind` (`iteration` or
//! `validation`), then the iteration fields (`lr`, `elapsed_s`, `iteration_s`, every scalar) and
//! the validation fields (`dice`, `dice/<class>`, `validation_cases`, `validation_s`,
//! `sam_dice`), each left empty on the other kind's rows. A field first seen later (the SAM term
//! after its start iteration, the first validation) widens the table; logs written before the
//! `kind` column existed have iteration rows only, and gain the column at the end when resumed.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LogError {
    pub path: PathBuf,
    pub message: String,
}

/// One training iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// Iterations completed after this one (1-based).
    pub step: usize,
    pub lr: f64,
    /// Seconds since the run started (excluding time between interruption and resume).
    pub elapsed_s: f64,
    pub iteration_s: f64,
    /// `loss/<term>`, `weight/<term>` and framework diagnostics, in the framework's order.
    pub scalars: Vec<(String, f64)>,
}

/// One validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub step: usize,
    /// Mean over cases of the mean foreground Dice.
    pub dice: f64,
    /// Per foreground class (1..C), mean over cases.
    pub dice_per_class: Vec<f64>,
    pub cases: usize,
    pub seconds: f64,
    /// Mean Dice of the SAM pseudo-labels prompted from the student's prediction on the
    /// validation cases (with `[sam] validation_dice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sam_dice: Option<f64>,
}

/// Appends records to the two log files.
pub struct TrainingLog {
    jsonl: (PathBuf, File),
    csv: (PathBuf, File),
    columns: Option<Vec<String>>,
}

impl TrainingLog {
    /// Open the logs for a run that continues after `step` completed iterations: records of
    /// later steps (written after the checkpoint) are dropped first.
    pub fn open(jsonl: &Path, csv: &Path, step: usize) -> Result<Self, LogError> {
        truncate_after(jsonl, step, None, |line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()?
                .get("step")?
                .as_u64()
                .map(|s| s as usize)
        })?;
        truncate_after(csv, step, Some("step,"), |line| {
            line.split(',').next()?.parse().ok()
        })?;
        let columns = read_csv_header(csv)?;
        Ok(TrainingLog {
            jsonl: (jsonl.to_owned(), append(jsonl)?),
            csv: (csv.to_owned(), append(csv)?),
            columns,
        })
    }

    pub fn iteration(&mut self, record: &IterationRecord) -> Result<(), LogError> {
        let mut json = serde_json::Map::new();
        json.insert("kind".into(), "iteration".into());
        json.insert("step".into(), record.step.into());
        json.insert("lr".into(), json_number(record.lr));
        json.insert("elapsed_s".into(), json_number(record.elapsed_s));
        json.insert("iteration_s".into(), json_number(record.iteration_s));
        for (name, value) in &record.scalars {
            json.insert(name.clone(), json_number(*value));
        }
        write_line(
            &mut self.jsonl,
            &serde_json::to_string(&json).expect("plain data"),
        )?;

        let mut cells = vec![
            ("step".to_owned(), record.step.to_string()),
            ("kind".to_owned(), "iteration".to_owned()),
            ("lr".to_owned(), record.lr.to_string()),
            ("elapsed_s".to_owned(), format!("{:.3}", record.elapsed_s)),
            (
                "iteration_s".to_owned(),
                format!("{:.3}", record.iteration_s),
            ),
        ];
        cells.extend(
            record
                .scalars
                .iter()
                .map(|(name, value)| (name.clone(), value.to_string())),
        );
        self.csv_row(&cells)
    }

    /// Append a row of named cells, widening the header first if a name is new (earlier rows
    /// get empty cells, so that no value is lost).
    fn csv_row(&mut self, cells: &[(String, String)]) -> Result<(), LogError> {
        let names = cells.iter().map(|(name, _)| name);
        let columns = match &self.columns {
            Some(columns) if names.clone().all(|n| columns.contains(n)) => columns.clone(),
            Some(columns) => {
                let mut widened = columns.clone();
                widened.extend(names.filter(|n| !columns.contains(*n)).cloned());
                self.widen_csv(&widened)?;
                self.columns = Some(widened.clone());
                widened
            }
            None => {
                let header: Vec<String> = names.cloned().collect();
                write_line(&mut self.csv, &header.join(","))?;
                self.columns = Some(header.clone());
                header
            }
        };
        let row: Vec<&str> = columns
            .iter()
            .map(|column| {
                cells
                    .iter()
                    .find(|(name, _)| name == column)
                    .map_or("", |(_, value)| value.as_str())
            })
            .collect();
        write_line(&mut self.csv, &row.join(","))
    }

    /// Rewrite the CSV (atomically) under a header with more columns, padding earlier rows.
    fn widen_csv(&mut self, columns: &[String]) -> Result<(), LogError> {
        let path = self.csv.0.clone();
        let error = |message: String| LogError {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
        let mut widened = columns.join(",");
        widened.push('\n');
        for line in text.lines().skip(1) {
            let cells = line.split(',').count();
            widened.push_str(line);
            widened.push_str(&",".repeat(columns.len().saturating_sub(cells)));
            widened.push('\n');
        }
        crate::io_util::write_atomic(&path, widened.as_bytes())
            .map_err(|e| error(e.to_string()))?;
        self.csv.1 = append(&path)?;
        Ok(())
    }

    pub fn validation(&mut self, record: &ValidationRecord) -> Result<(), LogError> {
        let mut json = serde_json::to_value(record).expect("plain data");
        json.as_object_mut()
            .expect("a struct")
            .insert("kind".into(), "validation".into());
        write_line(&mut self.jsonl, &json.to_string())?;

        let mut cells = vec![
            ("step".to_owned(), record.step.to_string()),
            ("kind".to_owned(), "validation".to_owned()),
            ("dice".to_owned(), record.dice.to_string()),
        ];
        cells.extend(
            record
                .dice_per_class
                .iter()
                .enumerate()
                .map(|(c, dice)| (format!("dice/{}", c + 1), dice.to_string())),
        );
        cells.push(("validation_cases".to_owned(), record.cases.to_string()));
        cells.push(("validation_s".to_owned(), format!("{:.3}", record.seconds)));
        if let Some(sam) = record.sam_dice {
            cells.push(("sam_dice".to_owned(), sam.to_string()));
        }
        self.csv_row(&cells)
    }
}

/// NaN and infinities are not JSON numbers: they are written as `null`.
fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Elapsed training seconds recorded at `step` in an existing JSONL log (0 when absent).
pub fn elapsed_at(jsonl: &Path, step: usize) -> f64 {
    let Ok(file) = File::open(jsonl) else {
        return 0.0;
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v.get("step").and_then(|s| s.as_u64()) == Some(step as u64))
        .find_map(|v| v.get("elapsed_s").and_then(|e| e.as_f64()))
        .unwrap_or(0.0)
}

fn append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LogError {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

fn write_line(target: &mut (PathBuf, File), line: &str) -> Result<(), LogError> {
    let (path, file) = target;
    writeln!(file, "{line}")
        .and_then(|_| file.flush())
        .map_err(|e| LogError {
            path: path.clone(),
            message: e.to_string(),
        })
}

fn read_csv_header(path: &Path) -> Result<Option<Vec<String>>, LogError> {
    match File::open(path) {
        Err(_) => Ok(None),
        Ok(file) => Ok(BufReader::new(file)
            .lines()
            .next()
            .transpose()
            .map_err(|e| LogError {
                path: path.to_owned(),
                message: e.to_string(),
            })?
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_owned).collect())),
    }
}

/// Keep the header (a first line starting with `header`) and the lines whose step is at most
/// `step`. A line without a readable step (cut short by the interruption, or damaged) is dropped
/// with a warning; a log missing where training resumes past step 0 restarts with a warning.
fn truncate_after(
    path: &Path,
    step: usize,
    header: Option<&str>,
    step_of: impl Fn(&str) -> Option<usize>,
) -> Result<(), LogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            if step > 0 {
                tracing::warn!(
                    "{}: {e}; the log starts again at step {}, without the steps before",
                    path.display(),
                    step + 1
                );
            }
            return Ok(());
        }
    };
    let mut unreadable = 0;
    let kept: String = text
        .lines()
        .enumerate()
        .filter(|&(index, line)| {
            if index == 0 && header.is_some_and(|start| line.starts_with(start)) {
                return true;
            }
            match step_of(line) {
                Some(line_step) => line_step <= step,
                None => {
                    unreadable += 1;
                    false
                }
            }
        })
        .flat_map(|(_, line)| [line, "\n"])
        .collect();
    if unreadable > 0 {
        tracing::warn!(
            "{}: {unreadable} unreadable line(s) dropped (cut short by the interruption, or damaged)",
            path.display()
        );
    }
    if kept.len() != text.len() {
        crate::io_util::write_atomic(path, kept.as_bytes()).map_err(|e| LogError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: usize) -> IterationRecord {
        IterationRecord {
            step,
            lr: 0.01,
            elapsed_s: step as f64,
            iteration_s: 1.0,
            scalars: vec![
                ("loss/total".into(), 0.5 / step as f64),
                ("weight/consistency".into(), f64::NAN),
            ],
        }
    }

    #[test]
    fn a_term_that_starts_later_widens_the_csv_and_keeps_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        let mut log = TrainingLog::open(&jsonl, &csv, 0).unwrap();
        log.iteration(&record(1)).unwrap();
        let mut later = record(2);
        later.scalars.push(("loss/sam".into(), 0.125));
        log.iteration(&later).unwrap();
        log.iteration(&record(3)).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "step,kind,lr,elapsed_s,iteration_s,loss/total,weight/consistency,loss/sam",
                "1,iteration,0.01,1.000,1.000,0.5,NaN,",
                "2,iteration,0.01,2.000,1.000,0.25,NaN,0.125",
                "3,iteration,0.01,3.000,1.000,0.16666666666666666,NaN,",
            ]
        );
        // A resumed log keeps the widened header.
        let mut log = TrainingLog::open(&jsonl, &csv, 3).unwrap();
        log.iteration(&later).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text.lines().last(),
            Some("2,iteration,0.01,2.000,1.000,0.25,NaN,0.125")
        );
    }

    #[test]
    fn logs_are_written_and_cut_back_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        let mut log = TrainingLog::open(&jsonl, &csv, 0).unwrap();
        for step in 1..=4 {
            log.iteration(&record(step)).unwrap();
        }
        log.validation(&ValidationRecord {
            step: 4,
            dice: 0.7,
            dice_per_class: vec![0.7],
            cases: 2,
            seconds: 3.0,
            sam_dice: Some(0.5),
        })
        .unwrap();
        log.iteration(&record(5)).unwrap();
        drop(log);

        let csv_text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = csv_text.lines().collect();
        assert_eq!(
            lines,
            [
                "step,kind,lr,elapsed_s,iteration_s,loss/total,weight/consistency,dice,dice/1,validation_cases,validation_s,sam_dice",
                "1,iteration,0.01,1.000,1.000,0.5,NaN,,,,,",
                "2,iteration,0.01,2.000,1.000,0.25,NaN,,,,,",
                "3,iteration,0.01,3.000,1.000,0.16666666666666666,NaN,,,,,",
                "4,iteration,0.01,4.000,1.000,0.125,NaN,,,,,",
                "4,validation,,,,,,0.7,0.7,2,3.000,0.5",
                "5,iteration,0.01,5.000,1.000,0.1,NaN,,,,,",
            ]
        );
        let first: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(&jsonl)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first["kind"], "iteration");
        assert_eq!(first["loss/total"], 0.5);
        assert!(first["weight/consistency"].is_null());

        // Resume from a checkpoint written after step 3: steps 4, 5 and the validation go.
        let mut log = TrainingLog::open(&jsonl, &csv, 3).unwrap();
        assert_eq!(elapsed_at(&jsonl, 3), 3.0);
        log.iteration(&record(4)).unwrap();
        let csv_text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(csv_text.lines().count(), 5, "{csv_text}");
        assert_eq!(
            csv_text.lines().filter(|l| l.starts_with("step")).count(),
            1
        );
        let kinds: Vec<String> = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(kinds, ["iteration"; 4]);
    }

    /// An interruption can cut the last line short, and a log can be damaged by hand: unreadable
    /// lines go on resume instead of failing the report after the whole run has trained.
    #[test]
    fn unreadable_lines_are_dropped_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        let mut log = TrainingLog::open(&jsonl, &csv, 0).unwrap();
        for step in 1..=3 {
            log.iteration(&record(step)).unwrap();
        }
        drop(log);
        let damage = |path: &Path, junk: &str| {
            let mut text = std::fs::read_to_string(path).unwrap();
            text.insert_str(text.find('\n').unwrap() + 1, "garbage\n");
            text.push_str(junk);
            std::fs::write(path, text).unwrap();
        };
        damage(&jsonl, "{\"kind\":\"iteration\",\"st");
        damage(&csv, "4,iterat");
        let mut log = TrainingLog::open(&jsonl, &csv, 3).unwrap();
        log.iteration(&record(4)).unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [1, 2, 3, 4]);
        let csv_text = std::fs::read_to_string(&csv).unwrap();
        let firsts: Vec<&str> = csv_text
            .lines()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(firsts, ["step", "1", "2", "3", "4"], "{csv_text}");
    }

    #[test]
    fn validation_rows_survive_a_resume_once_and_old_logs_gain_the_kind_column() {
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("log.jsonl"), dir.path().join("log.csv"));
        // A log.csv of the format without validation rows or kind column.
        std::fs::write(
            &csv,
            "step,lr,elapsed_s,iteration_s,loss/total,weight/consistency\n1,0.01,1.000,1.000,0.5,NaN\n2,0.01,2.000,1.000,0.25,NaN\n",
        )
        .unwrap();
        let validation = ValidationRecord {
            step: 2,
            dice: 0.25,
            dice_per_class: vec![0.5, 0.0],
            cases: 1,
            seconds: 0.5,
            sam_dice: None,
        };
        let mut log = TrainingLog::open(&jsonl, &csv, 2).unwrap();
        log.validation(&validation).unwrap();
        log.iteration(&record(3)).unwrap();
        drop(log);
        // Killed after step 3, resumed from the checkpoint of step 2: the validation of step 2
        // stays, once.
        let mut log = TrainingLog::open(&jsonl, &csv, 2).unwrap();
        log.iteration(&record(3)).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "step,lr,elapsed_s,iteration_s,loss/total,weight/consistency,kind,dice,dice/1,dice/2,validation_cases,validation_s",
                "1,0.01,1.000,1.000,0.5,NaN,,,,,,",
                "2,0.01,2.000,1.000,0.25,NaN,,,,,,",
                "2,,,,,,validation,0.25,0.5,0,1,0.500",
                "3,0.01,3.000,1.000,0.16666666666666666,NaN,iteration,,,,,",
            ]
        );
    }
}
