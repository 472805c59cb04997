//! The run folder: one per training run, everything the run produces.
//!
//! ```text
//! runs/<name>/
//!   run.json         semisam version and run-folder format (checked before anything is reused),
//!                    command line, git commit, backend, CPU features and kernel path
//!   config.toml      the resolved configuration
//!   splits.json      which cases were labeled / unlabeled / validation
//!   log.jsonl        one record per iteration and per validation
//!   log.csv          the same as a table (a `kind` column tells the two apart)
//!   train.log        the console output of every `train` of the run (appended on resume)
//!   checkpoints/     last.ckpt, best.ckpt, final.ckpt
//!   predictions/     validation predictions of the final model
//!   metrics/         per-case and summary metrics
//! ```
//!
//! A process that writes into a run folder holds an exclusive advisory lock on it (`flock` on
//! the folder itself) for as long as its [`RunDir`] lives. The kernel drops the lock when the
//! process dies, `kill -9` included, so a crashed run never blocks its own `--resume`, while a
//! second writer (the same `--name` twice, `--overwrite` or `--resume` of a live run) is refused.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error(
        "run folder {0} is in use by another running semisam process (it holds the folder's lock); wait for it to finish or stop it first"
    )]
    InUse(PathBuf),
    #[error("run folder {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a semisam run folder (no run.json)")]
    NotARun(PathBuf),
    #[error(
        "{0} exists and is not a semisam run folder (no run.json): --overwrite would delete what it holds, so nothing was changed; choose another --name or --runs-dir"
    )]
    OverwriteNotARun(PathBuf),
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

/// Contents of `run.json`. The fields after `created` describe how the run was made; folders
/// written before they existed read them as unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub semisam_version: String,
    pub run_format: u32,
    pub name: String,
    /// UTC creation time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
    /// The command line that created the run, word by word.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The commit semisam was built from (`SEMISAM_GIT_COMMIT` at build time).
    #[serde(default)]
    pub git_commit: Option<String>,
    /// The burn backend (`flex`, `tch`, `wgpu`, `cuda`).
    #[serde(default)]
    pub backend: Option<String>,
    /// The CPU's vector instruction sets that matter to the kernels.
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// The kernel path of the hand-written layers (`avx512`, `avx2`, `generic`).
    #[serde(default)]
    pub kernels: Option<String>,
}

impl RunInfo {
    /// A new run's information, with the facts of this build and machine.
    fn new(name: String, command: Option<Vec<String>>) -> Self {
        RunInfo {
            semisam_version: env!("CARGO_PKG_VERSION").to_owned(),
            run_format: RUN_FORMAT,
            name,
            created: utc_timestamp(std::time::SystemTime::now(), true),
            command,
            git_commit: option_env!("SEMISAM_GIT_COMMIT")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            backend: Some(crate::backend::name().to_owned()),
            cpu_features: crate::backend::cpu_features()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            // Only flex runs the hand-written layers.
            kernels: (crate::backend::name() == "flex")
                .then(|| crate::ops::selected_kernel_path().name().to_owned()),
        }
    }
}

/// An open run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    /// The folder's exclusive lock, shared by clones; `None` when opened to read only.
    lock: Option<Arc<File>>,
    /// Temporary files of interrupted atomic writes removed when the folder was locked.
    removed_temp_files: Vec<PathBuf>,
}

/// A checked place for a new run folder, nothing written yet: the name is valid and the folder
/// does not exist, or (with `overwrite`) it exists and this process holds its lock, so that no
/// other process can start in it while the new run is being validated.
#[derive(Debug)]
pub struct NewRun {
    root: PathBuf,
    name: String,
    existing: Option<File>,
    command: Option<Vec<String>>,
}

impl NewRun {
    /// Where the run folder will be.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Record `command` (the words of the command line) in `run.json`.
    pub fn with_command(mut self, command: Vec<String>) -> Self {
        self.command = Some(command);
        self
    }

    /// Create the folder (emptying the locked old one for an overwrite) and lock it.
    pub fn create(self) -> Result<RunDir, RunDirError> {
        let lock = match self.existing {
            Some(lock) => {
                empty_folder(&self.root)?;
                lock
            }
            None => {
                if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    crate::io_util::create_folder(parent).map_err(io(parent))?;
                }
                match std::fs::create_dir(&self.root) {
                    Ok(()) => lock_folder(&self.root)?,
                    // Another process created it since it was reserved.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        lock_folder(&self.root)?;
                        return Err(RunDirError::Exists(self.root));
                    }
                    Err(source) => return Err(io(&self.root)(source)),
                }
            }
        };
        let run = RunDir {
            root: self.root,
            lock: Some(Arc::new(lock)),
            removed_temp_files: Vec::new(),
        };
        for dir in [
            run.root.clone(),
            run.checkpoints_dir(),
            run.predictions_dir(),
            run.metrics_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let info = RunInfo::new(self.name, self.command);
        let json = serde_json::to_vec_pretty(&info).expect("plain data");
        crate::io_util::write_atomic(&run.root.join("run.json"), &json).map_err(|e| {
            RunDirError::Io {
                path: e.path,
                source: e.source,
            }
        })?;
        Ok(run)
    }
}

