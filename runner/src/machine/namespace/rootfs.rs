//! The root file system of a namespace machine, as a plan of steps.
//!
//! The inputs are those of the VM image (busybox, the programs with their
//! ELF closure, the machine's files, covnet's init and control shell);
//! [`plan`] turns them into a list of [`Step`]s that the namespace's first
//! process executes with plain system calls before it execs init: a private
//! writable tmpfs as `/`, host files bind-mounted read-only on top of it
//! (busybox, programs, libraries), generated files written into it, and a
//! minimal `/proc`, `/sys` and `/dev`.
//!
//! The plan is pure data built on the host side, so it can be unit-tested
//! and so the cloned child (which must not allocate) only walks a slice.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::image::initramfs::RESERVED_APPLETS;

/// Flags of a mount step (the `MS_*` bits of `mount(2)`).
pub type MountFlags = libc::c_ulong;

/// One action of the root file system setup, with absolute host-side paths
/// (the new root is still a directory below the old one when it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mkdir path` with `mode` (an existing directory is fine).
    Dir {
        /// Where.
        path: CString,
        /// Permission bits.
        mode: u32,
    },
    /// Create (or truncate) `path` with `data` and `mode`.
    File {
        /// Where.
        path: CString,
        /// Contents.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link at `link` pointing to `target`.
    Symlink {
        /// What the link points to.
        target: CString,
        /// Where the link is.
        link: CString,
    },
    /// Bind-mount the host's `source` on `target` (created as an empty file
    /// or directory first), read-only unless `writable`.
    Bind {
        /// Host path.
        source: CString,
        /// Path in the new root.
        target: CString,
        /// Whether the source is a directory.
        dir: bool,
        /// Keep it writable (device nodes).
        writable: bool,
    },
    /// Mount a file system of type `fstype` on the existing `target`.
    Mount {
        /// File system type (`tmpfs`, `proc`, `sysfs`).
        fstype: CString,
        /// Where.
        target: CString,
        /// `MS_*` flags.
        flags: MountFlags,
        /// File system options.
        data: CString,
    },
}

impl fmt::Display for Step {
    /// A "failed to ..." fragment naming the paths involved.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Dir { path, .. } => write!(f, "create directory {}", path.to_string_lossy()),
            Step::File { path, .. } => write!(f, "write file {}", path.to_string_lossy()),
            Step::Symlink { target, link } => write!(
                f,
                "create symlink {} -> {}",
                link.to_string_lossy(),
                target.to_string_lossy()
            ),
            Step::Bind { source, target, .. } => write!(
                f,
                "bind-mount {} on {}",
                source.to_string_lossy(),
                target.to_string_lossy()
            ),
            Step::Mount { fstype, target, .. } => write!(
                f,
                "mount {} on {}",
                fstype.to_string_lossy(),
                target.to_string_lossy()
            ),
        }
    }
}

/// Host device nodes bound into the machine's `/dev` (a machine without
/// privileges cannot `mknod`).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Binary directories that are symlinks to `/usr/bin` (a merged-`/usr`
/// layout: one set of busybox applet links serves all four directories of
/// the VM image's `PATH`), with their link targets.
pub const MERGED_DIRS: &[(&str, &str)] = &[
    ("/bin", "usr/bin"),
    ("/sbin", "usr/bin"),
    ("/usr/sbin", "bin"),
];

/// `path` with a leading merged directory replaced by `/usr/bin`, so two
/// names of one file compare equal.
pub fn canonical(path: &str) -> String {
    for (dir, _) in MERGED_DIRS {
        if let Some(rest) = path.strip_prefix(dir).filter(|r| r.starts_with('/')) {
            return format!("/usr/bin{rest}");
        }
    }
    path.to_owned()
}

