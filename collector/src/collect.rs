//! Listing, pulling, resetting and flushing a machine's gcov data.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::shell::{quote, Output, Shell, ShellError};
use crate::tar;

/// The `find` test that selects coverage data files: gcc's `.gcda` and
/// clang's raw profiles (`.profraw`, written where `LLVM_PROFILE_FILE`
/// says, which covnet puts below the same root).
pub const DATA_FILES: &str = r"\( -name '*.gcda' -o -name '*.profraw' \)";

/// A coverage data file (`.gcda` or `.profraw`) on the machine, relative
/// to the collection root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path relative to the root, without a leading `./`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

/// What a pull brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Files written under the destination, relative paths.
    pub files: Vec<String>,
    /// Total bytes written.
    pub bytes: u64,
}

/// What a flush did to the machine's processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Services whose gcov data is written: they exited (after SIGTERM) or
    /// acknowledged a signal-driven dump.
    pub stopped: Vec<String>,
    /// Services that neither exited nor acknowledged within the grace
    /// period: their counts are missing from the capture.
    pub survivors: Vec<String>,
    /// Services that were not signalled because no flush thread runs in
    /// them (a signal would kill them): `(service, program)`, the program
    /// as `/proc/<pid>/exe` names it (empty if unknown). Their counts stay
    /// in memory until they exit.
    pub unflushable: Vec<(String, String)>,
}

/// Why collecting from a machine failed. Names the machine and the path.
#[derive(Debug, thiserror::Error)]
#[error("machine `{machine}`: {kind}")]
pub struct CollectError {
    /// The machine's name.
    pub machine: String,
    /// What went wrong.
    #[source]
    pub kind: CollectErrorKind,
}

