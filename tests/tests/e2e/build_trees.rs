//! Real project layouts: two programs, each built in its own build tree
//! outside the spec's directory (and a source file both of them compile)
//! and installed in a `bin/` directory of their own,
//! run on two machines with `covnet run --coverage` and no `--build`.
//!
//! - The `.gcda` files pair with the notes where gcc left them: the
//!   combined tracefile and each machine's `TN` section equal gcov on the
//!   pulled files (`oracle`), and each machine's "own code" figures in
//!   `coverage.json` are those of its own objects.
//! - One build tree gone: the report is written from the rest, one summary
//!   names the machine, where covnet looked and the flag that fixes it, and
//!   the run exits 2. Both gone: no report, exit 2. The tree moved and
//!   named in the spec's `[coverage] build`: exact again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use covnet_tests::lcov_tool::{self, Output, Tracefile};
use covnet_tests::oracle::{self, compare, Gcov};

const SHARED_C: &str = r#"#include "shared.h"
int shared_mix(int a, int b)
{
  if (a > b)
    return a - b;
  if (a == b)
    return 0;
  return b * 2 - a;
}
"#;

const SHARED_H: &str = "int shared_mix(int a, int b);\n";

const SERVER_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "shared.h"
static int served;
static int handle(int req)
{
  served++;
  if (req % 3 == 0)
    return shared_mix(req, 1);
  return shared_mix(1, req);
}
int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 1, t = 0;
  for (int i = 0; i < n; i++)
    t += handle(i);
  if (t < 0)
    puts("never");
  printf("served %d total %d\n", served, t);
  return 0;
}
"#;

const CLIENT_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shared.h"
static int ask(const char *what)
{
  if (strcmp(what, "twice") == 0)
    return shared_mix(2, 2) + shared_mix(5, 2);
  if (strcmp(what, "never") == 0)
    return -1;
  return shared_mix(0, 4);
}
int main(int argc, char **argv)
{
  int r = 0;
  for (int i = 1; i < argc; i++)
    r += ask(argv[i]);
  printf("client %d\n", r);
  return r < 0;
}
"#;

/// Two source trees, two out-of-tree build trees, and a spec directory of
/// its own, all below one temporary directory.
struct Layout {
    tmp: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let tmp = tempfile::Builder::new()
            .prefix("covnet-trees-")
            .tempdir()
            .expect("tempdir");
        let l = Layout { tmp };
        for (path, text) in [
            ("src/shared/shared.c", SHARED_C),
            ("src/shared/shared.h", SHARED_H),
            ("src/server/server.c", SERVER_C),
            ("src/client/client.c", CLIENT_C),
        ] {
            let p = l.root().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write source");
        }
        l.build("server", "server/server.c");
        l.build("client", "client/client.c");
        l
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `builds/<name>`: compiled from there with relative source names,
    /// the objects (and notes) in `obj/`, the program at the top.
    fn build(&self, name: &str, main: &str) {
        let dir = self.root().join("builds").join(name);
        std::fs::create_dir_all(dir.join("obj")).expect("mkdir");
        for (src, obj) in [(main, name), ("shared/shared.c", "shared")] {
            lcov_tool::run_ok(
                Command::new("gcc")
                    .args(["--coverage", "-O0", "-I../../src/shared", "-c"])
                    .arg(format!("../../src/{src}"))
                    .arg("-o")
                    .arg(format!("obj/{obj}.o"))
                    .current_dir(&dir),
            )
            .expect("gcc --coverage (bash scripts/setup.sh installs gcc)");
        }
        lcov_tool::run_ok(
            Command::new("gcc")
                .args(["--coverage", "-o", name])
                .arg(format!("obj/{name}.o"))
                .arg("obj/shared.o")
                .current_dir(&dir),
        )
        .expect("link");
        std::fs::create_dir_all(self.root().join("bin")).expect("mkdir bin");
        std::fs::copy(dir.join(name), self.program(name)).expect("install");
    }

    /// Where `make install` would put it: outside the build tree, so that
    /// the tree can move or go away while the program stays.
    fn program(&self, name: &str) -> PathBuf {
        self.root().join("bin").join(name)
    }

