//! Blind spots (issue 15, part 1): code shipped without instrumentation.
//!
//! A shared library compiled with `gcc -g` and no `--coverage`, linked by
//! a program compiled with `--coverage`: `covnet blindspots` lists the
//! library's source files and functions, each file's executable-line count
//! equal to the distinct lines `objdump --dwarf=decodedline` lists for it;
//! a `-gz` build gives the same; a stripped copy is named as having no
//! debug information; damaged files are errors naming them. Then `covnet
//! run --coverage` on namespace machines: the server, whose program loads
//! the library, has it as a blind spot in the terminal summary,
//! `coverage.json` and the HTML; the client, which does not load it, does
//! not; the line rate is the coverage's alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use covnet_tests::lcov_tool::{self, Output, Tracefile};

const UTIL_C: &str = r#"#include "util.h"

static int helper(int x)
{
    if (x > 3)
        return x * 2;
    return x + 1;
}

int util_twice(int x)
{
    int y = helper(x);
    for (int i = 0; i < 3; i++)
        y += i;
    return y;
}
"#;

const UTIL_H: &str =
    "int util_twice(int x);\nint other(int a);\nstatic inline int util_inline(int a) { return a * 3 + 1; }\n";

const OTHER_C: &str = r#"#include "util.h"
int other(int a)
{
    return util_inline(a) + util_twice(a);
}

int unused_other(int a)
{
    return a - 1;
}
"#;

const SERVER_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "util.h"
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    int t = 0;
    for (int i = 0; i < n; i++)
        t += other(i);
    printf("server %d\n", t);
    return 0;
}
"#;

const CLIENT_C: &str = r#"#include <stdio.h>
int main(void)
{
    puts("client");
    return 0;
}
"#;

/// Sources, the library (plain, `-gz`, stripped) and the two programs,
/// below one temporary directory.
struct Fixture {
    tmp: tempfile::TempDir,
}

fn sh(cmd: &mut Command) {
    lcov_tool::run_ok(cmd).expect("gcc/binutils (bash scripts/setup.sh installs them)");
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("covnet-blind-")
            .tempdir()
            .expect("tempdir");
        let f = Fixture { tmp };
        let root = f.root().to_path_buf();
        for (path, text) in [
            ("src/lib/util.c", UTIL_C),
            ("src/lib/util.h", UTIL_H),
            ("src/lib/other.c", OTHER_C),
            ("src/app/server.c", SERVER_C),
            ("src/app/client.c", CLIENT_C),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write source");
        }
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        for (out, gz) in [("lib/libutil.so", false), ("lib/libutilz.so", true)] {
            sh(Command::new("gcc")
                .args(["-g", "-O1", "-shared", "-fPIC"])
                .args(gz.then_some("-gz"))
                .args(["src/lib/util.c", "src/lib/other.c", "-o", out])
                .current_dir(&root));
        }
        sh(Command::new("strip")
            .args(["-o", "lib/libstripped.so", "lib/libutil.so"])
            .current_dir(&root));
        let rpath = format!("-Wl,-rpath,{}", root.join("lib").display());
        sh(Command::new("gcc")
            .args([
                "--coverage",
                "-g",
                "-O0",
                "-Isrc/lib",
                "src/app/server.c",
                "-Llib",
                "-lutil",
            ])
            .arg(&rpath)
            .args(["-o", "bin/server"])
            .current_dir(&root));
        sh(Command::new("gcc")
            .args([
                "--coverage",
                "-g",
                "-O0",
                "src/app/client.c",
                "-o",
                "bin/client",
            ])
            .current_dir(&root));
        f
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn covnet(&self, args: &[&str]) -> Output {
        lcov_tool::covnet(args, self.root()).expect("covnet runs")
    }

    /// Runs the server on the host and merges its capture into `cov.info`.
    fn host_coverage(&self) -> PathBuf {
        sh(Command::new(self.path("bin/server"))
            .arg("4")
            .current_dir(self.root()));
        let info = self.path("cov.info");
        let o = self.covnet(&["merge", ".", "--build", ".", "-o", "cov.info"]);
        assert_eq!(o.code(), 0, "{o}");
        info
    }
}

/// Distinct executable lines per file name as `objdump
/// --dwarf=decodedline` lists them (rows `name line 0xaddr [view] [x]`;
/// end-of-sequence rows have line `-`; line 0 is no line).
pub(crate) fn objdump_lines(elf: &Path) -> BTreeMap<String, u64> {
    let o = lcov_tool::run_ok(Command::new("objdump").arg("--dwarf=decodedline").arg(elf))
        .expect("objdump (binutils, bash scripts/setup.sh)");
    let mut lines: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for row in o.stdout.lines() {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let [name, number, addr, ..] = cols[..] else {
            continue;
        };
        let Ok(n) = number.parse::<u32>() else {
            continue;
        };
        if addr.starts_with("0x") && n != 0 {
            lines.entry(name.to_owned()).or_default().insert(n);
        }
    }
    lines
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect()
}