/// Directories every namespace machine's root has.
const ROOT_DIRS: &[(&str, u32)] = &[
    ("/usr", 0o755),
    ("/usr/bin", 0o755),
    ("/etc", 0o755),
    ("/root", 0o700),
    ("/home", 0o755),
    ("/tmp", 0o1777),
    ("/var", 0o755),
    ("/var/log", 0o755),
    ("/var/tmp", 0o1777),
    ("/run", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/covnet", 0o755),
];

/// What a namespace machine's root is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inputs {
    /// Host path of a static busybox, installed as `/bin/busybox`.
    pub busybox: PathBuf,
    /// Busybox applet names (e.g. `sh`), linked in `/usr/bin`.
    pub applets: std::sync::Arc<[String]>,
    /// Host files bound read-only at the same absolute path in the guest
    /// (programs and their ELF closure).
    pub host_files: Vec<PathBuf>,
    /// Generated or copied files: guest path, contents, mode.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Host path of the pty slave that becomes the guest's `/dev/hvc0`.
    pub control_tty: PathBuf,
    /// Host path of the serial console's pty slave (init's output), which
    /// becomes the guest's `/dev/console`, as on a VM.
    pub console_tty: Option<PathBuf>,
}

/// An input path that cannot be used in the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {} cannot be placed in a namespace root (it must be absolute, normalised and without NUL bytes)", path.display())]
pub struct PathError {
    /// The offending path.
    pub path: PathBuf,
}

/// The setup steps for a root file system mounted at `root` (a host
/// directory that exists), in execution order.
pub fn plan(root: &Path, inputs: &Inputs) -> Result<Vec<Step>, PathError> {
    let mut p = Planner {
        root,
        steps: Vec::new(),
        dirs: Vec::new(),
    };
    p.steps.push(Step::Mount {
        fstype: cstr(OsStr::new("tmpfs"), root)?,
        target: cstr(root.as_os_str(), root)?,
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        // Owned by the machine's root: the child mounts it before it takes
        // the user namespace's ids (see `ns.rs`).
        data: cstr(OsStr::new("mode=0755,uid=0,gid=0"), root)?,
    });
    for (dir, mode) in ROOT_DIRS {
        p.dir(dir, *mode)?;
    }

    for (dir, target) in MERGED_DIRS {
        p.steps.push(Step::Symlink {
            target: cstr(OsStr::new(target), Path::new(dir))?,
            link: p.guest(dir)?,
        });
        p.dirs.push((*dir).to_owned());
    }

    // busybox and its applets; programs override applets of the same name,
    // except the reserved ones: as in a VM image, `/bin/sh` stays busybox's
    // when a `#!/bin/sh` script brings the host's (dash) into the closure
    // (init and the control shell need busybox's `read -d`).
    p.bind_file(&inputs.busybox, "/usr/bin/busybox")?;
    let reserved: HashSet<String> = RESERVED_APPLETS
        .iter()
        .map(|a| format!("/usr/bin/{a}"))
        .collect();
    // What takes an applet's place: a program (not for a reserved name,
    // which is not bound below) or a file (a stub `wget`), as in a VM image.
    let taken: HashSet<String> = inputs
        .host_files
        .iter()
        .map(|h| canonical(&h.to_string_lossy()))
        .filter(|g| !reserved.contains(g))
        .chain(inputs.files.iter().map(|(g, _, _)| canonical(g)))
        .collect();
    for applet in inputs.applets.iter() {
        let guest = format!("/usr/bin/{applet}");
        if applet == "busybox" || applet.contains('/') || taken.contains(&guest) {
            continue;
        }
        p.steps.push(Step::Symlink {
            target: cstr(OsStr::new("busybox"), Path::new(&guest))?,
            link: p.guest(&guest)?,
        });
    }
    let mut bound: HashSet<String> = HashSet::new();
    for host in &inputs.host_files {
        let guest = host.to_string_lossy().into_owned();
        // One file under two names (`/bin/x`, `/usr/bin/x`) is bound once.
        let key = canonical(&guest);
        if reserved.contains(&key) || !bound.insert(key) {
            continue;
        }
        p.bind_file(host, &guest)?;
    }
    for (guest, data, mode) in &inputs.files {
        p.parents(guest)?;
        p.steps.push(Step::File {
            path: p.guest(guest)?,
            data: data.clone(),
            mode: *mode,
        });
    }

    // A minimal /proc, /sys and /dev.
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    p.mount("proc", "/proc", nosuid_nodev_noexec, "")?;
    p.mount("sysfs", "/sys", nosuid_nodev_noexec | libc::MS_RDONLY, "")?;
    // nodev: device nodes made in it do not work; the bound ones below are
    // mounts of their own and do.
    p.mount(
        "tmpfs",
        "/dev",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )?;
    for dev in DEVICES {
        let host = PathBuf::from(format!("/dev/{dev}"));
        let target = p.guest(&format!("/dev/{dev}"))?;
        p.steps.push(Step::Bind {
            source: cstr(host.as_os_str(), &host)?,
            target,
            dir: false,
            writable: true,
        });
    }
    let tty = &inputs.control_tty;
    p.steps.push(Step::Bind {
        source: cstr(tty.as_os_str(), tty)?,
        target: p.guest("/dev/hvc0")?,
        dir: false,
        writable: true,
    });
    if let Some(tty) = &inputs.console_tty {
        p.steps.push(Step::Bind {
            source: cstr(tty.as_os_str(), tty)?,
            target: p.guest("/dev/console")?,
            dir: false,
            writable: true,
        });
    }
    for (link, target) in [
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        p.steps.push(Step::Symlink {
            target: cstr(OsStr::new(target), Path::new(target))?,
            link: p.guest(link)?,
        });
    }
    p.dir("/dev/shm", 0o1777)?;
    p.dir("/dev/pts", 0o755)?;
    Ok(p.steps)
}

