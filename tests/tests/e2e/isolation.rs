//! A run is private (issue 6, part 4): while `covnet run` is up, the only
//! TCP or UDP socket that covnet and its QEMUs have bound on the host is
//! the forward the spec asks for, on 127.0.0.1 (read from
//! /proc/net/{tcp,tcp6,udp,udp6} and attributed through /proc/<pid>/fd);
//! every unix socket they bound lies in the run directory, which is 0700
//! like the sockets in it; and two runs of one spec at the same time both
//! pass.
//!
//! Needs qemu-system-x86_64, busybox-static and a Debian kernel in /boot.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use covnet_runner::image::kernel::Kernel;
use covnet_tests::running::{children_of, qemu_processes, run_dirs_in, CovnetRun};

const BOOT: Duration = Duration::from_secs(240);
const STOP: Duration = Duration::from_secs(120);
const READY: &str = "covnet-test: ready";

fn require_vm_tools() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required for VM tests (bash scripts/setup.sh): {qemu:?}"
    );
    if let Err(e) = Kernel::host_default() {
        panic!("a Debian kernel in /boot is required for VM tests: {e}");
    }
}

/// One bound inet socket from /proc/net.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InetSocket {
    proto: &'static str,
    local: SocketAddr,
    inode: u64,
}

/// An address as /proc/net prints it: the in-memory bytes as native u32s.
fn proc_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let part = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(part, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Listening TCP and bound UDP sockets of the host's network namespace.
fn bound_inet_sockets() -> Vec<InetSocket> {
    let mut found = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/net/{proto}"))
            .unwrap_or_else(|e| panic!("read /proc/net/{proto}: {e}"));
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some((addr, port)) = local.split_once(':') else {
                continue;
            };
            let (Some(ip), Ok(port), Ok(inode)) = (
                proc_addr(addr),
                u16::from_str_radix(port, 16),
                inode.parse::<u64>(),
            ) else {
                continue;
            };
            let tcp = proto.starts_with("tcp");
            if tcp && *state != "0A" {
                continue;
            }
            found.push(InetSocket {
                proto,
                local: SocketAddr::new(ip, port),
                inode,
            });
        }
    }
    found
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while let Some(&p) = all.get(i) {
        all.extend(children_of(p));
        i += 1;
    }
    all
}

/// Socket inodes open in any of `pids`.
fn socket_inodes(pids: &[u32]) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy();
                if let Some(n) = target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    inodes.insert(n);
                }
            }
        }
    }
    inodes
}

/// Paths of the named unix sockets among `inodes` (/proc/net/unix).
fn unix_socket_paths(inodes: &BTreeSet<u64>) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(6)?.parse().ok()?;
            let path = fields.get(7)?;
            inodes.contains(&inode).then(|| (*path).to_owned())
        })
        .collect()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Connects to the forward until the guest's `nc` answers with a line;
