//! The ports of NixOS tests in `examples/nixos-*` (issue 16): each runs
//! with `covnet run` and passes with every subtest of the original script
//! in its JUnit file; and each port's `test.py` differs from the original
//! testScript (not committed: `test.py.diff` applied to `test.py` in
//! reverse gives it back) exactly by `test.py.diff`, whose size its
//! `CHANGES.md` states.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool;
use sha2::Digest as _;

use crate::features::junit_cases;

/// One `covnet run` of a port: namespace machines take seconds; the VM run
/// boots two TCG guests.
const RUN_DEADLINE: Duration = Duration::from_secs(200);

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The Debian programs the ports run, installed by scripts/setup.sh.
fn require(programs: &[&str]) {
    for p in programs {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: run scripts/setup.sh (it installs the packages the NixOS ports need)"
        );
    }
}

/// Runs the port `name` on `backend` and checks that it passed with the
/// JUnit cases `subtests` (all passed) plus the whole script's.
fn run_port(name: &str, backend: &str, subtests: &[&str]) -> Result<()> {
    let dir = example(name);
    let out = tempfile::tempdir()?;
    let junit = out.path().join("junit.xml");
    let o = lcov_tool::run(
        Command::new(lcov_tool::covnet_bin()?)
            .args(["run", "--no-console", "--backend", backend, "--out"])
            .arg(out.path().join("out"))
            .arg("--junit")
            .arg(&junit)
            .arg(dir.join("spec.toml"))
            .current_dir(&dir),
        RUN_DEADLINE,
    )?;
    ensure!(
        o.status.success(),
        "covnet run {name} ({backend}) failed:\n{o}"
    );
    let mut expected: Vec<(String, bool)> =
        subtests.iter().map(|s| ((*s).to_owned(), false)).collect();
    expected.push(("script".to_owned(), false));
    let cases = junit_cases(&junit);
    ensure!(
        cases == expected,
        "{name} ({backend}): JUnit cases {cases:?}, expected {expected:?}"
    );
    Ok(())
}

const NGINX_SUBTESTS: &[&str] = &[
    "localhost can access status page",
    "localhost can access other page",
    "client can not access status page",
    "client can access other page",
];

#[test]
fn nginx_status_page_on_namespace_machines() -> Result<()> {
    require(&["/usr/sbin/nginx", "/usr/bin/curl"]);
    run_port("nixos-nginx-status-page", "namespace", NGINX_SUBTESTS)
}

#[test]
fn nginx_status_page_on_vms() -> Result<()> {
    require(&["/usr/sbin/nginx", "/usr/bin/curl"]);
    run_port("nixos-nginx-status-page", "vm", NGINX_SUBTESTS)
}

#[test]
fn knot_on_namespace_machines() -> Result<()> {
    require(&["/usr/sbin/knotd", "/usr/sbin/knotc", "/usr/bin/khost"]);
    run_port(
        "nixos-knot",
        "namespace",
        &[
            "Interrogate 192.168.0.1",
            "Interrogate fd00::1",
            "Interrogate 192.168.0.2",
            "Interrogate fd00::2",
        ],
    )
}

#[test]
fn openssh_on_namespace_machines() -> Result<()> {
    require(&[
        "/usr/sbin/sshd",
        "/usr/bin/ssh",
        "/usr/bin/ssh-keygen",
        "/usr/bin/ss",
        "/usr/bin/systemd-socket-activate",
    ]);
    run_port(
        "nixos-openssh",
        "namespace",
        &[
            "manual-authkey",
            "socket activation on a non-standard port",
            "configured-authkey",
            "localhost-only",
            "match-rules",
            "allowed-users",
            "no-openssl",
            "no-pam",
        ],
    )
}

/// The original testScript, given back by applying the port's recorded
/// diff to test.py in reverse, exactly (no fuzz, no offset) into `out`:
/// nixpkgs' text is not committed.
fn original(dir: &Path, out: &Path) -> Result<()> {
    let o = lcov_tool::run(
        Command::new("patch")
            .args(["--reverse", "--fuzz=0", "--batch", "--silent", "-o"])
            .arg(out)
            .args(["test.py", "test.py.diff"])
            .current_dir(dir),
        Duration::from_secs(30),
    )?;
    ensure!(
        o.status.success() && o.stdout.trim().is_empty(),
        "test.py.diff does not apply to test.py in reverse exactly:\n{o}"
    );
    Ok(())
}

/// `diff -u original.py test.py` with the original in `orig`.
fn script_diff(dir: &Path, orig: &Path) -> Result<String> {
    let o = lcov_tool::run(
        Command::new("diff")
            .args(["-u", "--label", "original.py", "--label", "test.py"])
            .arg(orig)
            .arg("test.py")
            .current_dir(dir),
        Duration::from_secs(30),
    )?;
    // diff exits 0 (same) or 1 (different); 2 is trouble.
    ensure!(matches!(o.status.code(), Some(0 | 1)), "diff failed:\n{o}");
    Ok(o.stdout)
}

/// Every port's test.py.diff applies to test.py in reverse exactly and is
/// `diff -u` of what that gives back and test.py; CHANGES.md names the
/// nixpkgs commit and states the diff's size: "test.py.diff: N lines
/// changed" (N lines out, N in), or "line for line" for an empty one.
#[test]
fn ports_differ_from_the_originals_only_as_their_changes_say() -> Result<()> {
    let mut ports: Vec<PathBuf> = std::fs::read_dir(example(""))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nixos-"))
        })
        .collect();
    ports.sort();
    ensure!(
        ports.len() >= 3,
        "expected three NixOS ports, found {ports:?}"
    );
    let commit = regex::Regex::new(r"at commit\s+`[0-9a-f]{40}`")?;
    for dir in &ports {
        let name = dir.display();
        let recorded = std::fs::read_to_string(dir.join("test.py.diff"))
            .with_context(|| format!("{name}/test.py.diff"))?;
        let tmp = tempfile::tempdir()?;
        let orig = tmp.path().join("original.py");
        if recorded.is_empty() {
            std::fs::copy(dir.join("test.py"), &orig)?;
        } else {
            original(dir, &orig)?;
        }
        let diff = script_diff(dir, &orig)?;
        ensure!(
            diff == recorded,
            "{name}: test.py.diff is not `diff -u original.py test.py`:\n{diff}"
        );
        let out = diff
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .count();
        let added = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let changes = std::fs::read_to_string(dir.join("CHANGES.md"))
            .with_context(|| format!("{name}/CHANGES.md"))?;
        if diff.is_empty() {
            ensure!(
                changes.contains("line for line"),
                "{name}: test.py is the original, but CHANGES.md does not say so"
            );
        } else {
            let claim = format!("test.py.diff): {out} lines changed");
            ensure!(
                out == added && changes.contains(&claim),
                "{name}: the diff takes out {out} lines and adds {added}; CHANGES.md must say `{claim}`"
            );
        }
        ensure!(
            commit.is_match(&changes),
            "{name}: CHANGES.md does not name the nixpkgs commit"
        );
        // The original given back is the original: its checksum is the one
        // CHANGES.md recorded when it was fetched.
        let bytes = std::fs::read(&orig)?;
        let sum: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ensure!(
            changes.contains(&format!("SHA-256 `{sum}`")),
            "{name}: the original given back from test.py and test.py.diff has SHA-256 {sum}, not the one CHANGES.md records: test.py changed where the diff does not say"
        );
    }
    Ok(())
}
