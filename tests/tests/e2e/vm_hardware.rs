//! A VM has the hardware its spec asks for: as many CPUs as `cpus` says
//! (a guest booted with `acpi=off` finds only one, so a machine with more
//! boots with ACPI), the memory `memory_mib` gives it, and a kernel log
//! without warnings; on a cold boot and when restored from its snapshot.
//!
//! Needs qemu-system-x86_64, busybox-static and a Debian kernel in /boot
//! (scripts/setup.sh).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool;

/// One `covnet run` of two TCG VMs, cold boots included.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

/// Each machine prints `hw <hostname> <online CPUs> <MemTotal kB>
/// <warnings>`, where warnings counts the kernel log's WARNING and Call
/// Trace lines.
const SPEC: &str = r#"[defaults]
backend = "vm"

[machines.two]
cpus = 2
memory_mib = 192

[machines.one]
memory_mib = 160

[test]
timeout = "4m"
script = '''
start_all();
for m in [two, one] {
    print("hw " + m.succeed("echo $(hostname) $(nproc) $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) $(dmesg | grep -c -e 'WARNING:' -e 'Call Trace')"));
}
print(one.succeed("dmesg | grep -e 'WARNING:' -e 'Call Trace' -A3 || true"));
'''
"#;

/// What a machine reported about itself.
#[derive(Debug, PartialEq)]
struct Hardware {
    cpus: u32,
    mem_kib: u64,
    warnings: u32,
}

/// `covnet run` of `dir/<spec>` into `dir/<out>` with `extra` flags and
/// the test's own cache under `dir` (so a first run saves the booted
/// guests and a second restores them); its exit code and its output.
fn covnet_run(
    dir: &std::path::Path,
    spec: &str,
    out: &str,
    extra: &[&str],
) -> Result<(Option<i32>, String)> {
    let o = lcov_tool::run(
        Command::new(lcov_tool::covnet_bin()?)
            .args(["run", "--no-console", "--no-progress"])
            .args(extra)
            .arg("--out")
            .arg(dir.join(out))
            .arg(dir.join(spec))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .current_dir(dir),
        RUN_DEADLINE,
    )?;
    Ok((o.status.code(), format!("{}{}", o.stdout, o.stderr)))
}

/// Runs `spec.toml` (snapshots on); the machines' reports.
fn run(dir: &std::path::Path, out: &str) -> Result<(String, BTreeMap<String, Hardware>)> {
    let (code, text) = covnet_run(dir, "spec.toml", out, &[])?;
    ensure!(code == Some(0), "covnet run ({out}) failed:\n{text}");
    let mut hw = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("hw ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [name, cpus, mem, warnings] = words.as_slice() else {
            continue;
        };
        hw.insert(
            (*name).to_owned(),
            Hardware {
                cpus: cpus.parse().with_context(|| format!("`{line}`"))?,
                mem_kib: mem.parse().with_context(|| format!("`{line}`"))?,
                warnings: warnings.parse().with_context(|| format!("`{line}`"))?,
            },
        );
    }
    ensure!(hw.len() == 2, "two `hw` lines expected:\n{text}");
    Ok((text, hw))
}

/// The guest's MemTotal is what QEMU gave it less what the kernel keeps
/// for itself: below `mib` MiB, and above 70 % of it (Debian's cloud
/// kernel keeps about 35 MiB of 192).
fn ensure_memory(name: &str, hw: &Hardware, mib: u64) -> Result<()> {
    let given = mib * 1024;
    ensure!(
        hw.mem_kib < given && hw.mem_kib > given * 7 / 10,
        "{name}: MemTotal {} kB for {mib} MiB",
        hw.mem_kib
    );
    Ok(())
}