struct Planner<'a> {
    root: &'a Path,
    steps: Vec<Step>,
    /// Guest directories already planned.
    dirs: Vec<String>,
}

impl Planner<'_> {
    fn guest(&self, guest: &str) -> Result<CString, PathError> {
        let bad = || PathError {
            path: PathBuf::from(guest),
        };
        if !guest.starts_with('/')
            || guest.len() < 2
            || guest.ends_with('/')
            || guest
                .split('/')
                .skip(1)
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad());
        }
        let mut full = self.root.as_os_str().as_bytes().to_vec();
        full.extend_from_slice(guest.as_bytes());
        CString::new(full).map_err(|_| bad())
    }

    fn dir(&mut self, guest: &str, mode: u32) -> Result<(), PathError> {
        if self.dirs.iter().any(|d| d == guest) {
            return Ok(());
        }
        self.parents(guest)?;
        let path = self.guest(guest)?;
        self.steps.push(Step::Dir { path, mode });
        self.dirs.push(guest.to_owned());
        Ok(())
    }

    /// Plans every missing parent directory of `guest`.
    fn parents(&mut self, guest: &str) -> Result<(), PathError> {
        let mut at = 0;
        while let Some(off) = guest.get(at + 1..).and_then(|rest| rest.find('/')) {
            let end = at + 1 + off;
            let parent = guest.get(..end).unwrap_or(guest);
            if !self.dirs.iter().any(|d| d == parent) {
                let path = self.guest(parent)?;
                self.steps.push(Step::Dir { path, mode: 0o755 });
                self.dirs.push(parent.to_owned());
            }
            at = end;
        }
        Ok(())
    }

    fn bind_file(&mut self, host: &Path, guest: &str) -> Result<(), PathError> {
        self.parents(guest)?;
        self.steps.push(Step::Bind {
            source: cstr(host.as_os_str(), host)?,
            target: self.guest(guest)?,
            dir: false,
            writable: false,
        });
        Ok(())
    }

    fn mount(
        &mut self,
        fstype: &str,
        guest: &str,
        flags: MountFlags,
        data: &str,
    ) -> Result<(), PathError> {
        let target = self.guest(guest)?;
        self.steps.push(Step::Mount {
            fstype: cstr(OsStr::new(fstype), Path::new(guest))?,
            target,
            flags,
            data: cstr(OsStr::new(data), Path::new(guest))?,
        });
        Ok(())
    }
}