    /// A spec in `spec/` naming the programs at their build paths, plus
    /// `extra` TOML.
    fn spec(&self, file: &str, extra: &str) -> PathBuf {
        let dir = self.root().join("spec");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text = format!(
            r#"[machines.server]
programs = ["{server}"]

[machines.client]
programs = ["{client}"]

[test]
script = '''
start_all();
server.succeed("server 7");
client.succeed("client twice once");
client.succeed("client once");
'''
{extra}"#,
            server = self.program("server").display(),
            client = self.program("client").display(),
        );
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    fn run(&self, spec: &Path, out: &str, backend: &str) -> (Output, PathBuf) {
        self.run_with(spec, out, backend, &[])
    }

    fn run_with(&self, spec: &Path, out: &str, backend: &str, extra: &[&str]) -> (Output, PathBuf) {
        let out = self.root().join(out);
        let mut args = vec![
            "run",
            "--coverage",
            "--no-console",
            "--backend",
            backend,
            "--out",
            out.to_str().expect("utf-8"),
            spec.to_str().expect("utf-8"),
        ];
        args.extend(extra);
        let o = lcov_tool::covnet(&args, self.root()).expect("covnet runs");
        (o, out)
    }
}

/// The part of `t` about the files `oracle` knows; every other file must
/// have only zero counts there (a machine's section of code it never had).
fn restricted(t: &Tracefile, oracle: &Gcov, what: &str) -> Tracefile {
    let files: BTreeSet<&String> = oracle.lines.keys().map(|(f, _)| f).collect();
    let mut out = Tracefile::default();
    for ((f, l), c) in &t.lines {
        if files.contains(f) {
            out.lines.insert((f.clone(), *l), *c);
        } else {
            assert_eq!(
                *c, 0,
                "{what}: {f}:{l} counted {c} outside the machine's code"
            );
        }
    }
    for (k, v) in &t.branches {
        if files.contains(&k.0) {
            out.branches.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &t.functions {
        if files.contains(&k.0) {
            out.functions.insert(k.clone(), *v);
        } else {
            assert_eq!(
                v.1, 0,
                "{what}: function {k:?} ran outside the machine's code"
            );
        }
    }
    out
}

fn check(backend: &str) {
    let l = Layout::new();
    let spec = l.spec("spec.toml", "");
    let (o, out) = l.run(&spec, "out", backend);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.contains("PASSED"), "{o}");
    assert!(!o.stderr.contains("found no .gcno"), "{o}");

    let server_cap = out.join("coverage/server");
    let client_cap = out.join("coverage/client");
    // Pulled at their absolute build paths, outside the spec's directory.
    for (cap, tree) in [(&server_cap, "server"), (&client_cap, "client")] {
        let pulled = oracle::gcda_below(cap).expect("list pulled files");
        assert_eq!(pulled.len(), 2, "{tree}: {pulled:?}");
        let build = l.root().join("builds").join(tree);
        for p in &pulled {
            assert!(
                p.strip_prefix(cap)
                    .expect("below")
                    .starts_with(build.strip_prefix("/").expect("absolute")),
                "{}",
                p.display()
            );
        }
    }

    // Combined: gcov over every pulled file (shared.c from both trees adds).
    let all = oracle::gcov_over(&oracle::mirrored(&[&server_cap, &client_cap]).expect("pairs"))
        .expect("gcov");
    let combined = Tracefile::read(&out.join("coverage.info")).expect("read coverage.info");
    compare(&format!("{backend}: combined"), &combined, &all).expect("combined equals gcov");

    // Each machine's section: gcov over its own files only.
    let sections =
        Tracefile::read_sections(&out.join("coverage-per-machine.info")).expect("read sections");
    let (report, _) =
        covnet_reporter::json::read_path(&out.join("coverage.json")).expect("read coverage.json");
    let tree = covnet_reporter::tree::Tree::new(&report);
    for (i, (name, cap)) in [("server", &server_cap), ("client", &client_cap)]
        .into_iter()
        .enumerate()
    {
        let own = oracle::gcov_over(&oracle::mirrored(&[cap]).expect("pairs")).expect("gcov");
        let section = sections.get(name).unwrap_or_else(|| panic!("no TN:{name}"));
        let what = format!("{backend}: {name}");
        compare(&what, &restricted(section, &own, &what), &own).expect("section equals gcov");
        // Own code: the lines of its own objects, hit as gcov says.
        let at = report
            .captures
            .iter()
            .position(|c| c == name)
            .expect("capture in the report");
        let o = tree.totals.own[at];
        let found = own.lines.len() as u64;
        let hit = own.lines.values().filter(|&&c| c > 0).count() as u64;
        assert_eq!(
            (o.lines_hit, o.lines_found),
            (hit, found),
            "{what}: own-code lines"
        );
        assert!(
            tree.totals.per_capture[at].lines_found > found,
            "{what}: the share of the whole counts every machine's code"
        );
        assert_eq!(at, i, "captures in spec order");
    }
    assert!(
        o.stderr.contains("of its own code"),
        "the terminal table says what the figures are: {o}"
    );

    // The spec carries filters and thresholds; the command line overrides.
    let gated = l.spec(
        "gated.toml",
        "[coverage]\ninclude = [\"*/server/*\"]\nfail_under = { lines = 100 }\n",
    );
    let (o, out5) = l.run(&gated, "out-gated", backend);
    assert_eq!(o.code(), 3, "below the spec's threshold: {o}");
    assert!(
        o.stderr.contains("line coverage") && o.stderr.contains("below the required 100%"),
        "{o}"
    );
    let kept = Tracefile::read(&out5.join("coverage.info")).expect("read");
    assert!(
        kept.lines.keys().all(|(f, _)| f.contains("/server/")),
        "only the spec's include: {:?}",
        kept.lines.keys().next()
    );
    let (o, _) = l.run_with(&gated, "out-gated2", backend, &["--fail-under-lines", "10"]);
    assert_eq!(o.code(), 0, "the flag overrides the spec: {o}");

    // One build tree gone: the rest is reported, the run says what is
    // missing and how to fix it, and exits 2.
    let moved = l.root().join("moved-client");
    std::fs::rename(l.root().join("builds/client"), &moved).expect("move the client tree");
    let (o, out2) = l.run(&spec, "out-missing", backend);
    assert_eq!(o.code(), 2, "{o}");
    for needle in [
        "PASSED",
        "coverage incomplete",
        "client: 2 .gcda file(s) found no .gcno",
        "covnet looked at each .gcda's own build path on this host, then under",
        "--build DIR",
        "[coverage] build",
    ] {
        assert!(o.stderr.contains(needle), "missing {needle:?}: {o}");
    }
    assert_eq!(
        o.stderr.matches("found no .gcno").count(),
        1,
        "one summary, not a line per file: {o}"
    );
    let partial = Tracefile::read(&out2.join("coverage.info")).expect("report of the rest");
    assert!(
        partial
            .lines
            .keys()
            .any(|(f, _)| f.ends_with("server/server.c")),
        "server kept"
    );
    assert!(
        !partial
            .lines
            .keys()
            .any(|(f, _)| f.ends_with("client/client.c")),
        "client missing"
    );

    // The tree named in the spec: exact again, from its new place.
    let named = l.spec(
        "named.toml",
        &format!("[coverage]\nbuild = [\"{}\"]\n", moved.display()),
    );
    let (o, out3) = l.run(&named, "out-named", backend);
    assert_eq!(o.code(), 0, "{o}");
    let again = Tracefile::read(&out3.join("coverage.info")).expect("read");
    assert_eq!(
        again.lines.keys().collect::<Vec<_>>(),
        combined.lines.keys().collect::<Vec<_>>(),
        "the same lines as with the trees in place"
    );

    // Both trees gone: nothing pairs, no report, exit 2, the test verdict
    // still shown.
    std::fs::rename(
        l.root().join("builds/server"),
        l.root().join("moved-server"),
    )
    .expect("move the server tree");
    let (o, out4) = l.run(&spec, "out-none", backend);
    assert_eq!(o.code(), 2, "{o}");
    assert!(
        o.stderr
            .contains("none of the 4 .gcda file(s) found its .gcno"),
        "{o}"
    );
    assert!(o.stderr.contains("PASSED"), "{o}");
    assert!(!out4.join("coverage.info").exists(), "no empty report");
}

#[test]
fn two_build_trees_outside_the_spec_on_namespace_machines() {
    check("namespace");
}

#[test]
fn two_build_trees_outside_the_spec_on_vms() {
    check("vm");
}
