//! The run's private directory: sockets, logs and pcaps of one run.
//!
//! Created mode 0700 under `$XDG_RUNTIME_DIR` (or `/tmp`), so no other user
//! can reach the VMs' consoles or network sockets; removed when dropped
//! unless [`RunDir::keep`] was called.
//!
//! A covnet that is SIGKILLed cannot remove its directory (its QEMUs die
//! with it through `PR_SET_PDEATHSIG`, its files do not). Each directory
//! therefore holds an [`OWNER_FILE`] naming the covnet process (pid and
//! start time, so a reused pid is not mistaken for the owner), and every
//! [`RunDir::create_in`] first removes the directories in its base whose
//! owner is gone ([`reclaim_stale`]). Kept directories carry a
//! [`KEEP_FILE`] and are left alone.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest path a unix socket address can hold (`sun_path` minus the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// File in each run directory naming its covnet: `<pid> <start time>`
/// (the start time in clock ticks after boot, field 22 of `/proc/<pid>/stat`).
pub const OWNER_FILE: &str = "covnet.owner";

/// Marker of a directory kept on purpose (`--keep-run-dir`): never reclaimed.
pub const KEEP_FILE: &str = "covnet.keep";

/// Prefix of every run directory's name.
const PREFIX: &str = "covnet-";

/// A failure to create or use the run directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunDirError {
    /// The directory could not be created.
    #[error("failed to create run directory under {}", base.display())]
    Create {
        /// The parent directory.
        base: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A socket path would not fit in a unix socket address.
    #[error("socket path {} is {len} bytes, longer than the {MAX_SOCKET_PATH} a unix socket allows\n  (hint: set XDG_RUNTIME_DIR or TMPDIR to a shorter directory, or use shorter machine names)", path.display())]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

/// A private, self-removing directory for one run.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    /// Creates a fresh directory under `$XDG_RUNTIME_DIR` when that is set
    /// to an existing directory, else under `$TMPDIR` or `/tmp`.
    pub fn create() -> Result<RunDir, RunDirError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        RunDir::create_in(&base)
    }

    /// Creates a fresh `covnet-<pid>-<n>` directory, mode 0700, in `base`,
    /// recording its owner, after removing the stale directories of dead
    /// covnet processes in `base` (see [`reclaim_stale`]).
    pub fn create_in(base: &Path) -> Result<RunDir, RunDirError> {
        for dir in reclaim_stale(base) {
            crate::diag::notice(format!(
                "removed stale run directory {} (its covnet process is gone)",
                dir.display()
            ));
        }
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "covnet-{}-{:x}",
                std::process::id(),
                nanos.wrapping_add(n.wrapping_mul(0x9e37_79b9))
            );
            let path = base.join(name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    // umask can only clear bits; make the mode exact anyway.
                    let dir = RunDir { path, keep: false };
                    let owner =
                        own_start_time().map(|start| format!("{} {start}\n", std::process::id()));
                    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))
                        .and(owner)
                        .and_then(|owner| std::fs::write(dir.file(OWNER_FILE), owner))
                        .map_err(|source| RunDirError::Create {
                            base: base.to_owned(),
                            source,
                        })?;
                    return Ok(dir);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_err = Some(err),
                Err(source) => {
                    return Err(RunDirError::Create {
                        base: base.to_owned(),
                        source,
                    })
                }
            }
        }
        Err(RunDirError::Create {
            base: base.to_owned(),
            source: last_err.unwrap_or_else(|| io::Error::other("no free name")),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path for a file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A path for a unix socket in the directory, checked to fit.
    pub fn socket(&self, name: &str) -> Result<PathBuf, RunDirError> {
        let path = self.path.join(name);
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(RunDirError::SocketPathTooLong { path, len });
        }
        Ok(path)
    }

    /// Keeps the directory on drop (for post-mortem inspection), and from
    /// being reclaimed by a later covnet.
    pub fn keep(&mut self) {
        self.keep = true;
        if let Err(err) = std::fs::write(self.file(KEEP_FILE), b"") {
            crate::diag::warn(format!(
                "failed to mark run directory {} as kept: {err}",
                self.path.display()
            ));
        }
    }
}

/// Makes a socket that was just bound owner-only (mode 0700), like the
/// run directory it lives in, whatever the process umask was.
pub fn restrict_socket(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// The start time (clock ticks after boot) of process `pid`, from
/// `/proc/<pid>/stat`; `None` when there is no such live process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name start at field 3 (state);
    // starttime is field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn own_start_time() -> io::Result<u64> {
    start_time(std::process::id())
        .ok_or_else(|| io::Error::other("cannot read this process's start time from /proc"))
}

