//! gcc, clang and uninstrumented code in one network run (issue 15).
//!
//! Built at test time: a server compiled with `gcc --coverage` that links
//! `libmix.so`, a shared library of its own sources compiled with `-g` and
//! no instrumentation, and a client compiled with `clang-16
//! -fprofile-instr-generate -fcoverage-mapping`. The server runs as a
//! service (with no SIGTERM handler: covnet must flush it before stopping
//! it); the client connects to its TCP port by host name across the spec's
//! network and checks the replies, which the library computes. One `covnet
//! run --coverage`, on namespace machines and on VMs, must give
//!
//! - in `coverage.info`, the server's file with gcov's counts over the
//!   pulled `.gcda` and the client's with `llvm-cov-16 export`'s over
//!   `llvm-profdata-16 merge` of the pulled `.profraw`, nothing else;
//! - each machine's section of `coverage-per-machine.info` and its "own
//!   code" figures in `coverage.json` from its own data only;
//! - the library's source files and functions as the server's blind spots
//!   (and not the client's), each file with the executable lines `objdump
//!   --dwarf=decodedline` lists for it and each function where `nm -l` puts
//!   it; the programs' own sources not blind (gcc's and clang's coverage
//!   both count as covering); the blind-spot totals outside the line rate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use covnet_tests::clang::{self, llvm_cov, profraws};
use covnet_tests::lcov_tool::{self, diff_maps, Tracefile};
use covnet_tests::oracle::{self, compare};

use crate::blindspots::objdump_lines;

/// A whole `covnet run`: image build, boot of two machines, the script,
/// collection and the report (a VM run under TCG takes the longest).
const RUN_DEADLINE: Duration = Duration::from_secs(300);

const MIX_H: &str = r#"#include <stddef.h>
const char *mix_classify(int n);
unsigned mix_hash(const char *s);
int fmt_reply(char *out, size_t len, const char *req);
int fmt_unused(int a);
static inline int mix_clamp(int a) { return a < 0 ? 0 : a; }
"#;

const MIX_C: &str = r#"#include "mix.h"

static int is_prime(int n)
{
    if (n < 2)
        return 0;
    for (int d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

const char *mix_classify(int n)
{
    if (n < 0)
        return "negative";
    if (is_prime(n))
        return "prime";
    return n % 2 ? "odd" : "even";
}

unsigned mix_hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}
"#;

const FMT_C: &str = r#"#include <stdio.h>
#include "mix.h"

int fmt_reply(char *out, size_t len, const char *req)
{
    int n;
    if (sscanf(req, "%d", &n) != 1)
        return snprintf(out, len, "%s: bad %08x\n", req, mix_hash(req));
    return snprintf(out, len, "%d: %s (%d)\n", n, mix_classify(n), mix_clamp(n));
}

int fmt_unused(int a)
{
    return mix_clamp(a) * 2;
}
"#;

/// One request line per connection, answered by the library. No SIGTERM
/// handler: only covnet's flush before the stop writes its counts.
const SERVER_C: &str = r#"#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "mix.h"

static int served;

static void serve(int c)
{
    char req[256], reply[512];
    size_t len = 0;
    while (len < sizeof req - 1) {
        ssize_t got = read(c, req + len, sizeof req - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
        if (memchr(req, '\n', len))
            break;
    }
    req[len] = '\0';
    char *nl = strchr(req, '\n');
    if (!nl) {
        close(c);
        return;
    }
    *nl = '\0';
    int n = fmt_reply(reply, sizeof reply, req);
    served++;
    if (write(c, reply, (size_t)n) != n)
        perror("server: write");
    close(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: server PORT READY_FILE\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 8) != 0) {
        perror("server: listen");
        return 1;
    }
    FILE *ready = fopen(argv[2], "w");
    if (ready)
        fclose(ready);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c >= 0)
            serve(c);
    }
}
"#;

