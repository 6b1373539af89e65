//! Booted guests, saved once and restored: the snapshot cache.
//!
//! A VM's init holds at the point where every boot of its image is the same
//! (kernel up, modules loaded, the control port open) and waits for the
//! host's release before it takes its identity (clock, entropy, hostname,
//! addresses, services: see `guest/init.sh`). The first time an image is
//! booted there, the host saves the running guest with QEMU's own migration
//! to a file in this cache; later boots of the same image start QEMU with
//! `-incoming` from that file instead, and are released at the same point.
//!
//! A snapshot is only ever restored into the QEMU it was saved with: its
//! key hashes the QEMU binary, kernel and initramfs (path, size, mtime; the
//! initramfs is content-addressed by the image cache) and the whole QEMU
//! command line with the run's socket paths left out. Anything else boots
//! cold. The cache keeps the most recently used files up to a size limit.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use super::qemu::{self, Nic, QemuConfig};

/// Bump when what a snapshot holds changes meaning (e.g. the hold protocol
/// of `guest/init.sh`), to stop restoring older ones.
const FORMAT: &str = "covnet-snapshot-4";

/// The cache's default size limit: a snapshot is the guest memory the boot
/// touched (about 40–100 MB for covnet's guests).
pub const DEFAULT_LIMIT_BYTES: u64 = 4 << 30;

/// Distinguishes temporary files of one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory of saved guests, `<key>.vmstate` each with a `<key>.json`
/// describing what it was saved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCache {
    dir: PathBuf,
    limit_bytes: u64,
}

/// What identifies a saved guest: the hash and what went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    /// Hex SHA-256 of everything below.
    pub hex: String,
    /// The inputs, one per line (written beside the snapshot for people).
    pub description: String,
}

impl SnapshotCache {
    /// A cache in `dir` with the default size limit.
    pub fn new(dir: impl Into<PathBuf>) -> SnapshotCache {
        SnapshotCache {
            dir: dir.into(),
            limit_bytes: DEFAULT_LIMIT_BYTES,
        }
    }

    /// The default place: `snapshots/` beside the image cache
    /// ([`crate::image::initramfs::default_cache_dir`]).
    pub fn default_dir() -> PathBuf {
        let images = crate::image::initramfs::default_cache_dir();
        images
            .parent()
            .map_or_else(|| images.join("snapshots"), |p| p.join("snapshots"))
    }

    /// The same cache with another size limit.
    pub fn with_limit(mut self, bytes: u64) -> SnapshotCache {
        self.limit_bytes = bytes;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved guest's file for `key` (whether or not it exists).
    pub fn state_path(&self, key: &SnapshotKey) -> PathBuf {
        self.dir.join(format!("{}.vmstate", key.hex))
    }

    /// The saved guest for `key` if there is one; marks it used, so that
    /// pruning keeps it.
    pub fn lookup(&self, key: &SnapshotKey) -> Option<PathBuf> {
        let path = self.state_path(key);
        let file = fs::File::options().append(true).open(&path).ok()?;
        let _ = file.set_modified(SystemTime::now());
        Some(path)
    }

    /// Removes the saved guest for `key` (it could not be restored).
    pub fn discard(&self, key: &SnapshotKey) {
        let _ = fs::remove_file(self.state_path(key));
        let _ = fs::remove_file(self.dir.join(format!("{}.json", key.hex)));
    }

    /// A new temporary file name to save a guest into (the directory is
    /// created); [`SnapshotCache::commit`] moves it into place.
    pub fn begin(&self) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .dir
            .join(format!(".save-{}-{seq}.tmp", std::process::id())))
    }

    /// Moves a saved guest from `tmp` into place for `key` (atomically:
    /// a concurrent restore sees the old file or the new one), writes its
    /// description, prunes the cache. Returns the file's path and size.
    pub fn commit(&self, key: &SnapshotKey, tmp: &Path) -> io::Result<(PathBuf, u64)> {
        let bytes = fs::metadata(tmp)?.len();
        if bytes == 0 {
            let _ = fs::remove_file(tmp);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QEMU wrote an empty snapshot",
            ));
        }
        let path = self.state_path(key);
        fs::write(self.dir.join(format!("{}.json", key.hex)), &key.description)?;
        fs::rename(tmp, &path)?;
        self.prune(&path);
        Ok((path, bytes))
    }

    /// Removes the least recently used snapshots (and stale temporary
    /// files of processes that are gone) until the cache fits its limit;
    /// never `keep`.
    fn prune(&self, keep: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut states = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(pid) = name
                .strip_prefix(".save-")
                .and_then(|rest| rest.split('-').next())
            {
                let gone = !Path::new(&format!("/proc/{pid}")).exists();
                if gone {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(".vmstate") {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                states.push((used, meta.len(), path));
            }
        }
        let mut total: u64 = states.iter().map(|(_, len, _)| len).sum();
        states.sort();
        for (_, len, path) in states {
            if total <= self.limit_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(path.with_extension("json"));
            total -= len;
        }
    }
}

