//! The run's private directory: sockets, logs and pcaps of one run.
//!
//! Created mode 0700 under `$XDG_RUNTIME_DIR` (or `/tmp`), so no other user
//! can reach the VMs' consoles or network sockets; removed when dropped
//! unless [`RunDir::keep`] was called.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest path a unix socket address can hold (`sun_path` minus the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

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

    /// Creates a fresh `covnet-<pid>-<n>` directory, mode 0700, in `base`.
    pub fn create_in(base: &Path) -> Result<RunDir, RunDirError> {
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
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                        .map_err(|source| RunDirError::Create {
                            base: base.to_owned(),
                            source,
                        })?;
                    return Ok(RunDir { path, keep: false });
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

    /// Keeps the directory on drop (for post-mortem inspection).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "covnet: warning: failed to remove run directory {}: {err}",
                    self.path.display()
                );
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

    #[test]
    fn missing_base_is_an_error_naming_it() {
        let err = RunDir::create_in(Path::new("/nonexistent/base")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/base"), "{err}");
    }
}
