//! `covnet report` end to end: real gcc coverage of a small two-machine
//! program, lcov's `geninfo` for the tracefiles, and lcov itself as the
//! oracle for every total the reports print. Also home of the bounded
//! process runner and binary locator that `browser.rs` shares.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use covnet_merger::model::{Coverage, Summary};

/// What a bounded run produced.
pub(crate) struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `lcov_tool::run` (own process group, stdin closed,
/// the group killed at `limit` and after the leader exits) and fails the
/// test when it cannot run or does not finish.
pub(crate) fn run(cmd: &mut Command, limit: Duration) -> Run {
    let o = covnet_tests::lcov_tool::run(cmd, limit)
        .unwrap_or_else(|e| panic!("{e:#} (is it installed? run scripts/setup.sh)"));
    Run {
        status: o.status,
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

/// Runs `cmd` and fails the test, showing everything, unless it exits 0.
pub(crate) fn run_ok(cmd: &mut Command, limit: Duration) -> Run {
    let shown = format!("{cmd:?}");
    let r = run(cmd, limit);
    assert!(
        r.status.success(),
        "{shown} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        r.status,
        r.stdout,
        r.stderr
    );
    r
}

/// The `covnet` binary of this workspace (`lcov_tool::covnet_bin`: built
/// once, `COVNET_BIN` overrides).
pub(crate) fn covnet_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| covnet_tests::lcov_tool::covnet_bin().expect("build the covnet binary"))
}

const MAIN_C: &str = r#"#include <stdio.h>
#include <string.h>
#include "net/proto.h"

static int serve(int n) { printf("serve %d\n", n); return twice(n); }
static int request(int n) { printf("request %d\n", n); return n + 1; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: app server|client N\n"); return 2; }
  int n = parse(argv[2]);
  if (strcmp(argv[1], "server") == 0)
    return serve(n) > 100;
  else if (strcmp(argv[1], "client") == 0)
    return request(n) > 100;
  return 1;
}
"#;

const PROTO_C: &str = r#"#include "proto.h"

int parse(const char *s) {
  int n = 0;
  while (*s) {
    if (*s >= '0' && *s <= '9')
      n = n * 10 + (*s - '0');
    else
      return -1;
    s++;
  }
  return n;
}

int unused_helper(int x) {
  return x * 3;
}
"#;

const PROTO_H: &str = r#"int parse(const char *s);
int unused_helper(int x);
static inline int twice(int x) { return x < 0 ? x : 2 * x; }
"#;

/// A built two-machine fixture in `dir/build`: `web.info` (server runs)
/// and `client.info` (a client run), captured with lcov's geninfo, and the
/// same runs' `.gcda` trees in `dir/cap/web` and `dir/cap/client`.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub web: PathBuf,
    pub client: PathBuf,
}

const SLOW: Duration = Duration::from_secs(120);

/// lcov options that make lcov 1.x count branches.
const LCOV_BRANCHES: [&str; 2] = ["--rc", "lcov_branch_coverage=1"];

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = &dir.path().join("build");
    let caps = dir.path().join("cap");
    std::fs::create_dir_all(root.join("src/net")).unwrap();
    std::fs::write(root.join("src/main.c"), MAIN_C).unwrap();
    std::fs::write(root.join("src/net/proto.c"), PROTO_C).unwrap();
    std::fs::write(root.join("src/net/proto.h"), PROTO_H).unwrap();
    run_ok(
        Command::new("gcc")
            .args([
                "--coverage",
                "-O0",
                "-o",
                "app",
                "src/main.c",
                "src/net/proto.c",
            ])
            .current_dir(root),
        SLOW,
    );
    let machines: [(&str, &[&[&str]]); 2] = [
        ("web", &[&["server", "12"], &["server", "x1"]]),
        ("client", &[&["client", "7"]]),
    ];
    for (name, runs) in machines {
        for f in std::fs::read_dir(root).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "gcda") {
                std::fs::remove_file(p).unwrap();
            }
        }
        for args in runs {
            run_ok(
                Command::new(root.join("app")).args(*args).current_dir(root),
                SLOW,
            );
            // The same run again into a capture directory, as a machine
            // with GCOV_PREFIX would leave it.
            run_ok(
                Command::new(root.join("app"))
                    .args(*args)
                    .env("GCOV_PREFIX", caps.join(name))
                    .current_dir(root),
                SLOW,
            );
        }
        run_ok(
            covnet_tests::lcov_tool::peer("lcov")
                .expect("lcov 1.x")
                .args(["--quiet", "--capture", "--directory", ".", "-t", name, "-o"])
                .arg(format!("{name}.info"))
                .args(LCOV_BRANCHES)
                .current_dir(root),
            SLOW,
        );
    }
    Fixture {
        web: root.join("web.info"),
        client: root.join("client.info"),
        dir,
    }
}