/// The snapshot files whose guest a VM of this process is booting cold
/// (see [`ColdBoot`]), and the condition their waiters wait on.
static COLD_BOOTS: (Mutex<Vec<PathBuf>>, Condvar) = (Mutex::new(Vec::new()), Condvar::new());

/// One VM's claim to boot a snapshot's guest cold and save it. Machines
/// of one image share a snapshot key (the base and the slot MACs are the
/// same for all), so in a network that finds no snapshot the others can
/// wait for the first one's ([`ColdBoot::wait`]) and restore it instead
/// of each booting cold. Dropping the claim, saved or not, wakes them.
#[derive(Debug)]
pub struct ColdBoot {
    state: PathBuf,
}

impl ColdBoot {
    /// Claims the cold boot of `state` (a snapshot file), unless another
    /// VM of this process holds it.
    pub fn claim(state: &Path) -> Option<ColdBoot> {
        let mut booting = COLD_BOOTS.0.lock().unwrap_or_else(PoisonError::into_inner);
        if booting.iter().any(|p| p == state) {
            return None;
        }
        booting.push(state.to_owned());
        Some(ColdBoot {
            state: state.to_owned(),
        })
    }

    /// Waits until no VM of this process holds the cold boot of `state`,
    /// or until `deadline`.
    pub fn wait(state: &Path, deadline: Instant) {
        let (lock, cond) = &COLD_BOOTS;
        let mut booting = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while booting.iter().any(|p| p == state) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            booting = cond
                .wait_timeout(booting, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for ColdBoot {
    fn drop(&mut self) {
        let (lock, cond) = &COLD_BOOTS;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p| *p != self.state);
        cond.notify_all();
    }
}

/// The placeholder that stands for the run directory's sockets in a key.
fn placeholder(name: &str) -> PathBuf {
    PathBuf::from(format!("<run>/{name}"))
}

/// `cfg` with every per-run socket path replaced by a placeholder: what a
/// restored QEMU must be started with, apart from where its sockets are.
fn normalized(cfg: &QemuConfig) -> QemuConfig {
    let mut cfg = cfg.clone();
    cfg.serial_socket = placeholder("serial");
    cfg.control_socket = placeholder("control");
    cfg.terminal_socket = placeholder("terminal");
    cfg.qmp_socket = placeholder("qmp");
    // Any machine's layer disk: its content is read after the release
    // (the key names its size, see `key`).
    cfg.layer = cfg.layer.as_ref().map(|_| placeholder("layer"));
    cfg.nics = cfg
        .nics
        .iter()
        .map(|nic| Nic {
            local: placeholder(&format!("nic{}", nic.index)),
            remote: placeholder(&format!("port{}", nic.index)),
            ..nic.clone()
        })
        .collect();
    cfg
}

/// The program `program` names, as the process spawner would find it
/// (a name without `/` is looked up in `PATH`).
pub fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Some(program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The key of a guest booted by `qemu_binary` with `cfg`. Fails when a file
/// it names cannot be read (the boot would fail as well).
pub fn key(qemu_binary: &Path, cfg: &QemuConfig) -> io::Result<SnapshotKey> {
    let binary = resolve_program(qemu_binary).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not in PATH", qemu_binary.display()),
        )
    })?;
    let mut description = format!("{FORMAT}\n");
    for (what, path) in [
        ("qemu", binary.as_path()),
        ("kernel", &cfg.kernel),
        ("initrd", &cfg.initrd),
    ] {
        description.push_str(&crate::image::file_version(what, path)?);
        description.push('\n');
    }
    if let Some(layer) = &cfg.layer {
        // The guest has seen the disk's size since its boot.
        let bytes = fs::metadata(layer)?.len();
        description.push_str(&format!("layer disk {bytes} bytes\n"));
    }
    let argv: Vec<OsString> = qemu::command_line(&normalized(cfg));
    for arg in &argv {
        description.push_str("arg ");
        description.push_str(&arg.to_string_lossy());
        description.push('\n');
    }
    let mut hashed = description.clone().into_bytes();
    for arg in &argv {
        // The exact bytes too (the description is lossy for non-UTF-8).
        hashed.extend_from_slice(arg.as_bytes());
        hashed.push(0);
    }
    Ok(SnapshotKey {
        hex: covnet_collector::collect::hex_sha256(&hashed),
        description,
    })
}

