//! `covnet shell`: a root shell into a machine of a running `covnet vms`.
//!
//! With a terminal on standard input the session is a real terminal: a
//! login shell on a pty in the guest, the host terminal in raw mode (so
//! line editing, full-screen programs and Ctrl-C happen in the guest), the
//! window size sent at the start and on every `SIGWINCH`, and covnet
//! exiting with the shell's status. Without one (or with `-c`) each line
//! runs as a command of its own.

use std::io::{BufRead, Read as _, Write};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use covnet_runner::machine::terminal::{encode_input, naws, Decoder};
use covnet_runner::run::shell_proxy::{
    default_run_link, open_terminal, ShellClient, ShellProxyError, SOCKET_SUFFIX,
};

use super::tty;

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
    if args.command.is_none() && tty::is_tty(libc::STDIN_FILENO) {
        return terminal(&socket, &args.machine);
    }
    let mut client = ShellClient::connect(&socket)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    if let Some(cmd) = &args.command {
        let r = client.run(cmd, timeout)?;
        write_all(&r.stdout, &r.stderr)?;
        return Ok(ExitCode::from(u8::try_from(r.status).unwrap_or(1)));
    }

    eprintln!(
        "covnet: root shell on `{}` (standard input is not a terminal: each line runs in a fresh shell; `cd` is kept; exit with `exit` or end of input)",
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

/// Signals that end the session (the terminal is restored first).
const ENDING_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

/// An interactive terminal session on the machine behind `socket`.
fn terminal(socket: &std::path::Path, machine: &str) -> anyhow::Result<ExitCode> {
    let term = std::env::var("TERM").unwrap_or_default();
    let stream = open_terminal(socket, &term)
        .with_context(|| format!("failed to open a terminal on `{machine}`"))?;
    let mut signals = ENDING_SIGNALS.to_vec();
    signals.push(libc::SIGWINCH);
    let signals = tty::Signals::catch(&signals).context("failed to catch signals")?;
    eprintln!("covnet: terminal on `{machine}`; the session ends when its shell exits");
    let raw = tty::RawMode::enter(libc::STDIN_FILENO)
        .context("failed to put the terminal in raw mode")?;
    let outcome = relay(&stream, &signals);
    drop(raw);
    drop(signals);
    match outcome? {
        End::Exited(status) => Ok(ExitCode::from(
            u8::try_from(status.clamp(0, 255)).unwrap_or(1),
        )),
        End::Signal(sig) => {
            eprintln!("covnet: session on `{machine}` ended by signal {sig}");
            Ok(ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)))
        }
        End::Closed => anyhow::bail!(
            "the terminal session on `{machine}` ended without an exit status (did the machine or `covnet vms` stop?)"
        ),
    }
}

/// How a terminal session ended.
enum End {
    /// The guest shell exited with this status.
    Exited(i32),
    /// covnet got a terminating signal.
    Signal(libc::c_int),
    /// The connection closed first.
    Closed,
}

/// Copies keyboard bytes to the session and session output to the
/// terminal, sends window sizes, until the shell exits.
fn relay(stream: &std::os::unix::net::UnixStream, signals: &tty::Signals) -> anyhow::Result<End> {
    let mut to_guest = stream;
    let mut from_guest = stream;
    let send_size = |mut w: &std::os::unix::net::UnixStream| -> std::io::Result<()> {
        match tty::window_size(libc::STDIN_FILENO) {
            Some((rows, cols)) => w.write_all(&naws(rows, cols)),
            None => Ok(()),
        }
    };
    send_size(stream).context("failed to send the window size")?;
    let mut decoder = Decoder::new();
    let mut stdin_fd = libc::STDIN_FILENO;
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 16 * 1024];
    let mut encoded = Vec::new();
    let mut shown = Vec::new();
    loop {
        let ready = tty::poll_readable(&[stdin_fd, stream.as_raw_fd(), signals.fd()])
            .context("failed to wait for input")?;
        // Signals first, whatever poll said: a resize must reach the guest
        // before keys typed after it (the handler may run after poll).
        for sig in signals.drain() {
            if sig == libc::SIGWINCH {
                send_size(stream).context("failed to send the window size")?;
            } else {
                return Ok(End::Signal(sig));
            }
        }
        if ready.first().copied().unwrap_or(false) {
            let n = stdin
                .read(&mut buf)
                .context("failed to read the terminal")?;
            if n == 0 {
                stdin_fd = -1;
            } else {
                encoded.clear();
                encode_input(buf.get(..n).unwrap_or(&[]), &mut encoded);
                if to_guest.write_all(&encoded).is_err() {
                    return Ok(End::Closed);
                }
            }
        }
        if ready.get(1).copied().unwrap_or(false) {
            let n = from_guest.read(&mut buf).unwrap_or(0);
            shown.clear();
            if n == 0 {
                decoder.finish(&mut shown);
            } else {
                decoder.feed(buf.get(..n).unwrap_or(&[]), &mut shown);
            }
            stdout
                .write_all(&shown)
                .context("failed to write the terminal")?;
            stdout.flush().context("failed to write the terminal")?;
            if let Some(status) = decoder.exit_status() {
                return Ok(End::Exited(status));
            }
            if n == 0 {
                return Ok(End::Closed);
            }
        }
    }
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