/// `lcov --summary` of the given tracefiles added together (lcov -a).
pub(crate) fn lcov_summary(dir: &Path, inputs: &[&Path]) -> Summary {
    let sum = dir.join(format!("lcov-sum-{}.info", inputs.len()));
    let mut cmd = covnet_tests::lcov_tool::peer("lcov").expect("lcov 1.x");
    cmd.arg("--quiet");
    for i in inputs {
        cmd.arg("-a").arg(i);
    }
    run_ok(cmd.arg("-o").arg(&sum).args(LCOV_BRANCHES), SLOW);
    let r = run_ok(
        covnet_tests::lcov_tool::peer("lcov")
            .expect("lcov 1.x")
            .arg("--summary")
            .arg(&sum)
            .args(LCOV_BRANCHES),
        SLOW,
    );
    let text = format!("{}{}", r.stdout, r.stderr);
    // "  lines......: 94.7% (18 of 19 lines)"
    let pick = |what: &str| -> (u64, u64) {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in lcov --summary:\n{text}"));
        if line.contains("no data found") {
            return (0, 0);
        }
        let inner = &line[line.find('(').unwrap() + 1..line.find(')').unwrap()];
        let words: Vec<&str> = inner.split_whitespace().collect();
        (words[0].parse().unwrap(), words[2].parse().unwrap())
    };
    let (lh, lf) = pick("lines");
    let (fh, ff) = pick("functions");
    let (bh, bf) = pick("branches");
    Summary {
        lines_found: lf,
        lines_hit: lh,
        functions_found: ff,
        functions_hit: fh,
        branches_found: bf,
        branches_hit: bh,
    }
}

/// The model covnet reads from the fixture's tracefiles (merged).
pub(crate) fn model(f: &Fixture) -> Coverage {
    let read = |p: &Path, name: &str| {
        let file = std::fs::File::open(p).unwrap();
        covnet_merger::lcov::read(std::io::BufReader::new(file), p, name).unwrap()
    };
    covnet_merger::merge::merge(read(&f.web, "web"), read(&f.client, "client")).unwrap()
}

/// Text of the element whose opening tag contains `marker`, up to the
/// next `<`.
pub(crate) fn text_after<'h>(html: &'h str, marker: &str) -> &'h str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not found in page"));
    let rest = &html[at..];
    let body = &rest[rest.find('>').expect("tag end") + 1..];
    &body[..body.find('<').unwrap_or(body.len())]
}

/// The `<tr>` element whose opening tag contains `marker`.
pub(crate) fn row<'h>(html: &'h str, marker: &str) -> &'h str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not found in page"));
    let start = html[..at + marker.len()].rfind("<tr").expect("row start");
    let end = at + html[at..].find("</tr>").expect("row end");
    &html[start..end]
}

fn hit_total(hit: u64, found: u64) -> String {
    format!("{hit}/{found}")
}