/// Removes the run directories in `base` whose covnet process is gone and
/// returns them. A directory is stale when it belongs to this user, is not
/// kept, and its [`OWNER_FILE`] names a pid that no longer runs (or runs a
/// process started at another time: the pid was reused). A directory
/// without an owner file (its covnet died while creating it) is stale when
/// the pid in its name is gone. Anything unreadable is left alone.
pub fn reclaim_stale(base: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    // This user's uid: the owner of our own /proc entry.
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || path.join(KEEP_FILE).exists() {
            continue;
        }
        let alive = match std::fs::read_to_string(path.join(OWNER_FILE)) {
            Ok(owner) => {
                let mut words = owner.split_whitespace();
                match (
                    words.next().and_then(|w| w.parse::<u32>().ok()),
                    words.next().and_then(|w| w.parse::<u64>().ok()),
                ) {
                    (Some(pid), Some(start)) => start_time(pid) == Some(start),
                    // Unreadable owner: not ours to judge.
                    _ => true,
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => start_time(pid).is_some(),
            Err(_) => true,
        };
        if alive {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            // Another covnet reclaimed it at the same time.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => crate::diag::warn(format!(
                "failed to remove stale run directory {}: {err}",
                path.display()
            )),
        }
    }
    removed
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                crate::diag::warn(format!(
                    "failed to remove run directory {}: {err}",
                    self.path.display()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_removed_on_drop() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create_in(base.path()).expect("create");
        let path = dir.path().to_owned();
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        std::fs::write(dir.file("x.log"), b"x").expect("write");
        std::fs::create_dir(dir.file("sub")).expect("mkdir");
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn two_dirs_differ_and_keep_keeps() {
        let base = tempfile::tempdir().expect("tempdir");
        let mut a = RunDir::create_in(base.path()).expect("a");
        let b = RunDir::create_in(base.path()).expect("b");
        assert_ne!(a.path(), b.path());
        a.keep();
        let kept = a.path().to_owned();
        drop(a);
        assert!(kept.is_dir());
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create_in(base.path()).expect("create");
        assert!(dir.socket("a.sock").is_ok());
        let err = dir.socket(&"m".repeat(120)).unwrap_err();
        assert!(err.to_string().contains("hint:"), "{err}");
    }

    /// A pid above the kernel's largest `pid_max`: never a live process.
    const DEAD_PID: u32 = 99_999_999;

    fn fake_run_dir(base: &Path, name: &str, owner: Option<String>) -> PathBuf {
        let dir = base.join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("m-ctl.sock"), b"").expect("file");
        if let Some(owner) = owner {
            std::fs::write(dir.join(OWNER_FILE), owner).expect("owner");
        }
        dir
    }

    #[test]
    fn owner_file_names_this_process() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create_in(base.path()).expect("create");
        let owner = std::fs::read_to_string(dir.file(OWNER_FILE)).expect("owner file");
        let start = own_start_time().expect("start time");
        assert_eq!(owner, format!("{} {start}\n", std::process::id()));
        // A live owner's directory survives another covnet's start.
        let _other = RunDir::create_in(base.path()).expect("second");
        assert!(dir.path().is_dir());
    }

    #[test]
    fn stale_dirs_of_dead_owners_are_reclaimed_and_others_left() {
        let base = tempfile::tempdir().expect("tempdir");
        let b = base.path();
        let me = std::process::id();
        let start = own_start_time().expect("start time");
        let dead = fake_run_dir(b, "covnet-1-a", Some(format!("{DEAD_PID} 5\n")));
        let reused = fake_run_dir(b, "covnet-2-b", Some(format!("{me} {}\n", start + 1)));
        let no_owner_dead = fake_run_dir(b, &format!("covnet-{DEAD_PID}-c"), None);
        let live = fake_run_dir(b, "covnet-3-d", Some(format!("{me} {start}\n")));
        let no_owner_live = fake_run_dir(b, &format!("covnet-{me}-e"), None);
        let garbled = fake_run_dir(b, "covnet-4-f", Some("x y".into()));
        let kept = fake_run_dir(b, "covnet-5-g", Some(format!("{DEAD_PID} 5\n")));
        std::fs::write(kept.join(KEEP_FILE), b"").expect("keep");
        let foreign = fake_run_dir(b, "other-6-h", Some(format!("{DEAD_PID} 5\n")));

        let mut removed = reclaim_stale(b);
        removed.sort();
        let mut want = vec![dead, reused, no_owner_dead];
        want.sort();
        assert_eq!(removed, want);
        for gone in &want {
            assert!(!gone.exists(), "{}", gone.display());
        }
        for left in [live, no_owner_live, garbled, kept, foreign] {
            assert!(left.is_dir(), "{}", left.display());
        }
    }

    #[test]
    fn create_reclaims_and_keep_protects() {
        let base = tempfile::tempdir().expect("tempdir");
        let stale = fake_run_dir(base.path(), "covnet-7-a", Some(format!("{DEAD_PID} 1\n")));
        let mut kept = RunDir::create_in(base.path()).expect("create");
        assert!(!stale.exists());
        kept.keep();
        let kept_path = kept.path().to_owned();
        drop(kept);
        // Its owner (this process) is alive anyway; fake a dead one.
        std::fs::write(kept_path.join(OWNER_FILE), format!("{DEAD_PID} 1\n")).expect("owner");
        let _next = RunDir::create_in(base.path()).expect("create");
        assert!(kept_path.is_dir());
    }

    #[test]
    fn missing_base_is_an_error_naming_it() {
        let err = RunDir::create_in(Path::new("/nonexistent/base")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/base"), "{err}");
    }
}
