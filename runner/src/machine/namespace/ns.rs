//! The platform module of namespace machines: every `unsafe` call lives
//! here, each with its `// SAFETY:` justification.
//!
//! [`spawn`] clones the machine's first process into new user, PID, mount,
//! UTS, IPC and network namespaces. The user namespace is there also when
//! covnet runs as root: its ids then map to an unprivileged host range
//! ([`IdMap`]), so the machine's root holds no privilege on the host. The
//! clone runs on one long-lived spawner thread, because
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child ends.
//! The child is PID 1 of its namespace; it dies with covnet (PDEATHSIG
//! SIGKILL), and every process of the machine dies with it.
//!
//! Between clone and exec the child runs in a copy of a multi-threaded
//! process, so it must not allocate or take locks: everything it needs
//! (paths, netlink messages, argv) is prepared by the parent in a
//! [`ChildConfig`], and the child only makes system calls. Failures are
//! sent back as (stage, errno) records over a `SOCK_SEQPACKET` pair whose
//! child end is close-on-exec, so end-of-file means "exec succeeded".

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::link::{self, IfName, NicWiring};
use super::rootfs::Step;
use crate::machine::process::{on_spawner, OwnedChild};

/// Stack size of the cloned child until it execs.
const CHILD_STACK: usize = 512 * 1024;
/// How long the parent waits for the child to exec.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);
/// Netlink reply buffer of the child.
const NETLINK_BUFFER: usize = 8192;

/// What the child was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The child is not PID 1 (a PID namespace was not created).
    NotInit,
    /// Opening the rtnetlink or ioctl socket.
    NetlinkSocket,
    /// Creating the veth pair of NIC `n`.
    CreateVeth(u32),
    /// Turning off checksum offload on NIC `n`.
    Offload(u32),
    /// Creating, entering or opening a network namespace.
    NetNamespace,
    /// Opening the packet socket of NIC `n`.
    PacketSocket(u32),
    /// Taking NIC `n`'s peer up.
    PeerUp(u32),
    /// Passing the packet sockets to the runner.
    SendSockets,
    /// Making `/` a private mount tree.
    PrivateMounts,
    /// Root file system step `n` (see the plan).
    RootStep(u32),
    /// Setting the hostname.
    Hostname,
    /// `pivot_root` into the new root.
    PivotRoot,
    /// Setting up file descriptors 0, 1 and 2.
    StdFds,
    /// Executing init.
    Exec,
    /// Opening the source of a bind mount (before the id switch).
    BindSource(u32),
    /// Becoming the user namespace's root (uid and gid 0, no groups).
    Identity,
}

impl Stage {
    fn encode(self) -> (u32, u32) {
        match self {
            Stage::NotInit => (1, 0),
            Stage::NetlinkSocket => (2, 0),
            Stage::CreateVeth(n) => (3, n),
            Stage::Offload(n) => (4, n),
            Stage::NetNamespace => (5, 0),
            Stage::PacketSocket(n) => (7, n),
            Stage::PeerUp(n) => (8, n),
            Stage::SendSockets => (9, 0),
            Stage::PrivateMounts => (10, 0),
            Stage::RootStep(n) => (11, n),
            Stage::Hostname => (12, 0),
            Stage::PivotRoot => (13, 0),
            Stage::StdFds => (14, 0),
            Stage::Exec => (15, 0),
            Stage::BindSource(n) => (16, n),
            Stage::Identity => (17, 0),
        }
    }

    fn decode(kind: u32, n: u32) -> Option<Stage> {
        Some(match kind {
            1 => Stage::NotInit,
            2 => Stage::NetlinkSocket,
            3 => Stage::CreateVeth(n),
            4 => Stage::Offload(n),
            5 => Stage::NetNamespace,
            7 => Stage::PacketSocket(n),
            8 => Stage::PeerUp(n),
            9 => Stage::SendSockets,
            10 => Stage::PrivateMounts,
            11 => Stage::RootStep(n),
            12 => Stage::Hostname,
            13 => Stage::PivotRoot,
            14 => Stage::StdFds,
            15 => Stage::Exec,
            16 => Stage::BindSource(n),
            17 => Stage::Identity,
            _ => return None,
        })
    }
}

