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
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::link::{self, IfName, NicWiring};
use super::rootfs::Step;
use crate::machine::process::{on_spawner, OwnedChild};

mod child;
mod fdio;

use child::child_main;
use fdio::{cmsg_words, recv_record, socketpair_seqpacket, Record};
pub use fdio::{
    describe_status, open_pty, open_slave, pipe, poll, poll_readable, read_fd, set_nonblocking,
    write_byte, write_fd, Readiness,
};

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

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(*self, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::child::{at, fd_path};
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
