//! Interactive access to a running machine: a unix-socket proxy in the run
//! directory that `covnet shell` connects to.
//!
//! `covnet vms` serves one socket per machine ([`ShellProxy`]). A
//! connection starts with one JSON line and is then one of two kinds:
//!
//! - commands ([`ShellClient`]): one request per command line, one reply
//!   with its exit status and output.
//!   - request: `{"command": "...", "cwd": "/root", "timeout_secs": 600}`
//!   - reply: `{"status": 0, "stdout": "<base64>", "stderr": "<base64>", "cwd": "/root"}`
//!     or `{"error": "..."}`.
//!
//!   Each command runs in a fresh guest shell; the working directory is
//!   carried from one command to the next (so `cd` works), other shell
//!   state (variables, functions) is not.
//! - a terminal ([`open_terminal`]): request `{"terminal": "<TERM>"}`,
//!   reply `{"terminal": true}` or `{"error": "..."}`; from then on the
//!   connection carries the bytes of the machine's terminal session both
//!   ways unchanged (telnet, see [`crate::machine::terminal`]) until either
//!   side closes it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::machine::terminal::Terminal;
use crate::machine::Machine;
use crate::script::driver::shell_quote;

/// How often the accept loop and idle connections look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Marker before the working directory at the end of a command's stderr.
const CWD_MARKER: &str = "\u{1e}covnet-cwd:";

/// File-name suffix of a machine's proxy socket in the run directory
/// (`<machine>.shell`).
pub const SOCKET_SUFFIX: &str = ".shell";

/// Where `covnet vms` links its run directory for `covnet shell` to find:
/// `covnet-vms-<uid>` under `$XDG_RUNTIME_DIR` (or the temp directory).
pub fn default_run_link() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    base.join(format!("covnet-vms-{uid}"))
}

/// One command for the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Shell command line.
    pub command: String,
    /// Directory to run it in.
    pub cwd: String,
    /// How long it may run.
    pub timeout_secs: u64,
}

/// The first line of a terminal connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalRequest {
    /// The session's `TERM`.
    pub terminal: String,
}

/// The answer to a [`TerminalRequest`] when the session is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalReply {
    /// Always true.
    pub terminal: bool,
}

/// Either kind of request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum AnyRequest {
    Terminal(TerminalRequest),
    Command(Request),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// The command ran.
    Done {
        /// Exit status.
        status: i32,
        /// Standard output, base64.
        stdout: String,
        /// Standard error, base64.
        stderr: String,
        /// Working directory after the command.
        cwd: String,
    },
    /// It could not run (machine stopped, timeout, channel broken).
    Failed {
        /// Why.
        error: String,
    },
}

/// A failure of the client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellProxyError {
    /// The socket could not be reached.
    #[error("failed to connect to {}\n  (hint: is `covnet vms` running? pass its run directory with --run)", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("failed to talk to the shell proxy")]
    Io(#[from] io::Error),
    /// The proxy closed the connection.
    #[error("the shell proxy closed the connection (did `covnet vms` stop?)")]
    Closed,
    /// The proxy sent something that is not a reply.
    #[error("malformed reply from the shell proxy: {0}")]
    Malformed(String),
    /// The machine could not run the command.
    #[error("{0}")]
    Remote(String),
}

/// The decoded result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Exit status.
    pub status: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// The guest command line running `command` in `cwd` and reporting the
/// final working directory after a marker on stderr.
pub fn wrap_command(command: &str, cwd: &str) -> String {
    format!(
        "cd {} 2>/dev/null || cd /\n{command}\n__covnet_status=$?\nprintf '\\036covnet-cwd:%s' \"$(pwd)\" >&2\nexit $__covnet_status",
        shell_quote(cwd)
    )
}

/// Splits the working-directory trailer off a wrapped command's stderr.
pub fn split_cwd(stderr: &[u8]) -> (Vec<u8>, Option<String>) {
    let marker = CWD_MARKER.as_bytes();
    let found = stderr.windows(marker.len()).rposition(|w| w == marker);
    match found {
        Some(i) => {
            let rest = stderr.get(i + marker.len()..).unwrap_or(&[]);
            (
                stderr.get(..i).unwrap_or(&[]).to_vec(),
                Some(String::from_utf8_lossy(rest).into_owned()),
            )
        }
        None => (stderr.to_vec(), None),
    }
}

fn answer(machine: &dyn Machine, req: &Request) -> Reply {
    let timeout = Duration::from_secs(req.timeout_secs.max(1));
    match machine.execute(&wrap_command(&req.command, &req.cwd), timeout) {
        Ok(out) => {
            let (stderr, cwd) = split_cwd(&out.stderr);
            Reply::Done {
                status: out.status,
                stdout: B64.encode(&out.stdout),
                stderr: B64.encode(stderr),
                cwd: cwd.unwrap_or_else(|| req.cwd.clone()),
            }
        }
        Err(e) => Reply::Failed {
            error: e.to_string(),
        },
    }
}