/// Why a namespace machine could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// Creating the namespaces was refused.
    #[error("failed to create namespaces ({flags}){hint}")]
    Clone {
        /// The namespaces asked for.
        flags: String,
        /// Advice on enabling them.
        hint: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Writing the user namespace's id maps failed.
    #[error("failed to write {file} of the machine's user namespace")]
    IdMap {
        /// Which map.
        file: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A setup step in the child failed.
    #[error("failed to {what} in the machine's namespaces")]
    Setup {
        /// The step, as a "failed to ..." fragment.
        what: String,
        /// The child's errno.
        #[source]
        source: io::Error,
    },
    /// Talking to the child or the kernel failed on the host side.
    #[error("failed to {what}")]
    Host {
        /// What was being done.
        what: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The child did not exec init in time.
    #[error("the machine's first process did not exec init within {}s", .0.as_secs_f64())]
    Timeout(Duration),
}

/// What the machine's first process does before it execs init, prepared on
/// the host.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// Root file system steps (the first mounts the new root).
    pub steps: Vec<Step>,
    /// Where the new root is mounted (host path).
    pub root: CString,
    /// The machine's hostname.
    pub hostname: CString,
    /// One entry per NIC, in `eth<i>` order.
    pub nics: Vec<NicWiring>,
    /// Program to exec (a path inside the new root).
    pub program: CString,
    /// Its argv.
    pub argv: Vec<CString>,
    /// Its whole environment (`KEY=value`).
    pub env: Vec<CString>,
}

/// The running first process of a machine and the packet sockets of its
/// NICs (in NIC order).
#[derive(Debug)]
pub struct Spawned {
    /// The machine's init (killing it ends every process of the machine).
    pub init: OwnedChild,
    /// `AF_PACKET` sockets bound to each NIC's peer.
    pub packets: Vec<OwnedFd>,
}

/// First host uid and gid of the range a machine's ids map to when covnet
/// runs as root: 0x7C000000 (2080374784). It lies in the block systemd
/// leaves unused (0x70000000 to 0x7FFDFFFF: above its container range,
/// below its "foreign" range and the signed 32-bit limit), far above
/// regular users, dynamic users and the `/etc/subuid` ranges `useradd`
/// hands out, so no file or process of a real user has these ids.
pub const HOST_ID_BASE: u32 = 0x7C00_0000;
/// How many ids the range holds: the machine's uids and gids 0 to 65535.
pub const HOST_ID_COUNT: u32 = 0x1_0000;
// The range stays inside systemd's unused block 0x70000000-0x7FFDFFFF.
const _: () = assert!(
    HOST_ID_BASE >= 0x7000_0000 && HOST_ID_BASE as u64 + HOST_ID_COUNT as u64 <= 0x7FFE_0000
);

/// How a machine's user namespace maps its ids to the host's. Every
/// namespace machine has a user namespace, so its root's capabilities
/// reach only what that namespace owns (its mounts, network, hostname),
/// never the host's clock, kernel modules, global sysctls or processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMap {
    /// covnet is not root: the machine's root is covnet's own uid and gid
    /// (one id each; `setgroups` is denied, as the kernel requires).
    Caller {
        /// covnet's effective uid.
        uid: u32,
        /// covnet's effective gid.
        gid: u32,
    },
    /// covnet is root: the machine's ids 0 to `count - 1` are the host's
    /// `base` to `base + count - 1`, owned by no host user (like
    /// systemd-nspawn's private users).
    Range {
        /// Host id of the machine's uid and gid 0.
        base: u32,
        /// Number of ids mapped.
        count: u32,
    },
}

impl IdMap {
    /// The mapping for this process: [`IdMap::Range`] at [`HOST_ID_BASE`]
    /// when it runs as root, else [`IdMap::Caller`].
    pub fn for_this_process() -> IdMap {
        // SAFETY: geteuid/getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == 0 {
            IdMap::Range {
                base: HOST_ID_BASE,
                count: HOST_ID_COUNT,
            }
        } else {
            IdMap::Caller { uid, gid }
        }
    }

    /// The host uid and gid of the machine's root.
    pub fn host_root(&self) -> (u32, u32) {
        match *self {
            IdMap::Caller { uid, gid } => (uid, gid),
            IdMap::Range { base, .. } => (base, base),
        }
    }

    /// The `/proc/<pid>/` files to write, in order, with their contents.
    fn files(&self) -> Vec<(&'static str, String)> {
        match *self {
            IdMap::Caller { uid, gid } => vec![
                ("setgroups", "deny".to_owned()),
                ("uid_map", format!("0 {uid} 1\n")),
                ("gid_map", format!("0 {gid} 1\n")),
            ],
            // setgroups stays allowed, so the child can drop the
            // supplementary groups it inherited from root.
            IdMap::Range { base, count } => vec![
                ("uid_map", format!("0 {base} {count}\n")),
                ("gid_map", format!("0 {base} {count}\n")),
            ],
        }
    }
}

