//! The `semisam` command-line tool.

mod cli;

fn main() -> std::process::ExitCode {
    keep_large_allocations_mapped();
    stop_quietly_when_the_reader_leaves();
    cli::run()
}

/// Rust ignores SIGPIPE, so a table printed into `semisam inspect DATA | head` would panic at
/// the first write after `head` exits. Restoring the default ends the process quietly there, as
/// other command-line tools do; files are written atomically, so none is left half-written.
fn stop_quietly_when_the_reader_leaves() {
    #[cfg(unix)]
    // SAFETY: resets one signal's disposition to the default; called before any other thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// glibc serves blocks above a dynamic threshold (from 128 KiB) with fresh `mmap`s and unmaps
/// them on free, so every large tensor page-faults its memory in again on each use: 5 800 faults
/// and about a fifth of the CPU time per LiteMedSAM decode, and a quarter of a width-16 V-Net
/// training step, whose full-resolution activations (50 MB and more) lie above even glibc's
/// 32 MiB cap on that threshold. Serving every block from the heap, and trimming it only past
/// 256 MiB of free top memory, reuses that memory instead (measured in docs/results.md, Cost).
fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