/// The ways collecting can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectErrorKind {
    /// The shell could not run a command.
    #[error("failed to run `{command}`")]
    Shell {
        /// The command.
        command: String,
        /// The shell's error.
        #[source]
        source: ShellError,
    },
    /// A command ran but failed.
    #[error("`{command}` exited with status {status}: {stderr}")]
    Command {
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The collection root does not exist on the machine.
    #[error("no coverage directory `{root}` on the machine\n(hint: did the programs run with GCOV_PREFIX={root}, and did any of them exit?)")]
    NoRoot {
        /// The missing directory.
        root: String,
    },
    /// The listing printed something unexpected.
    #[error("unexpected listing line {line:?}")]
    Listing {
        /// The line.
        line: String,
    },
    /// The archive sent by the machine was unreadable.
    #[error("unreadable archive from the machine")]
    Archive(#[from] tar::TarError),
    /// A pulled file differs from what the listing announced.
    #[error("`{path}` arrived damaged: expected {expected_size} bytes sha256 {expected_sha}, got {got_size} bytes sha256 {got_sha}")]
    Mismatch {
        /// The file.
        path: String,
        /// Size in the listing.
        expected_size: u64,
        /// Checksum in the listing.
        expected_sha: String,
        /// Size received.
        got_size: u64,
        /// Checksum received.
        got_sha: String,
    },
    /// A listed file was not in the archive.
    #[error("`{path}` was listed but not sent (did a program rewrite it during the pull?)")]
    Missing {
        /// The file.
        path: String,
    },
    /// A path from the machine tries to leave the destination.
    #[error("refusing unsafe path `{path}` from the machine")]
    UnsafePath {
        /// The path.
        path: String,
    },
    /// Writing the local copy failed.
    #[error("failed to write `{}`", path.display())]
    Write {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Collects gcov data below `root` on one machine through its shell.
#[derive(Debug)]
pub struct Collector<S> {
    shell: S,
    root: String,
    timeout: Duration,
}

impl<S: Shell> Collector<S> {
    /// A collector for the `.gcda` tree below `root` (the machine's
    /// `GCOV_PREFIX`, or a build directory on a real machine). Each command
    /// may take at most `timeout`.
    pub fn new(shell: S, root: &str, timeout: Duration) -> Self {
        Collector {
            shell,
            root: root.to_string(),
            timeout,
        }
    }

    /// The shell this collector drives.
    pub fn shell(&self) -> &S {
        &self.shell
    }

    fn error(&self, kind: CollectErrorKind) -> CollectError {
        CollectError {
            machine: self.shell.name().to_string(),
            kind,
        }
    }

    fn run(&self, command: &str) -> Result<Output, CollectError> {
        let out = self.shell.run(command, self.timeout).map_err(|source| {
            self.error(CollectErrorKind::Shell {
                command: command.to_string(),
                source,
            })
        })?;
        if out.status == NO_ROOT_STATUS {
            return Err(self.error(CollectErrorKind::NoRoot {
                root: self.root.clone(),
            }));
        }
        if !out.success() {
            return Err(self.error(CollectErrorKind::Command {
                command: command.to_string(),
                status: out.status,
                stderr: out.stderr_text(),
            }));
        }
        Ok(out)
    }

    fn cd_root(&self) -> String {
        format!(
            "cd {} 2>/dev/null || exit {NO_ROOT_STATUS}; ",
            quote(&self.root)
        )
    }

    /// Lists the coverage data files (`.gcda`, `.profraw`) with their
    /// sizes and checksums.
    pub fn list(&self) -> Result<Vec<RemoteFile>, CollectError> {
        let cmd = format!(
            "{}find . -type f {DATA_FILES} -exec stat -c 'S %s %n' {{}} + && \
             find . -type f {DATA_FILES} -exec sha256sum {{}} +",
            self.cd_root()
        );
        let out = self.run(&cmd)?;
        parse_listing(&out.stdout).map_err(|line| self.error(CollectErrorKind::Listing { line }))
    }

    /// Copies every coverage data file (`.gcda`, `.profraw`) into `dest`,
    /// keeping its path below the root, and verifies each against the
    /// listing's size and checksum.
    pub fn pull(&self, dest: &Path) -> Result<Pulled, CollectError> {
        let listed = self.list()?;
        if listed.is_empty() {
            return Ok(Pulled::default());
        }
        let cmd = format!(
            "{}find . -type f {DATA_FILES} -exec tar -cf - {{}} +",
            self.cd_root()
        );
        let out = self.run(&cmd)?;
        let entries = tar::entries(&out.stdout).map_err(|e| self.error(e.into()))?;
        let mut received: BTreeMap<String, &[u8]> = BTreeMap::new();
        for e in &entries {
            received.insert(normalize(&e.path), e.data);
        }
        let mut pulled = Pulled::default();
        for file in &listed {
            let Some(data) = received.get(&file.path) else {
                return Err(self.error(CollectErrorKind::Missing {
                    path: file.path.clone(),
                }));
            };
            let sha = hex_sha256(data);
            if data.len() as u64 != file.size || sha != file.sha256 {
                return Err(self.error(CollectErrorKind::Mismatch {
                    path: file.path.clone(),
                    expected_size: file.size,
                    expected_sha: file.sha256.clone(),
                    got_size: data.len() as u64,
                    got_sha: sha,
                }));
            }
            let local = safe_join(dest, &file.path).ok_or_else(|| {
                self.error(CollectErrorKind::UnsafePath {
                    path: file.path.clone(),
                })
            })?;
            write_file(&local, data).map_err(|source| {
                self.error(CollectErrorKind::Write {
                    path: local.clone(),
                    source,
                })
            })?;
            pulled.files.push(file.path.clone());
            pulled.bytes += data.len() as u64;
        }
        Ok(pulled)
    }

    /// Deletes every coverage data file (`.gcda`, `.profraw`) below the
    /// root, so counting starts afresh.
    pub fn reset(&self) -> Result<(), CollectError> {
        let cmd = format!(
            "[ -d {root} ] || exit 0; cd {root} && find . -type f {DATA_FILES} -exec rm -f {{}} +",
            root = quote(&self.root)
        );
        self.run(&cmd).map(|_| ())
    }

    /// Stops the processes named by the pid files matching `pidfiles` (a
    /// shell glob such as `/run/covnet/*.pid`) with SIGTERM and waits up to
    /// `grace` for them to exit, so that gcov writes their data.
    pub fn flush(&self, pidfiles: &str, grace: Duration) -> Result<FlushReport, CollectError> {
        let tenths = grace.as_millis().div_ceil(100).max(1);
        // A process counts as alive while /proc has it and it is not a
        // zombie: a killed service whose parent (often PID 1) has not reaped
        // it yet has already written its gcov data.
        let cmd = format!(
            r#"alive() {{ [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }}; \
t=$(mktemp) || exit 1; for f in {pidfiles}; do [ -f "$f" ] || continue; n=$(basename "$f" .pid); p=$(cat "$f"); echo "P $n $p"; kill -TERM "$p" 2>/dev/null; done > "$t"; \
i=0; while [ $i -lt {tenths} ]; do any=0; while read -r _ n p; do alive "$p" && any=1; done < "$t"; [ $any = 0 ] && break; sleep 0.1; i=$((i+1)); done; \
while read -r _ n p; do if alive "$p"; then echo "ALIVE $n"; else echo "DONE $n"; fi; done < "$t"; rm -f "$t""#
        );
        let out = self.run(&cmd)?;
        Ok(parse_flush(&out.stdout))
    }

    /// Makes the processes named by the pid files matching `pidfiles` write
    /// their gcov data *without stopping them*: sends `signal` (a `kill`
    /// signal name such as `USR2`) and waits up to `grace` for each to
    /// acknowledge a completed dump. Needs `collector/flush/covnet_flush.c`
    /// ([`FLUSH_C_SOURCE`]) linked into the programs or its preloaded shim
    /// ([`SHIM_C_SOURCE`]); the root must be their `GCOV_PREFIX`, where the
    /// acknowledgements are written. Only processes whose flush thread has
    /// announced itself there are signalled (to any other, the signal could
    /// be fatal): the rest are reported as [`FlushReport::unflushable`].
    pub fn signal_flush(
        &self,
        pidfiles: &str,
        signal: &str,
        grace: Duration,
    ) -> Result<FlushReport, CollectError> {
        if !signal
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            return Err(self.error(CollectErrorKind::Listing {
                line: format!("bad signal name `{signal}`"),
            }));
        }
        let tenths = grace.as_millis().div_ceil(100).max(1);
        let cmd = format!(
            r#"ack() {{ cat {root}/.covnet-flush-"$1" 2>/dev/null || echo 0; }}; \
t=$(mktemp) || exit 1; u=$(mktemp) || exit 1; for f in {pidfiles}; do [ -f "$f" ] || continue; n=$(basename "$f" .pid); p=$(cat "$f"); \
[ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null || continue; \
if [ ! -f {root}/.covnet-flush-"$p" ]; then echo "UNFLUSHABLE $n $(readlink "/proc/$p/exe" 2>/dev/null)" >> "$u"; continue; fi; \
echo "P $n $p $(ack "$p")"; kill -{signal} "$p" 2>/dev/null; done > "$t"; cat "$u"; rm -f "$u"; \
i=0; while [ $i -lt {tenths} ]; do any=0; while read -r _ n p old; do [ -d "/proc/$p" ] && [ "$(ack "$p")" = "$old" ] && any=1; done < "$t"; [ $any = 0 ] && break; sleep 0.1; i=$((i+1)); done; \
while read -r _ n p old; do if [ "$(ack "$p")" != "$old" ] || [ ! -d "/proc/$p" ]; then echo "DONE $n"; else echo "ALIVE $n"; fi; done < "$t"; rm -f "$t""#,
            root = quote(&self.root)
        );
        let out = self.run(&cmd)?;
        Ok(parse_flush(&out.stdout))
    }
}

/// Exit status the shell commands use for "the root directory is missing".
const NO_ROOT_STATUS: i32 = 97;

/// The C source of the signal-driven flush (`collector/flush/covnet_flush.c`)
/// to link into long-running services.
pub const FLUSH_C_SOURCE: &str = include_str!("../flush/covnet_flush.c");

/// The C source of the preloadable flush shim
/// (`collector/flush/covnet_gcov_shim.c`): `covnet_flush.c` for programs not
/// linked with it. It `#include`s `covnet_flush.c` ([`FLUSH_C_SOURCE`]), so
/// build it with both files in one directory.
pub const SHIM_C_SOURCE: &str = include_str!("../flush/covnet_gcov_shim.c");

/// Reads the `DONE name` / `ALIVE name` lines the flush scripts print.
fn parse_flush(stdout: &[u8]) -> FlushReport {
    let mut report = FlushReport::default();
    for line in String::from_utf8_lossy(stdout).lines() {
        if let Some(n) = line.strip_prefix("DONE ") {
            report.stopped.push(n.to_string());
        } else if let Some(n) = line.strip_prefix("ALIVE ") {
            report.survivors.push(n.to_string());
        } else if let Some(rest) = line.strip_prefix("UNFLUSHABLE ") {
            let (n, exe) = rest.split_once(' ').unwrap_or((rest, ""));
            report.unflushable.push((n.to_string(), exe.to_string()));
        }
    }
    report
}

fn normalize(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_start_matches('/').to_string()
}

/// Parses `S <size> <path>` lines and `<sha256>  <path>` lines.
fn parse_listing(stdout: &[u8]) -> Result<Vec<RemoteFile>, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut shas: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("S ") {
            let (size, path) = rest.split_once(' ').ok_or_else(|| line.to_string())?;
            let size = size.parse().map_err(|_| line.to_string())?;
            sizes.insert(normalize(path), size);
        } else {
            let (sha, path) = line.split_once("  ").ok_or_else(|| line.to_string())?;
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(line.to_string());
            }
            shas.insert(normalize(path), sha.to_ascii_lowercase());
        }
    }
    let mut files = Vec::with_capacity(sizes.len());
    for (path, size) in sizes {
        let sha256 = shas.remove(&path).ok_or_else(|| path.clone())?;
        files.push(RemoteFile { path, size, sha256 });
    }
    if let Some((path, _)) = shas.into_iter().next() {
        return Err(path);
    }
    Ok(files)
}