#[test]
fn report_numbers_match_lcov_and_the_model() {
    let f = fixture();
    let out = f.dir.path().join("report");
    let r = run_ok(
        Command::new(covnet_bin())
            .arg("report")
            .arg(&f.web)
            .arg(&f.client)
            .arg("--html")
            .arg(&out)
            .arg("--cobertura")
            .arg(out.join("cobertura.xml"))
            .arg("--json")
            .arg(out.join("summary.json"))
            .arg("--markdown")
            .arg(out.join("summary.md"))
            .arg("--lcov")
            .arg(out.join("coverage.info"))
            .args(["--title", "Two machines & <friends>"])
            .current_dir(f.dir.path()),
        SLOW,
    );
    let oracle = lcov_summary(f.dir.path(), &[&f.web, &f.client]);
    let model = model(&f);
    assert_eq!(
        model.summary(),
        oracle,
        "covnet's reading of the tracefiles vs lcov"
    );
    assert_eq!(model.captures, ["web", "client"]);
    // The terminal table.
    let table_lines: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let lines_row = table_lines
        .iter()
        .find(|w| w.first() == Some(&"lines"))
        .expect("lines row");
    assert_eq!(
        lines_row[1..3],
        [oracle.lines_hit.to_string(), oracle.lines_found.to_string()]
    );
    assert!(r.stderr.contains("3 source pages"), "{}", r.stderr);

    // index.html totals, per machine, per file.
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert_eq!(
        text_after(&index, r#"id="lines-hit-total""#),
        hit_total(oracle.lines_hit, oracle.lines_found)
    );
    assert_eq!(
        text_after(&index, r#"id="functions-hit-total""#),
        hit_total(oracle.functions_hit, oracle.functions_found)
    );
    assert_eq!(
        text_after(&index, r#"id="branches-hit-total""#),
        hit_total(oracle.branches_hit, oracle.branches_found)
    );
    assert!(
        index.contains("Two machines &#38; &#60;friends&#62;"),
        "title escaped"
    );
    for (name, input) in [("web", &f.web), ("client", &f.client)] {
        let alone = lcov_summary(f.dir.path(), &[input]);
        let m = row(&index, &format!(r#"data-machine="{name}""#));
        assert_eq!(
            text_after(m, r#"class="num ml""#),
            hit_total(alone.lines_hit, alone.lines_found),
            "{name}"
        );
        assert_eq!(
            text_after(m, r#"class="num mf""#),
            hit_total(alone.functions_hit, alone.functions_found)
        );
        assert_eq!(
            text_after(m, r#"class="num mb""#),
            hit_total(alone.branches_hit, alone.branches_found)
        );
    }
    let root = f.dir.path().join("build/src");
    for (path, file) in &model.files {
        let rel = Path::new(path)
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap();
        let s = file.summary();
        let r = row(&index, &format!(r#"data-path="{rel}""#));
        assert_eq!(
            text_after(r, r#"class="num ln""#),
            hit_total(s.lines_hit, s.lines_found),
            "{rel}"
        );
        assert_eq!(
            text_after(r, r#"class="num fn""#),
            hit_total(s.functions_hit, s.functions_found)
        );
        assert_eq!(
            text_after(r, r#"class="num bn""#),
            hit_total(s.branches_hit, s.branches_found)
        );
        // The file's own page: totals, and every instrumented line's count.
        let href_at = r.find("href=\"").unwrap() + 6;
        let href = &r[href_at..href_at + r[href_at..].find('"').unwrap()];
        let page = std::fs::read_to_string(out.join(href)).unwrap();
        assert_eq!(
            text_after(&page, r#"id="lines-hit-total""#),
            hit_total(s.lines_hit, s.lines_found)
        );
        for (no, l) in &file.lines {
            let tr = row(&page, &format!(r#"<tr id="L{no}" class"#));
            assert_eq!(
                text_after(tr, r#"<td class="c""#),
                l.count.to_string(),
                "{rel}:{no}"
            );
        }
        assert!(!page.contains("source-missing"), "sources are on disk");
    }
    let main_page = std::fs::read_dir(out.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("main.c")
        })
        .unwrap();
    let main_page = std::fs::read_to_string(main_page).unwrap();
    assert!(
        main_page.contains("#include &#60;stdio.h&#62;"),
        "source text, escaped"
    );
    assert!(row(&main_page, r#"id="L5""#).contains("only web"));
    assert!(row(&main_page, r#"id="L6""#).contains("only client"));

    // Cobertura: valid against the DTD, same totals.
    let dtd = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cobertura/coverage-04.dtd");
    run_ok(
        Command::new("xmllint")
            .args(["--noout", "--nonet", "--dtdvalid"])
            .arg(&dtd)
            .arg(out.join("cobertura.xml")),
        SLOW,
    );
    let xml = std::fs::read_to_string(out.join("cobertura.xml")).unwrap();
    assert!(xml.contains(&format!(
        r#"lines-covered="{}" lines-valid="{}" branches-covered="{}" branches-valid="{}""#,
        oracle.lines_hit, oracle.lines_found, oracle.branches_hit, oracle.branches_found
    )));

    // JSON reads back into the same model; lcov output has lcov's totals.
    let (back, info) = covnet_reporter::json::read_path(&out.join("summary.json")).unwrap();
    assert_eq!(back, model);
    assert_eq!(info.title, "Two machines & <friends>");
    assert_eq!(
        lcov_summary(f.dir.path(), &[&out.join("coverage.info")]),
        oracle
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains(&format!(
        "| Lines | {} | {} |",
        oracle.lines_hit, oracle.lines_found
    )));
}

#[test]
fn capture_directories_with_build_match_lcov() {
    let f = fixture();
    let root = f.dir.path();
    let json = root.join("caps.json");
    run_ok(
        Command::new(covnet_bin())
            .arg("report")
            .arg(root.join("cap/web"))
            .arg(root.join("cap/client"))
            .arg("--build")
            .arg(root.join("build"))
            .arg("--json")
            .arg(&json),
        SLOW,
    );
    let (cov, _) = covnet_reporter::json::read_path(&json).unwrap();
    assert_eq!(cov.captures, ["web", "client"]);
    let from_lcov = model(&f);
    assert_eq!(cov.summary(), lcov_summary(root, &[&f.web, &f.client]));
    let tree = covnet_reporter::tree::Tree::new(&cov);
    assert_eq!(tree.totals.per_capture[0], lcov_summary(root, &[&f.web]));
    assert_eq!(tree.totals.per_capture[1], lcov_summary(root, &[&f.client]));
    for (path, file) in &from_lcov.files {
        let mine = cov
            .files
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing"));
        for (no, l) in &file.lines {
            assert_eq!(
                mine.lines.get(no).map(|m| m.count),
                Some(l.count),
                "{path}:{no}"
            );
        }
    }
    // Without --build the .gcda files pair with the notes at their own
    // build paths: the same report.
    let json2 = root.join("found.json");
    let r = run(
        Command::new(covnet_bin())
            .arg("report")
            .arg(root.join("cap/web"))
            .arg(root.join("cap/client"))
            .arg("--json")
            .arg(&json2),
        SLOW,
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    let (found, _) = covnet_reporter::json::read_path(&json2).expect("read the JSON report");
    assert_eq!(found.files, cov.files);
    // Notes that are nowhere to be found: exit 2, and the flag that fixes it.
    let lost = root.join("lost");
    std::fs::create_dir_all(lost.join("elsewhere")).expect("mkdir");
    let some = covnet_tests::oracle::gcda_below(&root.join("cap/web")).expect("list .gcda");
    assert!(!some.is_empty(), "no .gcda below cap/web");
    std::fs::copy(&some[0], lost.join("elsewhere/x.gcda")).expect("copy");
    let r = run(Command::new(covnet_bin()).arg("report").arg(&lost), SLOW);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--build DIR"), "{}", r.stderr);
}

#[test]
fn thresholds_exit_3_and_name_the_shortfall() {
    let f = fixture();
    let oracle = lcov_summary(f.dir.path(), &[&f.web, &f.client]);
    assert!(
        oracle.lines_hit < oracle.lines_found,
        "fixture leaves lines unrun"
    );
    let r = run(
        Command::new(covnet_bin())
            .arg("report")
            .arg(&f.web)
            .arg(&f.client)
            .args(["--fail-under-lines", "100", "--fail-under-functions", "1"]),
        SLOW,
    );
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    let missing = oracle.lines_found - oracle.lines_hit;
    assert!(
        r.stderr.contains(&format!(
            "({} of {}) is below the required 100%: {missing} more lines must be hit",
            oracle.lines_hit, oracle.lines_found
        )),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("function coverage"),
        "functions met: {}",
        r.stderr
    );
    let r = run(
        Command::new(covnet_bin()).arg("report").arg(&f.web).args([
            "--fail-under-lines",
            "1",
            "--fail-under-branches",
            "1",
        ]),
        SLOW,
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        Command::new(covnet_bin())
            .arg("report")
            .arg(dir.path().join("missing.info")),
        SLOW,
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(
        r.stderr.contains("failed to open") && r.stderr.contains("missing.info"),
        "{}",
        r.stderr
    );
    let bad = dir.path().join("bad.info");
    std::fs::write(&bad, "SF:/x.c\nDA:1,2\nDA:oops\nend_of_record\n").unwrap();
    let r = run(Command::new(covnet_bin()).arg("report").arg(&bad), SLOW);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        r.stderr.contains("bad.info:3"),
        "names file and line: {}",
        r.stderr
    );
    let r = run(
        Command::new(covnet_bin())
            .arg("report")
            .arg(&bad)
            .args(["--fail-under-lines", "120"]),
        SLOW,
    );
    assert_eq!(r.status.code(), Some(2), "clap usage error: {}", r.stderr);
}

#[test]
fn cobertura_with_odd_names_is_valid_against_the_dtd() {
    use covnet_merger::model::{Branch, FileCoverage, FunctionCoverage, LineCoverage};
    let mut cov = Coverage::default();
    let mut file = FileCoverage::default();
    file.lines.insert(
        3,
        LineCoverage {
            count: 2,
            branches: vec![
                Branch {
                    taken: Some(2),
                    ..Default::default()
                },
                Branch {
                    branch: 1,
                    taken: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    file.lines.insert(
        4,
        LineCoverage {
            count: -1,
            ..Default::default()
        },
    );
    file.functions.push(FunctionCoverage {
        name: "_ZN1a1bIiEEvv".into(),
        demangled: "void a::b<int>() const & \"x\" 'y' \u{1}".into(),
        start_line: 3,
        end_line: 4,
        count: 1,
        ..Default::default()
    });
    cov.files
        .insert("/p/dir <&>/we\"ird' \u{2}name.c".into(), file.clone());
    cov.files.insert("/p/ünï/ok.c".into(), file);
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("c.xml");
    let info = covnet_reporter::RunInfo::now("odd", vec!["a & b".into()]);
    covnet_reporter::cobertura::write_path(&cov, &info, &xml).unwrap();
    let dtd = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cobertura/coverage-04.dtd");
    run_ok(
        Command::new("xmllint")
            .args(["--noout", "--nonet", "--dtdvalid"])
            .arg(&dtd)
            .arg(&xml),
        SLOW,
    );
    let text = std::fs::read_to_string(&xml).unwrap();
    assert!(
        text.contains(r#"filename="dir &lt;&amp;&gt;/we&quot;ird&apos; �name.c""#),
        "{text}"
    );
    assert!(text.contains(r#"condition-coverage="50% (1/2)""#));
}
