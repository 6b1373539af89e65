//! Booted guests restored from the snapshot cache (issue 18, goal 1): the
//! first boot of a base image saves the booted guest, later boots of any
//! machine of that base restore it and get their own layer. A restored VM
//! must still be its own machine, now: its hostname, its MAC and
//! addresses, its clock, services started after the restore, fresh
//! randomness, its own (even rebuilt) programs; and what it runs must be
//! covered exactly as on a cold boot.
//!
//! Needs qemu-system-x86_64, busybox-static, gcc and a Debian kernel in
//! /boot (scripts/setup.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use covnet_tests::lcov_tool;

/// One `covnet run` of two TCG VMs (cold boots included).
const RUN_DEADLINE: Duration = Duration::from_secs(240);

/// A program whose coverage does not depend on timing: `ident serve` is a
/// service that records its host name and start time, then waits for
/// signals forever; `ident N` sums Collatz step counts up to N.
const IDENT_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int collatz(long n)
{
	int steps = 0;
	while (n != 1) {
		n = (n % 2) ? 3 * n + 1 : n / 2;
		steps++;
	}
	return steps;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "serve") == 0) {
		char host[64] = "";
		gethostname(host, sizeof host - 1);
		FILE *f = fopen("/run/ident-serve.tmp", "w");
		if (!f)
			return 1;
		fprintf(f, "%s %ld\n", host, (long)time(NULL));
		fclose(f);
		rename("/run/ident-serve.tmp", "/run/ident-serve");
		for (;;)
			pause();
	}
	long n = argc > 1 ? atol(argv[1]) : 7;
	int total = 0;
	for (long i = 1; i <= n; i++)
		total += collatz(i);
	printf("%d\n", total);
	return 0;
}
"#;

/// What each machine reports about itself, one line per machine:
/// `ident <name>: <hostname> <guest clock> <boot id> <MAC> <addresses>`.
const PROBE: &str = "echo $(hostname) $(date +%s) $(cat /proc/sys/kernel/random/boot_id) $(cat /sys/class/net/eth0/address) $(ip -4 -o addr show | grep -v ' lo ' | awk '{print $4}')";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Fixture> {
        let f = Fixture {
            dir: tempfile::tempdir()?,
        };
        let build = f.path("build");
        std::fs::create_dir_all(&build)?;
        std::fs::write(build.join("ident.c"), IDENT_C)?;
        lcov_tool::run_ok(
            Command::new("gcc")
                .args(["--coverage", "-O0", "-o", "ident", "ident.c"])
                .current_dir(&build),
        )
        .context("gcc (installed by scripts/setup.sh)")?;
        let ident = build.join("ident").display().to_string();
        let probe = PROBE.replace('\\', "\\\\").replace('"', "\\\"");
        let spec = format!(
            r#"[defaults]
backend = "vm"
memory_mib = 128

[machines.server]
programs = ["{ident}"]

[[machines.server.services]]
name = "ident"
command = "ident serve"
ready = {{ file = "/run/ident-serve" }}

[machines.client]
programs = ["{ident}"]

[test]
timeout = "4m"
script = '''
start_all();
server.wait_for_service("ident");
print("served " + server.succeed("cat /run/ident-serve"));
client.succeed("ident 300");
server.succeed("ident 20");
client.succeed("ping -c 1 -W 10 server");
server.succeed("ping -c 1 -W 10 client");
for m in [server, client] {{
    print("ident " + m.succeed("{probe}"));
}}
'''
"#
        );
        std::fs::create_dir_all(f.path("spec"))?;
        std::fs::write(f.path("spec/spec.toml"), spec)?;
        Ok(f)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The fixture's own cache: images and snapshots of this test only.
    fn snapshots(&self) -> PathBuf {
        self.path("cache/covnet/snapshots")
    }

    fn vmstates(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.snapshots())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "vmstate"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// `covnet run --coverage` of the spec into `out`, with `extra`
    /// arguments; its output, with the wall-clock interval it ran in.
    fn run(&self, out: &str, extra: &[&str]) -> Result<Run> {
        self.run_in(Command::new(lcov_tool::covnet_bin()?), out, extra)
    }

    /// [`Fixture::run`] on one host core (`taskset`): the network then has
    /// more VMs than cores.
    fn run_on_one_core(&self, out: &str) -> Result<Run> {
        self.run_in(on_cpus(1)?, out, &[])
    }

    fn run_in(&self, mut command: Command, out: &str, extra: &[&str]) -> Result<Run> {
        let start = now_secs();
        let o = lcov_tool::run(
            command
                .args(["run", "--coverage", "--no-console", "--no-progress"])
                .args(extra)
                .arg("--out")
                .arg(self.path(out))
                .arg(self.path("spec/spec.toml"))
                .env("XDG_CACHE_HOME", self.path("cache"))
                .current_dir(self.dir.path()),
            RUN_DEADLINE,
        )?;
        let end = now_secs();
        ensure!(o.status.success(), "covnet run ({out}) failed:\n{o}");
        Ok(Run {
            text: format!("{}{}", o.stdout, o.stderr),
            out: self.path(out),
            start,
            end,
        })
    }
}

