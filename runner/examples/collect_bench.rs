//! Measures coverage collection throughput: how fast `covnet`'s collector
//! pulls `.gcda` trees off a guest through its control channel (listing with
//! sizes and SHA-256, one tar stream, verification, local write).
//!
//! Usage: `cargo run --release -p covnet-runner --example collect_bench -- [MIB] [RUNS]`
//! (default 20 MiB in 40 files, 5 pulls). Prints one line per pull and the
//! median.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use covnet_runner::coverage::{self, CollectOptions};
use covnet_runner::run::network::{Network, NetworkOptions};
use covnet_runner::spec::Spec;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let spec_path = dir.path().join("bench.toml");
    let spec = Spec::from_str(
        "[defaults]\ncommand_timeout = \"300s\"\n\n[machines.bench]\nmemory_mib = 1024\n",
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
    println!("booted in {:.2}s", boot.elapsed().as_secs_f64());

    // Data shaped like a real capture: files of 512 KiB under a build path.
    let files = mib * 2;
    let make = format!(
        "mkdir -p {p}/home/user/build/obj && i=0; while [ $i -lt {files} ]; do \
         head -c 524288 /dev/urandom > {p}/home/user/build/obj/unit$i.gcda; i=$((i+1)); done",
        p = coverage::GUEST_PREFIX
    );
    node.machine().execute(&make, Duration::from_secs(300))?;

    let opts = CollectOptions {
        stop_services: false,
        reset: false,
        command_timeout: Duration::from_secs(300),
        phase: None,
    };
    let mut rates = Vec::new();
    for run in 0..runs {
        let dest = dir.path().join(format!("pull{run}"));
        let t = Instant::now();
        let got = coverage::collect_one(node.machine().as_ref(), &dest, &opts);
        let secs = t.elapsed().as_secs_f64();
        let pulled = got.outcome.map_err(anyhow::Error::msg)?;
        ensure!(
            pulled.files() == files,
            "pulled {} of {files} files",
            pulled.files()
        );
        let rate = pulled.bytes() as f64 / (1024.0 * 1024.0) / secs;
        println!(
            "pull {run}: {} files, {} bytes in {secs:.2}s = {rate:.2} MiB/s",
            pulled.files(),
            pulled.bytes()
        );
        rates.push(rate);
        std::fs::remove_dir_all(&dest)?;
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    println!("median: {median:.2} MiB/s over {runs} pulls of {mib} MiB");
    network.shutdown(Duration::from_secs(30))?;
    Ok(())
}
