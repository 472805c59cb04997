//! The run folder: one per training run, everything the run produces.
//!
//! ```text
//! runs/<name>/
//!   run.json         semisam version and run-folder format (checked before anything is reused)
//!   config.toml      the resolved configuration
//!   splits.json      which cases were labeled / unlabeled / validation
//!   log.jsonl        one record per iteration and per validation
//!   log.csv          one row per iteration
//!   checkpoints/     last.ckpt, best.ckpt, final.ckpt
//!   predictions/     validation predictions of the final model
//!   metrics/         per-case and summary metrics
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped whenever the folder layout or a file format inside it changes incompatibly.
pub const RUN_FORMAT: u32 = 1;

/// Problems with the run folder.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "run folder {0} already exists: pass --overwrite to replace it or --resume to continue it"
    )]
    Exists(PathBuf),
    #[error("{0} is not a semisam run folder (no run.json)")]
    NotARun(PathBuf),
    #[error(
        "run folder {path} was written by semisam {version} (run format {found}); this semisam {current} reads run format {RUN_FORMAT} only: start a new run"
    )]
    Incompatible {
        path: PathBuf,
        version: String,
        found: u32,
        current: &'static str,
    },
    #[error("{path}: unreadable run.json: {message}")]
    BadRunInfo { path: PathBuf, message: String },
    #[error("invalid run name {0:?}: use letters, digits, '-', '_' and '.' only")]
    BadName(String),
}

/// Contents of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub semisam_version: String,
    pub run_format: u32,
    pub name: String,
    /// UTC creation time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
}

/// An open run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Create `runs_root/name`, refusing an existing folder unless `overwrite`.
    pub fn create(runs_root: &Path, name: &str, overwrite: bool) -> Result<Self, RunDirError> {
        check_name(name)?;
        let root = runs_root.join(name);
        if root.exists() {
            if !overwrite {
                return Err(RunDirError::Exists(root));
            }
            std::fs::remove_dir_all(&root).map_err(|source| RunDirError::Io {
                path: root.clone(),
                source,
            })?;
        }
        let run = RunDir { root };
        for dir in [
            run.root.clone(),
            run.checkpoints_dir(),
            run.predictions_dir(),
            run.metrics_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| RunDirError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let info = RunInfo {
            semisam_version: env!("CARGO_PKG_VERSION").to_owned(),
            run_format: RUN_FORMAT,
            name: name.to_owned(),
            created: utc_timestamp(std::time::SystemTime::now(), true),
        };
        let json = serde_json::to_vec_pretty(&info).expect("plain data");
        crate::io_util::write_atomic(&run.root.join("run.json"), &json).map_err(|e| {
            RunDirError::Io {
                path: e.path,
                source: e.source,
            }
        })?;
        Ok(run)
    }

    /// Open an existing run folder after checking that this semisam can continue it.
    pub fn open(root: &Path) -> Result<(Self, RunInfo), RunDirError> {
        let path = root.join("run.json");
        if !path.is_file() {
            return Err(RunDirError::NotARun(root.to_owned()));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| RunDirError::Io {
            path: path.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| RunDirError::BadRunInfo {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let found = value
            .get("run_format")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != RUN_FORMAT {
            let version = value
                .get("semisam_version")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_owned();
            return Err(RunDirError::Incompatible {
                path: root.to_owned(),
                version,
                found,
                current: env!("CARGO_PKG_VERSION"),
            });
        }
        let info: RunInfo = serde_json::from_value(value).map_err(|e| RunDirError::BadRunInfo {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok((
            RunDir {
                root: root.to_owned(),
            },
            info,
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn splits_path(&self) -> PathBuf {
        self.root.join("splits.json")
    }
    pub fn log_jsonl_path(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }
    pub fn log_csv_path(&self) -> PathBuf {
        self.root.join("log.csv")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/<name>.ckpt` (`last`, `best`, `final`).
    pub fn checkpoint_path(&self, name: &str) -> PathBuf {
        self.checkpoints_dir().join(format!("{name}.ckpt"))
    }
    pub fn predictions_dir(&self) -> PathBuf {
        self.root.join("predictions")
    }
    pub fn metrics_dir(&self) -> PathBuf {
        self.root.join("metrics")
    }
}

/// `<config stem>-YYYYMMDD-HHMMSS` (UTC).
pub fn default_run_name(config_path: &Path, now: std::time::SystemTime) -> String {
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}-{}", utc_timestamp(now, false))
}

fn check_name(name: &str) -> Result<(), RunDirError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RunDirError::BadName(name.to_owned()))
    }
}

/// UTC time as `2026-11-27T12:00:00Z` (`iso`) or `20261127-120000`.
pub fn utc_timestamp(time: std::time::SystemTime, iso: bool) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    if iso {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{y:04}{mo:02}{d:02}-{h:02}{m:02}{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_782_896); // 2026-11-27 12:34:56 UTC
        assert_eq!(utc_timestamp(t, true), "2026-11-27T12:34:56Z");
        assert_eq!(
            utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400), false),
            "20000229-000000"
        );
        assert_eq!(
            default_run_name(Path::new("configs/la cpu.toml"), t),
            "la_cpu-20261127-123456"
        );
    }

    #[test]
    fn existing_run_needs_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "a", false).unwrap();
        assert!(
            run.checkpoints_dir().is_dir()
                && run.predictions_dir().is_dir()
                && run.metrics_dir().is_dir()
        );
        std::fs::write(run.root().join("marker"), b"x").unwrap();
        let err = RunDir::create(dir.path(), "a", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("run folder ")
                && err.ends_with(
                    "already exists: pass --overwrite to replace it or --resume to continue it"
                ),
            "{err}"
        );
        let run = RunDir::create(dir.path(), "a", true).unwrap();
        assert!(!run.root().join("marker").exists());
        let (_, info) = RunDir::open(run.root()).unwrap();
        assert_eq!(info.run_format, RUN_FORMAT);
        assert_eq!(info.name, "a");
        assert!(matches!(
            RunDir::create(dir.path(), "../x", false),
            Err(RunDirError::BadName(_))
        ));
    }

    #[test]
    fn incompatible_or_foreign_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunDir::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("is not a semisam run folder (no run.json)"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("run.json"),
            br#"{"semisam_version":"0.0.1","run_format":0,"name":"x","created":""}"#,
        )
        .unwrap();
        let err = RunDir::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("was written by semisam 0.0.1 (run format 0); this semisam"),
            "{err}"
        );
        assert!(
            err.ends_with("reads run format 1 only: start a new run"),
            "{err}"
        );
    }
}
