//! `covnet collect`: pull a machine's gcov data into a capture directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use covnet_collector::{Collector, LocalShell, Shell, SshShell};

/// Arguments of `covnet collect`.
#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// Collect from a remote machine through `ssh HOST sh`.
    #[arg(long, value_name = "HOST", conflicts_with = "local")]
    pub ssh: Option<String>,
    /// An extra argument for `ssh`, before the host (repeatable):
    /// `--ssh-arg=-p --ssh-arg=2222 --ssh-arg=-iKEY`.
    #[arg(
        long = "ssh-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "ssh"
    )]
    pub ssh_args: Vec<std::ffi::OsString>,
    /// Collect from this machine.
    #[arg(long)]
    pub local: bool,
    /// The machine's `GCOV_PREFIX`: `.gcda` files below it mirror the build
    /// paths. Without it, the `.gcda` files are looked for next to the objects
    /// in `--build`.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<String>,
    /// The build directory (holding the `.gcno` files) as the machine sees it.
    #[arg(long, value_name = "DIR")]
    pub build: Option<String>,
    /// Capture directory to write (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Delete the machine's `.gcda` files after a successful pull.
    #[arg(long)]
    pub reset: bool,
    /// Before pulling, stop the processes named by these pid files (a shell
    /// glob) with SIGTERM so gcov writes their data.
    #[arg(long, value_name = "GLOB")]
    pub flush: Option<String>,
    /// Longest time any one command on the machine may take.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs `covnet collect`.
pub fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let shell: Box<dyn Shell> = match (&args.ssh, args.local) {
        (Some(host), _) => Box::new(SshShell::with_options(host, &args.ssh_args)),
        (None, true) => Box::new(LocalShell::new()),
        (None, false) => bail!("say where to collect from\n(hint: pass --ssh HOST or --local)"),
    };
    // Captures always mirror absolute build paths below the output directory,
    // whichever way the machine stored them.
    let (root, dest) = match (&args.prefix, &args.build) {
        (Some(prefix), _) => (prefix.clone(), args.output.clone()),
        (None, Some(build)) => {
            if !build.starts_with('/') {
                bail!("--build must be an absolute path as the machine sees it: `{build}`");
            }
            (build.clone(), args.output.join(Path::new(build.trim_start_matches('/'))))
        }
        (None, None) => bail!(
            "say where the .gcda files are\n(hint: pass --prefix DIR (the machine's GCOV_PREFIX) or --build DIR)"
        ),
    };
    let collector = Collector::new(&*shell, &root, args.timeout);
    let mut status = ExitCode::SUCCESS;
    if let Some(glob) = &args.flush {
        let report = collector
            .flush(glob, Duration::from_secs(10))
            .context("failed to flush coverage")?;
        for name in &report.survivors {
            eprintln!(
                "warning: {}: `{name}` did not exit after SIGTERM; its coverage is missing",
                shell.name()
            );
            status = ExitCode::from(super::exit::PARTIAL);
        }
    }
    std::fs::create_dir_all(&dest)
        .with_context(|| format!("failed to create `{}`", dest.display()))?;
    let pulled = collector
        .pull(&dest)
        .context("failed to collect coverage")?;
    if args.reset {
        collector.reset().context("failed to reset coverage")?;
    }
    eprintln!(
        "{}: pulled {} .gcda files ({} bytes) into {}",
        shell.name(),
        pulled.files.len(),
        pulled.bytes,
        args.output.display()
    );
    Ok(status)
}
