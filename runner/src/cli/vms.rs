//! `covnet vms`: start a spec's network for interactive use and keep it
//! running until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use covnet_runner::events;
use covnet_runner::machine::vm::accel::AccelRequest;
use covnet_runner::run::network::{watch_signals, Network, NetworkOptions};
use covnet_runner::run::shell_proxy::{default_run_link, ShellProxy, SOCKET_SUFFIX};
use covnet_runner::spec::Spec;

use super::exit;

/// How often the main thread checks that the machines still run.
const LIVENESS_POLL: Duration = Duration::from_millis(500);

/// Arguments of `covnet vms`.
#[derive(Args, Debug)]
pub struct VmsArgs {
    /// The spec file (TOML); its [test] table, if any, is ignored.
    pub spec: PathBuf,
    /// Accelerator for every machine, overriding the spec: auto, kvm or tcg.
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<AccelRequest>,
    /// Don't echo the guests' serial consoles.
    #[arg(long)]
    pub no_console: bool,
    /// Don't draw live progress (image builds and boots in progress) on a
    /// terminal; print only the timestamped lines.
    #[arg(long)]
    pub no_progress: bool,
    /// Directory for files copied out of machines (default: `covnet-out/vms`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `covnet vms`.
pub fn vms(args: VmsArgs) -> anyhow::Result<ExitCode> {
    let spec = Spec::from_path(&args.spec)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("covnet-out").join("vms"));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("failed to create output directory {}", out.display()))?;
    let (events, rx) = events::channel();
    let reporter = super::progress::spawn_reporter(args.no_progress, !args.no_console, rx);
    let result = serve(&args, &spec, &out, events);
    let _ = reporter.join();
    result
}

fn serve(
    args: &VmsArgs,
    spec: &Spec,
    out: &Path,
    events: events::EventSender,
) -> anyhow::Result<ExitCode> {
    let network = Network::build(
        spec,
        &NetworkOptions {
            accel: args.accel,
            events,
            output_dir: out.to_owned(),
            keep_run_dir: false,
            pcap: false,
            cold_boot: false,
            cores: None,
            guest_env: Vec::new(),
            guest_files: Vec::new(),
        },
    )
    .with_context(|| format!("failed to set up the network of {}", args.spec.display()))?;

    let (stop_tx, stop_rx) = mpsc::channel::<&'static str>();
    let interrupter = network.interrupter();
    let signals = watch_signals(move |received| {
        super::run::announce_signal(received);
        let name = received.name;
        // Stop gracefully from the main thread; only a boot in progress
        // needs killing to return.
        if stop_tx.send(name).is_err() {
            interrupter.interrupt(&format!("{name} received"));
        }
    })
    .context("failed to install the signal handler")?;

    if let Err(e) = network.start_all() {
        let _ = network.kill_all();
        return Err(anyhow::anyhow!("{e}").context("failed to start the machines"));
    }
    let run_dir = network
        .run_dir()
        .context("the network has no run directory")?
        .to_owned();
    let mut proxies = Vec::new();
    for node in network.nodes() {
        let socket = run_dir.join(format!("{}{SOCKET_SUFFIX}", node.name()));
        let proxy = ShellProxy::serve(node.machine().clone(), &socket)
            .with_context(|| format!("failed to listen on {}", socket.display()))?;
        proxies.push(proxy);
    }
    let link = default_run_link();
    let linked = point_link(&link, &run_dir);
    // The banner goes to stdout, on the same terminal as the live lines:
    // none are drawn from here on (the boots are over).
    let _no_live_lines = super::progress::hold();

    println!(
        "covnet vms: {} machine(s) running, run directory {}",
        network.nodes().len(),
        run_dir.display()
    );
    for m in &spec.machines {
        let addrs: Vec<String> = m
            .nics
            .iter()
            .map(|n| format!("{} {} (vlan {})", n.ifname(), n.address, n.vlan))
            .collect();
        println!("  {}: {}", m.name, addrs.join(", "));
        let run_flag = if linked {
            String::new()
        } else {
            format!(" --run {}", run_dir.display())
        };
        println!("    shell:   covnet shell {}{run_flag}", m.name);
        for f in &m.forward {
            println!(
                "    forward: 127.0.0.1:{} -> {}:{}",
                f.host_port, m.name, f.guest_port
            );
        }
    }
    println!("Press Ctrl-C to stop all machines.");

    let why = loop {
        match stop_rx.recv_timeout(LIVENESS_POLL) {
            Ok(name) => break format!("{name} received"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break "signal watcher ended".to_owned(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if network.nodes().iter().all(|n| !n.is_running()) {
                    break "every machine has stopped".to_owned();
                }
            }
        }
    };
    eprintln!("covnet vms: {why}, shutting down");
    drop(proxies);
    if linked {
        unlink_if_ours(&link, &run_dir);
    }
    let result = network.shutdown(network.context().timeouts.shutdown);
    drop(signals);
    drop(network);
    match result {
        Ok(()) => Ok(ExitCode::from(exit::SUCCESS)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::FAILURE))
        }
    }
}

/// Points the well-known link at `run_dir`, replacing an older link.
fn point_link(link: &Path, run_dir: &Path) -> bool {
    if let Ok(meta) = std::fs::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            eprintln!(
                "covnet: {} exists and is not a symlink; `covnet shell` needs --run",
                link.display()
            );
            return false;
        }
        let _ = std::fs::remove_file(link);
    }
    match std::os::unix::fs::symlink(run_dir, link) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("covnet: failed to create {}: {e}", link.display());
            false
        }
    }
}

fn unlink_if_ours(link: &Path, run_dir: &Path) {
    if std::fs::read_link(link).is_ok_and(|t| t == run_dir) {
        let _ = std::fs::remove_file(link);
    }
}
