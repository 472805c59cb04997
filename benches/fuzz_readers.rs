//! Timed fuzzing of every file reader on the stable toolchain.
//!
//! `cargo bench --bench fuzz_readers -- [--seconds N] [--reader NAME]... [--seed S] [--out DIR]
//! [--max-allocation-mib M]`
//!
//! Each reader gets N seconds (default 60) of mutated inputs in a worker process that runs
//! under a bound on any single allocation (default 1 GiB). A worker that aborts (an allocation over the
//! bound, a stack overflow) is restarted for the time left; its input is saved under
//! `DIR/crashes/`, as is every input that made a reader panic. The table at the end gives
//! executions, rejected inputs, the distinct kinds of error, panics and aborts per reader.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use semisam::fuzzing::{self, BoundedAllocator, SeedSet, Tally, alloc_bound};

const ALLOCATION_BOUND: usize = 1 << 30;

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator::new(ALLOCATION_BOUND);

/// Exit code of a worker that could not start fuzzing (not a finding).
const SETUP_FAILED: i32 = 2;
/// How often a worker reports its counts to the supervisor.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

struct Args {
    seconds: u64,
    /// Bound on any single allocation, in MiB.
    max_allocation_mib: usize,
    readers: Vec<String>,
    seed: u64,
    out: PathBuf,
    /// Set in worker processes: the reader to fuzz.
    worker: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        max_allocation_mib: ALLOCATION_BOUND >> 20,
        readers: Vec::new(),
        seed: 1,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz_readers"),
        worker: None,
    };
    let mut items = std::env::args().skip(1);
    while let Some(flag) = items.next() {
        let mut value = |name: &str| items.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--reader" => args.readers.push(value("--reader")?),
            "--max-allocation-mib" => {
                args.max_allocation_mib = value("--max-allocation-mib")?
                    .parse()
                    .map_err(|e| format!("--max-allocation-mib: {e}"))?
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--worker" => args.worker = Some(value("--worker")?),
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Counts a worker prints, one line each.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    executions: u64,
    accepted: u64,
    rejected: u64,
    error_kinds: u64,
    panics: u64,
    largest: u64,
}

impl Counts {
    fn of(tally: &Tally) -> Self {
        Counts {
            executions: tally.executions,
            accepted: tally.accepted,
            rejected: tally.rejected,
            error_kinds: tally.error_kinds.len() as u64,
            panics: tally.panics.len() as u64,
            largest: alloc_bound::largest_allocation() as u64,
        }
    }

    fn line(&self) -> String {
        format!(
            "progress {} {} {} {} {} {}",
            self.executions,
            self.accepted,
            self.rejected,
            self.error_kinds,
            self.panics,
            self.largest
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let numbers: Vec<u64> = line
            .strip_prefix("progress ")?
            .split(' ')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        let [executions, accepted, rejected, error_kinds, panics, largest] = numbers[..] else {
            return None;
        };
        Some(Counts {
            executions,
            accepted,
            rejected,
            error_kinds,
            panics,
            largest,
        })
    }
}

fn crash_dir(out: &Path, reader: &str) -> PathBuf {
    out.join("crashes").join(reader)
}

fn worker(args: &Args, reader: &str) -> Result<(), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = fuzzing::targets(repo, &args.out.join("work"), SeedSet::Campaign)
        .map_err(|e| e.to_string())?;
    let target = targets
        .iter()
        .find(|t| t.name == reader)
        .ok_or(format!("no reader {reader}"))?;
    let crashes = crash_dir(&args.out, reader);
    std::fs::create_dir_all(&crashes).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut last_report = Instant::now();
    let mut saved_panics = 0;
    let mut stdout = std::io::stdout();
    let tally = fuzzing::campaign(target, args.seed, deadline, |tally| {
        for (message, input) in &tally.panics[saved_panics..] {
            let stem = crashes.join(format!("panic-{}-{saved_panics}", args.seed));
            let _ = std::fs::write(stem.with_extension("input"), input);
            let _ = std::fs::write(stem.with_extension("txt"), message);
            saved_panics += 1;
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            let _ = writeln!(stdout, "{}", Counts::of(tally).line());
            let _ = stdout.flush();
            last_report = Instant::now();
        }
    })
    .map_err(|e| e.to_string())?;
    println!("{}", Counts::of(&tally).line());
    Ok(())
}

/// One reader's totals over all of its workers.
#[derive(Debug, Default)]
struct ReaderReport {
    counts: Counts,
    aborts: u64,
    abort_messages: Vec<String>,
    seconds: f64,
}

fn supervise(args: &Args) -> Result<BTreeMap<String, ReaderReport>, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = fuzzing::targets(repo, &args.out.join("work"), SeedSet::Campaign)
        .map_err(|e| e.to_string())?;
    let readers: Vec<String> = if args.readers.is_empty() {
        targets.iter().map(|t| t.name.to_string()).collect()
    } else {
        args.readers.clone()
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut reports = BTreeMap::new();
    for reader in readers {
        let target = targets
            .iter()
            .find(|t| t.name == reader)
            .ok_or(format!("no reader {reader}"))?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(args.seconds);
        let mut report = ReaderReport::default();
        let mut run = 0;
        while deadline.saturating_duration_since(Instant::now()) >= Duration::from_secs(1) {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let output = Command::new(&exe)
                .arg("--worker")
                .arg(&reader)
                .arg("--seconds")
                .arg(left.to_string())
                .arg("--seed")
                .arg((args.seed + run).to_string())
                .arg("--out")
                .arg(&args.out)
                .arg("--max-allocation-mib")
                .arg(args.max_allocation_mib.to_string())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let last = stdout
                .lines()
                .rev()
                .find_map(Counts::parse)
                .unwrap_or_default();
            let c = &mut report.counts;
            c.executions += last.executions;
            c.accepted += last.accepted;
            c.rejected += last.rejected;
            c.error_kinds = c.error_kinds.max(last.error_kinds);
            c.panics += last.panics;
            c.largest = c.largest.max(last.largest);
            if output.status.code() == Some(SETUP_FAILED) {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            if !output.status.success() {
                report.aborts += 1;
                let stderr = String::from_utf8_lossy(&output.stderr);
                let message = stderr.lines().last().unwrap_or("").to_string();
                let crashes = crash_dir(&args.out, &reader);
                std::fs::create_dir_all(&crashes).map_err(|e| e.to_string())?;
                let stem = crashes.join(format!("abort-{}", args.seed + run));
                let _ = std::fs::copy(&target.input_path, stem.with_extension("input"));
                let _ = std::fs::write(
                    stem.with_extension("txt"),
                    format!("{}\n{stderr}", output.status),
                );
                eprintln!("{reader}: worker ended with {}: {message}", output.status);
                report.abort_messages.push(message);
            }
            run += 1;
        }
        report.seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "{reader}: {} executions, {} panics, {} aborts",
            report.counts.executions, report.counts.panics, report.aborts
        );
        reports.insert(reader, report);
    }
    Ok(reports)
}

fn table(reports: &BTreeMap<String, ReaderReport>) -> String {
    let mut text = String::from(
        "| reader | executions | per second | accepted | rejected | error kinds | panics | aborts | largest allocation |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (reader, r) in reports {
        let c = &r.counts;
        text.push_str(&format!(
            "| {reader} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} MiB |\n",
            c.executions,
            c.executions as f64 / r.seconds.max(1e-9),
            c.accepted,
            c.rejected,
            c.error_kinds,
            c.panics,
            r.aborts,
            c.largest as f64 / (1 << 20) as f64,
        ));
    }
    text
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fuzz_readers: {e}");
            std::process::exit(2);
        }
    };
    ALLOCATOR.set_limit(args.max_allocation_mib << 20);
    if let Some(reader) = &args.worker {
        if let Err(e) = worker(&args, reader) {
            eprintln!("fuzz_readers worker {reader}: {e}");
            std::process::exit(SETUP_FAILED);
        }
        return;
    }
    match supervise(&args) {
        Ok(reports) => {
            let table = table(&reports);
            println!("{table}");
            let _ = std::fs::write(args.out.join("summary.md"), &table);
            let failures: u64 = reports.values().map(|r| r.counts.panics + r.aborts).sum();
            if failures > 0 {
                eprintln!(
                    "{failures} failure(s); inputs in {}",
                    args.out.join("crashes").display()
                );
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("fuzz_readers: {e}");
            std::process::exit(2);
        }
    }
}
