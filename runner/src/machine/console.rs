//! The host side of a guest's consoles.
//!
//! - [`ControlChannel`]: the framed root-shell protocol spoken with
//!   `guest/control.sh` over the `covnet.control` virtio-serial port.
//!   Commands go as raw bytes behind a length (the guest reads them with a
//!   shell builtin, no decoding process), uploaded data as base64; replies
//!   carry stdout (raw bytes behind a length), stderr (base64) and the exit
//!   status apart and exact. Every call has a deadline; a command that outlives its
//!   timeout is killed in the guest through the channel, and if even that
//!   gets no answer the channel is marked dead.
//! - [`ConsoleLog`]: the serial console (`ttyS0`), read line by line into a
//!   per-machine log file, a bounded in-memory tail and [`MachineEvent`]s.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::machine::{ConsoleTail, EventSink, MachineError, MachineEvent, Output};

/// The guest side of the protocol, installed at `/covnet/control.sh`.
pub const CONTROL_SH: &str = include_str!("../guest/control.sh");

/// Most bytes read from the control socket at a time.
const READ_CHUNK: usize = 256 * 1024;

/// Least bytes read at a time: a channel reads into what its buffer has
/// spare, at least this and at most [`READ_CHUNK`], so a machine that only
/// ever gets short replies holds 16 KiB, not 256 KiB (x 250 machines), and
/// a large reply, which grows the buffer, is still read in large chunks.
const MIN_READ: usize = 16 * 1024;

/// Largest file chunk sent in one `PUT` request.
pub const PUT_CHUNK: usize = 256 * 1024;

/// How often readiness pings are sent while the guest boots (the shell
/// also announces itself, so this only matters for late connections).
const PING_INTERVAL: Duration = Duration::from_millis(250);

/// What a VM's init answers to pings while it holds (see `guest/init.sh`).
const HELD_LINE: &[u8] = b"=covnet hold";

/// What first answered a booting guest's pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// The control shell: the machine is up.
    Ready,
    /// A VM's init, booted as far as any boot of its image goes and
    /// waiting for [`ControlChannel::release`] before it takes its
    /// identity (the point a booted guest is saved at and restored to).
    Held,
}

/// Lines of serial console kept in memory per machine.
pub const CONSOLE_TAIL_LINES: usize = 5000;

/// A failure of the control channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// No answer within the deadline (the channel may still be usable).
    #[error("no answer within {}s while {during}", after.as_secs_f64())]
    Timeout {
        /// What was going on.
        during: String,
        /// The deadline's length.
        after: Duration,
    },
    /// A command outlived its timeout. `killed` tells whether the guest
    /// confirmed it killed the command; when not, the channel is dead.
    #[error("command did not finish within {}s ({})", timeout.as_secs_f64(),
        if *killed { "killed in the guest" } else { "the guest did not answer the kill; channel abandoned" })]
    CommandTimeout {
        /// The command's timeout.
        timeout: Duration,
        /// Whether the guest reported the command ended after the kill.
        killed: bool,
    },
    /// The guest side closed the connection (QEMU exited or the shell died).
    #[error("connection closed while {during}")]
    Closed {
        /// What was going on.
        during: String,
    },
    /// Reading or writing the socket failed.
    #[error("i/o error while {during}")]
    Io {
        /// What was going on.
        during: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A command holds a NUL byte: no shell command can, and the guest
    /// reads a command up to its length or a NUL.
    #[error("command contains a NUL byte: `{command}`")]
    NulInCommand {
        /// The command, NUL bytes shown as `\0`.
        command: String,
    },
    /// The guest answered something that is not the protocol.
    #[error("malformed reply while {during}: {detail}")]
    Protocol {
        /// What was going on.
        during: String,
        /// What was wrong.
        detail: String,
    },
    /// An earlier failure made the channel unusable.
    #[error("channel is dead after an earlier failure: {reason}")]
    Dead {
        /// The earlier failure.
        reason: String,
    },
}

/// One reply: output sections and status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The command's stdout, decoded.
    pub out: Vec<u8>,
    /// The command's stderr, decoded.
    pub err: Vec<u8>,
    /// The exit status.
    pub status: i32,
}

/// Why a line of a reply is not the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A marker of this request that is neither `out`, `err` nor
    /// `end <status>`.
    #[error("unexpected marker `{line}`")]
    Marker {
        /// The whole line, lossily.
        line: String,
    },
    /// A section's payload is not base64 (the error names the offset).
    #[error("bad base64 in {section}: {cause}")]
    Base64 {
        /// `stdout` or `stderr`.
        section: &'static str,
        /// What the decoder found, with its offset.
        cause: base64::DecodeError,
    },
}

/// Pure decoder of the bytes the guest sends back for one request: no IO,
/// so the framing can be tested and fuzzed on its own. Lines that are not
/// part of the reply (stale replies, echo before the guest set raw mode)
/// are skipped, and so are the raw sections of other requests' replies.
#[derive(Debug)]
pub struct ReplyDecoder {
    prefix: Vec<u8>,
    section: Section,
    out: Vec<u8>,
    out_b64: Vec<u8>,
    err_b64: Vec<u8>,
    /// Bytes of a raw section still to come.
    raw_left: usize,
    /// Whether that raw section is this request's stdout (else skipped).
    raw_ours: bool,
}

impl ReplyDecoder {
    /// A decoder for the reply to request `id`.
    pub fn new(id: u64) -> ReplyDecoder {
        ReplyDecoder {
            prefix: format!("=covnet {id} ").into_bytes(),
            section: Section::None,
            out: Vec::new(),
            out_b64: Vec::new(),
            err_b64: Vec::new(),
            raw_left: 0,
            raw_ours: false,
        }
    }