/// Serves one machine's shell socket until dropped.
pub struct ShellProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ShellProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellProxy")
            .field("path", &self.path)
            .finish()
    }
}

impl ShellProxy {
    /// Listens on `socket` (created; mode follows the private run
    /// directory) and serves `machine`.
    pub fn serve(machine: Arc<dyn Machine>, socket: &Path) -> io::Result<ShellProxy> {
        let listener = UnixListener::bind(socket)?;
        crate::rundir::restrict_socket(socket)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("shell-{}", machine.name()))
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let m = machine.clone();
                            let f = flag.clone();
                            std::thread::spawn(move || serve_connection(&*m, stream, &f));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(STOP_POLL)
                        }
                        Err(e) => {
                            crate::diag::warn(format!("shell proxy for `{}`: {e}", machine.name()));
                            std::thread::sleep(STOP_POLL);
                        }
                    }
                }
            })?;
        Ok(ShellProxy {
            path: socket.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShellProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_connection(machine: &dyn Machine, stream: UnixStream, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(STOP_POLL)).is_err() {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if crate::machine::console::no_data_yet(&e) => continue,
            Err(_) => return,
        }
        if !line.ends_with('\n') {
            continue;
        }
        let reply = match serde_json::from_str::<AnyRequest>(line.trim_end()) {
            Ok(AnyRequest::Command(req)) => answer(machine, &req),
            Ok(AnyRequest::Terminal(req)) => match machine.open_terminal(&req.terminal) {
                Ok(term) => {
                    let ok = serde_json::to_string(&TerminalReply { terminal: true })
                        .unwrap_or_default();
                    if writer.write_all(format!("{ok}\n").as_bytes()).is_err() {
                        return;
                    }
                    let pending = reader.buffer().to_vec();
                    relay(reader.into_inner(), &term, &pending, stop);
                    return;
                }
                Err(e) => Reply::Failed {
                    error: e.to_string(),
                },
            },
            Err(e) => Reply::Failed {
                error: format!("malformed request: {e}"),
            },
        };
        line.clear();
        let Ok(mut text) = serde_json::to_string(&reply) else {
            return;
        };
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// Copies bytes between a client connection (whose reads time out every
/// [`STOP_POLL`]) and a terminal session until either side ends or the
/// proxy stops; `pending` are client bytes already read.
fn relay(client: UnixStream, term: &Terminal, pending: &[u8], stop: &AtomicBool) {
    let (Ok(mut to_client), Ok(mut from_term), Ok(mut to_term)) = (
        client.try_clone(),
        term.stream().try_clone(),
        term.stream().try_clone(),
    ) else {
        return;
    };
    let out = std::thread::spawn(move || {
        let _ = io::copy(&mut from_term, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Write);
    });
    let mut client = client;
    let mut buf = vec![0u8; 16 * 1024];
    if to_term.write_all(pending).is_ok() {
        while !stop.load(Ordering::SeqCst) {
            match io::Read::read(&mut client, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to_term.write_all(buf.get(..n).unwrap_or(&[])).is_err() {
                        break;
                    }
                }
                Err(e) if crate::machine::console::no_data_yet(&e) => {
                    if out.is_finished() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    // Ends the session's stream, so the copy thread sees end of file.
    let _ = term.stream().shutdown(std::net::Shutdown::Both);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = out.join();
}

/// Opens a terminal session on a machine's proxy socket: the returned
/// stream carries the session's telnet bytes both ways.
pub fn open_terminal(socket: &Path, term: &str) -> Result<UnixStream, ShellProxyError> {
    let stream = UnixStream::connect(socket).map_err(|source| ShellProxyError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let mut writer = stream.try_clone()?;
    let mut text = serde_json::to_string(&TerminalRequest {
        terminal: term.to_owned(),
    })
    .map_err(|e| ShellProxyError::Malformed(e.to_string()))?;
    text.push('\n');
    writer.write_all(text.as_bytes())?;
    // Read the reply byte by byte: what follows it is session output.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut reader = &stream;
    loop {
        match io::Read::read(&mut reader, &mut byte)? {
            0 => return Err(ShellProxyError::Closed),
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    let line = String::from_utf8_lossy(&line);
    if let Ok(TerminalReply { terminal: true }) = serde_json::from_str(&line) {
        return Ok(stream);
    }
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::Failed { error }) => Err(ShellProxyError::Remote(error)),
        _ => Err(ShellProxyError::Malformed(line.into_owned())),
    }
}

/// A connection to a machine's shell proxy.
#[derive(Debug)]
pub struct ShellClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    cwd: String,
}

impl ShellClient {
    /// Connects to the proxy socket at `socket`; commands start in `/root`
    /// (or `/` when it does not exist).
    pub fn connect(socket: &Path) -> Result<ShellClient, ShellProxyError> {
        let stream = UnixStream::connect(socket).map_err(|source| ShellProxyError::Connect {
            path: socket.to_owned(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(ShellClient {
            reader: BufReader::new(stream),
            writer,
            cwd: "/root".to_owned(),
        })
    }

    /// The current working directory.
    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    /// Runs one command line.
    pub fn run(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandResult, ShellProxyError> {
        let req = Request {
            command: command.to_owned(),
            cwd: self.cwd.clone(),
            timeout_secs: timeout.as_secs().max(1),
        };
        let mut text =
            serde_json::to_string(&req).map_err(|e| ShellProxyError::Malformed(e.to_string()))?;
        text.push('\n');
        self.writer.write_all(text.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(ShellProxyError::Closed);
        }
        let reply: Reply = serde_json::from_str(line.trim_end())
            .map_err(|e| ShellProxyError::Malformed(e.to_string()))?;
        match reply {
            Reply::Done {
                status,
                stdout,
                stderr,
                cwd,
            } => {
                let decode = |s: &str| {
                    B64.decode(s)
                        .map_err(|e| ShellProxyError::Malformed(e.to_string()))
                };
                self.cwd = cwd;
                Ok(CommandResult {
                    status,
                    stdout: decode(&stdout)?,
                    stderr: decode(&stderr)?,
                })
            }
            Reply::Failed { error } => Err(ShellProxyError::Remote(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{MachineError, Output};

    /// Runs commands with the host's `sh` (enough to test the protocol and
    /// the cwd wrapping end to end).
    struct HostSh;

    impl Machine for HostSh {
        fn name(&self) -> &str {
            "host"
        }
        fn start(&self) -> Result<(), MachineError> {
            Ok(())
        }
        fn is_running(&self) -> bool {
            true
        }
        fn execute(&self, cmd: &str, _timeout: Duration) -> Result<Output, MachineError> {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|source| MachineError::Io {
                    machine: "host".into(),
                    what: "run sh".into(),
                    source,
                })?;
            Ok(Output {
                status: out.status.code().unwrap_or(128),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
        fn copy_to(&self, _: &[u8], _: &str, _: u32) -> Result<(), MachineError> {
            Ok(())
        }
        fn copy_from(&self, _: &str) -> Result<Vec<u8>, MachineError> {
            Ok(Vec::new())
        }
        fn console_lines(&self, _: usize) -> Vec<String> {
            Vec::new()
        }
        fn wait_for_console_text(&self, _: &str, _: Duration) -> Result<(), MachineError> {
            Ok(())
        }
        fn shutdown(&self, _: Duration) -> Result<(), MachineError> {
            Ok(())
        }
        fn crash(&self) -> Result<(), MachineError> {
            Ok(())
        }
        fn set_link(&self, _: bool) -> Result<(), MachineError> {
            Ok(())
        }
    }

    #[test]
    fn cwd_is_split_off_stderr() {
        let (err, cwd) = split_cwd(b"warn\n\x1ecovnet-cwd:/tmp");
        assert_eq!(err, b"warn\n");
        assert_eq!(cwd.as_deref(), Some("/tmp"));
        assert_eq!(split_cwd(b"plain"), (b"plain".to_vec(), None));
    }

    #[test]
    fn proxy_runs_commands_and_carries_cwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("m.shell");
        let proxy = ShellProxy::serve(Arc::new(HostSh), &sock).expect("serve");
        let mut client = ShellClient::connect(&sock).expect("connect");
        let sub = dir.path().join("sub dir");
        std::fs::create_dir(&sub).expect("mkdir");
        let r = client
            .run(
                &format!("cd {}", shell_quote(&sub.display().to_string())),
                Duration::from_secs(5),
            )
            .expect("cd");
        assert_eq!(r.status, 0);
        assert_eq!(client.cwd(), sub.display().to_string());
        let r = client
            .run("pwd; echo oops >&2; exit 7", Duration::from_secs(5))
            .expect("pwd");
        assert_eq!(r.status, 7);
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            format!("{}\n", sub.display())
        );
        assert_eq!(r.stderr, b"oops\n");
        drop(client);
        drop(proxy);
        assert!(!sock.exists(), "socket removed on drop");
        assert!(matches!(
            ShellClient::connect(&sock),
            Err(ShellProxyError::Connect { .. })
        ));
    }
}
