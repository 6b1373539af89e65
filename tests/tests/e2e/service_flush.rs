//! Services in per-subtest captures: a C web server built with plain
//! `gcc --coverage` (no `covnet_flush.c` linked) runs as a service under
//! covnet's preloaded flush shim. With `--coverage-per-subtest`, each
//! subtest's capture holds what the server did in it, and the subtest
//! captures plus the final one add up, counter by counter, to the single
//! capture of the same script run without per-subtest collection. On VMs
//! and on namespace machines. A static or stripped server cannot be
//! flushed: the report's notes name it, for each subtest, with why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool;

/// A whole `covnet run` (image build, boot, four subtests, collection).
const RUN_DEADLINE: Duration = Duration::from_secs(400);

/// One request per connection, one `read`; the reply depends on the path.
/// Ready is a file (not a port probe) so that no check ever connects and
/// every run handles exactly the script's requests.
const SERVER_C: &str = r#"#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *route(const char *path, int *status)
{
    *status = 200;
    if (strncmp(path, "/a ", 3) == 0)
        return "alpha\n";
    if (strncmp(path, "/b", 2) == 0) {
        if (path[2] == '?')
            return "beta with a query\n";
        return "beta\n";
    }
    if (strncmp(path, "/c ", 3) == 0) {
        int s = 0;
        for (int i = 0; i < 10; i++)
            s += i;
        return s == 45 ? "gamma\n" : "wrong\n";
    }
    *status = 404;
    return "not found\n";
}