    /// Consumes what it can of `pending` (bytes received so far, in
    /// order); returns the reply once its `end` marker arrived, leaving
    /// the bytes after it in `pending`. A partial line or raw section
    /// stays for the next call.
    pub fn feed(&mut self, pending: &mut Vec<u8>) -> Result<Option<Reply>, FrameError> {
        let mut pos = 0;
        let result = loop {
            let rest = pending.get(pos..).unwrap_or(&[]);
            if self.raw_left > 0 {
                let take = self.raw_left.min(rest.len());
                if take == 0 {
                    break Ok(None);
                }
                if self.raw_ours {
                    self.out.extend_from_slice(rest.get(..take).unwrap_or(&[]));
                }
                self.raw_left -= take;
                pos += take;
                continue;
            }
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                break Ok(None);
            };
            let mut line = rest.get(..nl).unwrap_or(&[]);
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            pos += nl + 1;
            match self.line(line) {
                Ok(None) => {}
                done => break done,
            }
        };
        pending.drain(..pos.min(pending.len()));
        result
    }

    /// Takes one line (without its line end).
    fn line(&mut self, line: &[u8]) -> Result<Option<Reply>, FrameError> {
        if let Some(rest) = line.strip_prefix(self.prefix.as_slice()) {
            match rest {
                b"out" => self.section = Section::Out,
                b"err" => self.section = Section::Err,
                _ if rest.starts_with(b"raw ") => {
                    self.raw_left = raw_length(line)?;
                    self.raw_ours = true;
                    self.section = Section::None;
                }
                _ => {
                    let status = rest
                        .strip_prefix(b"end ")
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .ok_or_else(|| FrameError::Marker {
                            line: String::from_utf8_lossy(line).into_owned(),
                        })?;
                    let decode = |data: &[u8], section: &'static str| {
                        B64.decode(data)
                            .map_err(|cause| FrameError::Base64 { section, cause })
                    };
                    let mut out = std::mem::take(&mut self.out);
                    out.extend(decode(&self.out_b64, "stdout")?);
                    return Ok(Some(Reply {
                        out,
                        err: decode(&self.err_b64, "stderr")?,
                        status,
                    }));
                }
            }
        } else if line.starts_with(b"=covnet ") {
            // A marker of another request: not ours. Its raw section, if
            // any, is skipped whole so that its bytes are never read as
            // lines.
            self.section = Section::None;
            let mut words = line.split(|&b| b == b' ');
            if words.nth(2) == Some(b"raw") {
                self.raw_left = raw_length(line)?;
                self.raw_ours = false;
            }
        } else {
            let data = line.iter().copied().filter(|b| !b.is_ascii_whitespace());
            match self.section {
                Section::Out => self.out_b64.extend(data),
                Section::Err => self.err_b64.extend(data),
                Section::None => {}
            }
        }
        Ok(None)
    }
}

/// The length of an `=covnet <id> raw <length>` marker.
fn raw_length(line: &[u8]) -> Result<usize, FrameError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .ok_or_else(|| FrameError::Marker {
            line: String::from_utf8_lossy(line).into_owned(),
        })
}

/// Takes the next complete line out of `pending`, without its `\n` and one
/// `\r` before it; `None` while no line is complete.
pub fn take_line(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let pos = pending.iter().position(|&b| b == b'\n')?;
    let mut line: Vec<u8> = pending.drain(..=pos).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(line)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    None,
    Out,
    Err,
}

/// The host end of the framed control shell on a guest's control port.
#[derive(Debug)]
pub struct ControlChannel {
    stream: UnixStream,
    pending: Vec<u8>,
    next_id: u64,
    dead: Option<String>,
}

impl ControlChannel {
    /// Wraps a connected stream (the control socket, or one end of a pair
    /// in tests).
    pub fn new(stream: UnixStream) -> ControlChannel {
        ControlChannel {
            stream,
            pending: Vec::new(),
            next_id: 1,
            dead: None,
        }
    }

