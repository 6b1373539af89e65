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
    /// Bytes of the transfer as the machine sent them (the compressed
    /// stream when [`Pulled::compressed`]; the tar stream otherwise).
    pub channel_bytes: u64,
    /// Whether the machine compressed the transfer with `gzip`.
    pub compressed: bool,
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
    /// The transfer broke off or was damaged on its way: the compressed
    /// stream or the archive in it does not decode. Names the file it
    /// broke in (or the first one that did not arrive), if any.
    #[error("{}", damaged(path.as_deref(), detail))]
    Damaged {
        /// The file the stream broke in; `None` when every listed file
        /// arrived and verified, and only the stream around them (tar
        /// headers, padding, gzip's trailer) is damaged.
        path: Option<String>,
        /// What the decoder found.
        detail: String,
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

fn damaged(path: Option<&str>, detail: &str) -> String {
    match path {
        Some(path) => format!("`{path}` arrived damaged: the transfer broke in it ({detail})"),
        None => format!(
            "the transfer arrived damaged outside the files' contents, which all verified ({detail})"
        ),
    }
}

/// Bytes of the data files the machine compresses as a sample to decide
/// whether compressing the transfer pays.
const SAMPLE_BYTES: usize = 64 * 1024;

/// The machine compresses the transfer when `gzip -1` shrinks the sample
/// below this many bytes (3/4): mostly-zero `.gcda` counters shrink
/// tenfold and more, while for data that does not compress the CPU time
/// of `gzip` in a TCG guest would cost more than the channel saves.
const SAMPLE_LIMIT: usize = SAMPLE_BYTES / 4 * 3;

/// Collects gcov data below `root` on one machine through its shell.
#[derive(Debug)]
pub struct Collector<S> {
    shell: S,
    root: String,
    timeout: Duration,
    compress: bool,
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
            compress: true,
        }
    }

    /// Whether pulls may be compressed on the machine (the default): with
    /// its `gzip -1`, when it has one and a sample of the data shrinks by
    /// a quarter or more. Off, the tar stream always travels as it is.
    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
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
        let out = self.run(&format!("{}{}", self.cd_root(), listing()))?;
        parse_listing(&out.stdout).map_err(|line| self.error(CollectErrorKind::Listing { line }))
    }

    /// Copies every coverage data file (`.gcda`, `.profraw`) into `dest`,
    /// keeping its path below the root, and verifies each against the
    /// listing's size and checksum. The files travel as one tar stream,
    /// gzip-compressed on the machine when that pays (see
    /// [`Collector::with_compression`]); each is verified after
    /// decompression, and nothing is written unless all of them verify.
    pub fn pull(&self, dest: &Path) -> Result<Pulled, CollectError> {
        let out = self.run(&self.pull_command())?;
        let Some((listing, compressed, body)) = split_pull(&out.stdout) else {
            return Err(self.error(CollectErrorKind::Damaged {
                path: None,
                detail: "no `tar` or `gzip` line after the listing".to_string(),
            }));
        };
        let listed = parse_listing(listing)
            .map_err(|line| self.error(CollectErrorKind::Listing { line }))?;
        if listed.is_empty() {
            return Ok(Pulled::default());
        }
        let inflated;
        let (archive, mut broke) = if compressed {
            let (bytes, error) = gunzip(body);
            inflated = bytes;
            (inflated.as_slice(), error)
        } else {
            (body, None)
        };
        let partial = tar::read_partial(archive);
        let listing: BTreeMap<&str, &RemoteFile> =
            listed.iter().map(|f| (f.path.as_str(), f)).collect();
        // Verified in the order the files travelled, so that damage is
        // reported at the first file it reached.
        let mut received: BTreeMap<&str, &[u8]> = BTreeMap::new();
        for e in &partial.entries {
            let path = normalize(&e.path);
            let Some((&path, file)) = listing.get_key_value(path.as_str()) else {
                continue;
            };
            let sha = hex_sha256(e.data);
            if e.data.len() as u64 != file.size || sha != file.sha256 {
                return Err(self.error(CollectErrorKind::Mismatch {
                    path: file.path.clone(),
                    expected_size: file.size,
                    expected_sha: file.sha256.clone(),
                    got_size: e.data.len() as u64,
                    got_sha: sha,
                }));
            }
            received.insert(path, e.data);
        }
        let mut broke_in = None;
        if let Some(b) = partial.broken {
            broke_in = b.path.map(|p| normalize(&p));
            let what = if compressed {
                "the archive inside the compressed stream"
            } else {
                "the archive"
            };
            broke.get_or_insert(format!("{what}: {}", b.error));
        }
        if let Some(detail) = broke {
            let path = broke_in.or_else(|| {
                listed
                    .iter()
                    .find(|f| !received.contains_key(f.path.as_str()))
                    .map(|f| f.path.clone())
            });
            return Err(self.error(CollectErrorKind::Damaged { path, detail }));
        }
        if let Some(file) = listed
            .iter()
            .find(|f| !received.contains_key(f.path.as_str()))
        {
            return Err(self.error(CollectErrorKind::Missing {
                path: file.path.clone(),
            }));
        }
        let mut pulled = Pulled {
            channel_bytes: body.len() as u64,
            compressed,
            ..Pulled::default()
        };
        for (&path, data) in &received {
            let local = safe_join(dest, path).ok_or_else(|| {
                self.error(CollectErrorKind::UnsafePath {
                    path: path.to_string(),
                })
            })?;
            write_file(&local, data).map_err(|source| {
                self.error(CollectErrorKind::Write {
                    path: local.clone(),
                    source,
                })
            })?;
            pulled.files.push(path.to_string());
            pulled.bytes += data.len() as u64;
        }
        Ok(pulled)
    }

    /// The one command of a pull (one round trip): the listing, a line
    /// `tar` or `gzip` saying how the rest travels, then the tar stream,
    /// compressed or not.
    fn pull_command(&self) -> String {
        let tar = format!("find . -type f {DATA_FILES} -exec tar -cf - {{}} +");
        let cd = self.cd_root();
        let list = listing();
        if !self.compress {
            return format!("{cd}{list} && echo tar && {tar}");
        }
        format!(
            "{cd}{list} || exit; if command -v gzip >/dev/null 2>&1 && \
             s=$(find . -type f {DATA_FILES} -exec cat {{}} + 2>/dev/null | head -c {SAMPLE_BYTES} | gzip -1 | wc -c) && \
             [ \"$s\" -gt 0 ] && [ \"$s\" -lt {SAMPLE_LIMIT} ]; \
             then echo gzip; {tar} | gzip -1; else echo tar; {tar}; fi"
        )
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
        // A process counts as alive while /proc has it and it is not a
        // zombie: a killed service whose parent (often PID 1) has not reaped
        // it yet has already written its gcov data. The pairs `name pid`
        // are the positional parameters.
        let cmd = format!(
            r#"{ALIVE_FN}; \
set --; {each}; \
waiting() {{ while [ $# -ge 2 ]; do alive "$2" && return 0; shift 2; done; return 1; }}; \
{poll}; \
while [ $# -ge 2 ]; do if alive "$2"; then echo "ALIVE $1"; else echo "DONE $1"; fi; shift 2; done"#,
            each = each_service(
                pidfiles,
                r#"set -- "$@" "$n" "$p"; kill -TERM "$p" 2>/dev/null"#
            ),
            poll = poll_while("waiting \"$@\"", grace),
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
        // The triples `name pid acknowledgement-before` are the positional
        // parameters; `ack` sets `$a` (no command substitution: each would
        // fork, a few milliseconds apiece in a TCG guest).
        let cmd = format!(
            r#"{ALIVE_FN}; ack() {{ a=0; [ -f {root}/.covnet-flush-"$1" ] && {{ read -r a < {root}/.covnet-flush-"$1" || :; }}; }}; \
set --; {each}; \
waiting() {{ while [ $# -ge 3 ]; do if [ -d "/proc/$2" ]; then ack "$2"; [ "$a" = "$3" ] && return 0; fi; shift 3; done; return 1; }}; \
{poll}; \
while [ $# -ge 3 ]; do ack "$2"; if [ "$a" != "$3" ] || [ ! -d "/proc/$2" ]; then echo "DONE $1"; else echo "ALIVE $1"; fi; shift 3; done"#,
            root = quote(&self.root),
            each = each_service(
                pidfiles,
                &format!(
                    r#"alive "$p" || continue; \
if [ ! -f {root}/.covnet-flush-"$p" ]; then echo "UNFLUSHABLE $n $(readlink "/proc/$p/exe" 2>/dev/null)"; continue; fi; \
ack "$p"; set -- "$@" "$n" "$p" "$a"; kill -{signal} "$p" 2>/dev/null"#,
                    root = quote(&self.root)
                )
            ),
            poll = poll_while("waiting \"$@\"", grace),
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

/// Shell function `alive PID`: true while /proc has the process and it
/// is not a zombie. Builtins only: every fork costs a few milliseconds in a
/// TCG guest.
const ALIVE_FN: &str = r#"alive() { [ -n "$1" ] && [ -d "/proc/$1" ] || return 1; while read -r k v _; do [ "$k" = State: ] && { [ "$v" != Z ]; return; }; done 2>/dev/null < "/proc/$1/status"; return 1; }"#;

/// A shell loop running `body` for each service whose pid file matches
/// the glob `pidfiles`, with `$n` its name (the file's name without
/// `.pid`) and `$p` the pid the file holds (empty if none). Builtins only.
fn each_service(pidfiles: &str, body: &str) -> String {
    format!(
        r#"for f in {pidfiles}; do [ -f "$f" ] || continue; n=${{f##*/}}; n=${{n%.pid}}; p=; read -r p < "$f"; {body}; done"#
    )
}

/// A shell loop that waits while `condition` holds, for up to `grace`:
/// ten polls 10 ms apart first (a flush or an exit usually takes a few
/// milliseconds), then every 100 ms.
fn poll_while(condition: &str, grace: Duration) -> String {
    let polls = 10 + grace.as_millis().saturating_sub(100).div_ceil(100);
    format!(
        "i=0; while [ $i -lt {polls} ] && {condition}; do if [ $i -lt 10 ]; then sleep 0.01; else sleep 0.1; fi; i=$((i+1)); done"
    )
}

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

/// The command (run in the root) that lists the data files: `S <size>
/// <path>` lines, then `<sha256>  <path>` lines.
fn listing() -> String {
    format!(
        "find . -type f {DATA_FILES} -exec stat -c 'S %s %n' {{}} + && \
         find . -type f {DATA_FILES} -exec sha256sum {{}} +"
    )
}

/// Splits a pull's output into the listing, whether the rest is
/// compressed, and the rest: the listing ends at the first line that is
/// `tar` or `gzip` (never a listing line). `None` without such a line.
fn split_pull(stdout: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let mut start = 0;
    for line in stdout.split_inclusive(|&b| b == b'\n') {
        let compressed = match line {
            b"tar\n" => false,
            b"gzip\n" => true,
            _ => {
                start += line.len();
                continue;
            }
        };
        let (listing, rest) = stdout.split_at_checked(start)?;
        return Some((listing, compressed, rest.get(line.len()..)?));
    }
    None
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

/// Decompresses one gzip member: the bytes it yielded, and why it
/// stopped early (a damaged stream, a failed CRC, bytes after its end).
fn gunzip(data: &[u8]) -> (Vec<u8>, Option<String>) {
    use std::io::Read;
    let mut decoder = flate2::bufread::GzDecoder::new(data);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or(&[])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(format!("the compressed stream: {e}"))),
        }
    }
    let rest = decoder.into_inner();
    if !rest.is_empty() {
        let n = rest.len();
        return (
            out,
            Some(format!("{n} unexpected bytes after the compressed stream")),
        );
    }
    (out, None)
}

/// SHA-256 of `data` in lowercase hex, as `sha256sum` prints it (the form
/// pulled files are verified in).
pub fn hex_sha256(data: &[u8]) -> String {
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
    fn a_pull_splits_at_its_first_mode_line() {
        let out = b"S 3 ./tar\nS 4 ./gzip\ntar\ngzip\nrest";
        let (listing, compressed, rest) = split_pull(out).unwrap();
        assert_eq!(listing, b"S 3 ./tar\nS 4 ./gzip\n");
        assert!(!compressed);
        assert_eq!(rest, b"gzip\nrest");
        let (listing, compressed, rest) = split_pull(b"gzip\n").unwrap();
        assert_eq!((listing, compressed, rest), (&b""[..], true, &b""[..]));
        assert_eq!(split_pull(b"S 3 ./a.gcda\ntar"), None);
        assert_eq!(split_pull(b""), None);
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

    /// `.gcda`-like files: a header, then counters that are mostly zero.
    fn gcda_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("home/u/build/obj");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, len) in [(0u32, 24_000usize), (1, 3_000), (2, 40)] {
            let mut data = b"adcgB33R".to_vec();
            data.extend((0..len).map(|j| if j % 97 == 0 { (j as u32 ^ i) as u8 } else { 0 }));
            std::fs::write(dir.join(format!("u{i}.gcda")), data).unwrap();
        }
        root
    }

    /// Bytes that do not compress (xorshift).
    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn same_tree(a: &Path, b: &Path, files: &[String]) {
        for f in files {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f}"
            );
        }
    }

    #[test]
    fn mostly_zero_data_travels_compressed_and_verified() {
        let root = gcda_tree();
        let dest = tempfile::tempdir().unwrap();
        let c = Collector::new(
            LocalShell::new(),
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let pulled = c.pull(dest.path()).unwrap();
        assert!(pulled.compressed, "{pulled:?}");
        assert_eq!(pulled.files.len(), 3);
        assert_eq!(pulled.bytes, 3 * 8 + 24_000 + 3_000 + 40);
        assert!(pulled.channel_bytes * 4 < pulled.bytes, "{pulled:?}");
        same_tree(root.path(), dest.path(), &pulled.files);
        // Without compression the same files arrive as a plain tar stream.
        let dest = tempfile::tempdir().unwrap();
        let plain = c.with_compression(false).pull(dest.path()).unwrap();
        assert!(
            !plain.compressed && plain.channel_bytes > plain.bytes,
            "{plain:?}"
        );
        assert_eq!(
            (plain.files.clone(), plain.bytes),
            (pulled.files.clone(), pulled.bytes)
        );
        same_tree(root.path(), dest.path(), &plain.files);
    }

    #[test]
    fn incompressible_data_is_not_compressed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("r.gcda"), noise(200_000, 7)).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let c = Collector::new(
            LocalShell::new(),
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let pulled = c.pull(dest.path()).unwrap();
        assert!(!pulled.compressed, "{pulled:?}");
        assert_eq!(pulled.bytes, 200_000);
        same_tree(root.path(), dest.path(), &pulled.files);
    }

    /// A shell whose PATH is busybox applets without `gzip`: a guest image
    /// built without it.
    struct NoGzip {
        path: tempfile::TempDir,
    }

    impl Shell for NoGzip {
        fn name(&self) -> &str {
            "nogzip"
        }
        fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
            let path = self.path.path().to_str().unwrap();
            LocalShell::new().run(&format!("PATH={path}; {command}"), timeout)
        }
    }

    #[test]
    fn without_gzip_the_tar_stream_travels_as_it_is() {
        let bin = tempfile::tempdir().unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing (hint: run scripts/setup.sh)"
        );
        for applet in [
            "find",
            "tar",
            "stat",
            "sha256sum",
            "head",
            "wc",
            "cat",
            "rm",
        ] {
            std::os::unix::fs::symlink(busybox, bin.path().join(applet)).unwrap();
        }
        let root = gcda_tree();
        let dest = tempfile::tempdir().unwrap();
        let shell = NoGzip { path: bin };
        let c = Collector::new(
            &shell,
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        );
        let pulled = c.pull(dest.path()).unwrap();
        assert!(!pulled.compressed, "{pulled:?}");
        assert_eq!(pulled.files.len(), 3);
        same_tree(root.path(), dest.path(), &pulled.files);
    }

    /// Replays a machine's real answers (recorded once per command) and
    /// flips the lowest bit of one byte of the transfer, after the listing
    /// and the `tar`/`gzip` line, as a bad channel would.
    struct Flipping {
        inner: LocalShell,
        recorded: RefCell<BTreeMap<String, Output>>,
        flip: std::cell::Cell<Option<usize>>,
    }

    impl Shell for Flipping {
        fn name(&self) -> &str {
            "flaky"
        }
        fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
            let known = self.recorded.borrow().get(command).cloned();
            let mut out = match known {
                Some(out) => out,
                None => {
                    let out = self.inner.run(command, timeout)?;
                    self.recorded
                        .borrow_mut()
                        .insert(command.to_string(), out.clone());
                    out
                }
            };
            if let (true, Some(at)) = (command.contains("tar -cf"), self.flip.get()) {
                let (_, _, rest) = split_pull(&out.stdout).unwrap();
                let body = out.stdout.len() - rest.len();
                out.stdout[body + at] ^= 1;
            }
            Ok(out)
        }
    }

    /// Flips every `stride`th byte of the transfer in turn: the pull never
    /// succeeds with other bytes than the machine's, writes nothing when it fails,
    /// and its error names a listed file (or says that every file verified
    /// and only the stream around them is damaged).
    fn every_flipped_byte_is_caught(compress: bool, stride: usize) {
        let root = gcda_tree();
        let shell = Flipping {
            inner: LocalShell::new(),
            recorded: RefCell::new(BTreeMap::new()),
            flip: std::cell::Cell::new(None),
        };
        let c = Collector::new(
            &shell,
            root.path().to_str().unwrap(),
            Duration::from_secs(30),
        )
        .with_compression(compress);
        let clean = c.pull(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(clean.compressed, compress);
        let listed: Vec<String> = clean.files.clone();
        let len = usize::try_from(clean.channel_bytes).unwrap();
        let mut caught = 0;
        let mut tried = 0;
        for at in (0..len).step_by(stride) {
            tried += 1;
            shell.flip.set(Some(at));
            let dest = tempfile::tempdir().unwrap();
            match c.pull(dest.path()) {
                Ok(pulled) => {
                    // A flip may leave every file intact: gzip's header
                    // time and OS bytes, a tar stream's padding, and
                    // deflate's redundant encodings carry no file data.
                    // Then the files are exactly the machine's.
                    assert_eq!(pulled.files, listed, "flip at {at}");
                    same_tree(root.path(), dest.path(), &pulled.files);
                }
                Err(err) => {
                    caught += 1;
                    assert_eq!(err.machine, "flaky");
                    let msg = err.to_string();
                    let named = listed.iter().any(|f| msg.contains(&format!("`{f}`")));
                    let trailer = matches!(err.kind, CollectErrorKind::Damaged { path: None, .. });
                    assert!(named || trailer, "flip at {at}: {msg}");
                    assert_eq!(
                        std::fs::read_dir(dest.path()).unwrap().count(),
                        0,
                        "wrote files"
                    );
                }
            }
        }
        // Most flips are noticed (about 9 in 10 for gzip -1's stream of
        // these files); the rest provably changed nothing (checked above).
        assert!(caught * 5 > tried * 4, "{caught} of {tried} flips caught");
    }

    #[test]
    fn every_flipped_byte_of_a_compressed_transfer_is_caught() {
        every_flipped_byte_is_caught(true, 1);
    }

    /// Every 7th byte: the plain stream is as long as the files.
    #[test]
    fn flipped_bytes_of_a_plain_transfer_are_caught() {
        every_flipped_byte_is_caught(false, 7);
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