#[test]
fn a_vm_has_the_cpus_and_memory_of_its_spec_and_a_clean_kernel_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("spec.toml"), SPEC)?;
    for (out, snapshot_line) in [
        ("first", "saved the booted guest"),
        ("again", "restored the booted guest"),
    ] {
        let (text, hw) = run(dir.path(), out)?;
        ensure!(
            text.lines().filter(|l| l.contains(snapshot_line)).count() == 2,
            "run `{out}`: both machines should say `{snapshot_line}`:\n{text}"
        );
        let two = &hw["two"];
        let one = &hw["one"];
        ensure!(two.cpus == 2, "run `{out}`: `two` has cpus = 2: {two:?}");
        ensure!(one.cpus == 1, "run `{out}`: `one` has cpus = 1: {one:?}");
        ensure_memory("two", two, 192)?;
        ensure_memory("one", one, 160)?;
        ensure!(
            two.warnings == 0 && one.warnings == 0,
            "run `{out}`: kernel warnings in the guests' logs:\n{text}"
        );
    }
    Ok(())
}

/// `accel = "kvm"` gets KVM or an error before anything boots, never a
/// guest that QEMU starts with an accelerator that does not work (on a
/// host without vmx/svm such a guest crashed, and the run failed as a
/// test after the boot timeout). Which of the two depends on the host, as
/// covnet's own detection tells.
#[test]
fn accel_kvm_boots_with_kvm_or_is_refused_before_booting() -> Result<()> {
    use covnet_runner::machine::vm::accel::{self, Accel};
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("spec.toml"),
        "[machines.k]\naccel = \"kvm\"\n\n[test]\ntimeout = \"2m\"\n\
         script = 'start_all(); print(\"accel \" + k.succeed(\"cat /sys/devices/system/clocksource/clocksource0/available_clocksource\"));'\n",
    )?;
    let (code, text) = covnet_run(dir.path(), "spec.toml", "out", &["--cold-boot"])?;
    let detection = accel::detect();
    match detection.kvm_unusable {
        Some(why) => {
            ensure!(
                code == Some(1),
                "KVM is not usable ({why}): `accel = \"kvm\"` should be an infrastructure error (exit 1):\n{text}"
            );
            ensure!(
                text.contains("machine `k`: accel = \"kvm\", but KVM is not usable here")
                    && text.contains(&why),
                "the error names the machine and why:\n{text}"
            );
            ensure!(
                !text.contains("booting"),
                "nothing boots with an unusable accelerator:\n{text}"
            );
        }
        None => {
            ensure!(detection.accel == Accel::Kvm, "{detection:?}");
            ensure!(
                code == Some(0),
                "KVM is usable, the run should pass:\n{text}"
            );
            ensure!(
                text.contains("booting (kvm)") && text.contains("kvm-clock"),
                "the guest runs under KVM:\n{text}"
            );
        }
    }
    Ok(())
}

/// A VM that does not come up because it was given too little memory for
/// what QEMU loads into it says so: at 64 MiB the guest panics out of
/// memory (QEMU exits), at 56 MiB it hangs silently until the boot
/// timeout; both runs fail (exit 2) with a hint naming `memory_mib` and
/// the sizes. A boot failure with enough memory (no init in the
/// initramfs) gets no such hint.
#[test]
fn a_vm_without_enough_memory_to_boot_is_told_so() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("m64", "memory_mib = 64\n", true),
        ("m56", "memory_mib = 56\n", true),
        (
            "noinit",
            "kernel_params = [\"rdinit=/covnet/none\"]\n",
            false,
        ),
    ];
    for (name, machine, hinted) in cases {
        let spec = format!("{name}.toml");
        std::fs::write(
            dir.path().join(&spec),
            format!(
                "[defaults]\nboot_timeout = \"20s\"\n\n[machines.a]\n{machine}\n\
                 [test]\ntimeout = \"2m\"\nscript = 'start_all();'\n"
            ),
        )?;
        let (code, text) = covnet_run(dir.path(), &spec, &format!("out-{name}"), &["--cold-boot"])?;
        ensure!(
            code == Some(2),
            "{name}: a machine that does not come up fails the test (exit 2):\n{text}"
        );
        ensure!(
            text.contains("machine `a`: start() failed"),
            "{name}: the failure names the machine and the step:\n{text}"
        );
        let hint = text.contains("raise `memory_mib`");
        ensure!(
            hint == hinted,
            "{name}: memory hint expected: {hinted}, given: {hint}:\n{text}"
        );
        if hinted {
            let has = format!("this one has {} MiB", &name[1..]);
            ensure!(
                text.contains(&has),
                "{name}: the hint says `{has}`:\n{text}"
            );
        }
    }
    Ok(())
}
