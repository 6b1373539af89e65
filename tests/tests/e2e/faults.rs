//! Network faults (issue 6, part 2): loss, delay, rate limit and
//! partitions inside covnet's own switch, seen by real traffic between
//! namespace machines (same switch and fault layer as VMs, no kernel boot).
//!
//! Delay is applied to both directions of a machine's link, so a ping
//! between a machine with `delay = 200ms` and one without takes at least
//! 400 ms. Every timing assertion is a lower bound that the fault layer
//! guarantees (frames are never released early), never an upper bound.
//!
//! Needs busybox-static and curl; a missing one fails the test loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use covnet_runner::net::faults::{parse_rate, LinkFaults};
use covnet_runner::run::network::{Network, NetworkOptions};
use covnet_runner::script::driver::Node;
use covnet_runner::spec::Spec;

/// A web server and a client with curl, namespace machines on VLAN 1;
/// `{client}` is extra TOML for the client's table.
fn spec(client_extra: &str) -> String {
    format!(
        r#"
[defaults]
backend = "namespace"

[machines.server]
[[machines.server.files]]
content = "hello through faults"
target = "/srv/www/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = {{ port = 80 }}

[machines.client]
programs = ["/usr/bin/curl"]
{client_extra}
"#
    )
}

fn require_tools() {
    for tool in ["/bin/busybox", "/usr/bin/curl"] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is required for the network fault tests"
        );
    }
}

/// A started network; prints the consoles if the test fails and stops
/// every machine on drop.
struct Net {
    net: Network,
    _dir: tempfile::TempDir,
}

impl Net {
    fn start(spec_text: &str) -> Net {
        require_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("faults.toml");
        std::fs::write(&path, spec_text).expect("write spec");
        let spec = Spec::from_path(&path).expect("valid spec");
        let options = NetworkOptions {
            output_dir: dir.path().join("out"),
            ..NetworkOptions::default()
        };
        let net = Network::build(&spec, &options).expect("network builds");
        let net = Net { net, _dir: dir };
        net.net.start_all().expect("machines start");
        net.node("server")
            .wait_for_service("httpd", Duration::from_secs(60))
            .expect("httpd ready");
        net
    }

    fn node(&self, name: &str) -> &Node {
        self.net.node(name).expect("machine in spec")
    }

    /// Runs `cmd` on `name` and returns its exit status.
    fn status(&self, name: &str, cmd: &str) -> i32 {
        self.node(name).execute(cmd).expect("command runs").status
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in self.net.console_logs() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("--- console of `{name}` ---");
                for line in text.lines().rev().take(50).collect::<Vec<_>>().iter().rev() {
                    eprintln!("{name} | {line}");
                }
            }
        }
        if let Err(e) = self.net.shutdown(Duration::from_secs(10)) {
            eprintln!("shutdown: {e}");
        }
    }
}

/// The minimum round-trip time in ms of `ping` output (busybox
/// "round-trip min/avg/max = a/b/c ms" or iputils "rtt min/avg/max/mdev").
fn min_rtt_ms(ping_output: &str) -> f64 {
    let line = ping_output
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no round-trip line in:\n{ping_output}"));
    let values = line.split('=').nth(1).expect("values after '='");
    values
        .trim()
        .split('/')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("unparsable round-trip line: {line}"))
}

/// A 200 ms delay from the spec, on the client's link only: every ping
/// crosses that link twice (request out, reply in), so each round trip
/// takes at least 400 ms, whichever machine pings.
#[test]
fn delay_from_the_spec_shows_in_ping_round_trips() {
    let net = Net::start(&spec("link = { delay = \"200ms\" }"));
    let out = net
        .node("client")
        .succeed("ping -c 3 -i 0.2 -W 5 server")
        .expect("ping through a slow link");
    let rtt = min_rtt_ms(&out);
    eprintln!("client -> server min rtt with 200 ms delay: {rtt} ms");
    assert!(rtt >= 400.0, "min rtt {rtt} ms < 2 x 200 ms:\n{out}");
    let out = net
        .node("server")
        .succeed("ping -c 2 -i 0.2 -W 5 client")
        .expect("ping back");
    let rtt = min_rtt_ms(&out);
    assert!(rtt >= 400.0, "min rtt {rtt} ms < 2 x 200 ms:\n{out}");
    // Cleared: the bound no longer holds (a local switch is far faster).
    net.node("client").clear_link().expect("clear");
    let out = net
        .node("client")
        .succeed("ping -c 2 -i 0.2 -W 5 server")
        .expect("ping");
    assert!(min_rtt_ms(&out) < 400.0, "delay still applied:\n{out}");
}

/// The same fault layer serves VM ports: a 200 ms delay on a QEMU VM's
/// link (from the spec) shows in the round trips of a namespace machine
/// pinging it, and a partition cuts the VM off until healed. The round
/// trips are measured on the namespace machine (the host's clock): a VM's
/// own ping reported 396 ms for a 400 ms round trip (coarse guest clock).
#[test]
fn faults_apply_to_vm_links() {
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required for the VM fault test: {qemu:?}"
    );
    let text = spec("").replace(
        "[machines.server]\n",
        "[machines.server]\nbackend = \"vm\"\nlink = { delay = \"200ms\" }\n",
    );
    let net = Net::start(&text);
    let out = net
        .node("client")
        .succeed("ping -c 2 -i 0.2 -W 5 server")
        .expect("ping the VM through a slow link");
    let rtt = min_rtt_ms(&out);
    eprintln!("namespace -> VM min rtt with 200 ms delay on the VM: {rtt} ms");
    assert!(rtt >= 400.0, "min rtt {rtt} ms < 2 x 200 ms:\n{out}");
    net.net
        .partition(&[vec!["server".to_owned()]])
        .expect("partition");
    assert_ne!(net.status("client", "ping -c 1 -W 1 server"), 0);
    net.net.heal().expect("heal");
    net.node("server").clear_link().expect("clear");
    let out = net
        .node("client")
        .succeed("ping -c 3 -i 0.2 -W 5 server")
        .expect("VM reachable after heal");
    eprintln!(
        "namespace -> VM min rtt without faults: {} ms",
        min_rtt_ms(&out)
    );
}