/// The `-incoming` URI that restores the guest saved at `path`. QEMU 7.2
/// waits forever on an `exec:` stream that ends before the first byte (a
/// missing file: another VM of the run removed the snapshot it could not
/// restore, between this one's lookup and its `cat`), so a `cat` that
/// fails ends QEMU (its shell's parent), and the restore fails at once.
pub fn incoming_uri(path: &Path) -> OsString {
    OsString::from(format!("exec:cat {} || kill $PPID", quoted(path)))
}

/// `path` quoted for `/bin/sh`, which QEMU runs `exec:` migration URIs
/// with (lossy for a path that is not UTF-8, as URIs are text).
pub fn quoted(path: &Path) -> String {
    crate::image::guest_files::sh_quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vm::accel::Accel;
    use crate::machine::vm::qemu::Mac;

    fn config(dir: &Path, run: &str) -> QemuConfig {
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.cpio.gz");
        for (path, data) in [(&kernel, b"kernel"), (&initrd, b"initrd")] {
            if !path.exists() {
                fs::write(path, data).expect("boot file");
            }
        }
        QemuConfig {
            accel: Accel::Tcg,
            bios: None,
            memory_mib: 128,
            cpus: 1,
            kernel,
            initrd,
            append: "console=ttyS0".into(),
            serial_socket: format!("/{run}/s").into(),
            control_socket: format!("/{run}/c").into(),
            terminal_socket: format!("/{run}/t").into(),
            qmp_socket: format!("/{run}/q").into(),
            nics: vec![Nic {
                index: 0,
                mac: Mac::for_nic(1, 2, 0),
                local: format!("/{run}/n0").into(),
                remote: format!("/{run}/p0").into(),
            }],
            forwards: vec![],
            forward_mac: Mac::for_forward(2),
            layer: None,
        }
    }

    fn fake_qemu(dir: &Path) -> PathBuf {
        let qemu = dir.join("qemu-system-x86_64");
        fs::write(&qemu, b"#!/bin/sh\n").expect("qemu");
        qemu
    }

    #[test]
    fn runs_differ_only_in_sockets_and_share_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qemu = fake_qemu(dir.path());
        let a = key(&qemu, &config(dir.path(), "run-a")).expect("key a");
        let b = key(&qemu, &config(dir.path(), "run-b")).expect("key b");
        assert_eq!(a, b);
        assert_eq!(a.hex.len(), 64);
        assert!(a.description.starts_with("covnet-snapshot-4\nqemu "));
        assert!(a.description.contains("arg -m\narg 128M\n"));
        assert!(!a.description.contains("run-a"), "{}", a.description);
    }

    #[test]
    fn anything_the_guest_sees_changes_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qemu = fake_qemu(dir.path());
        let base = config(dir.path(), "r");
        let k0 = key(&qemu, &base).expect("key");
        let mut more_memory = base.clone();
        more_memory.memory_mib = 256;
        let mut other_mac = base.clone();
        other_mac.nics[0].mac = Mac::for_nic(1, 3, 0);
        let mut other_params = base.clone();
        other_params.append.push_str(" x=1");
        for changed in [more_memory, other_mac, other_params] {
            assert_ne!(key(&qemu, &changed).expect("key").hex, k0.hex);
        }
        // A rebuilt initramfs (other size) and another QEMU binary.
        fs::write(&base.initrd, b"initrd, rebuilt").expect("initrd");
        let k1 = key(&qemu, &base).expect("key");
        assert_ne!(k1.hex, k0.hex);
        fs::write(&qemu, b"#!/bin/sh\n# QEMU, updated\n").expect("qemu");
        assert_ne!(key(&qemu, &base).expect("key").hex, k1.hex);
        // A file that is gone: no key, a cold boot (which reports it).
        fs::remove_file(&base.kernel).expect("rm");
        let err = key(&qemu, &base).expect_err("no kernel");
        assert!(err.to_string().contains("vmlinuz"), "{err}");
    }

    #[test]
    fn commit_lookup_discard_and_prune_by_last_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(dir.path().join("snaps")).with_limit(25);
        let keys: Vec<SnapshotKey> = (0..3)
            .map(|i| SnapshotKey {
                hex: format!("{i:064x}"),
                description: format!("snapshot {i}\n"),
            })
            .collect();
        assert_eq!(cache.lookup(&keys[0]), None);
        let save = |k: &SnapshotKey| {
            let tmp = cache.begin().expect("begin");
            fs::write(&tmp, [7u8; 10]).expect("write");
            cache.commit(k, &tmp).expect("commit")
        };
        let (p0, bytes) = save(&keys[0]);
        assert_eq!(bytes, 10);
        assert_eq!(cache.lookup(&keys[0]), Some(p0.clone()));
        assert_eq!(
            fs::read_to_string(p0.with_extension("json")).expect("json"),
            "snapshot 0\n"
        );
        // Used in this order: 1 saved, then 0 restored; saving 2 goes over
        // 25 bytes and drops the least recently used, 1.
        save(&keys[1]);
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options()
            .append(true)
            .open(cache.state_path(&keys[1]))
            .and_then(|f| f.set_modified(old))
            .expect("age");
        assert!(cache.lookup(&keys[0]).is_some());
        save(&keys[2]);
        assert!(cache.lookup(&keys[1]).is_none(), "least recently used");
        assert!(cache.lookup(&keys[0]).is_some());
        assert!(cache.lookup(&keys[2]).is_some());
        cache.discard(&keys[0]);
        assert!(cache.lookup(&keys[0]).is_none());
        assert!(!p0.with_extension("json").exists());
        // An empty file is no snapshot.
        let tmp = cache.begin().expect("begin");
        fs::write(&tmp, b"").expect("write");
        assert!(cache.commit(&keys[0], &tmp).is_err());
        assert!(!tmp.exists());
    }

    #[test]
    fn one_cold_boot_per_snapshot_and_waiters_wake_when_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("k.vmstate");
        let other = dir.path().join("other.vmstate");
        let first = ColdBoot::claim(&state).expect("first claim");
        assert!(ColdBoot::claim(&state).is_none(), "claimed already");
        let _other = ColdBoot::claim(&other).expect("another key is free");
        // A waiter with a deadline gives up.
        let t = Instant::now();
        ColdBoot::wait(&state, t + std::time::Duration::from_millis(50));
        assert!(t.elapsed() >= std::time::Duration::from_millis(50));
        // A waiter wakes when the claim is dropped, then may claim.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                ColdBoot::wait(&state, Instant::now() + std::time::Duration::from_secs(30));
                ColdBoot::claim(&state).is_some()
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(first);
            assert!(waiter.join().expect("waiter"), "free once dropped");
        });
    }

    /// A snapshot gone between the lookup and QEMU's start ends QEMU at
    /// once instead of leaving it waiting for a stream (QEMU 7.2 waits
    /// forever on one that ends before its first byte).
    #[test]
    fn a_restore_from_a_missing_file_ends_qemu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = std::process::Command::new("qemu-system-x86_64");
        cmd.args([
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "pc",
            "-incoming",
        ])
        .arg(incoming_uri(&dir.path().join("gone.vmstate")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let mut qemu = crate::machine::process::OwnedChild::spawn(cmd, "qemu (restore test)")
            .expect("qemu-system-x86_64 is required (bash scripts/setup.sh)");
        let ended = qemu.wait_timeout(std::time::Duration::from_secs(30));
        if !matches!(ended, Ok(Some(_))) {
            let _ = qemu.kill();
            panic!("QEMU still waits for the missing snapshot: {ended:?}");
        }
    }

    #[test]
    fn quoting_for_the_migration_shell() {
        assert_eq!(quoted(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(quoted(Path::new("/it's")), r"'/it'\''s'");
        assert_eq!(
            incoming_uri(Path::new("/it's")),
            OsString::from(r"exec:cat '/it'\''s' || kill $PPID")
        );
    }
}
