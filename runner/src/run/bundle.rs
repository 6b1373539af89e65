//! The failure bundle: everything needed to understand a failed test run,
//! left in the run's output directory.
//!
//! Layout of `<out>/failure/`:
//!
//! - `report.txt`: the failure as printed, the script position with the
//!   script lines around it, and notes on anything that could not be saved;
//! - `<machine>/console.log`: the machine's serial console;
//! - `<machine>/var/log/<file>`: the guest's `/var/log` files (service
//!   logs), pulled from machines that still run;
//! - `pcap/<file>.pcap`: the switch's packet captures, if any.
//!
//! A machine that cannot give its logs (it crashed, its channel broke) is a
//! note in the report, never a reason to lose the other machines' logs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::script::driver::{Node, ScriptPosition};

/// Timeout of each guest command the bundle runs (listing, pulling a log).
pub const BUNDLE_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest guest log file pulled into the bundle.
pub const MAX_GUEST_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// Console lines saved when the machine has no console log file.
const CONSOLE_LINES: usize = 100_000;
/// Script lines shown on each side of the failing one.
const SCRIPT_CONTEXT_LINES: usize = 3;

/// A failure to write the bundle itself (the output directory).
#[derive(Debug, thiserror::Error)]
#[error("failed to write failure bundle file {}", path.display())]
pub struct BundleError {
    /// The file or directory.
    pub path: PathBuf,
    /// Underlying error.
    #[source]
    pub source: std::io::Error,
}

/// What goes into a bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleInput<'a> {
    /// The failure as reported to the user.
    pub failure: &'a str,
    /// Where in the script it happened.
    pub position: Option<ScriptPosition>,
    /// The script's text.
    pub script: Option<&'a str>,
    /// The spec file.
    pub spec: Option<&'a Path>,
    /// The machines.
    pub nodes: &'a [Node],
    /// Per machine, its serial console log file if the backend keeps one.
    pub console_logs: &'a [(String, PathBuf)],
    /// Packet captures to include.
    pub pcaps: &'a [PathBuf],
}