fn cstr(s: &OsStr, blame: &Path) -> Result<CString, PathError> {
    CString::new(s.as_bytes()).map_err(|_| PathError {
        path: blame.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            busybox: "/usr/bin/busybox".into(),
            applets: ["sh", "wget", "busybox"].map(String::from).into(),
            host_files: vec![
                "/usr/bin/wget".into(),
                "/lib/x86_64-linux-gnu/libc.so.6".into(),
            ],
            files: vec![("/srv/www/index.html".into(), b"hi".to_vec(), 0o644)],
            control_tty: "/dev/pts/7".into(),
            console_tty: Some("/dev/pts/8".into()),
        }
    }

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn root_is_a_tmpfs_and_comes_first() {
        let steps = plan(Path::new("/r"), &inputs()).unwrap();
        assert_eq!(
            steps[0],
            Step::Mount {
                fstype: c("tmpfs"),
                target: c("/r"),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: c("mode=0755,uid=0,gid=0"),
            }
        );
        assert!(steps.contains(&Step::Dir {
            path: c("/r/tmp"),
            mode: 0o1777
        }));
    }

    #[test]
    fn programs_override_applets_and_are_bound_read_only() {
        let steps = plan(Path::new("/r"), &inputs()).unwrap();
        assert!(steps.contains(&Step::Symlink {
            target: c("busybox"),
            link: c("/r/usr/bin/sh")
        }));
        assert!(steps.contains(&Step::Symlink {
            target: c("usr/bin"),
            link: c("/r/bin")
        }));
        assert!(!steps.iter().any(
            |s| matches!(s, Step::Symlink { link, .. } if link.as_bytes() == b"/r/usr/bin/wget")
        ));
        assert!(steps.contains(&Step::Bind {
            source: c("/usr/bin/wget"),
            target: c("/r/usr/bin/wget"),
            dir: false,
            writable: false
        }));
        assert!(steps.contains(&Step::Bind {
            source: c("/usr/bin/busybox"),
            target: c("/r/usr/bin/busybox"),
            dir: false,
            writable: false
        }));
    }

    #[test]
    fn the_hosts_sh_in_a_closure_does_not_replace_busyboxs() {
        let mut i = inputs();
        // A `#!/bin/sh` script's closure holds the host's /bin/sh (dash).
        i.host_files.push("/bin/sh".into());
        i.host_files.push("/usr/bin/sh".into());
        let steps = plan(Path::new("/r"), &i).unwrap();
        assert!(steps.contains(&Step::Symlink {
            target: c("busybox"),
            link: c("/r/usr/bin/sh")
        }));
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Bind { target, .. }
                if target.as_bytes().ends_with(b"/bin/sh"))),
            "{steps:?}"
        );
    }

    #[test]
    fn a_file_stands_in_for_an_applet() {
        let mut i = inputs();
        i.files
            .push(("/bin/wget".into(), b"#!/bin/sh\necho stub".to_vec(), 0o755));
        i.host_files.retain(|h| h != Path::new("/usr/bin/wget"));
        let steps = plan(Path::new("/r"), &i).unwrap();
        assert!(
            !steps.iter().any(
                |s| matches!(s, Step::Symlink { link, .. } if link.as_bytes() == b"/r/usr/bin/wget")
            ),
            "{steps:?}"
        );
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::File { path, .. } if path.as_bytes() == b"/r/bin/wget")));
    }

    #[test]
    fn parents_are_created_once_before_their_children() {
        let steps = plan(Path::new("/r"), &inputs()).unwrap();
        let pos = |p: &str| {
            steps.iter().position(
                |s| matches!(s, Step::Dir { path, .. } if path.as_bytes() == p.as_bytes()),
            )
        };
        let lib = pos("/r/lib").expect("lib dir");
        let multi = pos("/r/lib/x86_64-linux-gnu").expect("multiarch dir");
        assert!(lib < multi);
        let srv = pos("/r/srv/www").expect("srv/www");
        let file = steps
            .iter()
            .position(|s| matches!(s, Step::File { path, .. } if path.as_bytes() == b"/r/srv/www/index.html"))
            .unwrap();
        assert!(srv < file);
        let dirs: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Dir { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        let mut dedup = dirs.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dirs.len(), dedup.len(), "{dirs:?}");
    }

    #[test]
    fn dev_has_the_control_tty_and_devices() {
        let steps = plan(Path::new("/r"), &inputs()).unwrap();
        assert!(steps.contains(&Step::Bind {
            source: c("/dev/pts/7"),
            target: c("/r/dev/hvc0"),
            dir: false,
            writable: true
        }));
        assert!(steps.contains(&Step::Bind {
            source: c("/dev/pts/8"),
            target: c("/r/dev/console"),
            dir: false,
            writable: true
        }));
        let dev_mount = steps
            .iter()
            .position(|s| matches!(s, Step::Mount { target, .. } if target.as_bytes() == b"/r/dev"))
            .unwrap();
        let null = steps
            .iter()
            .position(
                |s| matches!(s, Step::Bind { target, .. } if target.as_bytes() == b"/r/dev/null"),
            )
            .unwrap();
        assert!(dev_mount < null);
        // /dev/shm is created on the /dev tmpfs, i.e. after it is mounted.
        let shm = steps
            .iter()
            .position(|s| matches!(s, Step::Dir { path, .. } if path.as_bytes() == b"/r/dev/shm"))
            .unwrap();
        assert!(dev_mount < shm);
    }

    #[test]
    fn bad_paths_are_errors_not_panics() {
        let mut i = inputs();
        i.files.push(("relative".into(), Vec::new(), 0o644));
        assert_eq!(
            plan(Path::new("/r"), &i).unwrap_err().path,
            PathBuf::from("relative")
        );
        let mut i = inputs();
        i.files.push(("/a/../b".into(), Vec::new(), 0o644));
        assert!(plan(Path::new("/r"), &i).is_err());
        let mut i = inputs();
        i.files.push(("/a\0b".into(), Vec::new(), 0o644));
        assert!(plan(Path::new("/r"), &i).is_err());
    }

    #[test]
    fn merged_directories_share_one_name() {
        assert_eq!(canonical("/bin/sh"), "/usr/bin/sh");
        assert_eq!(canonical("/usr/sbin/ip"), "/usr/bin/ip");
        assert_eq!(canonical("/binary"), "/binary");
        assert_eq!(canonical("/lib/x.so"), "/lib/x.so");
        let mut i = inputs();
        i.host_files = vec!["/bin/ping".into(), "/usr/bin/ping".into()];
        i.applets = ["ping".to_owned()].into();
        let steps = plan(Path::new("/r"), &i).unwrap();
        let binds = steps
            .iter()
            .filter(
                |s| matches!(s, Step::Bind { source, .. } if source.as_bytes().ends_with(b"ping")),
            )
            .count();
        assert_eq!(binds, 1);
        assert!(!steps.iter().any(
            |s| matches!(s, Step::Symlink { link, .. } if link.as_bytes() == b"/r/usr/bin/ping")
        ));
    }

    #[test]
    fn steps_describe_themselves() {
        let s = Step::Bind {
            source: c("/usr/bin/curl"),
            target: c("/r/usr/bin/curl"),
            dir: false,
            writable: false,
        };
        assert_eq!(s.to_string(), "bind-mount /usr/bin/curl on /r/usr/bin/curl");
    }
}
