//! Interactive terminals of machines (`covnet shell`): a pty in the guest
//! running a login shell, reached as a byte stream that speaks telnet.
//!
//! Both backends end in the same guest program: busybox `telnetd` in
//! inetd mode (`-i`), which allocates the session's pty in the guest,
//! runs `/covnet/login.sh` on it, applies window sizes sent as telnet NAWS
//! messages (`TIOCSWINSZ`, so the foreground job gets `SIGWINCH`) and
//! ends when the shell exits or its input ends (the shell then gets
//! `SIGHUP`). Not `-K` (end when the login program exits): that can drop
//! the session's last output, the exit status; the host ends the session
//! when it has read the status. Line editing, `vi`, `top` and Ctrl-C (a plain `0x03` byte
//! the guest pty turns into `SIGINT` for its foreground job) all happen in
//! the guest.
//!
//! - VMs: a second virtio-serial port ([`TERMINAL_PORT_NAME`]) served by
//!   `guest/terminal.sh`, one session at a time; the host sends
//!   [`start_line`] first.
//! - Namespace machines: `telnetd` started from the host inside the
//!   machine's namespaces (`nsenter`), one per session, on a socket pair.
//!
//! The pure part is the telnet framing: [`encode_input`], [`naws`] and
//! the output [`Decoder`], which drops telnet commands and finds the exit
//! status `/covnet/login.sh` prints last ([`EXIT_MARKER`]).

use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The guest-visible name of a VM's terminal port.
pub const TERMINAL_PORT_NAME: &str = "covnet.terminal";

/// What `/covnet/login.sh` prints after the shell exited, followed by the
/// decimal status and [`MARKER_END`].
pub const EXIT_MARKER: &[u8] = b"\x1ecovnet-exit:";
/// The byte ending the exit status after [`EXIT_MARKER`].
pub const MARKER_END: u8 = 0x1e;

/// The `telnetd` command line of a session (guest paths).
pub const TELNETD_ARGS: &[&str] = &["telnetd", "-i", "-f", "/dev/null", "-l", "/covnet/login.sh"];

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;
const NAWS: u8 = 31;

/// The line a VM's terminal port expects before a session starts; `term`
/// becomes the session's `TERM` (anything but printable ASCII without
/// spaces is replaced by `vt100`).
pub fn start_line(term: &str) -> String {
    format!("covnet-terminal {}\n", sanitize_term(term))
}

/// `term` if it is a plausible terminal type, else `vt100`.
pub fn sanitize_term(term: &str) -> &str {
    let ok = !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if ok {
        term
    } else {
        "vt100"
    }
}

/// Appends `input` (keyboard bytes) to `out` as telnet data: the byte 255
/// is doubled, everything else passes unchanged.
pub fn encode_input(input: &[u8], out: &mut Vec<u8>) {
    for &b in input {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
}

/// The telnet NAWS message announcing a window of `cols` x `rows`
/// (preceded by `IAC WILL NAWS`, which a server may expect first).
pub fn naws(rows: u16, cols: u16) -> Vec<u8> {
    let mut out = vec![IAC, WILL, NAWS, IAC, SB, NAWS];
    for b in cols.to_be_bytes().into_iter().chain(rows.to_be_bytes()) {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out.extend_from_slice(&[IAC, SE]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    /// After WILL/WONT/DO/DONT: the option byte follows.
    Option,
    Sub,
    SubIac,
}

/// Turns a session's telnet output back into terminal bytes: telnet
/// commands and negotiations are dropped, doubled 255s undoubled, and the
/// exit marker is taken out and parsed. Stateful across chunks.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Bytes that may be the start of the exit marker.
    held: Vec<u8>,
    status: Option<i32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of a session.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Data,
            held: Vec::new(),
            status: None,
        }
    }

    /// The shell's exit status once the marker was seen.
    pub fn exit_status(&self) -> Option<i32> {
        self.status
    }

    /// Decodes `chunk`, appending terminal bytes to `out`. Output after
    /// the exit marker is dropped.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            if self.status.is_some() {
                return;
            }
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, _) => {
                    self.data(b, out);
                    State::Data
                }
                (State::Iac, IAC) => {
                    self.data(IAC, out);
                    State::Data
                }
                (State::Iac, SB) => State::Sub,
                (State::Iac, WILL..=DONT) => State::Option,
                (State::Iac, _) | (State::Option, _) => State::Data,
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, _) => State::Sub,
                (State::SubIac, SE) => State::Data,
                (State::SubIac, _) => State::Sub,
            };
        }
    }

    /// One data byte: held while it may belong to the exit marker.
    fn data(&mut self, b: u8, out: &mut Vec<u8>) {
        self.held.push(b);
        let marker_len = EXIT_MARKER.len();
        if self.held.len() <= marker_len {
            if EXIT_MARKER.starts_with(&self.held) {
                return;
            }
        } else if b == MARKER_END {
            let digits = self
                .held
                .get(marker_len..self.held.len() - 1)
                .unwrap_or(&[]);
            self.status = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok());
            if self.status.is_some() {
                self.held.clear();
                return;
            }
        } else if (b.is_ascii_digit() || (b == b'-' && self.held.len() == marker_len + 1))
            && self.held.len() <= marker_len + 12
        {
            return;
        }
        // Not the marker: release the held bytes, looking for a marker
        // start again from the next held byte on.
        let held = std::mem::take(&mut self.held);
        let (first, rest) = held
            .split_first()
            .map_or((None, &[][..]), |(f, r)| (Some(*f), r));
        if let Some(f) = first {
            out.push(f);
        }
        for &r in rest {
            self.data(r, out);
        }
    }

    /// Bytes held back at the end of the stream (an incomplete marker that
    /// never finished): they were output after all.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.status.is_none() {
            out.append(&mut self.held);
        }
    }
}