fn file_name(p: &str) -> String {
    p.rsplit('/').next().unwrap_or(p).to_owned()
}

/// `binaries[]` of one machine of a blind-spots JSON, by file name.
fn binaries(machine: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    machine["binaries"]
        .as_array()
        .expect("binaries")
        .iter()
        .map(|b| (file_name(b["path"].as_str().expect("path")), b.clone()))
        .collect()
}

/// A binary's blind files: file name -> (executable lines, functions).
fn blind_files(b: &serde_json::Value) -> BTreeMap<String, (u64, BTreeSet<String>)> {
    b["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let functions = f["functions"]
                .as_array()
                .expect("functions")
                .iter()
                .map(|g| g["name"].as_str().expect("name").to_owned())
                .collect();
            (
                file_name(f["path"].as_str().expect("path")),
                (f["lines"].as_u64().expect("lines"), functions),
            )
        })
        .collect()
}

/// The library's blind files agree with objdump and name its functions.
fn check_library(b: &serde_json::Value, elf: &Path) {
    let files = blind_files(b);
    let lines: BTreeMap<String, u64> = files.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(
        lines,
        objdump_lines(elf),
        "{}: lines per file",
        elf.display()
    );
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["other.c", "util.c", "util.h"]
    );
    assert!(files["util.c"].1.contains("util_twice"), "{files:?}");
    assert!(files["other.c"].1.contains("other"), "{files:?}");
    assert!(files["other.c"].1.contains("unused_other"), "{files:?}");
    assert_eq!(b["covered_files"], 0, "{b}");
}

#[test]
fn blindspots_cli_lists_the_uninstrumented_library_as_objdump_counts_it() {
    let f = Fixture::new();
    f.host_coverage();
    let o = f.covnet(&[
        "blindspots",
        "bin/server",
        "lib/libutil.so",
        "lib/libutilz.so",
        "lib/libstripped.so",
        "--coverage",
        "cov.info",
        "--json",
    ]);
    assert_eq!(o.code(), 0, "{o}");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    let machine = &json[0];
    let by_name = binaries(machine);

    // The instrumented program's own source is covered.
    let server = &by_name["server"];
    assert_eq!(server["debug"], "embedded");
    assert!(server["covered_files"].as_u64() >= Some(1), "{server}");
    assert!(
        !blind_files(server).contains_key("server.c"),
        "server.c is instrumented: {server}"
    );
    // The library: plain and compressed DWARF alike, as objdump counts.
    check_library(&by_name["libutil.so"], &f.path("lib/libutil.so"));
    check_library(&by_name["libutilz.so"], &f.path("lib/libutilz.so"));
    assert_eq!(
        blind_files(&by_name["libutil.so"]),
        blind_files(&by_name["libutilz.so"])
    );
    // Stripped: named, nothing known.
    assert_eq!(by_name["libstripped.so"]["debug"], "missing");
    assert_eq!(machine["totals"]["binaries_without_debug"], 1);
    // Totals: each library line once (the two builds share their sources).
    let library: u64 = objdump_lines(&f.path("lib/libutil.so")).values().sum();
    let server_blind: u64 = blind_files(server).values().map(|v| v.0).sum();
    assert!(
        machine["totals"]["lines"].as_u64() >= Some(library),
        "{}",
        machine["totals"]
    );
    assert!(
        machine["totals"]["lines"].as_u64() <= Some(library + server_blind),
        "{}",
        machine["totals"]
    );

    // The listing says the same in words.
    let o = f.covnet(&[
        "blindspots",
        "lib/libutil.so",
        "lib/libstripped.so",
        "--coverage",
        "cov.info",
    ]);
    assert_eq!(o.code(), 0, "{o}");
    for needle in [
        "lib/libstripped.so: no debug information",
        "lib/libutil.so: 0 source file(s) covered, 3 not instrumented",
        "src/lib/util.c:10 util_twice",
        "not instrumented: 3 source file(s)",
        "1 of 2 ELF file(s) without debug information",
    ] {
        assert!(o.stdout.contains(needle), "{needle:?}\n{o}");
    }

    // With its libraries, the program's closure is examined: the library
    // comes in through DT_NEEDED and the rpath.
    let o = f.covnet(&[
        "blindspots",
        "bin/server",
        "--with-libraries",
        "--coverage",
        "cov.info",
        "--json",
    ]);
    assert_eq!(o.code(), 0, "{o}");
    let json: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    let by_name = binaries(&json[0]);
    assert!(by_name.contains_key("libc.so.6"), "{:?}", by_name.keys());
    check_library(&by_name["libutil.so"], &f.path("lib/libutil.so"));
}