/// Hands a host file (a pty slave of the machine) to the machine's root, so
/// that it can open it from inside its user namespace. A no-op when
/// covnet is not root (the file is already covnet's).
pub fn give_to_machine_root(path: &std::path::Path, ids: IdMap) -> io::Result<()> {
    if let IdMap::Range { .. } = ids {
        let (uid, gid) = ids.host_root();
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Advice for enabling unprivileged user namespaces, from the host's
/// sysctls.
pub fn user_namespace_hint() -> String {
    hint_from_sysctls(|p| {
        std::fs::read_to_string(format!("/proc/sys/{p}"))
            .ok()
            .map(|s| s.trim().to_owned())
    })
}

/// [`user_namespace_hint`] over a sysctl reader (`read("user/max_user_namespaces")`).
fn hint_from_sysctls(read: impl Fn(&str) -> Option<String>) -> String {
    let mut hints = Vec::new();
    if read("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        hints.push("sysctl -w kernel.unprivileged_userns_clone=1");
    }
    if read("user/max_user_namespaces").as_deref() == Some("0") {
        hints.push("sysctl -w user.max_user_namespaces=15000");
    }
    if read("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        hints.push("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0");
    }
    if hints.is_empty() {
        "\n  (hint: namespace machines need root or unprivileged user namespaces; check \
         kernel.unprivileged_userns_clone and user.max_user_namespaces, and that no seccomp \
         or container policy blocks clone(CLONE_NEWUSER))"
            .to_owned()
    } else {
        format!(
            "\n  (hint: unprivileged user namespaces are disabled on this host; run covnet as \
             root, or enable them: {})",
            hints.join("; ")
        )
    }
}

/// The namespace flags a machine is cloned with.
const CLONE_FLAGS: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET;

/// The namespaces of [`CLONE_FLAGS`], for error messages.
const FLAG_NAMES: &str = "pid, mount, uts, ipc, net, user";

/// The child's view of its work: the config plus raw pointers and fds.
struct ChildArgs {
    cfg: ChildConfig,
    status: RawFd,
    console: RawFd,
    argv: Vec<*const libc::c_char>,
    env: Vec<*const libc::c_char>,
    netlink_buf: Vec<u8>,
    packets: Vec<RawFd>,
    cmsg: Vec<u64>,
    /// One slot per root file system step: the `O_PATH` fd of a bind
    /// mount's source, opened before the id switch.
    sources: Vec<RawFd>,
    /// Drop the supplementary groups inherited from root.
    drop_groups: bool,
}

/// Starts a machine's first process in a user namespace whose ids map
/// as `ids` says. `console` becomes its standard output and error.
pub fn spawn(cfg: ChildConfig, console: OwnedFd, ids: IdMap) -> Result<Spawned, SpawnError> {
    let (parent_end, child_end) = socketpair_seqpacket().map_err(|source| SpawnError::Host {
        what: "create the setup socket pair".into(),
        source,
    })?;
    let nics = cfg.nics.len();
    let steps = cfg.steps.len();
    let status = child_end.as_raw_fd();
    let console_fd = console.as_raw_fd();
    let cloned = on_spawner(move || {
        let mut args = ChildArgs {
            argv: Vec::new(),
            env: Vec::new(),
            netlink_buf: vec![0u8; NETLINK_BUFFER],
            packets: vec![-1; nics],
            cmsg: vec![0u64; cmsg_words(nics)],
            sources: vec![-1; steps],
            drop_groups: matches!(ids, IdMap::Range { .. }),
            status,
            console: console_fd,
            cfg,
        };
        args.argv = args.cfg.argv.iter().map(|a| a.as_ptr()).collect();
        args.argv.push(std::ptr::null());
        args.env = args.cfg.env.iter().map(|a| a.as_ptr()).collect();
        args.env.push(std::ptr::null());
        let mut stack = vec![0u8; CHILD_STACK];
        // The stack grows down: pass its (16-byte aligned) top.
        let top = stack.as_mut_ptr().wrapping_add(CHILD_STACK);
        let top = top.wrapping_sub(top as usize % 16);
        let arg: *mut ChildArgs = &mut args;
        // SAFETY: `child_main` matches clone's callback signature; the stack
        // is a live allocation of CHILD_STACK bytes and `top` points just
        // past its aligned end; `arg` points to `args`, alive until clone
        // returns. Without CLONE_VM the child runs on its own copy of this
        // memory, so freeing `stack` and `args` afterwards is fine.
        let pid = unsafe {
            libc::clone(
                child_main,
                top.cast(),
                CLONE_FLAGS | libc::SIGCHLD,
                arg.cast(),
            )
        };
        let result = if pid < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(pid)
        };
        (result, args.cfg)
    });
    drop(child_end);
    drop(console);
    let (cloned, steps) = match cloned {
        Ok((result, cfg)) => (Ok(result), cfg.steps),
        Err(err) => (Err(err), Vec::new()),
    };
    let pid = match cloned {
        Ok(Ok(pid)) => pid,
        Ok(Err(source)) => {
            let hint = match ids {
                IdMap::Caller { .. } => user_namespace_hint(),
                IdMap::Range { .. } => "\n  (hint: namespace machines need user namespaces and \
                     CAP_SYS_ADMIN; is covnet running in a restricted container, or is \
                     user.max_user_namespaces 0?)"
                    .to_owned(),
            };
            return Err(SpawnError::Clone {
                flags: FLAG_NAMES.to_owned(),
                hint,
                source,
            });
        }
        Err(source) => {
            return Err(SpawnError::Host {
                what: "clone the machine's first process".into(),
                source,
            })
        }
    };
    let mut init = OwnedChild::adopt(
        u32::try_from(pid).unwrap_or(0),
        "init of a namespace machine",
    );
    match finish_setup(&mut init, &parent_end, ids, nics, &steps) {
        Ok(packets) => Ok(Spawned { init, packets }),
        Err(err) => {
            // Reap it here, so the setup error is what the caller sees.
            if let Err(kill_err) = init.kill() {
                crate::diag::warn(kill_err.to_string());
            }
            Err(err)
        }
    }
}

/// Writes the id maps, releases the child and collects its packet sockets
/// until it execs init (end of file on `parent_end`) or reports a failure.
fn finish_setup(
    init: &mut OwnedChild,
    parent_end: &OwnedFd,
    ids: IdMap,
    nics: usize,
    steps: &[Step],
) -> Result<Vec<OwnedFd>, SpawnError> {
    write_id_maps(libc::pid_t::try_from(init.pid()).unwrap_or(0), ids)?;
    write_byte(parent_end_fd(parent_end)).map_err(|source| SpawnError::Host {
        what: "release the machine's first process".into(),
        source,
    })?;
    let mut packets = Vec::new();
    let deadline = Instant::now() + SETUP_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SpawnError::Timeout(SETUP_DEADLINE));
        }
        let ready = poll_readable(&[parent_end.as_raw_fd()], Some(left)).map_err(|source| {
            SpawnError::Host {
                what: "wait for the machine's first process".into(),
                source,
            }
        })?;
        if ready.first() == Some(&Readiness::Idle) {
            continue;
        }
        match recv_record(parent_end, nics) {
            Ok(Record::Eof) => break,
            Ok(Record::Sockets(fds)) => packets = fds,
            Ok(Record::Failed { stage, errno }) => {
                return Err(SpawnError::Setup {
                    what: describe(stage, steps),
                    source: io::Error::from_raw_os_error(errno),
                });
            }
            Err(source) => {
                return Err(SpawnError::Host {
                    what: "read the setup result of the machine's first process".into(),
                    source,
                });
            }
        }
    }
    if packets.len() != nics {
        return Err(SpawnError::Host {
            what: format!(
                "receive the packet sockets of {nics} NIC(s) (got {})",
                packets.len()
            ),
            source: io::Error::other("missing sockets"),
        });
    }
    // A child that died before exec also closes its end: check it execed.
    if let Ok(Some(st)) = init.try_wait() {
        return Err(SpawnError::Host {
            what: "start init".into(),
            source: io::Error::other(format!(
                "the machine's first process ended ({})",
                describe_status(std::os::unix::process::ExitStatusExt::into_raw(st))
            )),
        });
    }
    Ok(packets)
}

