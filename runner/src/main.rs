//! `covnet`: run tests on networks of machines and report their combined
//! code coverage. A thin CLI over the covnet library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli {
    pub mod blindspots;
    pub mod collect;
    pub mod coverage_opts;
    pub mod diff_opts;
    pub mod exit;
    pub mod format_opts;
    pub mod markers;
    pub mod merge;
    pub mod progress;
    pub mod report;
    pub mod run;
    pub mod shell;
    pub mod suite;
    pub mod tty;
    pub mod vms;
}

use cli::exit;

/// mimalloc: the report's model is millions of small vectors.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the `mi_option_e` enum of the mimalloc that
/// the locked libmimalloc-sys builds (v3; its Rust bindings lack the name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Run tests on networks of VMs and report the code coverage of all machines together.
#[derive(Parser, Debug)]
#[command(name = "covnet", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands (the ones with many options boxed: clap fills them
/// once, and the enum stays small).
#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a spec's network headless, run its test script, report (exit 0 only if it passed).
    Run(Box<cli::run::RunArgs>),
    /// Start a spec's network for interactive use until Ctrl-C.
    Vms(cli::vms::VmsArgs),
    /// Open a root shell into a machine of a running `covnet vms`.
    Shell(cli::shell::ShellArgs),
    /// Merge gcov captures and lcov tracefiles into one lcov tracefile.
    Merge(Box<cli::merge::MergeArgs>),
    /// Print lines/functions/branches hit and total of a tracefile.
    Summary(cli::merge::SummaryArgs),
    /// Pull a machine's gcov data (local or over ssh) into a capture directory.
    Collect(cli::collect::CollectArgs),
    /// Write HTML, lcov, Cobertura, JSON and Markdown reports and check thresholds.
    Report(Box<cli::report::ReportArgs>),
    /// List the source files and functions of ELF files (from their DWARF) that a coverage does not cover.
    Blindspots(cli::blindspots::BlindspotsArgs),
}

fn main() -> ExitCode {
    // Never hand freed memory back to the OS: covnet is short-lived, and
    // memory purged 10 ms after a free (mimalloc's default) is faulted in
    // and zeroed again on the next allocation (on the report corpus: 1,800
    // page faults instead of 550, 0.6 s more CPU time).
    // SAFETY: sets one integer option of the allocator; no thread is
    // running yet and the option is valid for the pinned mimalloc.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // No transparent huge pages for covnet itself: mimalloc reserved its
    // arena with MADV_HUGEPAGE before main, and then every thread's heap
    // touches whole 2 MiB pages. A run of 250 namespace machines (a
    // thousand threads: relays, tty bridges, console readers) peaked at
    // 1.07 GiB with them and 217 MiB without; the report corpus is no
    // slower. Children get THP back before they exec (process.rs,
    // namespace/ns/child.rs): QEMU's guest RAM keeps its huge pages.
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument (the rest are
    // ignored) and only changes this process's memory policy; failure
    // (an old kernel) leaves THP as it was.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    match run() {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The library's diagnostics from outside a run's event stream (a
    // process left running, a stale run directory removed).
    let _diagnostics = covnet_runner::diag::set_sink(|d| eprintln!("covnet: {d}"));
    match cli.command {
        Command::Run(args) => cli::run::run(*args),
        Command::Vms(args) => cli::vms::vms(args),
        Command::Shell(args) => cli::shell::shell(args),
        Command::Merge(args) => cli::merge::merge(*args),
        Command::Summary(args) => cli::merge::summary(args),
        Command::Collect(args) => cli::collect::collect(args),
        Command::Report(args) => cli::report::report(*args),
        Command::Blindspots(args) => cli::blindspots::blindspots(args),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