#[test]
fn blindspots_cli_names_damaged_files() {
    let f = Fixture::new();
    f.host_coverage();
    let lib = std::fs::read(f.path("lib/libutil.so")).expect("read");
    // Truncated inside the section headers: malformed ELF.
    std::fs::write(f.path("truncated.so"), &lib[..lib.len() / 2]).expect("write");
    // The .debug_info header overwritten: bad DWARF.
    let offset = section_offset(&f.path("lib/libutil.so"), ".debug_info");
    let mut bad = lib.clone();
    for b in bad.iter_mut().skip(offset).take(16) {
        *b = 0xff;
    }
    std::fs::write(f.path("baddwarf.so"), &bad).expect("write");
    std::fs::write(f.path("text.so"), "not an ELF file").expect("write");

    let o = f.covnet(&[
        "blindspots",
        "truncated.so",
        "baddwarf.so",
        "text.so",
        "lib/libutil.so",
        "--coverage",
        "cov.info",
    ]);
    assert_eq!(
        o.code(),
        2,
        "the good file is reported, the run is partial: {o}"
    );
    for needle in [
        "failed to read debug information of truncated.so",
        "malformed ELF",
        "failed to read debug information of baddwarf.so",
        "bad DWARF in .debug_info",
        "failed to read debug information of text.so",
        "not an ELF file",
        "(hint: ",
    ] {
        assert!(o.stderr.contains(needle), "{needle:?}\n{o}");
    }
    assert!(
        o.stdout
            .contains("lib/libutil.so: 0 source file(s) covered"),
        "{o}"
    );
    let o = f.covnet(&["blindspots", "text.so", "--coverage", "cov.info"]);
    assert_eq!(o.code(), 1, "nothing readable, nothing to report: {o}");
}

/// The file offset of `section` (from `readelf -S -W`).
fn section_offset(elf: &Path, section: &str) -> usize {
    let o = lcov_tool::run_ok(Command::new("readelf").arg("-S").arg("-W").arg(elf))
        .expect("readelf (binutils)");
    for line in o.stdout.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = cols.iter().position(|c| *c == section) {
            if let Some(off) = cols.get(i + 3) {
                return usize::from_str_radix(off, 16).expect("hex offset");
            }
        }
    }
    panic!("{section} not in {}", elf.display());
}

#[test]
fn a_run_reports_each_machines_blind_spots_beside_its_coverage() {
    let f = Fixture::new();
    let spec = f.path("spec.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[machines.server]
programs = ["{server}"]

[machines.client]
programs = ["{client}"]

[test]
script = '''
start_all();
server.succeed("{server} 4");
client.succeed("{client}");
'''
"#,
            server = f.path("bin/server").display(),
            client = f.path("bin/client").display(),
        ),
    )
    .expect("write spec");
    let out = f.path("out");
    let o = f.covnet(&[
        "run",
        "--coverage",
        "--no-console",
        "--backend",
        "namespace",
        "--out",
        out.to_str().expect("utf-8"),
        spec.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.code(), 0, "{o}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coverage.json")).expect("coverage.json"))
            .expect("JSON");
    let blind = report["blind_spots"].as_array().expect("blind_spots");
    let machines: Vec<&str> = blind
        .iter()
        .map(|m| m["machine"].as_str().expect("machine"))
        .collect();
    assert_eq!(machines, ["server", "client"]);

    // The server loads the library: its files are the server's blind spots,
    // counted as objdump counts them. The client never loads it.
    let server = binaries(&blind[0]);
    check_library(&server["libutil.so"], &f.path("lib/libutil.so"));
    assert!(!blind_files(&server["server"]).contains_key("server.c"));
    let client = binaries(&blind[1]);
    assert!(!client.contains_key("libutil.so"), "{:?}", client.keys());
    assert!(client.contains_key("client"), "{:?}", client.keys());
    // Each machine's closure is examined: the C library is named, with or
    // without debug information as this host has it.
    for m in [&server, &client] {
        let libc = &m["libc.so.6"];
        let has_debug = covnet_merger::dwarf::read_path(
            Path::new(libc["path"].as_str().expect("path")),
            &covnet_merger::dwarf::DebugSearch::default(),
        )
        .map(|b| matches!(b.debug, covnet_merger::dwarf::Debug::Found { .. }))
        .expect("libc reads");
        assert_eq!(libc["debug"] != "missing", has_debug, "{libc}");
    }

    // The line rate is the coverage's alone: the tracefile's lines, none of
    // the library's.
    let info = Tracefile::read(&out.join("coverage.info")).expect("coverage.info");
    assert_eq!(
        report["totals"]["lines"]["total"].as_u64(),
        Some(info.lines.len() as u64)
    );
    assert!(
        info.lines
            .keys()
            .all(|(file, _)| !file.contains("/src/lib/")),
        "the library is not instrumented"
    );

    // The terminal summary and the HTML say so too.
    assert!(o.stderr.contains("blind spots:"), "{o}");
    assert!(o.stderr.contains("server: not instrumented:"), "{o}");
    let html = std::fs::read_to_string(out.join("report/index.html")).expect("index.html");
    assert!(html.contains(r#"id="blind-spots""#));
    assert!(html.contains(&f.path("lib/libutil.so").display().to_string()));
    assert!(html.contains("util_twice"));
}