/// `taskset -c <the first n CPUs this process may use> covnet`.
fn on_cpus(n: usize) -> Result<Command> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("Cpus_allowed_list in /proc/self/status")?;
    let mut cpus = Vec::new();
    for part in allowed.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.parse::<usize>()?..=hi.parse::<usize>()?);
    }
    let list: Vec<String> = cpus.iter().take(n).map(usize::to_string).collect();
    let mut taskset = Command::new("taskset");
    taskset
        .args(["-c", &list.join(",")])
        .arg(lcov_tool::covnet_bin()?);
    Ok(taskset)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Run {
    text: String,
    out: PathBuf,
    start: u64,
    end: u64,
}

/// One machine's view of itself.
#[derive(Debug)]
struct Identity {
    hostname: String,
    clock: u64,
    boot_id: String,
    mac: String,
    addresses: Vec<String>,
}

impl Run {
    fn count(&self, needle: &str) -> usize {
        self.text.lines().filter(|l| l.contains(needle)).count()
    }

    /// The run saved exactly `saved` booted guests and restored exactly
    /// `restored`.
    fn ensure_boots(&self, saved: usize, restored: usize) -> Result<()> {
        ensure!(
            self.count("saved the booted guest") == saved
                && self.count("restored the booted guest") == restored,
            "want {saved} saved and {restored} restored:\n{}",
            self.text
        );
        Ok(())
    }

    /// Each machine's probe line, by host name.
    fn identities(&self) -> Result<BTreeMap<String, Identity>> {
        let mut out = BTreeMap::new();
        for line in self.text.lines() {
            let Some(rest) = line
                .split("ident ")
                .nth(1)
                .filter(|_| !line.contains("served"))
            else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let [hostname, clock, boot_id, mac, addresses @ ..] = words.as_slice() else {
                continue;
            };
            let Ok(clock) = clock.parse() else { continue };
            out.insert(
                (*hostname).to_owned(),
                Identity {
                    hostname: (*hostname).to_owned(),
                    clock,
                    boot_id: (*boot_id).to_owned(),
                    mac: (*mac).to_owned(),
                    addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                },
            );
        }
        ensure!(out.len() == 2, "two probe lines expected:\n{}", self.text);
        Ok(out)
    }

    /// The service's own record: host name and start time.
    fn served(&self) -> Result<(String, u64)> {
        let line = self
            .text
            .lines()
            .find_map(|l| l.split("served ").nth(1))
            .with_context(|| format!("no `served` line:\n{}", self.text))?;
        let (host, time) = line
            .trim()
            .split_once(' ')
            .with_context(|| format!("served line `{line}`"))?;
        Ok((host.to_owned(), time.trim().parse()?))
    }