impl RunDir {
    /// Check that a new run `name` can be created in `runs_root` without writing anything: a
    /// valid name, no folder of that name unless `overwrite`, and never a folder in use.
    pub fn reserve(runs_root: &Path, name: &str, overwrite: bool) -> Result<NewRun, RunDirError> {
        check_name(name)?;
        let root = runs_root.join(name);
        let existing = if root.exists() {
            let lock = lock_folder(&root)?;
            if !overwrite {
                return Err(RunDirError::Exists(root));
            }
            // `--overwrite` empties the folder: only ever a run's own (or an empty one), never a
            // folder that a mistyped --runs-dir or --name happens to point at.
            if !root.join("run.json").is_file() && !is_empty_folder(&root)? {
                return Err(RunDirError::OverwriteNotARun(root));
            }
            Some(lock)
        } else {
            None
        };
        Ok(NewRun {
            root,
            name: name.to_owned(),
            existing,
            command: None,
        })
    }

    /// Create `runs_root/name` and lock it, refusing an existing folder unless `overwrite`.
    pub fn create(runs_root: &Path, name: &str, overwrite: bool) -> Result<Self, RunDirError> {
        Self::reserve(runs_root, name, overwrite)?.create()
    }

    /// Open an existing run folder to continue writing it: checked like [`RunDir::open`], then
    /// locked (refused while another process holds it), and the temporary files that a killed
    /// process's atomic writes left behind are removed.
    pub fn open_to_resume(root: &Path) -> Result<(Self, RunInfo), RunDirError> {
        let (mut run, info) = Self::open(root)?;
        run.lock = Some(Arc::new(lock_folder(root)?));
        run.removed_temp_files = remove_temp_files(root)?;
        Ok((run, info))
    }

    /// Open an existing run folder to read it, after checking that this semisam can read it.
    pub fn open(root: &Path) -> Result<(Self, RunInfo), RunDirError> {
        if !root.is_dir() {
            return Err(RunDirError::Missing(root.to_owned()));
        }
        let path = root.join("run.json");
        if !path.is_file() {
            return Err(RunDirError::NotARun(root.to_owned()));
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
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
                lock: None,
                removed_temp_files: Vec::new(),
            },
            info,
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Whether this process holds the folder's lock (created, or opened to resume).
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }
    /// Temporary files of interrupted writes removed by [`RunDir::open_to_resume`].
    pub fn removed_temp_files(&self) -> &[PathBuf] {
        &self.removed_temp_files
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

/// Wraps an I/O error with the path it happened on.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError {
    let path = path.to_owned();
    move |source| RunDirError::Io { path, source }
}

/// Whether `folder` holds nothing at all.
fn is_empty_folder(folder: &Path) -> Result<bool, RunDirError> {
    let io = |source| RunDirError::Io {
        path: folder.to_path_buf(),
        source,
    };
    Ok(std::fs::read_dir(folder).map_err(io)?.next().is_none())
}

/// Lock `root` (a folder) exclusively, without waiting.
fn lock_folder(root: &Path) -> Result<File, RunDirError> {
    let file = File::open(root).map_err(io(root))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(RunDirError::InUse(root.to_owned())),
        Err(TryLockError::Error(source)) => Err(io(root)(source)),
    }
}

/// Remove everything inside `root`, keeping the folder itself (and so the lock held on it).
fn empty_folder(root: &Path) -> Result<(), RunDirError> {
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let path = entry.map_err(io(root))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(&path))?;
    }
    Ok(())
}