/// Writes the bundle into `dir` (created; an existing bundle there is
/// replaced) and returns the report's path.
pub fn write_bundle(dir: &Path, input: &BundleInput<'_>) -> Result<PathBuf, BundleError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| BundleError { path, source }
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(err(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let mut notes = Vec::new();

    for node in input.nodes {
        let mdir = dir.join(node.name());
        std::fs::create_dir_all(&mdir).map_err(err(&mdir))?;
        let console = mdir.join("console.log");
        let log_file = input
            .console_logs
            .iter()
            .find(|(m, _)| m == node.name())
            .map(|(_, p)| p);
        let copied = match log_file {
            Some(src) => match std::fs::copy(src, &console) {
                Ok(_) => true,
                Err(e) => {
                    notes.push(format!(
                        "{}: console log {} not copied: {e}",
                        node.name(),
                        src.display()
                    ));
                    false
                }
            },
            None => false,
        };
        if !copied {
            let mut text = node.machine().console_lines(CONSOLE_LINES).join("\n");
            text.push('\n');
            std::fs::write(&console, text).map_err(err(&console))?;
        }
        if node.is_running() {
            pull_guest_logs(node, &mdir, &mut notes)?;
        } else {
            notes.push(format!("{}: not running, /var/log not pulled", node.name()));
        }
    }

    if !input.pcaps.is_empty() {
        let pdir = dir.join("pcap");
        notes.extend(copy_pcaps(input.pcaps, &pdir).map_err(err(&pdir))?);
    }

    let report = dir.join("report.txt");
    std::fs::write(&report, render_report(input, &notes)).map_err(err(&report))?;
    Ok(report)
}

fn pull_guest_logs(node: &Node, mdir: &Path, notes: &mut Vec<String>) -> Result<(), BundleError> {
    // Regular files directly in /var/log, with sizes, one per line.
    let list = "for f in /var/log/*; do [ -f \"$f\" ] && echo \"$(wc -c <\"$f\") $f\"; done; true";
    let out = match node.machine().execute(list, BUNDLE_COMMAND_TIMEOUT) {
        Ok(o) => o,
        Err(e) => {
            notes.push(format!("{}: /var/log not listed: {e}", node.name()));
            return Ok(());
        }
    };
    let listing = out.stdout_lossy();
    let logdir = mdir.join("var/log");
    for line in listing.lines() {
        let Some((size, path)) = line.trim().split_once(' ') else {
            continue;
        };
        let name = match Path::new(path).file_name() {
            Some(n) => n.to_owned(),
            None => continue,
        };
        if size
            .parse::<u64>()
            .map_or(true, |s| s > MAX_GUEST_LOG_BYTES)
        {
            notes.push(format!(
                "{}: {path} skipped ({size} bytes, limit {MAX_GUEST_LOG_BYTES})",
                node.name()
            ));
            continue;
        }
        match node.machine().copy_from(path) {
            Ok(data) => {
                std::fs::create_dir_all(&logdir).map_err(|source| BundleError {
                    path: logdir.clone(),
                    source,
                })?;
                let dest = logdir.join(name);
                std::fs::write(&dest, data).map_err(|source| BundleError { path: dest, source })?;
            }
            Err(e) => notes.push(format!("{}: {path} not pulled: {e}", node.name())),
        }
    }
    Ok(())
}

/// The text of `report.txt`.
pub fn render_report(input: &BundleInput<'_>, notes: &[String]) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "covnet failure report");
    if let Some(spec) = input.spec {
        let _ = writeln!(r, "spec: {}", spec.display());
    }
    if let Some(p) = input.position {
        let _ = writeln!(r, "script position: {p}");
    }
    let _ = writeln!(r, "\n{}", input.failure);
    if let (Some(script), Some(p)) = (input.script, input.position) {
        let _ = writeln!(r, "\nscript around {p}:");
        r.push_str(&script_excerpt(script, p));
    }
    let _ = writeln!(r, "\nmachines:");
    for node in input.nodes {
        let state = if node.is_running() {
            "running"
        } else {
            "stopped"
        };
        let _ = writeln!(
            r,
            "  {} ({state}): {}/console.log",
            node.name(),
            node.name()
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(r, "\nnotes:");
        for n in notes {
            let _ = writeln!(r, "  {n}");
        }
    }
    r
}

/// The script lines around `p`, numbered, with a caret under the column.
pub fn script_excerpt(script: &str, p: ScriptPosition) -> String {
    let mut out = String::new();
    let first = p.line.saturating_sub(SCRIPT_CONTEXT_LINES).max(1);
    let last = p.line + SCRIPT_CONTEXT_LINES;
    for (i, line) in script.lines().enumerate() {
        let n = i + 1;
        if n < first || n > last {
            continue;
        }
        let mark = if n == p.line { '>' } else { ' ' };
        let _ = writeln!(out, "{mark}{n:>5} | {line}");
        if n == p.line {
            let pad = " ".repeat(p.column.saturating_sub(1));
            let _ = writeln!(out, "{:>6} | {pad}^", "");
        }
    }
    out
}

/// Copies the packet captures `pcaps` into `dir` (created), under their
/// own names: into a failure bundle, or the output directory of a run
/// that passed. A capture that cannot be copied is a note in the result,
/// not an error: the others are still copied.
pub fn copy_pcaps(pcaps: &[PathBuf], dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut notes = Vec::new();
    for pcap in pcaps {
        let Some(name) = pcap.file_name() else {
            continue;
        };
        if let Err(e) = std::fs::copy(pcap, dir.join(name)) {
            notes.push(format!("pcap {} not copied: {e}", pcap.display()));
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_marks_line_and_column() {
        let script = "a\nb\nc\nd\n  server.succeed(\"x\");\nf\ng\nh\ni\n";
        let text = script_excerpt(
            script,
            ScriptPosition {
                line: 5,
                column: 10,
            },
        );
        assert_eq!(
            text,
            "     2 | b\n     3 | c\n     4 | d\n>    5 |   server.succeed(\"x\");\n       |          ^\n     6 | f\n     7 | g\n     8 | h\n"
        );
    }

    #[test]
    fn report_and_bundle_without_machines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pcap = dir.path().join("vlan1.pcap");
        std::fs::write(&pcap, b"pcap").expect("pcap");
        let missing = dir.path().join("gone.pcap");
        let pcaps = [pcap, missing];
        let input = BundleInput {
            failure: "machine `c`: succeed(`x`) failed",
            position: Some(ScriptPosition { line: 1, column: 1 }),
            script: Some("c.succeed(\"x\");"),
            spec: Some(Path::new("/s/spec.toml")),
            nodes: &[],
            console_logs: &[],
            pcaps: &pcaps,
        };
        let out = dir.path().join("out/failure");
        let report = write_bundle(&out, &input).expect("bundle");
        let text = std::fs::read_to_string(report).expect("report");
        assert!(text.contains("spec: /s/spec.toml"), "{text}");
        assert!(text.contains("script position: line 1, column 1"), "{text}");
        assert!(text.contains(">    1 | c.succeed(\"x\");"), "{text}");
        assert!(
            text.contains("pcap") && text.contains("gone.pcap not copied"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(out.join("pcap/vlan1.pcap")).expect("copied"),
            b"pcap"
        );
    }
}