/// A partition makes a request time out; heal() restores it. Machines in
/// no group form a group of their own.
#[test]
fn partition_times_out_requests_until_healed() {
    let net = Net::start(&spec(""));
    let client = net.node("client");
    client
        .succeed("curl -sS -m 5 http://server/")
        .expect("reachable before the partition");
    net.net
        .partition(&[vec!["client".to_owned()], vec!["server".to_owned()]])
        .expect("partition");
    // curl exit 28: operation timed out.
    assert_eq!(net.status("client", "curl -sS -m 2 http://server/"), 28);
    assert_ne!(net.status("server", "ping -c 1 -W 1 client"), 0);
    net.net.heal().expect("heal");
    let page = client
        .succeed("curl -sS -m 5 --retry 5 --retry-all-errors http://server/")
        .expect("reachable after heal");
    assert_eq!(page, "hello through faults");
    // Only the server listed: the client is in the implicit rest group.
    net.net
        .partition(&[vec!["server".to_owned()]])
        .expect("isolate server");
    assert_ne!(net.status("client", "ping -c 1 -W 1 server"), 0);
    let err = net
        .net
        .partition(&[vec!["nobody".to_owned()]])
        .expect_err("unknown machine");
    assert!(err.to_string().contains("no machine `nobody`"), "{err}");
    net.net.heal().expect("heal");
    client
        .succeed("ping -c 1 -W 5 server")
        .expect("reachable again");
}

/// 100% loss blocks all traffic; clearing the link restores it.
#[test]
fn full_loss_blocks_traffic() {
    let net = Net::start(&spec(""));
    let client = net.node("client");
    client.succeed("ping -c 1 -W 5 server").expect("baseline");
    client
        .set_link(LinkFaults {
            loss: 100.0,
            ..LinkFaults::default()
        })
        .expect("loss");
    assert_ne!(net.status("client", "ping -c 2 -W 1 server"), 0);
    assert_eq!(net.status("client", "curl -sS -m 2 http://server/"), 28);
    client.clear_link().expect("clear");
    client
        .succeed("ping -c 1 -W 5 server")
        .expect("traffic flows again");
}

/// A transfer of N bytes through a link limited to R bit/s takes at least
/// N*8/R seconds (headers only add to the bytes on the wire).
#[test]
fn rate_limit_bounds_transfer_time_from_below() {
    const N: u64 = 200_000;
    let net = Net::start(&spec(""));
    let server = net.node("server");
    server
        .succeed(&format!("head -c {N} /dev/zero > /srv/www/big"))
        .expect("make the file");
    let rate = parse_rate("1mbit").expect("rate");
    server
        .set_link(LinkFaults {
            rate: Some(rate),
            ..LinkFaults::default()
        })
        .expect("rate limit");
    let started = Instant::now();
    let size = net
        .node("client")
        .succeed("curl -sS -m 60 -o /dev/null -w '%{size_download}' http://server/big")
        .expect("download");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(size.trim(), N.to_string());
    let bound = (N * 8) as f64 / rate.get() as f64;
    eprintln!("{N} bytes at 1 mbit/s: {elapsed:.3}s (lower bound {bound:.3}s)");
    assert!(
        elapsed >= bound,
        "{N} bytes at {} bit/s took {elapsed:.3}s < {bound:.3}s",
        rate.get()
    );
}

/// The Rhai API end to end through `covnet run`: set_link, clear_link,
/// partition, heal, and the seed: fixed by COVNET_NET_SEED and printed.
#[test]
fn script_api_through_covnet_run() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
start_all();
server.wait_for_service("httpd");
client.succeed("curl -sS -m 5 http://server/");
partition([[client], ["server"]]);
client.fail("curl -sS -m 2 http://server/");
heal();
client.succeed("curl -sS -m 5 --retry 5 --retry-all-errors http://server/");
client.set_link(#{loss: 100.0});
client.fail("ping -c 2 -W 1 server");
client.set_link(#{loss: 0, delay: "150ms", jitter: "0ms", rate: "10mbit"});
client.succeed("ping -c 1 -W 5 server");
client.clear_link();
print("faults script ok");
"#;
    let text = format!(
        "{}\n[test]\ntimeout = \"2m\"\nscript = '''{script}'''\n",
        spec("link = { jitter = \"1ms\" }")
    );
    let path = dir.path().join("faults.toml");
    std::fs::write(&path, text).expect("write spec");
    let bin = covnet_tests::lcov_tool::covnet_bin().expect("covnet binary");
    let out = covnet_tests::lcov_tool::run(
        std::process::Command::new(bin)
            .args([
                "run",
                path.to_str().expect("utf-8"),
                "--out",
                dir.path().join("out").to_str().expect("utf-8"),
            ])
            .env("COVNET_NET_SEED", "4242")
            .current_dir(dir.path()),
        Duration::from_secs(180),
    )
    .expect("covnet runs");
    assert_eq!(out.code(), 0, "covnet run failed:\n{out}");
    assert!(out.stderr.contains("faults script ok"), "{out}");
    assert!(
        out.stderr.contains("network fault seed 4242"),
        "seed not printed:\n{out}"
    );
}