/// Sends each request on a connection of its own, prints the replies.
const CLIENT_C: &str = r#"#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        fprintf(stderr, "client: cannot resolve %s\n", host);
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int ask(const char *host, const char *port, const char *req)
{
    int fd = connect_to(host, port);
    if (fd < 0) {
        fprintf(stderr, "client: cannot connect to %s:%s\n", host, port);
        return -1;
    }
    char line[300], buf[512];
    int n = snprintf(line, sizeof line, "%s\n", req);
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    ssize_t got;
    while (len < sizeof buf - 1 && (got = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    if (len == 0) {
        fprintf(stderr, "client: no reply to %s\n", req);
        return -1;
    }
    fputs(buf, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: client HOST PORT REQUEST...\n");
        return 2;
    }
    int failed = 0;
    for (int i = 3; i < argc; i++)
        if (ask(argv[1], argv[2], argv[i]) != 0)
            failed++;
    return failed != 0;
}
"#;

/// Sources, the library, the server's build tree and both programs, below
/// one temporary directory that is also the spec's.
struct Fixture {
    tmp: tempfile::TempDir,
}

fn sh(cmd: &mut Command, what: &str) {
    if let Err(e) = lcov_tool::run_ok(cmd) {
        panic!("{what} (bash scripts/setup.sh installs the tools): {e:#}");
    }
}

impl Fixture {
    fn new() -> Fixture {
        clang::require_tools().expect("clang-16 and its profile tools");
        let tmp = tempfile::Builder::new()
            .prefix("covnet-mixed-")
            .tempdir()
            .expect("tempdir");
        let f = Fixture { tmp };
        let root = f.root().to_path_buf();
        for (path, text) in [
            ("src/lib/mix.h", MIX_H),
            ("src/lib/mix.c", MIX_C),
            ("src/lib/fmt.c", FMT_C),
            ("src/server/server.c", SERVER_C),
            ("src/client/client.c", CLIENT_C),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write source");
        }
        for d in ["lib", "bin", "build/server"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        // The library: debug information, no instrumentation.
        sh(
            Command::new("gcc")
                .args(["-g", "-O1", "-shared", "-fPIC"])
                .args(["src/lib/mix.c", "src/lib/fmt.c", "-o", "lib/libmix.so"])
                .current_dir(&root),
            "gcc -g -shared",
        );
        // The server: gcc --coverage, out of tree, linking the library.
        let build = root.join("build/server");
        sh(
            Command::new("gcc")
                .args(["--coverage", "-g", "-O0", "-I../../src/lib", "-c"])
                .args(["../../src/server/server.c", "-o", "server.o"])
                .current_dir(&build),
            "gcc --coverage",
        );
        sh(
            Command::new("gcc")
                .args(["--coverage", "server.o", "-L../../lib", "-lmix"])
                .arg(format!("-Wl,-rpath,{}", root.join("lib").display()))
                .args(["-o", "../../bin/server"])
                .current_dir(&build),
            "gcc --coverage (link)",
        );
        // The client: clang's source-based coverage.
        sh(
            Command::new(clang::CLANG)
                .args([
                    "-fprofile-instr-generate",
                    "-fcoverage-mapping",
                    "-g",
                    "-O0",
                ])
                .args(["src/client/client.c", "-o", "bin/client"])
                .current_dir(&root),
            "clang-16 -fprofile-instr-generate",
        );
        f
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The spec: the server as a service, the client's requests checked
    /// against the replies the library computes.
    fn spec(&self) -> PathBuf {
        let text = format!(
            r#"[machines.server]
programs = ["bin/server"]

[[machines.server.services]]
name = "mixd"
command = "{server} 7000 /run/mixd.ready"
ready = {{ file = "/run/mixd.ready" }}

[machines.client]
programs = ["bin/client"]

[coverage]
objects = ["bin/client"]

[test]
script = '''
start_all();
server.wait_for_service("mixd");
let out = client.succeed("{client} server 7000 7 12 -3 hello");
print(out);
for want in ["7: prime (7)", "12: even (12)", "-3: negative (0)", "hello: bad "] {{
    if !out.contains(want) {{
        throw `the server's reply lacks ${{want}}: ${{out}}`;
    }}
}}
let again = client.succeed("{client} server 7000 9");
if !again.contains("9: odd (9)") {{
    throw `unexpected reply: ${{again}}`;
}}
'''
timeout = "4m"
"#,
            server = self.path("bin/server").display(),
            client = self.path("bin/client").display(),
        );
        let path = self.path("spec.toml");
        std::fs::write(&path, text).expect("write spec");
        path
    }

    fn run(&self, backend: &str) -> (lcov_tool::Output, PathBuf) {
        let out = self.path(&format!("out-{backend}"));
        let o = lcov_tool::run(
            Command::new(lcov_tool::covnet_bin().expect("covnet"))
                .args(["run", "--coverage", "--no-console", "--backend", backend])
                .arg("--out")
                .arg(&out)
                .arg(self.spec())
                .current_dir(self.root()),
            RUN_DEADLINE,
        )
        .expect("covnet runs");
        (o, out)
    }
}

/// The part of `t` about `files`.
fn part(t: &Tracefile, files: &BTreeSet<String>) -> Tracefile {
    Tracefile {
        lines: t
            .lines
            .iter()
            .filter(|((f, _), _)| files.contains(f))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        branches: t
            .branches
            .iter()
            .filter(|(k, _)| files.contains(&k.0))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        functions: t
            .functions
            .iter()
            .filter(|(k, _)| files.contains(&k.0))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        tests: Vec::new(),
    }
}

/// [`part`] of a machine's section: every other file must have only zero
/// counts there (the other machine's code, which this one never ran).
fn restricted(t: &Tracefile, files: &BTreeSet<String>, what: &str) -> Tracefile {
    for ((f, l), c) in &t.lines {
        assert!(
            files.contains(f) || *c == 0,
            "{what}: {f}:{l} counted {c} outside its code"
        );
    }
    for (k, v) in &t.functions {
        assert!(
            files.contains(&k.0) || v.1 == 0,
            "{what}: function {k:?} ran outside its code"
        );
    }
    part(t, files)
}

/// Asserts that `ours` has llvm-cov's lines, branches and functions.
fn same_as_llvm_cov(what: &str, ours: &Tracefile, oracle: &Tracefile) {
    assert!(!oracle.lines.is_empty(), "{what}: llvm-cov has no lines");
    let d = diff_maps("llvm-cov", &oracle.lines, "covnet", &ours.lines);
    assert!(d.is_empty(), "{what}: line counts differ:\n{d}");
    let d = diff_maps("llvm-cov", &oracle.branches, "covnet", &ours.branches);
    assert!(d.is_empty(), "{what}: branches differ:\n{d}");
    let d = diff_maps("llvm-cov", &oracle.functions, "covnet", &ours.functions);
    assert!(d.is_empty(), "{what}: functions differ:\n{d}");
}

/// The functions `nm -l` places in source files (defined text symbols
/// with a `file:line` from the debug information): (file, name, line).
fn nm_functions(elf: &Path) -> BTreeSet<(String, String, u64)> {
    let o = lcov_tool::run_ok(Command::new("nm").args(["-l", "--defined-only"]).arg(elf))
        .expect("nm (binutils, bash scripts/setup.sh)");
    let mut out = BTreeSet::new();
    for row in o.stdout.lines() {
        let Some((sym, place)) = row.split_once('\t') else {
            continue;
        };
        let cols: Vec<&str> = sym.split_whitespace().collect();
        let [_, kind, name] = cols[..] else {
            continue;
        };
        let Some((file, line)) = place.rsplit_once(':') else {
            continue;
        };
        if kind.eq_ignore_ascii_case("t") {
            out.insert((
                file.to_owned(),
                name.to_owned(),
                line.parse().expect("nm line"),
            ));
        }
    }
    out
}

/// A machine's `blind_spots` entry in `coverage.json`, by machine name.
fn blind_machine<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["blind_spots"]
        .as_array()
        .expect("coverage.json has blind_spots")
        .iter()
        .find(|m| m["machine"] == name)
        .unwrap_or_else(|| panic!("no blind spots of {name}"))
}

/// The entry of the ELF file at `path` among a machine's binaries.
fn binary<'a>(machine: &'a serde_json::Value, path: &Path) -> Option<&'a serde_json::Value> {
    let path = path.to_str().expect("utf-8");
    machine["binaries"]
        .as_array()
        .expect("binaries")
        .iter()
        .find(|b| b["path"] == path)
}

fn check(backend: &str) {
    let f = Fixture::new();
    let (o, out) = f.run(backend);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.contains("PASSED"), "{o}");
    let what = |part: &str| format!("{backend}: {part}");

    // The oracles, over exactly what the run pulled.
    let server_cap = out.join("coverage/server");
    let client_cap = out.join("coverage/client");
    let gcda = oracle::gcda_below(&server_cap).expect("list the server's capture");
    assert_eq!(gcda.len(), 1, "the server's .gcda (flushed): {gcda:?}");
    assert!(
        oracle::gcda_below(&client_cap)
            .expect("list the client's capture")
            .is_empty(),
        "the client is not built with gcc"
    );
    let gcov = oracle::gcov_over(&oracle::mirrored(&[&server_cap]).expect("pairs")).expect("gcov");
    let profiles = profraws(&client_cap.join("llvm")).expect("the client's .profraw files");
    // Two client processes, one instrumented binary each.
    assert_eq!(profiles.len(), 2, "{profiles:?}");
    let client_bin = f.path("bin/client");
    let llvm = llvm_cov(
        &[&client_bin],
        &profiles,
        &f.path(&format!("llvm-{backend}")),
    )
    .expect("llvm-cov")
    .lcov;
    let server_c = f.path("src/server/server.c").display().to_string();
    let client_c = f.path("src/client/client.c").display().to_string();
    let gcov_files: BTreeSet<String> = gcov.lines.keys().map(|(f, _)| f.clone()).collect();
    let llvm_files: BTreeSet<String> = llvm.lines.keys().map(|(f, _)| f.clone()).collect();
    assert_eq!(gcov_files, BTreeSet::from([server_c.clone()]));
    assert_eq!(llvm_files, BTreeSet::from([client_c.clone()]));

    // One report, both machines: gcc's counts for the server's file,
    // clang's for the client's, and nothing of the library.
    let info = Tracefile::read(&out.join("coverage.info")).expect("coverage.info");
    let files: BTreeSet<String> = info.lines.keys().map(|(f, _)| f.clone()).collect();
    assert_eq!(files, &gcov_files | &llvm_files, "{backend}: report files");
    compare(
        &what("server.c in coverage.info"),
        &part(&info, &gcov_files),
        &gcov,
    )
    .expect("the server's coverage equals gcov");
    same_as_llvm_cov(
        &what("client.c in coverage.info"),
        &part(&info, &llvm_files),
        &llvm,
    );
    let hits = |t: &Tracefile, file: &str| -> i64 {
        t.lines
            .iter()
            .filter(|((f, _), _)| f == file)
            .map(|(_, c)| c)
            .sum()
    };
    assert!(hits(&info, &server_c) > 0, "the server served");
    assert!(hits(&info, &client_c) > 0, "the client asked");

    // Attribution: each machine's section holds its own data only.
    let sections =
        Tracefile::read_sections(&out.join("coverage-per-machine.info")).expect("sections");
    assert_eq!(
        sections.keys().collect::<Vec<_>>(),
        ["client", "server"],
        "{backend}: sections"
    );
    compare(
        &what("server's section"),
        &restricted(&sections["server"], &gcov_files, "server's section"),
        &gcov,
    )
    .expect("the server's section equals gcov");
    same_as_llvm_cov(
        &what("client's section"),
        &restricted(&sections["client"], &llvm_files, "client's section"),
        &llvm,
    );

    // The JSON report: each machine's own code is its own data's, and the
    // line total is the tracefile's.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coverage.json")).expect("coverage.json"))
            .expect("JSON");
    assert_eq!(
        report["totals"]["lines"]["total"].as_u64(),
        Some(info.lines.len() as u64),
        "{backend}: the line rate counts the instrumented lines only"
    );
    for (name, lines) in [("server", &gcov.lines), ("client", &llvm.lines)] {
        let cap = report["captures"]
            .as_array()
            .expect("captures")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no capture {name}"));
        let hit = lines.values().filter(|&&c| c > 0).count() as u64;
        assert_eq!(
            (
                cap["own"]["lines"]["hit"].as_u64(),
                cap["own"]["lines"]["total"].as_u64()
            ),
            (Some(hit), Some(lines.len() as u64)),
            "{backend}: {name}'s own code: {cap}"
        );
    }

    // Blind spots: the library is the server's, as the DWARF line table
    // counts its lines and nm places its functions.
    let lib = f.path("lib/libmix.so");
    let server = blind_machine(&report, "server");
    let client = blind_machine(&report, "client");
    let libmix = binary(server, &lib).expect("the server's libmix.so examined");
    assert_eq!(libmix["debug"], "embedded", "{libmix}");
    assert_eq!(libmix["covered_files"], 0, "{libmix}");
    let mut lines = BTreeMap::new();
    let mut functions = BTreeSet::new();
    for file in libmix["files"].as_array().expect("files") {
        let path = file["path"].as_str().expect("path").to_owned();
        let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
        assert_eq!(
            path,
            f.path("src/lib").join(&name).display().to_string(),
            "{backend}: blind file named by its path"
        );
        lines.insert(name, file["lines"].as_u64().expect("lines"));
        for g in file["functions"].as_array().expect("functions") {
            functions.insert((
                path.clone(),
                g["name"].as_str().expect("name").to_owned(),
                g["line"].as_u64().expect("line"),
            ));
        }
    }
    let dwarf_lines = objdump_lines(&lib);
    assert_eq!(
        dwarf_lines.keys().map(String::as_str).collect::<Vec<_>>(),
        ["fmt.c", "mix.c", "mix.h"],
        "the library's line table (objdump)"
    );
    assert_eq!(lines, dwarf_lines, "{backend}: lines per blind file");
    let nm = nm_functions(&lib);
    assert_eq!(nm.len(), 4, "the library's functions (nm): {nm:?}");
    assert_eq!(functions, nm, "{backend}: blind functions");
    // The programs' own sources are covered: gcc's capture covers the
    // server's, clang's profile the client's.
    for (m, prog) in [(server, "bin/server"), (client, "bin/client")] {
        let b = binary(m, &f.path(prog)).unwrap_or_else(|| panic!("{prog} examined"));
        assert_eq!(b["debug"], "embedded", "{b}");
        assert_eq!(b["covered_files"], 1, "{backend}: {prog}: {b}");
        assert_eq!(b["files"], serde_json::json!([]), "{backend}: {prog}: {b}");
    }
    // The client has no library and nothing of it.
    assert!(binary(client, &lib).is_none(), "{client}");
    let lib_dir = f.path("src/lib").display().to_string();
    for b in client["binaries"].as_array().expect("binaries") {
        for file in b["files"].as_array().into_iter().flatten() {
            let p = file["path"].as_str().unwrap_or_default();
            assert!(!p.starts_with(&lib_dir), "{backend}: client blind {p}");
        }
    }
    // The server's not-instrumented total includes the library's lines,
    // beside the line rate, not in it.
    let library_lines: u64 = dwarf_lines.values().sum();
    assert!(
        server["totals"]["lines"].as_u64() >= Some(library_lines),
        "{}",
        server["totals"]
    );

    // The terminal summary and the HTML show all of it.
    for needle in [
        "server: collected 1 .gcda file(s)",
        "client: collected 2 .profraw file(s)",
        "merged 1 .gcda and 2 .profraw file(s) from 2 capture(s)",
    ] {
        assert!(o.stderr.contains(needle), "{backend}: {needle:?}\n{o}");
    }
    assert!(
        o.stderr.contains(&format!(
            "{}: 3 source file(s), {library_lines} executable line(s)",
            lib.display()
        )),
        "{o}"
    );
    let html = std::fs::read_to_string(out.join("report/index.html")).expect("index.html");
    assert!(
        html.contains(r#"id="blind-spots""#),
        "no blind-spots section"
    );
    for needle in [
        lib.display().to_string(),
        "mix_classify".to_owned(),
        "server.c".to_owned(),
        "client.c".to_owned(),
    ] {
        assert!(html.contains(&needle), "{backend}: the HTML lacks {needle}");
    }
}

#[test]
fn gcc_server_clang_client_and_a_blind_library_on_namespace_machines() {
    check("namespace");
}

#[test]
fn gcc_server_clang_client_and_a_blind_library_on_vms() {
    check("vm");
}
