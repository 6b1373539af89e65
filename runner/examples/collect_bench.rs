//! Measures coverage collection throughput: how fast `covnet`'s collector
//! pulls `.gcda` trees off a machine through its control channel (listing
//! with sizes and SHA-256, one tar stream, gzip-compressed on the machine
//! when a sample compresses, verification, local write).
//!
//! Usage: `cargo run --release -p covnet-runner --example collect_bench --
//! [MIB] [RUNS] [random|gcda] [vm|namespace]` (default 20 MiB in 512 KiB
//! files, 5 pulls, random bytes, a TCG VM). `random` does not compress;
//! `gcda` files are shaped like gcc's (function records, then 64-bit
//! counters that are mostly zero). Prints one line per pull and the
//! medians of the file bytes (effective) and channel bytes per second;
//! then what bounds a pull, each step alone as one command: the machine's
//! `sha256sum` of the files, the files as a command's stdout (the channel
//! alone) and the machine's `gzip -1` and `lzop -1` (busybox's fastest
//! compressor) of them.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use covnet_runner::coverage::{self, CollectOptions};
use covnet_runner::run::network::{Network, NetworkOptions};
use covnet_runner::spec::Spec;

const FILE_BYTES: usize = 512 * 1024;

/// A `.gcda`-like file: gcov's header, then per function a record
/// (tag, length, ident, checksums) and a counter block whose 64-bit
/// counters are nine in ten zero, the rest small.
fn gcda_like(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let word = |out: &mut Vec<u8>, w: u32| out.extend_from_slice(&w.to_le_bytes());
    let mut out = Vec::with_capacity(FILE_BYTES);
    out.extend_from_slice(b"adcgB33R");
    word(&mut out, next() as u32);
    word(&mut out, 0);
    let mut ident = 0u32;
    while out.len() < FILE_BYTES {
        ident += 1;
        word(&mut out, 0x0100_0000);
        word(&mut out, 12);
        word(&mut out, ident);
        word(&mut out, next() as u32);
        word(&mut out, next() as u32);
        let counters = 8 + (next() % 120) as u32;
        word(&mut out, 0x01a1_0000);
        word(&mut out, counters * 8);
        for _ in 0..counters {
            let r = next();
            let v = if r % 10 == 0 { (r >> 32) % 5000 } else { 0 };
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.truncate(FILE_BYTES);
    out
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let kind = args.next().unwrap_or_else(|| "random".into());
    let backend = args.next().unwrap_or_else(|| "vm".into());
    if !matches!(kind.as_str(), "random" | "gcda")
        || !matches!(backend.as_str(), "vm" | "namespace")
    {
        bail!("usage: collect_bench [MIB] [RUNS] [random|gcda] [vm|namespace]");
    }
    let dir = tempfile::tempdir()?;
    let spec_path = dir.path().join("bench.toml");
    let spec = Spec::from_str(
        &format!(
            "[defaults]\ncommand_timeout = \"300s\"\n\n[machines.bench]\nmemory_mib = 1024\nbackend = \"{backend}\"\n"
        ),
        &spec_path,
    )?;
    let options = NetworkOptions {
        output_dir: dir.path().join("out"),
        guest_env: coverage::guest_env(),
        ..Default::default()
    };
    let network = Network::build(&spec, &options)?;
    let boot = Instant::now();
    network.start_all()?;
    let node = network.nodes().first().context("one machine")?;
    let machine = node.machine();
    println!("{backend}: booted in {:.2}s", boot.elapsed().as_secs_f64());

    // Data shaped like a real capture: files of 512 KiB under a build path.
    let files = mib * 2;
    let obj = format!("{}/home/user/build/obj", coverage::GUEST_PREFIX);
    if kind == "random" {
        let make = format!(
            "mkdir -p {obj} && i=0; while [ $i -lt {files} ]; do \
             head -c {FILE_BYTES} /dev/urandom > {obj}/unit$i.gcda; i=$((i+1)); done"
        );
        machine.execute(&make, Duration::from_secs(300))?;
    } else {
        // Made on the host, sent as one small .tar.gz, unpacked there.
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src)?;
        for i in 0..files {
            std::fs::write(src.join(format!("unit{i}.gcda")), gcda_like(i as u64 + 1))?;
        }
        let tgz = dir.path().join("src.tar.gz");
        let status = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()?;
        ensure!(status.success(), "tar -czf failed");
        machine.copy_to(&std::fs::read(&tgz)?, "/tmp/src.tar.gz", 0o600)?;
        let out = machine.execute(
            &format!("mkdir -p {obj} && tar -xzf /tmp/src.tar.gz -C {obj} && rm /tmp/src.tar.gz"),
            Duration::from_secs(300),
        )?;
        ensure!(out.success(), "unpacking failed: {}", out.stderr_text());
    }

    let opts = CollectOptions {
        stop_services: false,
        reset: false,
        command_timeout: Duration::from_secs(300),
        phase: None,
    };
    let mib_of = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut rates = Vec::new();
    let mut channel_rates = Vec::new();
    for run in 0..runs {
        let dest = dir.path().join(format!("pull{run}"));
        let t = Instant::now();
        let got = coverage::collect_one(machine.as_ref(), &dest, &opts);
        let secs = t.elapsed().as_secs_f64();
        let got = got.outcome.map_err(anyhow::Error::msg)?;
        let pulled = &got.pulled;
        ensure!(
            pulled.files.len() == files,
            "pulled {} of {files} files",
            pulled.files.len()
        );
        let rate = mib_of(pulled.bytes) / secs;
        let channel = mib_of(pulled.channel_bytes) / secs;
        println!(
            "pull {run}: {} files, {} bytes ({} on the channel, {}) in {secs:.3}s = {rate:.2} MiB/s of files, {channel:.2} MiB/s on the channel",
            pulled.files.len(),
            pulled.bytes,
            pulled.channel_bytes,
            if pulled.compressed { "gzip" } else { "tar" },
        );
        rates.push(rate);
        channel_rates.push(channel);
        std::fs::remove_dir_all(&dest)?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "median: {:.2} MiB/s of files, {:.2} MiB/s on the channel over {runs} pulls of {mib} MiB ({kind}, {backend})",
        median(&mut rates),
        median(&mut channel_rates)
    );

    // What bounds a pull: each step alone, timed from the host (one
    // command round trip included), `runs` times.
    let steps = [
        (
            "sha256sum",
            "find . -type f -name '*.gcda' -exec sha256sum {} + >/dev/null",
        ),
        ("channel", "find . -type f -name '*.gcda' -exec cat {} +"),
        (
            "gzip -1",
            "find . -type f -name '*.gcda' -exec cat {} + | gzip -1 | wc -c",
        ),
        (
            "lzop -1",
            "find . -type f -name '*.gcda' -exec cat {} + | lzop -1 | wc -c",
        ),
    ];
    let total = (files * FILE_BYTES) as u64;
    for (name, command) in steps {
        let mut step_rates = Vec::new();
        let mut shown = String::new();
        for _ in 0..runs {
            let t = Instant::now();
            let out =
                machine.execute(&format!("cd {obj} && {command}"), Duration::from_secs(300))?;
            let secs = t.elapsed().as_secs_f64();
            ensure!(out.success(), "`{command}` failed: {}", out.stderr_text());
            if name == "channel" {
                ensure!(
                    out.stdout.len() as u64 == total,
                    "`{command}` sent {} bytes",
                    out.stdout.len()
                );
            }
            if name.ends_with(" -1") {
                shown = format!(
                    " (to {} bytes)",
                    String::from_utf8_lossy(&out.stdout).trim()
                );
            }
            step_rates.push(mib_of(total) / secs);
        }
        println!(
            "bound: {name}: median {:.2} MiB/s of files{shown} ({kind}, {backend})",
            median(&mut step_rates)
        );
    }
    network.shutdown(Duration::from_secs(30))?;
    Ok(())
}