    /// The guest clock was set from the host's: within the run (a second
    /// of slack each way for whole seconds).
    fn ensure_now(&self, what: &str, t: u64) -> Result<()> {
        ensure!(
            self.start.saturating_sub(1) <= t && t <= self.end + 1,
            "{what}: guest time {t} is outside the run ({}..{})",
            self.start,
            self.end
        );
        Ok(())
    }

    fn lcov(&self, file: &str) -> Result<String> {
        std::fs::read_to_string(self.out.join(file)).with_context(|| format!("{file} of the run"))
    }
}

/// Each machine is itself: its own name, MAC and address (the index in
/// both), a clock that reads the host's time, and the service started in
/// this run.
fn ensure_identity(run: &Run) -> Result<BTreeMap<String, Identity>> {
    let ids = run.identities()?;
    for (name, mac, address) in [
        ("server", "52:54:00:01:01:00", "192.168.1.1/24"),
        ("client", "52:54:00:01:02:00", "192.168.1.2/24"),
    ] {
        let id = ids
            .get(name)
            .with_context(|| format!("no probe of {name}:\n{}", run.text))?;
        ensure!(id.hostname == name, "{id:?}");
        ensure!(id.mac == mac, "{name}'s MAC: {id:?}");
        ensure!(id.addresses == [address], "{name}'s addresses: {id:?}");
        run.ensure_now(name, id.clock)?;
    }
    let (host, started) = run.served()?;
    ensure!(host == "server", "the service ran on `{host}`");
    run.ensure_now("the service's start", started)?;
    Ok(ids)
}

#[test]
fn a_restored_vm_is_its_own_machine_and_covers_what_a_cold_boot_covers() -> Result<()> {
    let f = Fixture::new()?;

    // --cold-boot: nothing saved, nothing restored.
    let cold = f.run("cold", &["--cold-boot"])?;
    ensure!(
        cold.count("saved the booted guest") == 0 && cold.count("restored") == 0,
        "{}",
        cold.text
    );
    ensure!(
        f.vmstates().is_empty(),
        "--cold-boot saved {:?}",
        f.vmstates()
    );
    let cold_ids = ensure_identity(&cold)?;

    // Both machines boot the same base with as many NICs: one snapshot
    // serves both. Both boot cold at once (as many VMs as cores or
    // fewer), one saves.
    let first = f.run("first", &[])?;
    ensure!(
        first.count("saved the booted guest") == 1 && first.count("restored") == 0,
        "{}",
        first.text
    );
    let saved = f.vmstates();
    ensure!(saved.len() == 1, "{saved:?}");
    let first_ids = ensure_identity(&first)?;

    // Later boots restore: twice, to compare two restores.
    let mut warm_ids = Vec::new();
    let mut warm_runs = Vec::new();
    for out in ["warm1", "warm2"] {
        let warm = f.run(out, &[])?;
        warm.ensure_boots(0, 2)?;
        warm_ids.push(ensure_identity(&warm)?);
        warm_runs.push(warm);
    }
    ensure!(f.vmstates() == saved, "restores changed the cache");

    // A rebuilt program changes the machines' layers, not the base: both
    // are still restored, and run the new program.
    lcov_tool::run_ok(
        Command::new("gcc")
            .args(["--coverage", "-O0", "-DREBUILT", "-o", "ident", "ident.c"])
            .current_dir(f.path("build")),
    )?;
    let rebuilt = f.run("rebuilt", &[])?;
    rebuilt.ensure_boots(0, 2)?;
    ensure_identity(&rebuilt)?;
    ensure!(
        f.vmstates() == saved,
        "a rebuilt program made a new snapshot"
    );

    // On one host core the network has more VMs than cores: its VMs boot
    // with ACPI (another snapshot key), one boots cold and saves, the
    // other waits for that snapshot and restores it, its own machine.
    let one_core = f.run_on_one_core("one-core")?;
    one_core.ensure_boots(1, 1)?;
    ensure_identity(&one_core)?;
    ensure!(f.vmstates().len() == 2, "{:?}", f.vmstates());

    // Randomness is not the saved guest's: boot ids (drawn on first read,
    // after the release) differ between every boot.
    for name in ["server", "client"] {
        let ids: Vec<&str> = [&cold_ids, &first_ids, &warm_ids[0], &warm_ids[1]]
            .iter()
            .map(|m| m[name].boot_id.as_str())
            .collect();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        ensure!(
            distinct.len() == ids.len(),
            "{name}'s boot ids repeat: {ids:?}"
        );
    }

    // Coverage: the restored runs cover exactly what the cold run covers,
    // per machine and combined.
    for file in ["coverage.info", "coverage-per-machine.info"] {
        let expected = cold.lcov(file)?;
        // Three processes ran main: the service (flushed at the end) and
        // one `ident N` on each machine.
        ensure!(
            expected.contains("ident.c")
                && expected.contains(if file == "coverage.info" {
                    "FNDA:3,main"
                } else {
                    "TN:client"
                }),
            "{file} of the cold run:\n{expected}"
        );
        for run in [&first, &warm_runs[0], &warm_runs[1], &rebuilt, &one_core] {
            let got = run.lcov(file)?;
            if got != expected {
                bail!(
                    "{file} of {} differs from the cold run's:\n--- cold\n{expected}\n--- {}\n{got}",
                    run.out.display(),
                    run.out.display()
                );
            }
        }
    }

    // A snapshot that cannot be restored is removed, the guests boot cold
    // (one saves it again), the run passes. Both machines may have tried
    // the file before the first failure removed it.
    std::fs::write(&saved[0], b"not a QEMU migration stream")?;
    let damaged = f.run("damaged", &[])?;
    ensure!(
        (1..=2).contains(&damaged.count("could not restore"))
            && damaged.count("restored the booted guest") == 0
            && damaged.count("saved the booted guest") == 1,
        "{}",
        damaged.text
    );
    ensure_identity(&damaged)?;
    ensure!(damaged.lcov("coverage.info")? == cold.lcov("coverage.info")?);
    let resaved = std::fs::metadata(&saved[0])?.len();
    ensure!(
        resaved > 1 << 20,
        "the damaged snapshot was saved again: {resaved} bytes"
    );
    Ok(())
}

