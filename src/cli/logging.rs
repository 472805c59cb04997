//! Where the messages of the library and the commands go: `tracing` events are printed on stderr
//! (above any progress bar) and, for a training run, appended to the run folder's `train.log`.
//!
//! The console shows information, warnings and errors (`--quiet`: warnings and errors only;
//! `--verbose`: debug messages too) as plain lines, a warning or an error prefixed as such.
//! `train.log` keeps every information line whatever the console shows, with its time and level,
//! so the record of a run does not depend on how it was started. Data that scripts read (tables,
//! JSON, paths) is printed on stdout by the commands themselves, never through here.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// How much the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Warnings and errors; no progress bars.
    Quiet,
    Normal,
    /// Debug messages as well.
    Verbose,
}

static SHOWS_INFO: AtomicBool = AtomicBool::new(true);

/// Whether information lines (and progress bars) reach the console.
pub fn shows_info() -> bool {
    SHOWS_INFO.load(Ordering::Relaxed)
}

/// Install the console and run-log outputs for this process.
pub fn init(verbosity: Verbosity) {
    let console_level = match verbosity {
        Verbosity::Quiet => LevelFilter::WARN,
        Verbosity::Normal => LevelFilter::INFO,
        Verbosity::Verbose => LevelFilter::DEBUG,
    };
    let file_level = console_level.max(LevelFilter::INFO);
    SHOWS_INFO.store(verbosity != Verbosity::Quiet, Ordering::Relaxed);
    // Only semisam's own events: dependencies' diagnostics are not the user's business.
    let ours = |level| Targets::new().with_target("semisam", level);
    let console = tracing_subscriber::fmt::layer()
        .event_format(ConsoleFormat)
        .with_writer(|| Console)
        .with_filter(ours(console_level));
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(|| RunLogWriter)
        .with_filter(ours(file_level));
    // A second initialisation (never in the binary) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .try_init();
}

/// Plain lines: the message and its fields, a level prefix on anything but information.
struct ConsoleFormat;

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        write!(writer, "{prefix}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// stderr, written with the progress bars cleared (each event arrives as one write).
struct Console;

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        semisam::progress::suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Where the run log goes: nowhere until a command asks for it, then a buffer until the run
/// folder exists (its checks come first), then `train.log`.
enum RunLog {
    Off,
    Buffered(Vec<u8>),
    File(File),
}

static RUN_LOG: Mutex<RunLog> = Mutex::new(RunLog::Off);

fn run_log() -> std::sync::MutexGuard<'static, RunLog> {
    RUN_LOG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keep the messages from now on for the run log that [`write_run_log`] will open.
pub fn start_run_log() {
    let mut log = run_log();
    if matches!(*log, RunLog::Off) {
        *log = RunLog::Buffered(Vec::new());
    }
}

/// Append the messages kept so far, and every later one, to `path`.
pub fn write_run_log(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut log = run_log();
    if let RunLog::Buffered(kept) = &*log {
        file.write_all(kept)?;
    }
    *log = RunLog::File(file);
    Ok(())
}

#[derive(Clone, Copy)]
struct RunLogWriter;

impl Write for RunLogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *run_log() {
            RunLog::Off => {}
            RunLog::Buffered(kept) => kept.extend_from_slice(buf),
            // A failing log file must not stop training; the console still has the line.
            RunLog::File(file) => {
                let _ = file.write_all(buf);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if let RunLog::File(file) = &mut *run_log() {
            file.flush()?;
        }
        Ok(())
    }
}