static void serve(int c)
{
    char req[2048], reply[512];
    ssize_t n = read(c, req, sizeof req - 1);
    int status;
    const char *body;

    if (n <= 4 || strncmp(req, "GET ", 4) != 0) {
        close(c);
        return;
    }
    req[n] = '\0';
    body = route(req + 4, &status);
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.0 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 status, strlen(body), body);
    if (write(c, reply, (size_t)n) != n)
        perror("write");
    close(c);
}

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(void)
{
    struct sockaddr_in a;
    struct sigaction sa;
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    FILE *ready;

    /* SIGTERM ends the loop, so main returns and gcov writes the counts;
     * no SA_RESTART, so accept() returns EINTR. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(8080);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        perror("listen");
        return 1;
    }
    ready = fopen("/run/web.ready", "w");
    if (ready != NULL)
        fclose(ready);
    while (!stopping) {
        int c = accept(s, NULL, NULL);
        if (c >= 0)
            serve(c);
    }
    return 0;
}
"#;

/// Four subtests with different routes (one does nothing on the server).
const SCRIPT: &str = r#"start_all();
server.wait_for_service("web");
subtest("alpha", || {
    let page = server.succeed("wget -q -O - http://127.0.0.1:8080/a");
    if !page.contains("alpha") { throw `unexpected page: ${page}`; }
});
subtest("beta", || {
    server.succeed("wget -q -O - http://127.0.0.1:8080/b");
    server.succeed("wget -q -O - 'http://127.0.0.1:8080/b?q=1'");
});
subtest("idle", || {
    server.succeed("true");
});
subtest("gamma", || {
    server.succeed("wget -q -O - http://127.0.0.1:8080/c");
    server.fail("wget -q -O - http://127.0.0.1:8080/missing");
});
"#;

const SUBTESTS: [&str; 4] = ["alpha", "beta", "idle", "gamma"];

/// The server, built in a private directory with a spec next to it.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    /// Builds `build/server` with `gcc --coverage` plus `extra` flags, then
    /// runs `post` on it (e.g. `strip`).
    fn new(extra: &[&str], post: Option<&str>) -> Result<Fixture> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("svc");
        std::fs::create_dir_all(dir.join("build"))?;
        std::fs::write(dir.join("server.c"), SERVER_C)?;
        lcov_tool::run_ok(
            Command::new("gcc")
                .args(["--coverage", "-O0", "-g"])
                .args(extra)
                .args(["-c", "-o", "build/server.o", "server.c"])
                .current_dir(&dir),
        )
        .context("compiling the service (gcc is installed by scripts/setup.sh)")?;
        lcov_tool::run_ok(
            Command::new("gcc")
                .args(["--coverage"])
                .args(extra)
                .args(["-o", "build/server", "build/server.o"])
                .current_dir(&dir),
        )?;
        if let Some(tool) = post {
            lcov_tool::run_ok(Command::new(tool).arg("build/server").current_dir(&dir))?;
        }
        let spec = format!(
            "[machines.server]\nprograms = [\"build/server\"]\n\n\
             [[machines.server.services]]\nname = \"web\"\ncommand = \"server\"\n\
             ready = {{ file = \"/run/web.ready\" }}\n\n\
             [test]\ntimeout = \"5m\"\nscript = '''\n{SCRIPT}'''\n"
        );
        std::fs::write(dir.join("spec.toml"), spec)?;
        Ok(Fixture { _tmp: tmp, dir })
    }

    /// `covnet run --coverage` with `extra` arguments into `out`; returns
    /// the output directory and covnet's stderr.
    fn run(&self, out: &str, extra: &[&str]) -> Result<(PathBuf, String)> {
        let out = self.dir.join(out);
        let o = lcov_tool::run(
            Command::new(lcov_tool::covnet_bin()?)
                .args(["run", "--coverage", "--no-console"])
                .args(extra)
                .arg("--out")
                .arg(&out)
                .arg(self.dir.join("spec.toml"))
                .current_dir(&self.dir),
            RUN_DEADLINE,
        )?;
        ensure!(o.status.success(), "covnet run failed:\n{o}");
        Ok((out, o.stderr))
    }
}

/// Per (`.gcda` path below the capture, function ident): arc counters.
type Arcs = BTreeMap<(String, u32), Vec<i64>>;

/// The arc counters of every `.gcda` file of one capture directory.
fn arcs(capture: &Path) -> Result<Arcs> {
    let mut out = Arcs::new();
    let mut stack = vec![capture.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                let bytes = std::fs::read(&p)?;
                let data = covnet_merger::gcda::Data::parse(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                let rel = p.strip_prefix(capture)?.display().to_string();
                for f in &data.functions {
                    let counters = f.arcs.map(|a| a.iter().collect()).unwrap_or_default();
                    ensure!(
                        out.insert((rel.clone(), f.ident), counters).is_none(),
                        "function {} twice in {}",
                        f.ident,
                        p.display()
                    );
                }
            }
        }
    }
    Ok(out)
}

fn add(total: &mut Arcs, more: &Arcs) -> Result<()> {
    for (k, v) in more {
        let t = total.entry(k.clone()).or_insert_with(|| vec![0; v.len()]);
        ensure!(t.len() == v.len(), "{k:?}: counter counts differ");
        for (a, b) in t.iter_mut().zip(v) {
            *a += b;
        }
    }
    Ok(())
}

fn total(a: &Arcs) -> i64 {
    a.values().flatten().sum()
}

/// The run's notes as the HTML report shows them (empty when none).
fn notes(out: &Path) -> Result<String> {
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    Ok(index
        .split("id=\"run-notes\"")
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_default())
}

fn subtest_captures_add_up(backend: &[&str]) -> Result<()> {
    let fx = Fixture::new(&[], None)?;
    let (whole_out, _) = fx.run("whole", backend)?;
    let whole = arcs(&whole_out.join("coverage/server"))?;
    ensure!(total(&whole) > 0, "the whole run has no server counts");

    let per_args = [backend, &["--coverage-per-subtest"]].concat();
    let (out, stderr) = fx.run("per-subtest", &per_args)?;
    let mut sum = Arcs::new();
    let mut parts = Vec::new();
    for name in SUBTESTS
        .iter()
        .map(|s| format!("server@{s}"))
        .chain(["server".to_owned()])
    {
        let part =
            arcs(&out.join("coverage").join(&name)).with_context(|| format!("capture {name}"))?;
        eprintln!("{name}: {} counts", total(&part));
        add(&mut sum, &part)?;
        parts.push((name, total(&part)));
    }
    ensure!(
        sum == whole,
        "subtest captures + final capture differ from the whole run:\nsum   {sum:?}\nwhole {whole:?}"
    );
    // Every subtest that sent requests has server counts of its own: the
    // server answered before the subtest ended, so what it ran to answer
    // is in that subtest's capture, not all in the final one.
    for (name, count) in &parts {
        if !matches!(name.as_str(), "server@idle" | "server") {
            ensure!(*count > 0, "{name}: the server shows nothing");
        }
    }
    let n = notes(&out)?;
    ensure!(n.is_empty(), "nothing was lost, so no notes: {n}\n{stderr}");
    eprintln!(
        "{} functions: 4 subtest captures + final == whole run ({} counts)",
        whole.len(),
        total(&whole)
    );
    Ok(())
}

#[test]
fn service_subtest_captures_add_up_to_the_whole_run_on_namespace_machines() -> Result<()> {
    subtest_captures_add_up(&["--backend", "namespace"])
}

#[test]
fn service_subtest_captures_add_up_to_the_whole_run_on_vms() -> Result<()> {
    subtest_captures_add_up(&["--backend", "vm"])
}

/// A server that cannot be flushed keeps all its counts for the final
/// capture, and the notes say so for each subtest instead of a silent 0%.
fn unflushable_service_is_named(extra: &[&str], post: Option<&str>, why: &str) -> Result<()> {
    let fx = Fixture::new(extra, post)?;
    let (out, stderr) = fx.run(
        "per-subtest",
        &["--backend", "namespace", "--coverage-per-subtest"],
    )?;
    let n = notes(&out)?;
    for s in SUBTESTS {
        let expected = format!("server@{s}: service `web` could not be flushed");
        ensure!(
            n.contains(&expected),
            "the notes must name the service for {s}: {n}\n{stderr}"
        );
    }
    ensure!(n.contains(why), "the notes must say why ({why}): {n}");
    if let Some(line) = stderr.lines().find(|l| l.contains("could not be flushed")) {
        eprintln!("{line}");
    }
    ensure!(
        n.contains("only in the final capture"),
        "the notes must say where the counts are: {n}"
    );
    // Not signalled (SIGUSR2 would have killed it): its counts are all in
    // the final capture.
    let last = arcs(&out.join("coverage/server"))?;
    ensure!(total(&last) > 0, "the final capture lost the server");
    Ok(())
}

#[test]
fn static_service_is_named_in_the_notes() -> Result<()> {
    unflushable_service_is_named(&["-static"], None, "statically linked")
}

#[test]
fn stripped_service_is_named_in_the_notes() -> Result<()> {
    unflushable_service_is_named(&[], Some("strip"), "stripped")
}