/// returns it.
fn read_through_forward(port: u16, deadline: Instant) -> String {
    loop {
        let got = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match got {
            Ok(text) if !text.trim().is_empty() => return text.trim().to_owned(),
            _ if Instant::now() >= deadline => panic!("nothing came through port {port}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// While a run is up: its only inet socket is the spec's forward on
/// 127.0.0.1 (the host's other new sockets belong to other processes), its
/// unix sockets are in its run directory, and that directory and its
/// sockets are owner-only. The forward works (the test talks to the guest
/// through it, which is also how the test tells the script to go on).
#[test]
fn only_the_forward_listens_and_the_run_dir_is_private() {
    require_vm_tools();
    let before: BTreeSet<(SocketAddr, &str)> = bound_inet_sockets()
        .into_iter()
        .map(|s| (s.local, s.proto))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("run");
    std::fs::create_dir(&base).expect("run base");
    let port = free_port();
    let spec = format!(
        "[defaults]\ncommand_timeout = \"10m\"\n[machines.server]\nmemory_mib = 128\nforward = [\"{port}:81\"]\n[machines.peer]\nmemory_mib = 128\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"{READY}\");\nserver.succeed(\"echo ready | nc -l -p 81\");\nserver.succeed(\"echo done | nc -l -p 81\");\n'''\n"
    );
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec).expect("write spec");
    let out = dir.path().join("out");
    let mut run = CovnetRun::spawn(
        &[
            "run",
            spec_path.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--no-console",
        ],
        dir.path(),
        &base,
    )
    .expect("covnet starts");
    let run_dir = run.run_dir(BOOT).expect("run directory");
    run.wait_for_line(READY, BOOT).expect("machines up");
    let deadline = Instant::now() + BOOT;
    assert_eq!(read_through_forward(port, deadline), "ready");

    // The script now waits in the second `nc`: everything is up.
    let tree = process_tree(run.pid());
    assert_eq!(
        qemu_processes(&run_dir).len(),
        2,
        "two QEMUs: {:?}",
        qemu_processes(&run_dir)
    );
    let inodes = socket_inodes(&tree);
    let during = bound_inet_sockets();
    let ours: Vec<&InetSocket> = during
        .iter()
        .filter(|s| inodes.contains(&s.inode))
        .collect();
    let want = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    assert!(
        ours.len() == 1 && ours.iter().all(|s| s.proto == "tcp" && s.local == want),
        "covnet and its QEMUs (pids {tree:?}) should listen on {want} only, found {ours:#?}"
    );
    let new: Vec<&InetSocket> = during
        .iter()
        .filter(|s| !before.contains(&(s.local, s.proto)))
        .collect();
    assert!(
        new.iter().any(|s| s.local == want),
        "the forward is new since the snapshot: {new:#?}"
    );
    for path in unix_socket_paths(&inodes) {
        assert!(
            path.starts_with(&*run_dir.to_string_lossy()),
            "unix socket {path} outside the run directory {}",
            run_dir.display()
        );
    }
    let meta = std::fs::metadata(&run_dir).expect("run dir");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "run dir mode");
    // SAFETY: getuid has no preconditions and cannot fail.
    assert_eq!(meta.uid(), unsafe { libc::getuid() });
    let mut sockets = 0;
    for entry in std::fs::read_dir(&run_dir).expect("list run dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        if meta.file_type().is_socket() {
            sockets += 1;
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o700,
                "socket {} is not owner-only",
                entry.path().display()
            );
        }
    }
    // Per machine: serial, control, QMP; per NIC: QEMU's end and the switch's.
    assert!(sockets >= 10, "{sockets} sockets in {}", run_dir.display());

    assert_eq!(read_through_forward(port, deadline), "done");
    let status = run.wait(STOP).expect("run ends");
    assert!(status.success(), "{}", run.stderr());
    assert!(!run_dir.exists());
    assert!(qemu_processes(&run_dir).is_empty());
}

/// Two runs of the same spec at the same time (same spec file, same image
/// built by both at once, same addresses on their own switches) both pass
/// and leave nothing behind.
#[test]
fn two_runs_of_one_spec_at_once_both_pass() {
    require_vm_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("run");
    std::fs::create_dir(&base).expect("run base");
    // Content unique to this test run: the image is not in the cache yet,
    // so both runs build it at the same moment.
    let unique = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let spec = format!(
        "[machines.server]\nmemory_mib = 128\n[[machines.server.files]]\ncontent = \"page {unique}\"\ntarget = \"/srv/www/index.html\"\n[[machines.server.services]]\nname = \"httpd\"\ncommand = \"busybox httpd -f -p 80 -h /srv/www\"\nready = {{ port = 80 }}\n[machines.client]\nmemory_mib = 128\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nserver.wait_for_service(\"httpd\");\nlet page = client.succeed(\"wget -q -O - http://server/\");\nif page != \"page {unique}\" {{ throw `wrong page: ${{page}}`; }}\nclient.succeed(\"ping -c 1 -W 5 server\");\n'''\n"
    );
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec).expect("write spec");
    let start = |out: &str| -> (CovnetRun, PathBuf) {
        let out = dir.path().join(out);
        let run = CovnetRun::spawn(
            &[
                "run",
                spec_path.to_str().expect("utf-8"),
                "--out",
                out.to_str().expect("utf-8"),
                "--no-console",
            ],
            dir.path(),
            &base,
        )
        .expect("covnet starts");
        (run, out)
    };
    let (mut a, _) = start("out-a");
    let (mut b, _) = start("out-b");
    let dir_a = a.run_dir(BOOT).expect("run dir a");
    let dir_b = b.run_dir(BOOT).expect("run dir b");
    assert_ne!(dir_a, dir_b);
    let status_a = a.wait(BOOT + STOP).expect("run a ends");
    let status_b = b.wait(BOOT + STOP).expect("run b ends");
    assert!(status_a.success(), "run a:\n{}", a.stderr());
    assert!(status_b.success(), "run b:\n{}", b.stderr());
    for d in [&dir_a, &dir_b] {
        assert!(qemu_processes(d).is_empty());
    }
    assert_eq!(run_dirs_in(&base), Vec::<PathBuf>::new());
}