/// Remove the temporary files of atomic writes (`.<name>.<pid>.tmp`, see `io_util`) anywhere
/// under `root`. Only safe under the folder's lock: no other process is writing there.
fn remove_temp_files(root: &Path) -> Result<Vec<PathBuf>, RunDirError> {
    let mut removed = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let entry = entry.map_err(io(&folder))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() && crate::io_util::is_temp_file(&path) {
                std::fs::remove_file(&path).map_err(io(&path))?;
                removed.push(path);
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// `<config stem>-` or, for a cross-validation fold, `<config stem>-fold<K>-`: what the default
/// names of the runs of this configuration start with.
pub fn default_run_prefix(config_path: &Path, fold: Option<usize>) -> String {
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
    match fold {
        Some(fold) => format!("{stem}-fold{fold}-"),
        None => format!("{stem}-"),
    }
}

/// `<prefix>YYYYMMDD-HHMMSS` (UTC), the prefix from [`default_run_prefix`]: the folds of one
/// configuration do not collide.
pub fn default_run_name(
    config_path: &Path,
    fold: Option<usize>,
    now: std::time::SystemTime,
) -> String {
    format!(
        "{}{}",
        default_run_prefix(config_path, fold),
        utc_timestamp(now, false)
    )
}

/// Whether `name` is `prefix` followed by a start time only, so that the runs of `la_cpu-` are
/// not confused with those of `la_cpu-fold2-`.
pub fn is_default_run_name(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|time| {
        time.len() == 15
            && time
                .char_indices()
                .all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() })
    })
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
            default_run_name(Path::new("configs/la cpu.toml"), None, t),
            "la_cpu-20261127-123456"
        );
        assert_eq!(
            default_run_name(Path::new("configs/la_cpu.toml"), Some(2), t),
            "la_cpu-fold2-20261127-123456"
        );
        assert!(is_default_run_name("la_cpu-20261127-123456", "la_cpu-"));
        assert!(!is_default_run_name(
            "la_cpu-fold2-20261127-123456",
            "la_cpu-"
        ));
        assert!(is_default_run_name(
            "la_cpu-fold2-20261127-123456",
            "la_cpu-fold2-"
        ));
        assert!(!is_default_run_name("la_cpu-20261127-12345x", "la_cpu-"));
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
        drop(run);
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
    fn overwrite_empties_only_a_run_folder_or_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        // A user's folder that a mistyped --name points at.
        let precious = dir.path().join("precious");
        std::fs::create_dir_all(precious.join("sub")).unwrap();
        std::fs::write(precious.join("thesis.txt"), b"data").unwrap();
        let err = RunDir::create(dir.path(), "precious", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("precious exists and is not a semisam run folder (no run.json): --overwrite would delete what it holds, so nothing was changed"),
            "{err}"
        );
        assert!(precious.join("thesis.txt").is_file() && precious.join("sub").is_dir());
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(RunDir::create(dir.path(), "empty", true).is_ok());
    }

    #[test]
    fn a_locked_run_folder_refuses_every_other_writer_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "live", false).unwrap();
        assert!(run.is_locked());
        std::fs::write(run.root().join("marker"), b"x").unwrap();
        let in_use = |result: Result<RunDir, RunDirError>| {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("live is in use by another running semisam process"),
                "{err}"
            );
        };
        // A flock belongs to an open file description: a second open in this process conflicts
        // exactly like another process would.
        in_use(RunDir::create(dir.path(), "live", false));
        in_use(RunDir::create(dir.path(), "live", true));
        in_use(RunDir::open_to_resume(run.root()).map(|(r, _)| r));
        assert!(
            run.root().join("marker").is_file(),
            "a refused overwrite deleted files"
        );
        // Reading is not writing: reports may open a live run.
        assert!(!RunDir::open(run.root()).unwrap().0.is_locked());
        let clone = run.clone();
        drop(run);
        in_use(RunDir::open_to_resume(clone.root()).map(|(r, _)| r));
        drop(clone);
        let (resumed, _) = RunDir::open_to_resume(&dir.path().join("live")).unwrap();
        assert!(resumed.is_locked());
    }

    #[test]
    fn resuming_removes_the_temporary_files_of_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path(), "r", false).unwrap();
        let stale = [
            run.checkpoints_dir().join(".last.ckpt.4242.tmp"),
            run.root().join(".log.jsonl.4242.tmp"),
        ];
        for path in &stale {
            std::fs::write(path, b"half a checkpoint").unwrap();
        }
        let kept = [run.checkpoint_path("last"), run.root().join("notes.tmp")];
        for path in &kept {
            std::fs::write(path, b"complete").unwrap();
        }
        drop(run);
        let (run, _) = RunDir::open_to_resume(&dir.path().join("r")).unwrap();
        let mut expected = stale.to_vec();
        expected.sort();
        assert_eq!(run.removed_temp_files(), expected.as_slice());
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(kept.iter().all(|p| p.is_file()));
    }

    #[test]
    fn a_missing_folder_is_named_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let err = RunDir::open(&missing).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("run folder {} does not exist", missing.display())
        );
    }

    #[test]
    fn reserving_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let new_run = RunDir::reserve(&runs, "fresh", false).unwrap();
        assert!(!runs.exists());
        let run = new_run.create().unwrap();
        assert!(run.root().join("run.json").is_file() && run.is_locked());
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