/// Specs run at once (`-j 2`) on two host cores count on one core each:
/// each network of two VMs then has more VMs than its cores, so of the four
/// VMs (one base image, one snapshot key) one boots cold and saves, and
/// the three others, in both specs, wait for it and restore it.
#[test]
fn specs_run_at_once_share_the_cores_and_one_cold_boot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let suite = dir.path().join("suite");
    std::fs::create_dir_all(&suite)?;
    for name in ["a", "b"] {
        let script = format!(
            "start_all();\n{name}1.succeed(\"ping -c 1 -W 10 {name}2\");\n\
             print(\"host \" + {name}2.succeed(\"hostname\"));\n"
        );
        std::fs::write(
            suite.join(format!("{name}.toml")),
            format!(
                "[defaults]\nbackend = \"vm\"\nmemory_mib = 128\n\
                 [machines.{name}1]\n[machines.{name}2]\n\
                 [test]\nscript = '''\n{script}'''\n"
            ),
        )?;
    }
    let o = lcov_tool::run(
        on_cpus(2)?
            .args(["run", "-j", "2", "--no-console", "--no-progress", "--out"])
            .arg(dir.path().join("out"))
            .arg(&suite)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .current_dir(dir.path()),
        RUN_DEADLINE,
    )?;
    let text = format!("{}{}", o.stdout, o.stderr);
    ensure!(o.status.success(), "covnet run -j 2 failed:\n{o}");
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    ensure!(
        count("saved the booted guest") == 1 && count("restored the booted guest") == 3,
        "{text}"
    );
    for name in ["a2", "b2"] {
        ensure!(
            count(&format!("host {name}")) == 1,
            "{name} is not itself:\n{text}"
        );
    }
    Ok(())
}
