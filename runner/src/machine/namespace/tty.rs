//! The consoles of a namespace machine: pseudo-terminals whose slaves are
//! the guest's `/dev/hvc0` (control shell) and its init's output (serial
//! console), bridged to unix stream sockets so the VM's host-side code
//! (`console.rs`: the framed [`ControlChannel`](crate::machine::console::ControlChannel)
//! and the [`ConsoleLog`](crate::machine::console::ConsoleLog)) drives them
//! unchanged.
//!
//! A pty keeps the guest side that of a VM: `guest/control.sh` opens a
//! character device (here `/dev/hvc0`, named by `COVNET_CONTROL_DEV`) as it
//! opens its virtio port; the pty is put in raw mode from the host side, so
//! bytes cross unchanged.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ns;
use super::worker::Worker;

/// Bytes buffered per direction before the bridge stops reading that side.
const BUFFER_LIMIT: usize = 1 << 20;
/// Read size.
const CHUNK: usize = 64 * 1024;

/// A thread copying bytes both ways between a pty master and a socket.
#[derive(Debug)]
pub struct TtyBridge(Worker);

impl TtyBridge {
    /// Bridges `master` and `stream`. `hold` is an open slave fd kept until
    /// the guest first writes (so the master does not read end-of-file
    /// before the guest opened its side); `None` when the guest already
    /// holds the slave. The bridge ends, shutting `stream` down, when the
    /// last guest-side holder closes the slave or the socket's peer closes.
    pub fn spawn(
        name: &str,
        master: OwnedFd,
        stream: UnixStream,
        hold: Option<OwnedFd>,
    ) -> io::Result<TtyBridge> {
        ns::set_nonblocking(master.as_fd())?;
        stream.set_nonblocking(true)?;
        Worker::spawn(format!("tty-{name}"), move |wake, stop| {
            bridge(&master, &stream, hold, wake, stop)
        })
        .map(TtyBridge)
    }

    /// Stops the bridge and closes both ends.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

fn bridge(
    master: &OwnedFd,
    stream: &UnixStream,
    mut hold: Option<OwnedFd>,
    wake: &OwnedFd,
    stop: &AtomicBool,
) {
    let mut to_guest: Vec<u8> = Vec::new();
    let mut to_host: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut guest_open = true;
    let mut host_open = true;
    while !stop.load(Ordering::SeqCst) {
        let mut m_events = 0;
        if guest_open && to_host.len() < BUFFER_LIMIT {
            m_events |= libc::POLLIN;
        }
        if guest_open && !to_guest.is_empty() {
            m_events |= libc::POLLOUT;
        }
        let mut s_events = 0;
        if host_open && to_guest.len() < BUFFER_LIMIT && guest_open {
            s_events |= libc::POLLIN;
        }
        if host_open && !to_host.is_empty() {
            s_events |= libc::POLLOUT;
        }
        if (!guest_open && to_host.is_empty()) || !host_open {
            break;
        }
        let fds = [
            (wake.as_raw_fd(), libc::POLLIN),
            (master.as_raw_fd(), m_events),
            (stream.as_raw_fd(), s_events),
        ];
        let Ok(rev) = ns::poll(&fds, None) else { break };
        let (w, m, s) = (
            rev.first().copied().unwrap_or(0),
            rev.get(1).copied().unwrap_or(0),
            rev.get(2).copied().unwrap_or(0),
        );
        if w != 0 {
            break;
        }
        if m & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && m_events & libc::POLLIN != 0 {
            match ns::read_fd(master.as_fd(), &mut buf) {
                Ok(0) => guest_open = false,
                Ok(n) => {
                    to_host.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    // The guest has the slave open now: from here on its
                    // closing it is what ends the bridge.
                    hold = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => guest_open = false,
            }
        }
        if m & libc::POLLOUT != 0 && !to_guest.is_empty() {
            match ns::write_fd(master.as_fd(), &to_guest) {
                Ok(n) => {
                    to_guest.drain(..n.min(to_guest.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => guest_open = false,
            }
        }
        if s & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && s_events & libc::POLLIN != 0 {
            match ns::read_fd(stream.as_fd(), &mut buf) {
                Ok(0) => host_open = false,
                Ok(n) => to_guest.extend_from_slice(buf.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => host_open = false,
            }
        }
        if s & libc::POLLOUT != 0 && !to_host.is_empty() {
            match ns::write_fd(stream.as_fd(), &to_host) {
                Ok(n) => {
                    to_host.drain(..n.min(to_host.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => host_open = false,
            }
        }
    }
    drop(hold);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    #[test]
    fn bytes_cross_both_ways_and_slave_close_ends_the_bridge() {
        let (master, slave_path) = ns::open_pty().unwrap();
        let hold = ns::open_slave(&slave_path).unwrap();
        let (mut host, bridge_end) = UnixStream::pair().unwrap();
        let mut bridge = TtyBridge::spawn("t", master, bridge_end, Some(hold)).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();

        let mut guest = std::fs::File::from(ns::open_slave(&slave_path).unwrap());
        host.write_all(b"ping\n").unwrap();
        let mut got = [0u8; 5];
        guest.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping\n");
        // Raw mode: binary bytes pass untouched, no CR/LF translation.
        guest.write_all(b"\x00\xffpong\n").unwrap();
        let mut got = [0u8; 7];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x00\xffpong\n");

        // The guest closes its side: the host sees end of file.
        drop(guest);
        let mut rest = Vec::new();
        host.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        bridge.stop();
    }
}