    /// The connection, for a new channel (bytes read but not taken are
    /// dropped).
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// True once a failure made the channel unusable.
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    fn check_alive(&self) -> Result<(), ChannelError> {
        match &self.dead {
            Some(reason) => Err(ChannelError::Dead {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn kill_channel(&mut self, err: ChannelError) -> ChannelError {
        if self.dead.is_none() {
            self.dead = Some(err.to_string());
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        err
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, bytes: &[u8], deadline: Instant, during: &str) -> Result<(), ChannelError> {
        let remaining = remaining(deadline).ok_or_else(|| ChannelError::Timeout {
            during: during.to_owned(),
            after: Duration::ZERO,
        })?;
        let result = self
            .stream
            .set_write_timeout(Some(remaining))
            .and_then(|()| self.stream.write_all(bytes));
        match result {
            Ok(()) => Ok(()),
            Err(err) if is_timeout(&err) => Err(ChannelError::Timeout {
                during: during.to_owned(),
                after: remaining,
            }),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Err(ChannelError::Closed {
                during: during.to_owned(),
            }),
            Err(source) => Err(ChannelError::Io {
                during: during.to_owned(),
                source,
            }),
        }
    }

    /// Reads one line (without `\n`, a trailing `\r` removed).
    fn read_line(&mut self, deadline: Instant, during: &str) -> Result<Vec<u8>, ChannelError> {
        loop {
            if let Some(line) = take_line(&mut self.pending) {
                return Ok(line);
            }
            self.fill(deadline, during)?;
        }
    }

    /// Appends what the socket has (waiting for at least one byte, up to
    /// `deadline`) to `pending`.
    fn fill(&mut self, deadline: Instant, during: &str) -> Result<(), ChannelError> {
        loop {
            let Some(left) = remaining(deadline) else {
                return Err(ChannelError::Timeout {
                    during: during.to_owned(),
                    after: Duration::ZERO,
                });
            };
            let start = self.pending.len();
            let chunk = (self.pending.capacity() - start).clamp(MIN_READ, READ_CHUNK);
            self.pending.resize(start + chunk, 0);
            let read = self.stream.set_read_timeout(Some(left)).and_then(|()| {
                self.stream
                    .read(self.pending.get_mut(start..).unwrap_or(&mut []))
            });
            self.pending.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => {
                    return Err(ChannelError::Closed {
                        during: during.to_owned(),
                    })
                }
                Ok(_) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {
                    return Err(ChannelError::Timeout {
                        during: during.to_owned(),
                        after: left,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ChannelError::Closed {
                        during: during.to_owned(),
                    })
                }
                Err(source) => {
                    return Err(ChannelError::Io {
                        during: during.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Reads until the reply to `id` is complete. Lines that are not part
    /// of it (stale replies, echo before the guest set raw mode) are
    /// skipped.
    fn await_reply(
        &mut self,
        id: u64,
        deadline: Instant,
        during: &str,
    ) -> Result<Reply, ChannelError> {
        let mut decoder = ReplyDecoder::new(id);
        loop {
            let decoded = decoder
                .feed(&mut self.pending)
                .map_err(|e| ChannelError::Protocol {
                    during: during.to_owned(),
                    detail: e.to_string(),
                })?;
            if let Some(reply) = decoded {
                return Ok(reply);
            }
            self.fill(deadline, during)?;
        }
    }

    /// Runs one request: send, wait for the reply. Fatal errors (anything
    /// but a timeout) kill the channel.
    fn request(
        &mut self,
        id: u64,
        payload: &[u8],
        deadline: Instant,
        during: &str,
    ) -> Result<Reply, ChannelError> {
        self.check_alive()?;
        let result = self
            .send(payload, deadline, during)
            .and_then(|()| self.await_reply(id, deadline, during));
        match result {
            Ok(reply) => Ok(reply),
            Err(err @ ChannelError::Timeout { .. }) => Err(err),
            Err(err) => Err(self.kill_channel(err)),
        }
    }

    /// Sends pings until the guest answers one, up to `deadline`, calling
    /// `alive` between pings: when it returns `false` (QEMU exited), the
    /// wait stops with [`ChannelError::Closed`]. A guest holding before
    /// its identity (see [`Greeting::Held`]) does not count: this waits
    /// for the control shell itself.
    pub fn wait_ready(
        &mut self,
        deadline: Instant,
        alive: impl FnMut() -> bool,
    ) -> Result<(), ChannelError> {
        self.ping_until(deadline, alive, false).map(|_| ())
    }

    /// Like [`ControlChannel::wait_ready`], but a guest's init holding
    /// for the host's release answers too: what answered first.
    pub fn wait_greeting(
        &mut self,
        deadline: Instant,
        alive: impl FnMut() -> bool,
    ) -> Result<Greeting, ChannelError> {
        self.ping_until(deadline, alive, true)
    }

    /// Reads and drops what a held guest still sends (answers to pings
    /// that were queued while it booted) until it has been silent for
    /// `quiet`, or until `deadline`: the guest then sits in its read, the
    /// state it is saved in.
    pub fn settle(&mut self, quiet: Duration, deadline: Instant) -> Result<(), ChannelError> {
        let during = "waiting for the held guest to settle";
        loop {
            let Some(left) = remaining(deadline) else {
                return Ok(());
            };
            while take_line(&mut self.pending).is_some() {}
            match self.fill(Instant::now() + left.min(quiet), during) {
                Ok(()) => {}
                Err(ChannelError::Timeout { .. }) => return Ok(()),
                Err(err) => return Err(self.kill_channel(err)),
            }
        }
    }

    /// Releases a guest whose init holds (see [`Greeting::Held`]): it sets
    /// its clock to the host's `now` (whole seconds since the epoch), mixes
    /// `seed` into its entropy pool, unpacks its layer from its disk when
    /// `layer` (the machine's own files, see
    /// [`crate::image::initramfs::Image`]) and goes on to become its
    /// machine. The line is `<id> GO <secs> <seed hex> <layer 0|1>`.
    pub fn release(
        &mut self,
        now: std::time::SystemTime,
        seed: &[u8; 32],
        layer: bool,
        deadline: Instant,
    ) -> Result<(), ChannelError> {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let id = self.id();
        let during = "releasing the guest's init";
        let line = format!("{id} GO {secs} {hex} {}\n", u8::from(layer));
        self.send(line.as_bytes(), deadline, during)
            .map_err(|err| self.kill_channel(err))
    }

    fn ping_until(
        &mut self,
        deadline: Instant,
        mut alive: impl FnMut() -> bool,
        held_answers: bool,
    ) -> Result<Greeting, ChannelError> {
        self.check_alive()?;
        let mut first_ping = None;
        loop {
            if !alive() {
                return Err(self.kill_channel(ChannelError::Closed {
                    during: "waiting for the control shell".into(),
                }));
            }
            let Some(left) = remaining(deadline) else {
                return Err(ChannelError::Timeout {
                    during: "waiting for the control shell".into(),
                    after: Duration::ZERO,
                });
            };
            let id = self.id();
            let first = *first_ping.get_or_insert(id);
            let round = Instant::now() + left.min(PING_INTERVAL);
            let during = "waiting for the control shell";
            match self.send(format!("{id} PING\n").as_bytes(), round, during) {
                Ok(()) | Err(ChannelError::Timeout { .. }) => {}
                Err(err) => return Err(self.kill_channel(err)),
            }
            // Any answered ping means the shell is up.
            loop {
                match self.read_line(round, during) {
                    Ok(line) => {
                        if held_answers && line == HELD_LINE {
                            return Ok(Greeting::Held);
                        }
                        if let Some(answered) = parse_end_id(&line) {
                            // Id 0: the shell's own announcement at start.
                            if answered == 0 || (first..=id).contains(&answered) {
                                return Ok(Greeting::Ready);
                            }
                        }
                    }
                    Err(ChannelError::Timeout { .. }) => break,
                    Err(err) => return Err(self.kill_channel(err)),
                }
            }
        }
    }

    /// Runs `cmd` with the guest's `sh -c`. After `timeout` the command's
    /// process group is killed through the channel; if the guest does not
    /// confirm within `slack`, the channel is declared dead.
    pub fn execute(
        &mut self,
        cmd: &str,
        timeout: Duration,
        slack: Duration,
    ) -> Result<Output, ChannelError> {
        self.check_alive()?;
        if cmd.contains('\0') {
            return Err(ChannelError::NulInCommand {
                command: cmd.replace('\0', "\\0"),
            });
        }
        let id = self.id();
        let mut payload = format!("{id} EXEC {}\n", cmd.len()).into_bytes();
        payload.extend_from_slice(cmd.as_bytes());
        let during = "running a command";
        let send_deadline = Instant::now() + slack;
        if let Err(err) = self.send(&payload, send_deadline, during) {
            return Err(self.kill_channel(err));
        }
        match self.await_reply(id, Instant::now() + timeout, during) {
            Ok(reply) => Ok(Output {
                status: reply.status,
                stdout: reply.out,
                stderr: reply.err,
            }),
            Err(ChannelError::Timeout { .. }) => {
                let kill_id = self.id();
                let deadline = Instant::now() + slack;
                let killed = self
                    .send(
                        format!("{kill_id} KILL {id}\n").as_bytes(),
                        deadline,
                        during,
                    )
                    .and_then(|()| self.await_reply(id, deadline, "killing a timed-out command"));
                match killed {
                    Ok(_) => Err(ChannelError::CommandTimeout {
                        timeout,
                        killed: true,
                    }),
                    Err(_) => Err(self.kill_channel(ChannelError::CommandTimeout {
                        timeout,
                        killed: false,
                    })),
                }
            }
            Err(err) => Err(self.kill_channel(err)),
        }
    }

    /// Writes `data` to `path` in the guest with permission bits `mode`, in
    /// chunks of [`PUT_CHUNK`]. Returns the guest's status and stderr if a
    /// step failed there (`Ok(Err(..))`).
    pub fn put(
        &mut self,
        data: &[u8],
        path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<Result<(), (i32, Vec<u8>)>, ChannelError> {
        let deadline = Instant::now() + timeout;
        let path_b64 = B64.encode(path.as_bytes());
        let mut chunks: Vec<&[u8]> = data.chunks(PUT_CHUNK).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            let id = self.id();
            let mut payload = format!(
                "{id} PUT {path_b64} {mode:o} {} {}\n",
                u8::from(i > 0),
                chunk.len()
            )
            .into_bytes();
            payload.extend_from_slice(chunk);
            let reply = self.request(id, &payload, deadline, "copying a file to the guest")?;
            if reply.status != 0 {
                return Ok(Err((reply.status, reply.err)));
            }
        }
        Ok(Ok(()))
    }

    /// Asks the guest to stop its services (waiting up to `grace` for
    /// them), sync and power off. Returns once the guest confirmed the sync.
    pub fn poweroff(&mut self, grace: Duration, timeout: Duration) -> Result<(), ChannelError> {
        let id = self.id();
        let payload = format!("{id} POWEROFF {}\n", grace.as_secs().max(1));
        self.request(
            id,
            payload.as_bytes(),
            Instant::now() + timeout,
            "powering off",
        )
        .map(|_| ())
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A read on a socket with a read timeout (or non-blocking) that found no
/// data yet: timed out, would block, or was interrupted by a signal. The
/// caller reads again (after its own checks).
pub fn no_data_yet(err: &io::Error) -> bool {
    is_timeout(err) || err.kind() == io::ErrorKind::Interrupted
}

/// The id of an `=covnet <id> end <status>` line (any status).
pub fn parse_end_id(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    (words.next()? == "=covnet").then_some(())?;
    let id = words.next()?.parse().ok()?;
    (words.next()? == "end").then_some(id)
}

/// Quotes `s` for a POSIX shell as one word (the quoting of the guest's
/// generated scripts).
pub use crate::image::guest_files::sh_quote as shell_quote;

#[derive(Debug, Default)]
struct LogState {
    lines: VecDeque<String>,
    /// Lines ever completed (the index just past the last one).
    total: u64,
    /// An unterminated last line.
    partial: String,
    closed: bool,
}

/// The serial console of one machine: a log file, an in-memory tail and
/// events, fed by a reader thread.
#[derive(Debug, Clone)]
pub struct ConsoleLog {
    shared: Arc<(Mutex<LogState>, Condvar)>,
    stop: Arc<AtomicBool>,
    /// The console connection's write side, once connected.
    writer: Arc<Mutex<Option<UnixStream>>>,
}

/// Why a wait on the console log ended without a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleWaitEnd {
    /// The deadline passed.
    Timeout,
    /// The console closed (the machine's process exited).
    Closed,
}

/// `Machine::wait_for_console_text` for any backend whose console is a
/// [`ConsoleLog`]: compiles `pattern`, takes the log from `log` (which
/// fails when the machine is not running), waits, and turns a timeout or a
/// closed console into the machine's error with `tail` and `exited`.
pub fn wait_for_console_text(
    machine: &str,
    pattern: &str,
    timeout: Duration,
    log: impl FnOnce() -> Result<ConsoleLog, MachineError>,
    tail: impl Fn() -> ConsoleTail,
    exited: impl FnOnce() -> Option<String>,
) -> Result<(), MachineError> {
    let re = regex::Regex::new(pattern).map_err(|err| MachineError::Pattern {
        machine: machine.to_owned(),
        pattern: pattern.to_owned(),
        detail: err.to_string(),
    })?;
    match log()?.wait_for(&re, timeout) {
        Ok(_) => Ok(()),
        Err(ConsoleWaitEnd::Timeout) => Err(MachineError::WaitTimeout {
            machine: machine.to_owned(),
            what: format!("console text matching `{pattern}`"),
            timeout,
            console: tail(),
        }),
        Err(ConsoleWaitEnd::Closed) => Err(MachineError::Exited {
            machine: machine.to_owned(),
            during: format!("waiting for console text `{pattern}`"),
            how: exited().unwrap_or_else(|| "console closed".into()),
            console: tail(),
        }),
    }
}

impl ConsoleLog {
    /// Starts a thread that accepts QEMU's connection on `listener`, then
    /// appends every line to `log_path`, the in-memory tail, and `events`
    /// (as [`MachineEvent::ConsoleLine`] of `machine`). The thread ends when
    /// the console closes or [`ConsoleLog::stop`] is called.
    pub fn spawn(
        machine: &str,
        listener: UnixListener,
        log_path: &Path,
        events: EventSink,
    ) -> io::Result<(ConsoleLog, JoinHandle<()>)> {
        let log_file = File::options().create(true).append(true).open(log_path)?;
        listener.set_nonblocking(true)?;
        let log = ConsoleLog {
            shared: Arc::new((Mutex::new(LogState::default()), Condvar::new())),
            stop: Arc::new(AtomicBool::new(false)),
            writer: Arc::new(Mutex::new(None)),
        };
        let thread_log = log.clone();
        let machine = machine.to_owned();
        let handle = thread::Builder::new()
            .name(format!("console-{machine}"))
            .spawn(move || thread_log.run(&machine, &listener, log_file, &events))?;
        Ok((log, handle))
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self, machine: &str, listener: &UnixListener, mut file: File, events: &EventSink) {
        let stream = loop {
            if self.stop.load(Ordering::Relaxed) {
                self.close();
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(err) => {
                    crate::diag::warn(format!("{machine}: serial console accept failed: {err}"));
                    self.close();
                    return;
                }
            }
        };
        let mut stream = stream;
        match stream.try_clone() {
            Ok(w) => *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(w),
            Err(err) => crate::diag::warn(format!(
                "{machine}: serial console input is unavailable: {err}"
            )),
        }
        // Short read timeouts let the thread notice `stop`.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 16 * 1024];
        let mut raw_partial: Vec<u8> = Vec::new();
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    if let Err(err) = file.write_all(data) {
                        crate::diag::warn(format!("{machine}: writing console log failed: {err}"));
                    }
                    raw_partial.extend_from_slice(data);
                    self.take_lines(machine, &mut raw_partial, events);
                }
                Err(err) if no_data_yet(&err) => {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if !raw_partial.is_empty() {
            raw_partial.push(b'\n');
            self.take_lines(machine, &mut raw_partial, events);
        }
        self.close();
    }

    fn take_lines(&self, machine: &str, raw: &mut Vec<u8>, events: &EventSink) {
        let mut complete = Vec::new();
        while let Some(pos) = raw.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = raw.drain(..=pos).collect();
            line.pop();
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            complete.push(String::from_utf8_lossy(&line).into_owned());
        }
        {
            let mut state = self.state();
            for line in &complete {
                state.lines.push_back(line.clone());
                state.total += 1;
                if state.lines.len() > CONSOLE_TAIL_LINES {
                    state.lines.pop_front();
                }
            }
            state.partial = String::from_utf8_lossy(raw).into_owned();
        }
        self.shared.1.notify_all();
        for line in complete {
            events.emit(MachineEvent::ConsoleLine {
                machine: machine.to_owned(),
                line,
            });
        }
    }

    fn close(&self) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.state().closed = true;
        self.shared.1.notify_all();
    }

    /// Writes `data` to the console, as typed on it; fails before the
    /// console connected or after it closed. Blocks at most `timeout`.
    pub fn send(&self, data: &[u8], timeout: Duration) -> io::Result<()> {
        let guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stream) = guard.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the serial console is not connected",
            ));
        };
        stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        (&*stream).write_all(data)?;
        (&*stream).flush()
    }

    /// Asks the reader thread to finish (it notices within ~200 ms).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once the console connection ended.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The last `n` lines (an unterminated last line included).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let state = self.state();
        let mut lines: Vec<String> = state.lines.iter().cloned().collect();
        if !state.partial.is_empty() {
            lines.push(state.partial.clone());
        }
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    /// Waits until a line in the tail (past or future; an unterminated last
    /// line counts) matches `pattern`.
    pub fn wait_for(
        &self,
        pattern: &regex::Regex,
        timeout: Duration,
    ) -> Result<String, ConsoleWaitEnd> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        let mut scanned: u64 = state.total.saturating_sub(state.lines.len() as u64);
        loop {
            let first = state.total.saturating_sub(state.lines.len() as u64);
            let skip = usize::try_from(scanned.saturating_sub(first)).unwrap_or(usize::MAX);
            if let Some(line) = state.lines.iter().skip(skip).find(|l| pattern.is_match(l)) {
                return Ok(line.clone());
            }
            scanned = state.total;
            if pattern.is_match(&state.partial) && !state.partial.is_empty() {
                return Ok(state.partial.clone());
            }
            if state.closed {
                return Err(ConsoleWaitEnd::Closed);
            }
            let Some(left) = remaining(deadline) else {
                return Err(ConsoleWaitEnd::Timeout);
            };
            state = match self.shared.1.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::process::OwnedChild;
    use std::os::fd::OwnedFd;
    use std::process::{Command, Stdio};

    const SLACK: Duration = Duration::from_secs(20);

    /// The real control.sh run by the host's busybox on one end of a
    /// socket pair: the same script and protocol as in a guest.
    struct Harness {
        channel: ControlChannel,
        _child: OwnedChild,
        _work: tempfile::TempDir,
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = self._child.kill();
        }
    }

    fn harness() -> Harness {
        let work = tempfile::tempdir().expect("tempdir");
        let script = work.path().join("control.sh");
        std::fs::write(&script, CONTROL_SH).expect("write script");
        let (host, guest) = UnixStream::pair().expect("socketpair");
        let guest_in = OwnedFd::from(guest.try_clone().expect("clone"));
        let guest_out = OwnedFd::from(guest);
        let mut cmd = Command::new("busybox");
        cmd.arg("sh")
            .arg(&script)
            .env("COVNET_CONTROL_DEV", "-")
            .env("COVNET_CONTROL_DIR", work.path().join("ctl"))
            .env("COVNET_PID_DIR", work.path().join("pids"))
            .stdin(Stdio::from(guest_in))
            .stdout(Stdio::from(guest_out))
            .stderr(Stdio::inherit());
        let child = OwnedChild::spawn(cmd, "control.sh").expect("busybox is installed");
        let mut channel = ControlChannel::new(host);
        channel
            .wait_ready(Instant::now() + SLACK, || true)
            .expect("control.sh answers a ping");
        Harness {
            channel,
            _child: child,
            _work: work,
        }
    }

    #[test]
    fn stdout_stderr_status_apart_and_exact() {
        let mut h = harness();
        let out = h
            .channel
            .execute("echo hi; echo err >&2; exit 3", SLACK, SLACK)
            .expect("execute");
        assert_eq!(
            out,
            Output {
                status: 3,
                stdout: b"hi\n".to_vec(),
                stderr: b"err\n".to_vec()
            }
        );
        // Output without trailing newline, empty output, and marker-like text.
        let out = h
            .channel
            .execute("printf '=covnet 99 end 0'; printf 'x' >&2", SLACK, SLACK)
            .expect("execute");
        assert_eq!(out.stdout, b"=covnet 99 end 0");
        assert_eq!(out.stderr, b"x");
        let out = h.channel.execute("true", SLACK, SLACK).expect("execute");
        assert_eq!(out, Output::default());
    }

    #[test]
    fn binary_round_trip_of_all_byte_values() {
        let mut h = harness();
        let dir = h._work.path().join("files");
        let path = dir.join("sub/all.bin");
        let path = path.to_str().expect("utf-8 path");
        let data: Vec<u8> = (0..=255u8).cycle().take(256 * 3 + PUT_CHUNK).collect();
        h.channel
            .put(&data, path, 0o640, SLACK)
            .expect("channel")
            .expect("guest put");
        let meta = std::fs::metadata(path).expect("written");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let out = h
            .channel
            .execute(&format!("cat -- {}", shell_quote(path)), SLACK, SLACK)
            .expect("execute");
        assert_eq!(out.status, 0);
        assert!(out.stdout == data, "round trip differs");
        // Empty file.
        h.channel
            .put(&[], path, 0o600, SLACK)
            .expect("channel")
            .expect("guest put");
        assert_eq!(std::fs::read(path).expect("read"), b"");
    }

    #[test]
    fn commands_arrive_byte_exact_and_nul_is_refused() {
        let mut h = harness();
        // What a length-framed command read by the shell's `read` could
        // lose: backslashes, newlines (also at the end), runs of spaces at
        // either end, tabs, CR, a marker-like line, UTF-8.
        let text = "  a\\nb \\\\ c  \t\r\n=covnet 9 end 0\n\\\n  \u{e9}\u{1F600}  \n\n";
        let out = h
            .channel
            .execute(&format!("printf '%s' {}", shell_quote(text)), SLACK, SLACK)
            .expect("execute");
        assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), text);
        let out = h
            .channel
            .execute(
                "x=1\nif [ $x = 1 ]; then\n\techo yes\nfi\nexit 4\n",
                SLACK,
                SLACK,
            )
            .expect("multi-line");
        assert_eq!((out.stdout.as_slice(), out.status), (&b"yes\n"[..], 4));
        let out = h.channel.execute("", SLACK, SLACK).expect("empty");
        assert_eq!((out.stdout.as_slice(), out.status), (&b""[..], 0));
        let err = h
            .channel
            .execute("echo a\0b", SLACK, SLACK)
            .expect_err("a NUL byte");
        assert!(matches!(err, ChannelError::NulInCommand { .. }), "{err}");
        let out = h.channel.execute("echo ok", SLACK, SLACK).expect("usable");
        assert_eq!(out.stdout, b"ok\n");
    }

    #[test]
    fn work_files_of_replied_commands_are_removed_in_batches() {
        let mut h = harness();
        let ctl = h._work.path().join("ctl");
        let count = || std::fs::read_dir(&ctl).expect("work dir").count();
        for _ in 0..70 {
            let out = h
                .channel
                .execute("echo x; echo y >&2", SLACK, SLACK)
                .expect("execute");
            assert_eq!(
                (out.stdout.as_slice(), out.stderr.as_slice()),
                (&b"x\n"[..], &b"y\n"[..])
            );
        }
        // Four files a command (out, err, pid, done) if nothing were removed;
        // the batch removals at the 32nd and 64th request run in the
        // background, so wait for them (well within the test's limit).
        let deadline = Instant::now() + Duration::from_secs(30);
        while count() > 4 * 40 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            count() <= 4 * 40,
            "{} work files left after 70 commands",
            count()
        );
    }

    #[test]
    fn put_failure_reports_guest_stderr() {
        let mut h = harness();
        let res = h
            .channel
            .put(b"x", "/proc/covnet-no-such/x", 0o600, SLACK)
            .expect("channel stays usable");
        let (status, stderr) = res.expect_err("put into /proc fails");
        assert_ne!(status, 0);
        assert!(!stderr.is_empty());
        let out = h
            .channel
            .execute("echo still", SLACK, SLACK)
            .expect("still in sync");
        assert_eq!(out.stdout, b"still\n");
    }

    #[test]
    fn background_child_holding_stdout_does_not_hang() {
        let mut h = harness();
        let out = h
            .channel
            .execute("sleep 30 & echo $!", SLACK, SLACK)
            .expect("execute returns while the child runs");
        assert_eq!(out.status, 0);
        let pid: u32 = out.stdout_lossy().trim().parse().expect("pid");
        assert!(
            crate::machine::process::pid_alive(pid),
            "the background child runs on"
        );
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }

    #[test]
    fn timeout_kills_the_command_group_and_channel_survives() {
        let mut h = harness();
        let marker = h._work.path().join("after");
        let cmd = format!(
            "sleep 100 & sleep 100; touch {}",
            shell_quote(marker.to_str().expect("utf-8"))
        );
        let err = h
            .channel
            .execute(&cmd, Duration::from_millis(500), SLACK)
            .expect_err("times out");
        assert!(
            matches!(err, ChannelError::CommandTimeout { killed: true, .. }),
            "{err}"
        );
        assert!(!h.channel.is_dead());
        let out = h.channel.execute("echo ok", SLACK, SLACK).expect("usable");
        assert_eq!(out.stdout, b"ok\n");
        assert!(!marker.exists(), "the killed command went on");
    }

    #[test]
    fn unanswered_kill_marks_the_channel_dead() {
        // A peer that never answers anything.
        let (host, _guest) = UnixStream::pair().expect("pair");
        let mut channel = ControlChannel::new(host);
        let err = channel
            .execute(
                "sleep 100",
                Duration::from_millis(100),
                Duration::from_millis(100),
            )
            .expect_err("no answer");
        assert!(
            matches!(err, ChannelError::CommandTimeout { killed: false, .. }),
            "{err}"
        );
        assert!(channel.is_dead());
        assert!(matches!(
            channel.execute("true", SLACK, SLACK),
            Err(ChannelError::Dead { .. })
        ));
    }

    #[test]
    fn closed_peer_is_reported() {
        let (host, guest) = UnixStream::pair().expect("pair");
        drop(guest);
        let mut channel = ControlChannel::new(host);
        let err = channel.execute("true", SLACK, SLACK).expect_err("closed");
        assert!(
            matches!(err, ChannelError::Closed { .. } | ChannelError::Io { .. }),
            "{err}"
        );
        assert!(channel.is_dead());
        let mut channel = ControlChannel::new(UnixStream::pair().expect("pair").0);
        let err = channel
            .wait_ready(Instant::now() + SLACK, || false)
            .expect_err("not alive");
        assert!(matches!(err, ChannelError::Closed { .. }), "{err}");
    }

    #[test]
    fn stale_and_foreign_lines_are_skipped() {
        let (host, mut guest) = UnixStream::pair().expect("pair");
        let mut channel = ControlChannel::new(host);
        let reply = format!(
            "1 EXEC echo\r\n=covnet 0 out\n{}\n=covnet 0 end 5\n=covnet 1 out\n{}\n=covnet 1 err\n=covnet 1 end 7\n",
            B64.encode("stale"),
            B64.encode("fresh")
        );
        guest.write_all(reply.as_bytes()).expect("write");
        let out = channel.execute("echo", SLACK, SLACK).expect("reply");
        assert_eq!(out.stdout, b"fresh");
        assert_eq!(out.status, 7);
    }

    #[test]
    fn malformed_reply_is_a_protocol_error() {
        let (host, mut guest) = UnixStream::pair().expect("pair");
        let mut channel = ControlChannel::new(host);
        guest
            .write_all(b"=covnet 1 out\n!!!\n=covnet 1 end 0\n")
            .expect("write");
        let err = channel.execute("x", SLACK, SLACK).expect_err("bad base64");
        assert!(matches!(err, ChannelError::Protocol { .. }), "{err}");
        let (host, mut guest) = UnixStream::pair().expect("pair");
        let mut channel = ControlChannel::new(host);
        guest.write_all(b"=covnet 1 end x\n").expect("write");
        let err = channel.execute("x", SLACK, SLACK).expect_err("bad status");
        assert!(matches!(err, ChannelError::Protocol { .. }), "{err}");
    }

    #[test]
    fn decoder_is_pure_and_names_what_is_wrong() {
        let mut pending =
            b"junk\r\n=covnet 3 out\nYWI=\n=covnet 3 err\n=covnet 3 end 2\npart".to_vec();
        let mut d = ReplyDecoder::new(3);
        let reply = d.feed(&mut pending).expect("valid frame").expect("reply");
        assert_eq!(pending, b"part");
        assert_eq!((reply.out.as_slice(), reply.status), (&b"ab"[..], 2));
        assert_eq!(parse_end_id(b"=covnet 3 end 2"), Some(3));
        let mut d = ReplyDecoder::new(1);
        let mut bad = b"=covnet 1 out\nYW?=\n=covnet 1 end 0\n".to_vec();
        let err = d.feed(&mut bad).expect_err("bad base64");
        assert!(
            matches!(
                err,
                FrameError::Base64 {
                    section: "stdout",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("offset 2"), "{err}");
        let mut bad = b"=covnet 1 raw x\n".to_vec();
        let err = ReplyDecoder::new(1).feed(&mut bad).expect_err("bad length");
        assert!(matches!(err, FrameError::Marker { .. }), "{err}");
    }

    /// Raw sections are taken by length, whatever bytes they hold and
    /// however they are split across reads; another request's raw section
    /// is skipped whole, even when it looks like a reply to this one.
    #[test]
    fn raw_sections_are_read_by_length_and_foreign_ones_skipped() {
        let payload: Vec<u8> = b"=covnet 5 end 9\n\r\n"
            .iter()
            .copied()
            .chain(0..=255u8)
            .collect();
        let mut stream = format!("=covnet 4 raw {}\n", payload.len()).into_bytes();
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"=covnet 4 end 0\n");
        stream.extend_from_slice(format!("=covnet 5 raw {}\n", payload.len()).as_bytes());
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"=covnet 5 err\nZQ==\n=covnet 5 end 1\nnext");
        for split in [1, 7, 100, stream.len()] {
            let mut d = ReplyDecoder::new(5);
            let mut pending = Vec::new();
            let mut reply = None;
            for chunk in stream.chunks(split) {
                pending.extend_from_slice(chunk);
                if let Some(r) = d.feed(&mut pending).expect("valid") {
                    reply = Some(r);
                    break;
                }
            }
            let reply = reply.expect("reply");
            assert_eq!(reply.out, payload, "split {split}");
            assert_eq!((reply.err.as_slice(), reply.status), (&b"e"[..], 1));
        }
    }

    #[test]
    fn poweroff_stops_services_then_confirms() {
        let mut h = harness();
        let pids = h._work.path().join("pids");
        std::fs::create_dir_all(&pids).expect("pid dir");
        let mut service = Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("spawn a stand-in service");
        std::fs::write(pids.join("svc.pid"), service.id().to_string()).expect("pid file");
        h.channel
            .poweroff(Duration::from_secs(5), SLACK)
            .expect("poweroff confirmed");
        use std::os::unix::process::ExitStatusExt;
        let status = service.wait().expect("service ended");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // Not PID 1: control.sh exits instead of resetting the machine.
        let status = h._child.wait_timeout(SLACK).expect("wait");
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn console_log_lines_file_events_and_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("serial.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = dir.path().join("m.log");
        let (log, handle) =
            ConsoleLog::spawn("m", listener, &log_path, EventSink::channel(tx)).expect("spawn");
        let mut qemu = UnixStream::connect(&sock).expect("connect");
        qemu.write_all(b"booting\r\nhello world\r\nlogin: ")
            .expect("write");
        let re = regex::Regex::new("hello w.rld").expect("regex");
        assert_eq!(log.wait_for(&re, SLACK).expect("matched"), "hello world");
        let re = regex::Regex::new("^login: $").expect("regex");
        assert_eq!(log.wait_for(&re, SLACK).expect("partial line"), "login: ");
        assert_eq!(log.last_lines(2), ["hello world", "login: "]);
        let first = rx.recv_timeout(SLACK).expect("event");
        assert_eq!(first.to_string(), "m| booting");
        drop(qemu);
        let re = regex::Regex::new("never").expect("regex");
        assert_eq!(log.wait_for(&re, SLACK), Err(ConsoleWaitEnd::Closed));
        handle.join().expect("reader thread");
        assert_eq!(
            std::fs::read(&log_path).expect("log file"),
            b"booting\r\nhello world\r\nlogin: "
        );
        assert_eq!(log.last_lines(10), ["booting", "hello world", "login: "]);
        let re = regex::Regex::new("x").expect("regex");
        let short = ConsoleLog {
            shared: Arc::new((Mutex::new(LogState::default()), Condvar::new())),
            stop: Arc::new(AtomicBool::new(false)),
            writer: Arc::new(Mutex::new(None)),
        };
        assert_eq!(
            short.wait_for(&re, Duration::from_millis(50)),
            Err(ConsoleWaitEnd::Timeout)
        );
    }
}
