//! The cloned child of a namespace machine: everything it does between
//! `clone` and `exec` of init (network, root file system, becoming the
//! user namespace's root). Nothing here may allocate, lock or panic: the
//! child is a copy of a multi-threaded process.

use super::*;

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

pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
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
        // The root was built with umask 0 (exact modes); init starts with
        // the kernel's umask for PID 1, 022, as in a VM: files that guest
        // programs create get the modes they get there (sshd refuses a
        // world-writable authorized_keys).
        libc::umask(0o022);
        // covnet runs without transparent huge pages (main.rs); the
        // machine's processes get the host's setting, as in a VM.
        libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
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
pub(super) fn at(path: &CStr, root: Option<&CStr>) -> *const libc::c_char {
    let bytes = path.to_bytes();
    match root.map(CStr::to_bytes) {
        Some(r) if bytes.len() > r.len() + 1 && bytes.starts_with(r) && bytes[r.len()] == b'/' => {
            path.as_ptr().wrapping_add(r.len() + 1)
        }
        _ => path.as_ptr(),
    }
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `buf` (no allocation).
pub(super) fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> *const libc::c_char {
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
            // Best effort (Linux >= 4.20): the switch filters outgoing frames
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
