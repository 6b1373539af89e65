//! The ports of NixOS tests in `examples/nixos-*` (issue 16): each runs
//! with `covnet run` and passes with every subtest of the original script
//! in its JUnit file; and each port's `test.py` differs from the original
//! testScript (`original.py`) exactly by `test.py.diff`, whose size its
//! `CHANGES.md` states.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool;

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

/// `diff -u original.py test.py` of the port `name`, labelled by file name.
fn script_diff(dir: &Path) -> Result<String> {
    let o = lcov_tool::run(
        Command::new("diff")
            .args(["-u", "--label", "original.py", "--label", "test.py"])
            .args(["original.py", "test.py"])
            .current_dir(dir),
        Duration::from_secs(30),
    )?;
    // diff exits 0 (same) or 1 (different); 2 is trouble.
    ensure!(matches!(o.status.code(), Some(0 | 1)), "diff failed:\n{o}");
    Ok(o.stdout)
}

/// Every port's test.py.diff is the real diff, and CHANGES.md states its
/// size: "test.py.diff: N lines changed" (N lines out, N in), or "line for
/// line" for an empty one.
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
    for dir in &ports {
        let name = dir.display();
        let diff = script_diff(dir)?;
        let recorded = std::fs::read_to_string(dir.join("test.py.diff"))
            .with_context(|| format!("{name}/test.py.diff"))?;
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
        let original = std::fs::read_to_string(dir.join("original.py"))?;
        ensure!(
            original.contains("of NixOS/nixpkgs at commit"),
            "{name}: original.py does not name its nixpkgs commit"
        );
    }
    Ok(())
}
