//! `covnet shell`: a root shell into a machine of a running `covnet vms`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use covnet_runner::run::shell_proxy::{
    default_run_link, ShellClient, ShellProxyError, SOCKET_SUFFIX,
};

/// Arguments of `covnet shell`.
#[derive(Args, Debug)]
pub struct ShellArgs {
    /// The machine's name from the spec.
    pub machine: String,
    /// Run directory of the `covnet vms` to connect to (default: the most
    /// recently started one).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Run this one command, print its output and exit with its status.
    #[arg(short = 'c', long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// Time limit of each command, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
}

/// Runs `covnet shell`.
pub fn shell(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let run = args.run.clone().unwrap_or_else(default_run_link);
    let socket = run.join(format!("{}{SOCKET_SUFFIX}", args.machine));
    if !socket.exists() {
        let known = machines_in(&run);
        if known.is_empty() {
            anyhow::bail!(
                "no running `covnet vms` found in {}\n  (hint: start one with `covnet vms SPEC`, or pass its run directory with --run)",
                run.display()
            );
        }
        anyhow::bail!(
            "no machine `{}` in {} (machines: {})",
            args.machine,
            run.display(),
            known.join(", ")
        );
    }
    let mut client = ShellClient::connect(&socket)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    if let Some(cmd) = &args.command {
        let r = client.run(cmd, timeout)?;
        write_all(&r.stdout, &r.stderr)?;
        return Ok(ExitCode::from(u8::try_from(r.status).unwrap_or(1)));
    }

    eprintln!(
        "covnet: root shell on `{}` (each line runs in a fresh shell; `cd` is kept; no terminal programs; exit with `exit` or Ctrl-D)",
        args.machine
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut last = 0;
    loop {
        eprint!("root@{}:{}# ", args.machine, client.cwd());
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if lines
            .read_line(&mut line)
            .context("failed to read standard input")?
            == 0
        {
            eprintln!();
            break;
        }
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        if cmd == "exit" || cmd == "logout" {
            break;
        }
        match client.run(cmd, timeout) {
            Ok(r) => {
                write_all(&r.stdout, &r.stderr)?;
                last = r.status;
            }
            Err(ShellProxyError::Remote(e)) => {
                eprintln!("error: {e}");
                last = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ExitCode::from(u8::try_from(last).unwrap_or(1)))
}

fn write_all(stdout: &[u8], stderr: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(stdout)?;
    out.flush()?;
    let mut err = std::io::stderr().lock();
    err.write_all(stderr)?;
    err.flush()?;
    Ok(())
}

fn machines_in(run: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(SOCKET_SUFFIX))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}