/// One open terminal session of a machine: a byte stream speaking telnet
/// to the guest's `telnetd` (see the module docs). Dropping it ends the
/// session: the stream closes (the guest's shell gets `SIGHUP`) and a
/// host-side helper process is reaped.
#[derive(Debug)]
pub struct Terminal {
    stream: UnixStream,
    child: Option<Child>,
    busy: Option<Arc<AtomicBool>>,
}

impl Terminal {
    /// A session over `stream`; `child` is a host process serving it (to
    /// be reaped at the end), `busy` a flag cleared when the session ends.
    pub fn new(stream: UnixStream, child: Option<Child>, busy: Option<Arc<AtomicBool>>) -> Self {
        Terminal {
            stream,
            child,
            busy,
        }
    }

    /// The session's stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(mut child) = self.child.take() {
            // telnetd ends at end of input; kill it if it did not.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
        if let Some(busy) = self.busy.take() {
            busy.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> (Vec<u8>, Option<i32>) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        (out, d.exit_status())
    }

    #[test]
    fn negotiations_are_dropped_and_iac_undoubled() {
        let (out, status) = decode_all(&[
            b"\xff\xfd\x01\xff\xfd\x1f\xff\xfb\x01\xff\xfb\x03\r\n# ",
            b"a\xff\xffb\xff\xfa\x1f\x00\x50\xff\xff\x00\x18\xff\xf0c",
        ]);
        assert_eq!(out, b"\r\n# a\xffbc");
        assert_eq!(status, None);
    }

    #[test]
    fn exit_marker_split_anywhere_gives_the_status() {
        let stream = b"exit 3\r\n\x1ecovnet-exit:3\x1etrailing";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let (out, status) = decode_all(&[a, b]);
            assert_eq!(out, b"exit 3\r\n", "cut at {cut}");
            assert_eq!(status, Some(3), "cut at {cut}");
        }
    }

    #[test]
    fn marker_lookalikes_are_output() {
        let (out, status) = decode_all(&[b"\x1e\x1ecovnet-ex", b"it:12x\x1ecovnet-exit:"]);
        assert_eq!(out, b"\x1e\x1ecovnet-exit:12x\x1ecovnet-exit:");
        assert_eq!(status, None);
        let (out, status) = decode_all(&[b"x\x1ecovnet-exit:0\x1e"]);
        assert_eq!((out.as_slice(), status), (&b"x"[..], Some(0)));
    }

    #[test]
    fn input_and_window_size_framing() {
        let mut out = Vec::new();
        encode_input(b"a\xffb\x03", &mut out);
        assert_eq!(out, b"a\xff\xffb\x03");
        assert_eq!(
            naws(24, 80),
            [255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240]
        );
        assert_eq!(
            naws(255, 1),
            [255, 251, 31, 255, 250, 31, 0, 1, 0, 255, 255, 255, 240]
        );
    }

    #[test]
    fn terminal_types_are_checked() {
        assert_eq!(
            start_line("xterm-256color"),
            "covnet-terminal xterm-256color\n"
        );
        assert_eq!(start_line("bad term;rm"), "covnet-terminal vt100\n");
        assert_eq!(sanitize_term(""), "vt100");
    }
}