/// A "failed to ..." fragment for a child stage.
fn describe(stage: Stage, steps: &[Step]) -> String {
    match stage {
        Stage::NotInit => "become PID 1 of a new PID namespace".into(),
        Stage::NetlinkSocket => "open a netlink socket".into(),
        Stage::CreateVeth(n) => format!("create the veth pair of eth{n}"),
        Stage::Offload(n) => format!("turn off offloads on eth{n}"),
        Stage::NetNamespace => "create or enter the network namespaces".into(),
        Stage::PacketSocket(n) => format!("open the packet socket of eth{n}"),
        Stage::PeerUp(n) => format!("take the peer of eth{n} up"),
        Stage::SendSockets => "pass the packet sockets to covnet".into(),
        Stage::PrivateMounts => "make the mount tree private".into(),
        Stage::RootStep(n) => usize::try_from(n)
            .ok()
            .and_then(|i| steps.get(i))
            .map_or_else(
                || format!("run root file system step {n}"),
                |s| s.to_string(),
            ),
        Stage::Hostname => "set the hostname".into(),
        Stage::PivotRoot => "pivot into the new root".into(),
        Stage::StdFds => "set up standard input and output".into(),
        Stage::Exec => "exec init".into(),
        Stage::BindSource(n) => usize::try_from(n)
            .ok()
            .and_then(|i| steps.get(i))
            .map_or_else(
                || format!("open the source of root file system step {n}"),
                |s| format!("open the source to {s}"),
            ),
        Stage::Identity => "become root of the user namespace".into(),
    }
}

fn parent_end_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

/// Writes the id maps of the child's user namespace.
fn write_id_maps(pid: libc::pid_t, ids: IdMap) -> Result<(), SpawnError> {
    for (file, text) in ids.files() {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|source| SpawnError::IdMap {
            file: path.clone(),
            source,
        })?;
    }
    Ok(())
}

enum Record {
    Eof,
    Sockets(Vec<OwnedFd>),
    Failed { stage: Stage, errno: i32 },
}

fn cmsg_words(fds: usize) -> usize {
    let bytes = fds.max(1) * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(u32::try_from(bytes).unwrap_or(u32::MAX)) } as usize;
    space.div_ceil(8)
}

fn recv_record(sock: &OwnedFd, max_fds: usize) -> io::Result<Record> {
    let mut data = [0u8; 16];
    let mut cmsg = vec![0u64; cmsg_words(max_fds)];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len() * 8;
    // SAFETY: `msg` points to live buffers (`data`, `cmsg`) of the sizes it
    // states; recvmsg writes at most that much.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in,
    // bounded by msg_controllen; SCM_RIGHTS data is an array of fds that
    // are now ours to own.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                let count = payload / std::mem::size_of::<RawFd>();
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(p.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let n = usize::try_from(n).unwrap_or(0);
    match data.get(..n) {
        Some([]) | None => Ok(Record::Eof),
        Some([b'N', ..]) => Ok(Record::Sockets(fds)),
        Some([b'E', rest @ ..]) if rest.len() >= 12 => {
            let word = |i: usize| {
                rest.get(i..i + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_ne_bytes)
                    .unwrap_or(0)
            };
            let stage = Stage::decode(word(0), word(4)).unwrap_or(Stage::Exec);
            let errno = i32::from_ne_bytes(word(8).to_ne_bytes());
            Ok(Record::Failed { stage, errno })
        }
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected setup record",
        )),
    }
}

fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes one byte (a wake-up or go signal).
pub fn write_byte(fd: BorrowedFd<'_>) -> io::Result<()> {
    let b = [1u8];
    // SAFETY: writes one byte from a live buffer to a valid fd.
    let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL on a valid fd touch no memory.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The state of one fd after [`poll_readable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing to read.
    Idle,
    /// Data (or end of file) can be read.
    Readable,
    /// Error or hang-up without data.
    Closed,
}

/// Waits until one of `fds` is readable (or `timeout` passes; `None`
/// waits forever) and reports each one.
pub fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<Readiness>> {
    let asked: Vec<(RawFd, i16)> = fds.iter().map(|&fd| (fd, libc::POLLIN)).collect();
    Ok(poll(&asked, timeout)?
        .into_iter()
        .map(|revents| {
            if revents & libc::POLLIN != 0 {
                Readiness::Readable
            } else if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                Readiness::Closed
            } else {
                Readiness::Idle
            }
        })
        .collect())
}

/// `poll(2)` over `(fd, events)` pairs; returns each fd's `revents`.
/// Retries on EINTR. `None` waits forever.
pub fn poll(fds: &[(RawFd, i16)], timeout: Option<Duration>) -> io::Result<Vec<i16>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
    });
    loop {
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(pfds.iter().map(|p| p.revents).collect())
}

/// Reads from `fd` into `buf`: `Ok(0)` is end of file (EIO on a pty
/// master whose slave is closed counts as end of file).
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and its length is passed.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EIO) {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Writes some of `buf` to `fd`; returns how much was written.
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and its length is passed.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Receives one frame from a packet socket into `buf`: `Some(len)`, or
/// `None` for a frame the peer itself sent (not for the switch).
pub fn recv_frame(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: sockaddr_ll is plain data; zero is a valid initial value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `addr` are live and their sizes are passed along.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut addr as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if addr.sll_pkttype == libc::PACKET_OUTGOING {
        return Ok(None);
    }
    Ok(Some(usize::try_from(n).unwrap_or(0)))
}

/// Sends one frame out of a bound packet socket.
pub fn send_frame(fd: BorrowedFd<'_>, frame: &[u8]) -> io::Result<()> {
    // SAFETY: `frame` is live for the call and its length is passed.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new pseudo-terminal in raw mode: the master and the slave's path.
pub fn open_pty() -> io::Result<(OwnedFd, PathBuf)> {
    // SAFETY: posix_openpt returns a new fd or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt take a valid master fd; ptsname_r writes a
    // NUL-terminated name of at most `name.len()` bytes into `name`.
    unsafe {
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            return Err(io::Error::last_os_error());
        }
        let r = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes()));
    // SAFETY: termios is plain data; tcgetattr fills it from a valid fd,
    // cfmakeraw edits it in place, tcsetattr applies it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((master, path))
}

/// Opens a pty slave (so it has a reader before the guest does).
pub fn open_slave(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

/// Describes a `waitpid` status like `ExitStatus` does.
pub fn describe_status(st: i32) -> String {
    if libc::WIFEXITED(st) {
        format!("exit status: {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        format!("signal: {}", libc::WTERMSIG(st))
    } else {
        format!("wait status {st:#x}")
    }
}

// ---------------------------------------------------------------------------
// The cloned child. Nothing below may allocate, lock or panic.
// ---------------------------------------------------------------------------

type Fail = (Stage, i32);

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn check(r: libc::c_int, stage: Stage) -> Result<libc::c_int, Fail> {
    if r < 0 {
        Err((stage, errno()))
    } else {
        Ok(r)
    }
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone; this
    // process has its own copy of it and nothing else uses it.
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    if let Err((stage, err)) = child_run(args) {
        let (kind, n) = stage.encode();
        let mut rec = [0u8; 13];
        rec[0] = b'E';
        rec[1..5].copy_from_slice(&kind.to_ne_bytes());
        rec[5..9].copy_from_slice(&n.to_ne_bytes());
        rec[9..13].copy_from_slice(&err.to_ne_bytes());
        // SAFETY: writes a live 13-byte buffer to the status socket.
        unsafe {
            libc::send(
                args.status,
                rec.as_ptr().cast(),
                rec.len(),
                libc::MSG_NOSIGNAL,
            );
        }
    }
    // SAFETY: _exit ends this process without running atexit handlers or
    // touching the parent's copied state.
    unsafe { libc::_exit(127) }
}

fn child_run(a: &mut ChildArgs) -> Result<(), Fail> {
    // SAFETY: (whole block) only system calls on memory prepared by the
    // parent (CStrings, byte buffers) and on stack locals.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong),
            Stage::NotInit,
        )?;
        // A machine that is not PID 1 of a fresh PID namespace must never
        // reach init: its `poweroff` would be the host's.
        if libc::getpid() != 1 {
            return Err((Stage::NotInit, libc::EINVAL));
        }
        // Wait for the go byte (after the id maps are written). End of file
        // means the parent died: leave quietly.
        let mut go = [0u8; 1];
        if libc::read(a.status, go.as_mut_ptr().cast(), 1) != 1 {
            libc::_exit(0);
        }
        libc::umask(0);
        libc::setsid();
        if !a.cfg.nics.is_empty() {
            child_network(a)?;
        }
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            Stage::PrivateMounts,
        )?;
        root_steps(a)?;
        // Capabilities whose effect reaches past the namespaces (kernel
        // modules, raw I/O, the clock, audit, MAC policy, the kernel log)
        // leave the bounding set, so even a machine started by root cannot
        // use them after exec. Unknown numbers (old kernels) are skipped.
        for cap in HOST_WIDE_CAPS {
            libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0);
        }
        let host = a.cfg.hostname.as_bytes();
        check(
            libc::sethostname(host.as_ptr().cast(), host.len()),
            Stage::Hostname,
        )?;
        // The working directory is the new root (see `root_steps`).
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
            Stage::PivotRoot,
        )?;
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
            Stage::PivotRoot,
        )?;
        check(libc::chdir(c"/".as_ptr()), Stage::PivotRoot)?;
        let null = check(
            libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC),
            Stage::StdFds,
        )?;
        check(libc::dup2(null, 0), Stage::StdFds)?;
        check(libc::dup2(a.console, 1), Stage::StdFds)?;
        check(libc::dup2(a.console, 2), Stage::StdFds)?;
        // Everything else the parent had open closes on exec (the status
        // socket included, which tells the parent exec happened).
        if libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        ) != 0
        {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        libc::execve(a.cfg.program.as_ptr(), a.argv.as_ptr(), a.env.as_ptr());
        Err((Stage::Exec, errno()))
    }
}

/// Runs the root file system steps. The first (the tmpfs on the root
/// mount point) and the lookups of the host paths (the mount point and the
/// bind sources, which may lie in directories only host root can search)
/// run with the ids the child was cloned with; then the child becomes the
/// user namespace's root and runs the other steps relative to the new
/// root, so that what it creates belongs to its own ids.
fn root_steps(a: &mut ChildArgs) -> Result<(), Fail> {
    let Some((first, rest)) = a.cfg.steps.split_first() else {
        return Ok(());
    };
    child_step(first, None, -1).map_err(|e| (Stage::RootStep(0), e))?;
    // SAFETY: (whole block) system calls on NUL-terminated paths prepared
    // by the parent; the fds opened here are this process's own.
    unsafe {
        check(libc::chdir(a.cfg.root.as_ptr()), Stage::RootStep(0))?;
        for (i, step) in a.cfg.steps.iter().enumerate() {
            if let Step::Bind { source, .. } = step {
                let fd = check(
                    libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC),
                    Stage::BindSource(u32::try_from(i).unwrap_or(u32::MAX)),
                )?;
                if let Some(slot) = a.sources.get_mut(i) {
                    *slot = fd;
                }
            }
        }
    }
    become_root(a)?;
    for (i, step) in rest.iter().enumerate() {
        let source = a.sources.get(i + 1).copied().unwrap_or(-1);
        let stage = Stage::RootStep(u32::try_from(i + 1).unwrap_or(u32::MAX));
        child_step(step, Some(&a.cfg.root), source).map_err(|e| (stage, e))?;
    }
    for &fd in &a.sources {
        if fd >= 0 {
            // SAFETY: closes an fd this process opened above.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Makes the child uid and gid 0 of its user namespace (host ids
/// [`IdMap::host_root`]) without supplementary groups. Until now it had
/// the ids it was cloned with, which for a root covnet are the host's
/// root: a process with those could own host files. Changing ids clears
/// the parent-death signal, so it is set again (and a parent that died
/// in between is noticed through the status socket).
fn become_root(a: &ChildArgs) -> Result<(), Fail> {
    // Raw system calls: glibc's wrappers would ask the parent's other
    // threads (which do not exist here) to change ids too, and wait forever.
    // SAFETY: (whole block) credential and prctl calls touch no memory but
    // the poll record on the stack.
    unsafe {
        let id = |r: libc::c_long| check(if r < 0 { -1 } else { 0 }, Stage::Identity);
        if a.drop_groups {
            id(libc::syscall(
                libc::SYS_setgroups,
                0,
                std::ptr::null::<libc::gid_t>(),
            ))?;
        }
        id(libc::syscall(libc::SYS_setresgid, 0, 0, 0))?;
        id(libc::syscall(libc::SYS_setresuid, 0, 0, 0))?;
        check(
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong),
            Stage::Identity,
        )?;
        let mut pfd = libc::pollfd {
            fd: a.status,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLHUP != 0 {
            libc::_exit(0);
        }
    }
    Ok(())
}

/// `path` for a system call: relative to the working directory (the new
/// root) when it lies below `root`, else as it is.
fn at(path: &CStr, root: Option<&CStr>) -> *const libc::c_char {
    let bytes = path.to_bytes();
    match root.map(CStr::to_bytes) {
        Some(r) if bytes.len() > r.len() + 1 && bytes.starts_with(r) && bytes[r.len()] == b'/' => {
            path.as_ptr().wrapping_add(r.len() + 1)
        }
        _ => path.as_ptr(),
    }
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `buf` (no allocation).
fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> *const libc::c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = u32::try_from(fd).unwrap_or(0);
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[PREFIX.len() + i] = *d;
    }
    buf[PREFIX.len() + len] = 0;
    buf.as_ptr().cast()
}

/// Creates the machine's network namespace and, from inside it, the veth
/// pairs: `eth<i>` here, each peer directly in the clone's original network
/// namespace (the link namespace), where the packet sockets are opened and
/// sent to the parent.
fn child_network(a: &mut ChildArgs) -> Result<(), Fail> {
    // SAFETY: (whole block) system calls on fds this process owns and on
    // buffers prepared by the parent, with their exact lengths.
    unsafe {
        let link_ns = check(
            libc::open(
                c"/proc/self/ns/net".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            ),
            Stage::NetNamespace,
        )?;
        check(libc::unshare(libc::CLONE_NEWNET), Stage::NetNamespace)?;
        let machine_ns = check(
            libc::open(
                c"/proc/self/ns/net".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            ),
            Stage::NetNamespace,
        )?;
        let (nl, ctl) = control_sockets()?;
        let fd_bytes = u32::try_from(link_ns).unwrap_or(0).to_ne_bytes();
        for (i, nic) in a.cfg.nics.iter_mut().enumerate() {
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(slot) = nic.create.get_mut(nic.peer_ns_fd_at..nic.peer_ns_fd_at + 4) {
                slot.copy_from_slice(&fd_bytes);
            }
            netlink_call(nl, &nic.create, &mut a.netlink_buf)
                .map_err(|e| (Stage::CreateVeth(n), e))?;
            offloads_off(ctl, &nic.eth).map_err(|e| (Stage::Offload(n), e))?;
        }
        libc::close(nl);
        libc::close(ctl);
        check(
            libc::setns(link_ns, libc::CLONE_NEWNET),
            Stage::NetNamespace,
        )?;
        let (nl, ctl) = control_sockets()?;
        for (i, nic) in a.cfg.nics.iter().enumerate() {
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            // Up before bind: binding to a down device leaves ENETDOWN
            // pending on the socket.
            netlink_call(nl, &nic.peer_up, &mut a.netlink_buf)
                .map_err(|e| (Stage::PeerUp(n), e))?;
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // Protocol 0: the socket receives nothing until bind gives it
            // the device and ETH_P_ALL (created with ETH_P_ALL it would be
            // hooked to every device, and bind would wait for an RCU grace
            // period to unhook it).
            let pkt = check(
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0),
                Stage::PacketSocket(n),
            )?;
            if let Some(slot) = a.packets.get_mut(i) {
                *slot = pkt;
            }
            let index = ifindex(ctl, &nic.peer).map_err(|e| (Stage::PacketSocket(n), e))?;
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = index;
            check(
                libc::bind(
                    pkt,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                ),
                Stage::PacketSocket(n),
            )?;
            let one: libc::c_int = 1;
            // Best effort (Linux >= 4.20): the relay filters outgoing frames
            // itself as well.
            libc::setsockopt(
                pkt,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        send_fds(a).map_err(|e| (Stage::SendSockets, e))?;
        for &fd in &a.packets {
            libc::close(fd);
        }
        libc::close(nl);
        libc::close(ctl);
        libc::close(link_ns);
        check(
            libc::setns(machine_ns, libc::CLONE_NEWNET),
            Stage::NetNamespace,
        )?;
        libc::close(machine_ns);
    }
    Ok(())
}

/// An rtnetlink socket and an ioctl socket in the current network
/// namespace.
fn control_sockets() -> Result<(RawFd, RawFd), Fail> {
    // SAFETY: socket creation touches no memory.
    unsafe {
        let nl = check(
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            ),
            Stage::NetlinkSocket,
        )?;
        let ctl = check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
            Stage::NetlinkSocket,
        )?;
        Ok((nl, ctl))
    }
}

/// Sends a netlink request and checks its acknowledgement.
fn netlink_call(nl: RawFd, msg: &[u8], buf: &mut [u8]) -> Result<(), i32> {
    // SAFETY: `msg` and `buf` are live with the lengths passed.
    unsafe {
        if libc::send(nl, msg.as_ptr().cast(), msg.len(), 0) < 0 {
            return Err(errno());
        }
        let n = libc::recv(nl, buf.as_mut_ptr().cast(), buf.len(), 0);
        if n < 0 {
            return Err(errno());
        }
        link::parse_ack(buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]))
    }
}

/// Capabilities dropped from a machine's bounding set: CAP_SYS_MODULE,
/// CAP_SYS_RAWIO, CAP_SYS_PACCT, CAP_SYS_TIME, CAP_AUDIT_CONTROL,
/// CAP_MAC_OVERRIDE, CAP_MAC_ADMIN, CAP_SYSLOG, CAP_WAKE_ALARM,
/// CAP_BLOCK_SUSPEND.
const HOST_WIDE_CAPS: &[u32] = &[16, 17, 20, 25, 30, 32, 33, 34, 35, 36];

/// `struct ifreq` with room for any of its union members.
#[repr(C)]
struct IfReq {
    name: IfName,
    data: [u8; 24],
}

fn ifindex(ctl: RawFd, name: &IfName) -> Result<libc::c_int, i32> {
    let mut req = IfReq {
        name: *name,
        data: [0; 24],
    };
    // SAFETY: SIOCGIFINDEX reads the name and writes an int into `data`.
    if unsafe { libc::ioctl(ctl, libc::SIOCGIFINDEX, &mut req) } < 0 {
        return Err(errno());
    }
    Ok(libc::c_int::from_ne_bytes([
        req.data[0],
        req.data[1],
        req.data[2],
        req.data[3],
    ]))
}

/// `ethtool -K <name> tx off sg off`: frames leave the machine complete
/// (checksummed and segmented), as a real NIC would put them on the wire.
fn offloads_off(ctl: RawFd, name: &IfName) -> Result<(), i32> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const ETHTOOL_SSG: u32 = 0x19;
    const ETHTOOL_STSO: u32 = 0x1f;
    const ETHTOOL_SGSO: u32 = 0x24;
    for (cmd, required) in [
        (ETHTOOL_STXCSUM, true),
        (ETHTOOL_SSG, false),
        (ETHTOOL_STSO, false),
        (ETHTOOL_SGSO, false),
    ] {
        // struct ethtool_value { u32 cmd; u32 data; }
        let mut value = [0u32; 2];
        value[0] = cmd;
        let mut req = IfReq {
            name: *name,
            data: [0; 24],
        };
        let ptr = value.as_mut_ptr() as usize;
        req.data[..8].copy_from_slice(&ptr.to_ne_bytes());
        // SAFETY: SIOCETHTOOL reads the name and the pointer to `value`,
        // which is live for the call.
        if unsafe { libc::ioctl(ctl, libc::SIOCETHTOOL, &mut req) } < 0 && required {
            return Err(errno());
        }
    }
    Ok(())
}

fn send_fds(a: &mut ChildArgs) -> Result<(), i32> {
    let tag = [b'N'];
    let n = a.packets.len();
    let bytes = n * std::mem::size_of::<RawFd>();
    // SAFETY: the control buffer `a.cmsg` was sized by the parent with
    // cmsg_words(n); the CMSG_* macros stay within it; `tag` and the iovec
    // are live for the call.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: tag.as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = a.cmsg.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(bytes as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(libc::ENOBUFS);
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as usize;
        let data = libc::CMSG_DATA(c).cast::<RawFd>();
        for (i, &fd) in a.packets.iter().enumerate() {
            std::ptr::write_unaligned(data.add(i), fd);
        }
        if libc::sendmsg(a.status, &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Runs one root file system step; returns the errno on failure. Paths
/// below `root` are taken relative to the working directory, and a bind
/// mount's source is `source_fd` when that is open.
fn child_step(step: &Step, root: Option<&CStr>, source_fd: RawFd) -> Result<(), i32> {
    let mut fd_buf = [0u8; 32];
    // SAFETY: (whole block) system calls on NUL-terminated paths and
    // buffers owned by the step, with their exact lengths.
    unsafe {
        match step {
            Step::Dir { path, mode } => {
                let path = at(path, root);
                if libc::mkdir(path, *mode) != 0 && errno() != libc::EEXIST {
                    return Err(errno());
                }
                if libc::chmod(path, *mode) != 0 {
                    return Err(errno());
                }
            }
            Step::File { path, data, mode } => {
                let fd = libc::open(
                    at(path, root),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    *mode,
                );
                if fd < 0 {
                    return Err(errno());
                }
                let mut off = 0;
                while off < data.len() {
                    let rest = data.get(off..).unwrap_or(&[]);
                    let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
                    if n < 0 {
                        let e = errno();
                        if e == libc::EINTR {
                            continue;
                        }
                        libc::close(fd);
                        return Err(e);
                    }
                    off += usize::try_from(n).unwrap_or(0);
                }
                libc::fchmod(fd, *mode);
                libc::close(fd);
            }
            Step::Symlink { target, link } => {
                if libc::symlink(target.as_ptr(), at(link, root)) != 0 {
                    return Err(errno());
                }
            }
            Step::Bind {
                source,
                target,
                dir,
                writable,
            } => {
                let target = at(target, root);
                let source = if source_fd >= 0 {
                    fd_path(source_fd, &mut fd_buf)
                } else {
                    source.as_ptr()
                };
                if *dir {
                    if libc::mkdir(target, 0o755) != 0 && errno() != libc::EEXIST {
                        return Err(errno());
                    }
                } else {
                    let fd = libc::open(
                        target,
                        libc::O_RDONLY | libc::O_CREAT | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        return Err(errno());
                    }
                    libc::close(fd);
                }
                if libc::mount(
                    source,
                    target,
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(errno());
                }
                if !*writable {
                    // Keep the flags the kernel locks in a user namespace.
                    let mut st: libc::statvfs = std::mem::zeroed();
                    if libc::statvfs(target, &mut st) != 0 {
                        return Err(errno());
                    }
                    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    for (st_flag, ms_flag) in [
                        (libc::ST_NOSUID, libc::MS_NOSUID),
                        (libc::ST_NODEV, libc::MS_NODEV),
                        (libc::ST_NOEXEC, libc::MS_NOEXEC),
                        (libc::ST_NOATIME, libc::MS_NOATIME),
                        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
                        (libc::ST_RELATIME, libc::MS_RELATIME),
                    ] {
                        if st.f_flag & st_flag != 0 {
                            flags |= ms_flag;
                        }
                    }
                    if libc::mount(
                        std::ptr::null(),
                        target,
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(errno());
                    }
                }
            }
            Step::Mount {
                fstype,
                target,
                flags,
                data,
            } => {
                let data_ptr = if data.as_bytes().is_empty() {
                    std::ptr::null()
                } else {
                    data.as_ptr().cast()
                };
                if libc::mount(
                    fstype.as_ptr(),
                    at(target, root),
                    fstype.as_ptr(),
                    *flags,
                    data_ptr,
                ) != 0
                {
                    return Err(errno());
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(*self, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip() {
        for s in [
            Stage::NotInit,
            Stage::CreateVeth(3),
            Stage::RootStep(41),
            Stage::Exec,
            Stage::PeerUp(1),
        ] {
            let (k, n) = s.encode();
            assert_eq!(Stage::decode(k, n), Some(s));
        }
        assert_eq!(Stage::decode(99, 0), None);
    }

    #[test]
    fn root_step_errors_get_the_step_text() {
        let steps = vec![Step::Dir {
            path: CString::new("/r/x").unwrap(),
            mode: 0o755,
        }];
        let err = SpawnError::Setup {
            what: describe(Stage::RootStep(0), &steps),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            err.to_string(),
            "failed to create directory /r/x in the machine's namespaces"
        );
    }

    #[test]
    fn pty_is_raw_and_has_a_slave_path() {
        let (_master, slave) = open_pty().expect("pty");
        assert!(slave.starts_with("/dev/pts/"), "{}", slave.display());
        let _s = open_slave(&slave).expect("open slave");
    }

    #[test]
    fn disabled_user_namespaces_get_a_sysctl_hint() {
        let hint = hint_from_sysctls(|p| match p {
            "kernel/unprivileged_userns_clone" => Some("0".into()),
            "user/max_user_namespaces" => Some("0".into()),
            _ => None,
        });
        assert!(
            hint.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{hint}"
        );
        assert!(
            hint.contains("sysctl -w user.max_user_namespaces=15000"),
            "{hint}"
        );
        assert!(hint.contains("run covnet as root"), "{hint}");
        let hint = hint_from_sysctls(|_| Some("1".into()));
        assert!(
            hint.contains("apparmor_restrict_unprivileged_userns=0"),
            "{hint}"
        );
        let hint = hint_from_sysctls(|_| None);
        assert!(
            hint.contains("need root or unprivileged user namespaces"),
            "{hint}"
        );
        let err = SpawnError::Clone {
            flags: FLAG_NAMES.to_owned(),
            hint: hint_from_sysctls(|_| Some("0".into())),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(
            err.to_string().starts_with(
                "failed to create namespaces (pid, mount, uts, ipc, net, user)\n  (hint:"
            ),
            "{err}"
        );
    }

    #[test]
    fn root_maps_the_machine_to_the_private_range() {
        let range = IdMap::Range {
            base: HOST_ID_BASE,
            count: HOST_ID_COUNT,
        };
        assert_eq!(
            range.files(),
            vec![
                ("uid_map", "0 2080374784 65536\n".to_owned()),
                ("gid_map", "0 2080374784 65536\n".to_owned()),
            ]
        );
        assert_eq!(range.host_root(), (HOST_ID_BASE, HOST_ID_BASE));
        let caller = IdMap::Caller {
            uid: 1000,
            gid: 100,
        };
        assert_eq!(
            caller.files(),
            vec![
                ("setgroups", "deny".to_owned()),
                ("uid_map", "0 1000 1\n".to_owned()),
                ("gid_map", "0 100 1\n".to_owned()),
            ]
        );
    }

    #[test]
    fn paths_below_the_root_become_relative() {
        let root = c"/run/m/root";
        let rel = |p: &CStr| {
            // SAFETY: `at` returns a pointer into `p`, which is alive.
            unsafe { CStr::from_ptr(at(p, Some(root))) }.to_owned()
        };
        assert_eq!(rel(c"/run/m/root/etc/hosts"), c"etc/hosts".to_owned());
        assert_eq!(rel(c"/run/m/rootfs/x"), c"/run/m/rootfs/x".to_owned());
        assert_eq!(rel(c"/usr/bin/busybox"), c"/usr/bin/busybox".to_owned());
        assert_eq!(rel(c"/run/m/root"), c"/run/m/root".to_owned());
        let mut buf = [0u8; 32];
        for (fd, text) in [(0, c"/proc/self/fd/0"), (1234, c"/proc/self/fd/1234")] {
            // SAFETY: `fd_path` NUL-terminates `buf`, which is alive.
            let path = unsafe { CStr::from_ptr(fd_path(fd, &mut buf)) };
            assert_eq!(path, text);
        }
    }

    #[test]
    fn wait_status_is_described() {
        assert_eq!(describe_status(0), "exit status: 0");
        assert_eq!(describe_status(9), "signal: 9");
    }
}