fn hex_sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Joins a machine-supplied relative path onto `dest`, refusing `..` and
/// anything else that could leave it.
fn safe_join(dest: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    let mut out = dest.to_path_buf();
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(part) => {
                out.push(part);
                any = true;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    any.then_some(out)
}

fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalShell;
    use std::cell::RefCell;

    #[test]
    fn listing_pairs_sizes_and_checksums() {
        let sha = "a".repeat(64);
        let out = format!("S 12 ./x/y.gcda\n{sha}  ./x/y.gcda\n");
        let files = parse_listing(out.as_bytes()).unwrap();
        assert_eq!(
            files,
            vec![RemoteFile {
                path: "x/y.gcda".into(),
                size: 12,
                sha256: sha
            }]
        );
        assert!(parse_listing(b"S 12 ./x/y.gcda\n").is_err());
        assert!(parse_listing(b"garbage\n").is_err());
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let d = Path::new("/dest");
        assert_eq!(
            safe_join(d, "a/b.gcda"),
            Some(PathBuf::from("/dest/a/b.gcda"))
        );
        assert_eq!(safe_join(d, "../etc/passwd"), None);
        assert_eq!(safe_join(d, "/etc/passwd"), None);
        assert_eq!(safe_join(d, "."), None);
    }

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("home/u/build/obj dir");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(
            deep.join("a.gcda"),
            (0..=255u8).cycle().take(5000).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(root.path().join("home/u/build/b.gcda"), b"adcg").unwrap();
        std::fs::write(root.path().join("home/u/build/b.c"), b"int x;").unwrap();
        root
    }

    #[test]
    fn pull_copies_gcda_only_and_verifies() {
        let root = tree();
        let dest = tempfile::tempdir().unwrap();
        let c = Collector::new(
            LocalShell::new(),
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let pulled = c.pull(dest.path()).unwrap();
        assert_eq!(
            pulled.files,
            vec!["home/u/build/b.gcda", "home/u/build/obj dir/a.gcda"]
        );
        assert_eq!(pulled.bytes, 5004);
        assert_eq!(
            std::fs::read(dest.path().join("home/u/build/obj dir/a.gcda")).unwrap(),
            std::fs::read(root.path().join("home/u/build/obj dir/a.gcda")).unwrap()
        );
        assert!(!dest.path().join("home/u/build/b.c").exists());
        c.reset().unwrap();
        assert!(c.list().unwrap().is_empty());
        assert!(root.path().join("home/u/build/b.c").exists());
    }

    /// clang's raw profiles, written below the same root by
    /// `LLVM_PROFILE_FILE`, travel with the `.gcda` files and are reset
    /// with them.
    #[test]
    fn pull_takes_llvm_raw_profiles_too() {
        let root = tree();
        let llvm = root.path().join("llvm");
        std::fs::create_dir_all(&llvm).unwrap();
        std::fs::write(llvm.join("41-123_0.profraw"), b"\x81rforpl\xff").unwrap();
        std::fs::write(llvm.join("notes.txt"), b"not data").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let c = Collector::new(
            LocalShell::new(),
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let pulled = c.pull(dest.path()).unwrap();
        assert_eq!(
            pulled.files,
            vec![
                "home/u/build/b.gcda",
                "home/u/build/obj dir/a.gcda",
                "llvm/41-123_0.profraw"
            ]
        );
        assert_eq!(
            std::fs::read(dest.path().join("llvm/41-123_0.profraw")).unwrap(),
            b"\x81rforpl\xff"
        );
        assert!(!dest.path().join("llvm/notes.txt").exists());
        c.reset().unwrap();
        assert!(c.list().unwrap().is_empty());
        assert!(llvm.join("notes.txt").exists());
    }

    #[test]
    fn missing_root_says_what_to_check() {
        let c = Collector::new(
            LocalShell::new(),
            "/nonexistent/covnet",
            Duration::from_secs(10),
        );
        let err = c.list().unwrap_err();
        assert!(matches!(err.kind, CollectErrorKind::NoRoot { .. }), "{err}");
        assert!(err.to_string().contains("machine `localhost`"));
    }

    /// A shell that damages the archive in flight.
    struct Corrupting {
        inner: LocalShell,
        calls: RefCell<u32>,
    }

    impl Shell for Corrupting {
        fn name(&self) -> &str {
            "flaky"
        }
        fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
            let mut out = self.inner.run(command, timeout)?;
            *self.calls.borrow_mut() += 1;
            if command.contains("tar -cf") {
                // Flip a byte of the first file's data (after its header).
                if let Some(b) = out.stdout.get_mut(512 + 512 + 10) {
                    *b ^= 1;
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn damaged_transfer_is_detected() {
        let root = tree();
        let dest = tempfile::tempdir().unwrap();
        let shell = Corrupting {
            inner: LocalShell::new(),
            calls: RefCell::new(0),
        };
        let c = Collector::new(
            shell,
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let err = c.pull(dest.path()).unwrap_err();
        assert!(
            matches!(
                err.kind,
                CollectErrorKind::Mismatch { .. } | CollectErrorKind::Archive(_)
            ),
            "{err}"
        );
        assert!(err.to_string().contains("flaky"));
    }

    #[test]
    fn signal_flush_never_signals_a_process_without_a_flush_thread() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let shell = LocalShell::new();
        shell
            .run(
                &format!(
                    "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {d}/plain.pid; sleep 0.1"
                ),
                Duration::from_secs(10),
            )
            .unwrap();
        let pid = std::fs::read_to_string(dir.path().join("plain.pid")).unwrap();
        let pid = pid.trim();
        let c = Collector::new(LocalShell::new(), d, Duration::from_secs(30));
        let report = c
            .signal_flush(&format!("{d}/*.pid"), "USR2", Duration::from_millis(500))
            .unwrap();
        // SIGUSR2 would have killed it: it must still run.
        let alive = Path::new("/proc").join(pid).exists();
        shell
            .run(&format!("kill -9 {pid}"), Duration::from_secs(5))
            .unwrap();
        assert!(alive, "the process was signalled");
        assert!(report.stopped.is_empty() && report.survivors.is_empty());
        assert_eq!(report.unflushable.len(), 1, "{report:?}");
        assert_eq!(report.unflushable[0].0, "plain");
        assert!(
            report.unflushable[0].1.ends_with("sleep"),
            "{:?}",
            report.unflushable
        );
    }

    #[test]
    fn flush_stops_processes_and_names_survivors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        // One well-behaved process and one that ignores SIGTERM, each in a
        // session of its own so the shell's group kill leaves them alone.
        let shell = LocalShell::new();
        shell
            .run(
                &format!(
                    "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {d}/good.pid; \
                     setsid sh -c 'trap \"\" TERM; sleep 60' </dev/null >/dev/null 2>&1 & echo $! > {d}/stubborn.pid; sleep 0.2"
                ),
                Duration::from_secs(10),
            )
            .unwrap();
        let c = Collector::new(LocalShell::new(), d, Duration::from_secs(30));
        let report = c
            .flush(&format!("{d}/*.pid"), Duration::from_millis(500))
            .unwrap();
        assert_eq!(report.stopped, vec!["good"]);
        assert_eq!(report.survivors, vec!["stubborn"]);
        let pid = std::fs::read_to_string(dir.path().join("stubborn.pid")).unwrap();
        shell
            .run(&format!("kill -9 {}", pid.trim()), Duration::from_secs(5))
            .unwrap();
    }
}
