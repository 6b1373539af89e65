//! Differential coverage (`covnet report --baseline … --diff-base …`)
//! end to end: a real git history made here, a gcc `--coverage` program
//! run on two machines before and after a change that adds covered and
//! uncovered code, deletes covered and uncovered code, turns code on and
//! off with the preprocessor and makes old lines lose coverage.
//!
//! The category counts are the ones lcov 2.x's genhtml prints for the same
//! inputs (`genhtml --baseline-file base.info --diff-file change.diff
//! cur.info --branch-coverage`, lcov 2.5 at commit 29fe92b, which prints
//! its version as 2.5.0-beta): they were checked against it and are
//! written here because genhtml 2.x is not packaged for this system.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::report::{covnet_bin, run, run_ok};

const SLOW: Duration = Duration::from_secs(120);

/// The baseline version of `calc.c`.
const V1: &str = r#"#include <stdio.h>
#include <stdlib.h>

#define TRACE(x) printf("trace %d\n", x)
#define OLD_FEATURE 1
#define NEW_FEATURE 0

int twice(int x) { return 2 * x; }

int low(int x) { return x - 2; }

int never(int x) { return -x; }

int helper(int x)
{
    if (x > 5)
        return x + 1;
    return x - 1;
}

int unused_old(int x)
{
    if (x > 3)
        return x - 1;
    return x;
}

void banner(int n)
{
    if (n >= 0)
        puts("banner");
}

#if OLD_FEATURE
int old_feature(int x)
{
    return x * 7;
}

int old_idle(int x)
{
    return x * 9;
}
#endif

#if NEW_FEATURE
int new_feature(int x)
{
    return x > 0 ? x * 5 : x;
}

int new_idle(int x)
{
    return x * 11;
}
#endif

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int r = n > 5 ? twice(n) : n;
    r += n < 5 ? low(n) : 0;
    r += helper(n);
    banner(n);
    TRACE(r);
    if (n > 100) {
        r = 0;
        TRACE(n);
    }
#if OLD_FEATURE
    r += old_feature(n);
#endif
#if NEW_FEATURE
    r += new_feature(n);
#endif
    printf("%d\n", r);
    return 0;
}
"#;

/// The changed version.
const V2: &str = r#"#include <stdio.h>
#include <stdlib.h>

#define TRACE(x)
#define OLD_FEATURE 0
#define NEW_FEATURE 1

int twice(int x) { return 2 * x; }

int low(int x) { return x - 2; }

int never(int x) { return -x; }

int helper(int x)
{
    if (x > 5)
        return x + 1;
    return x - 1;
}

int added(int x)
{
    return x + 3;
}

int added_idle(int x)
{
    return x + 4;
}

#if OLD_FEATURE
int old_feature(int x)
{
    return x * 7;
}

int old_idle(int x)
{
    return x * 9;
}
#endif

#if NEW_FEATURE
int new_feature(int x)
{
    return x > 0 ? x * 5 : x;
}

int new_idle(int x)
{
    return x * 11;
}
#endif

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int r = n > 5 ? twice(n) : n;
    r += n < 5 ? low(n) : 0;
    r += helper(n);
    r += added(n);
    if (n == 42) {
        r = -1;
    }
    TRACE(r);
    if (n > 100) {
        r = 0;
        TRACE(n);
    }
#if OLD_FEATURE
    r += old_feature(n);
#endif
#if NEW_FEATURE
    r += new_feature(n);
#endif
    printf("%d\n", r);
    return 0;
}
"#;

/// genhtml 2.x's `Overall coverage rate` category lines for the merged
/// machines (the percentages left out: genhtml rounds, covnet truncates).
const GENHTML_COUNTS: &str = r#"       UNC....: 3
       LBC....: 3
       UIC....: 2
       UBC....: 1
       GBC....: 2
       GIC....: 3
       GNC....: 4
       CBC....: 10
       EUB....: 2
       ECB....: 6
       DUB....: 4
       DCB....: 4
       UNC....: 1
       LBC....: 1
       UIC....: 1
       UBC....: 1
       GBC....: 1
       GIC....: 1
       GNC....: 2
       CBC....: 1
       EUB....: 1
       ECB....: 1
       DUB....: 1
       DCB....: 1
       UNC....: 1
       LBC....: 4
       UIC....: 1
       UBC....: 1
       GBC....: 3
       GIC....: 1
       GNC....: 1
       CBC....: 2
       DUB....: 3
       DCB....: 1
"#;

/// Category of each instrumented line of V2, by its text.
const CURRENT_LINES: [(&str, &str); 28] = [
    ("int twice(int x) { return 2 * x; }", "LBC"),
    ("int low(int x) { return x - 2; }", "GBC"),
    ("int never(int x) { return -x; }", "UBC"),
    ("int helper(int x)", "CBC"),
    ("    if (x > 5)", "CBC"),
    ("        return x + 1;", "LBC"),
    ("    return x - 1;", "GBC"),
    ("int added(int x)", "GNC"),
    ("    return x + 3;", "GNC"),
    ("int added_idle(int x)", "UNC"),
    ("    return x + 4;", "UNC"),
    ("int new_feature(int x)", "GIC"),
    ("    return x > 0 ? x * 5 : x;", "GIC"),
    ("int new_idle(int x)", "UIC"),
    ("    return x * 11;", "UIC"),
    ("int main(int argc, char **argv)", "CBC"),
    ("    int n = argc > 1 ? atoi(argv[1]) : 0;", "CBC"),
    ("    int r = n > 5 ? twice(n) : n;", "CBC"),
    ("    r += n < 5 ? low(n) : 0;", "CBC"),
    ("    r += helper(n);", "CBC"),
    ("    r += added(n);", "GNC"),
    ("    if (n == 42) {", "GNC"),
    ("        r = -1;", "UNC"),
    ("    if (n > 100) {", "CBC"),
    ("        r = 0;", "LBC"),
    ("    r += new_feature(n);", "GIC"),
    ("    printf(\"%d\\n\", r);", "CBC"),
    ("    return 0;", "CBC"),
];

/// Category of each baseline line that is no code now, by its V1 line
/// number (texts repeat: `}`).
const BASELINE_LINES: [(u32, &str, &str); 16] = [
    (21, "int unused_old(int x)", "DUB"),
    (23, "    if (x > 3)", "DUB"),
    (24, "        return x - 1;", "DUB"),
    (25, "    return x;", "DUB"),
    (28, "void banner(int n)", "DCB"),
    (30, "    if (n >= 0)", "DCB"),
    (31, "        puts(\"banner\");", "DCB"),
    (32, "}", "ECB"),
    (35, "int old_feature(int x)", "ECB"),
    (37, "    return x * 7;", "ECB"),
    (40, "int old_idle(int x)", "EUB"),
    (42, "    return x * 9;", "EUB"),
    (64, "    banner(n);", "DCB"),
    (65, "    TRACE(r);", "ECB"),
    (68, "        TRACE(n);", "ECB"),
    (71, "    r += old_feature(n);", "ECB"),
];

fn git(repo: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=covnet",
                "-c",
                "user.email=covnet@localhost",
            ])
            .args(args)
            .current_dir(repo),
        SLOW,
    );
}

/// Builds `calc.c` at the checked-out version and runs it on each machine
/// (`(name, argument)`) into `caps/<name>` as GCOV_PREFIX leaves it.
fn build_and_run(repo: &Path, caps: &Path, runs: &[(&str, &str)]) {
    build(repo);
    for (machine, arg) in runs {
        run_ok(
            Command::new(repo.join("app"))
                .arg(arg)
                .env("GCOV_PREFIX", caps.join(machine))
                .current_dir(repo),
            SLOW,
        );
    }
}

/// Builds `calc.c` at the checked-out version into `app` (fresh notes).
fn build(repo: &Path) {
    for f in std::fs::read_dir(repo).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "gcno") {
            std::fs::remove_file(p).unwrap();
        }
    }
    run_ok(
        Command::new("gcc")
            .args(["--coverage", "-O0", "-o", "app", "calc.c"])
            .current_dir(repo),
        SLOW,
    );
}

/// The category lines of the first block (the total) of covnet's
/// differential summary.
fn total_block(stdout: &str) -> String {
    let block = stdout
        .split("Differential coverage (lcov 2.x categories):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no differential summary in:\n{stdout}"));
    block
        .lines()
        .take_while(|l| !l.starts_with("  machine "))
        .filter(|l| l.contains("....: ") && !l.contains('%'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn counts<'v>(v: &'v Value, kind: &str) -> &'v Value {
    &v["counts"][kind]
}

#[test]
fn differential_report_categorises_like_genhtml_2() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("calc.c"), V1).unwrap();
    git(&repo, &["add", "calc.c"]);
    git(&repo, &["commit", "-qm", "baseline"]);
    // Baseline: web covers helper's `x > 5` side and twice(), client the
    // `n > 100` block.
    let base_caps = dir.path().join("base");
    build_and_run(&repo, &base_caps, &[("web", "10"), ("client", "200")]);
    let base_info = dir.path().join("base.info");
    run_ok(
        Command::new(covnet_bin())
            .arg("merge")
            .arg(base_caps.join("web"))
            .arg(base_caps.join("client"))
            .args(["--per-capture", "--lcov-format", "2", "-o"])
            .arg(&base_info)
            .current_dir(&repo),
        SLOW,
    );
    std::fs::write(repo.join("calc.c"), V2).unwrap();
    git(&repo, &["commit", "-qam", "change"]);
    // Current: neither machine reaches `x > 5` or `n > 100` any more.
    let cur_caps = dir.path().join("cur");
    build_and_run(&repo, &cur_caps, &[("web", "1"), ("client", "3")]);

    let out = dir.path().join("out");
    let cur_info = out.join("cur.info");
    let report = run_ok(
        Command::new(covnet_bin())
            .arg("report")
            .arg(cur_caps.join("web"))
            .arg(cur_caps.join("client"))
            .arg("--baseline")
            .arg(&base_info)
            .args(["--diff-base", "HEAD~1", "--lcov-format", "2"])
            .arg("--lcov")
            .arg(&cur_info)
            .arg("--json")
            .arg(out.join("r.json"))
            .arg("--markdown")
            .arg(out.join("r.md"))
            .arg("--html")
            .arg(out.join("site"))
            .current_dir(&repo),
        SLOW,
    );
    assert_eq!(
        total_block(&report.stdout),
        GENHTML_COUNTS,
        "{}",
        report.stdout
    );

    // Per line: every current line and every baseline line that is gone.
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("r.json")).unwrap()).unwrap();
    let diff = &json["differential"];
    let file = &diff["files"][0];
    assert_eq!(file["relative"], "calc.c");
    let v2: Vec<&str> = V2.lines().collect();
    let lines = file["lines"].as_object().unwrap();
    assert_eq!(lines.len(), CURRENT_LINES.len(), "{lines:?}");
    for (text, cat) in CURRENT_LINES {
        let n = v2.iter().position(|l| *l == text).unwrap() + 1;
        assert_eq!(lines[&n.to_string()], cat, "line {n} `{text}`");
    }
    let v1: Vec<&str> = V1.lines().collect();
    let gone = file["baseline_lines"].as_object().unwrap();
    assert_eq!(gone.len(), BASELINE_LINES.len(), "{gone:?}");
    for (n, text, cat) in BASELINE_LINES {
        assert_eq!(v1[n as usize - 1], text);
        assert_eq!(gone[&n.to_string()], cat, "baseline line {n} `{text}`");
    }
    let functions: Vec<(String, String)> = file["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["category"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, cat) in [
        ("twice", "LBC"),
        ("low", "GBC"),
        ("never", "UBC"),
        ("helper", "CBC"),
        ("added", "GNC"),
        ("added_idle", "UNC"),
        ("new_feature", "GIC"),
        ("new_idle", "UIC"),
        // Unchanged name and place, but code was added to its body.
        ("main", "GNC"),
        ("unused_old", "DUB"),
        ("banner", "DCB"),
        ("old_feature", "ECB"),
        ("old_idle", "EUB"),
    ] {
        assert!(
            functions.contains(&(name.to_owned(), cat.to_owned())),
            "{name} should be {cat}: {functions:?}"
        );
    }

    // Which machine lost the coverage: web lost twice() and `x + 1`,
    // client those two and the `n > 100` block.
    let machines = diff["captures"].as_array().unwrap();
    let machine = |name: &str| machines.iter().find(|m| m["name"] == name).unwrap();
    assert_eq!(counts(machine("web"), "lines")["LBC"], 2);
    assert_eq!(counts(machine("client"), "lines")["LBC"], 3);
    assert_eq!(counts(machine("web"), "lines")["CBC"], 10);
    assert_eq!(counts(machine("client"), "lines")["CBC"], 10);
    assert_eq!(diff["totals"]["lines"]["UNC"], 3);
    assert_eq!(file["counts"]["branches"]["LBC"], 4);

    // The same counts from genhtml's own invocation shape: current
    // tracefile, --baseline-file, --diff-file.
    let patch = dir.path().join("change.diff");
    let text = run_ok(
        Command::new("git")
            .args(["diff", "--no-prefix", "HEAD~1"])
            .current_dir(&repo),
        SLOW,
    )
    .stdout;
    std::fs::write(&patch, text).unwrap();
    let genhtml_style = run_ok(
        Command::new(covnet_bin())
            .arg("report")
            .arg("--baseline-file")
            .arg(&base_info)
            .arg("--diff-file")
            .arg(&patch)
            .arg(&cur_info)
            .current_dir(&repo),
        SLOW,
    );
    assert_eq!(total_block(&genhtml_style.stdout), GENHTML_COUNTS);

    // Gates: 4 of 7 new lines are covered (57.1%); 3 lines lost coverage.
    let gate = |extra: &[&str]| {
        run(
            Command::new(covnet_bin())
                .arg("report")
                .arg(&cur_info)
                .arg("--baseline")
                .arg(&base_info)
                .arg("--diff")
                .arg(&patch)
                .args(extra)
                .current_dir(&repo),
            SLOW,
        )
    };
    let ok = gate(&["--fail-under-new-lines", "57"]);
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr);
    let low = gate(&["--fail-under-new-lines", "60"]);
    assert_eq!(low.status.code(), Some(3), "{}", low.stderr);
    assert!(
        low.stderr.contains("4 of 7 new lines") && low.stderr.contains("60%"),
        "{}",
        low.stderr
    );
    let lost = gate(&["--fail-on-lost-coverage"]);
    assert_eq!(lost.status.code(), Some(3), "{}", lost.stderr);
    assert!(
        lost.stderr
            .contains("3 line(s) lost their baseline coverage"),
        "{}",
        lost.stderr
    );
    assert!(lost.stderr.contains("calc.c:8"), "{}", lost.stderr);

    // Markdown: the merge-request summary.
    let md = std::fs::read_to_string(out.join("r.md")).unwrap();
    assert!(md.contains("57.1% (4 of 7 new lines covered)"), "{md}");
    assert!(
        md.contains("`calc.c:17`") && md.contains("`calc.c:67`"),
        "{md}"
    );
    assert!(md.contains("| web | 57.1% (4 of 7) | 2 |"), "{md}");

    // HTML: categories on source lines, tables, the changed-code filter.
    let html = std::fs::read_to_string(out.join("site/diff.html")).unwrap();
    assert!(html.contains("only changed code"));
    assert!(html.contains("<tr class=\"chg tlaLBC\" data-tla=\"LBC\"><td>17</td><td>LBC</td><td>        return x + 1;</td></tr>"), "{html}");
    assert!(
        html.contains("<tr class=\"same tlaCBC\" data-tla=\"CBC\"><td>16</td>"),
        "{html}"
    );
    for k in [
        "UNC", "LBC", "UIC", "UBC", "GBC", "GIC", "GNC", "CBC", "EUB", "ECB", "DUB", "DCB",
    ] {
        assert!(
            html.contains(&format!("<td class=\"tla{k}\">{k}</td>")),
            "legend lacks {k}"
        );
    }
    assert!(html.contains("<tr><td>web</td>") && html.contains("<tr><td>client</td>"));
    assert_file_page(&out.join("site"), "web");
}

/// The file page of `calc.c` in `site` shows every current line's
/// category in its TLA column, hides unchanged code under "only changed
/// code", and has the file's category table per machine (`machine` among
/// them); the index and the differential page link to it.
fn assert_file_page(site: &Path, machine: &str) {
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        index.contains(r#"<a id="diff-link" href="diff.html">"#),
        "{index}"
    );
    let diff = std::fs::read_to_string(site.join("diff.html")).unwrap();
    let href = diff
        .split("<td><a href=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("diff.html links no file page: {diff}"));
    assert!(href.starts_with("files/"), "{href}");
    let page = std::fs::read_to_string(site.join(href)).unwrap();
    assert!(page.contains(r#"<th title="differential category (lcov 2.x)">TLA</th>"#));
    assert!(page.contains(r#"id="changed-only""#));
    assert!(
        page.contains("<tr><td>this file</td>"),
        "file category table"
    );
    assert!(page.contains(&format!("<tr><td>{machine}</td><td class=\"tlaUNC\">")));
    let v2: Vec<&str> = V2.lines().collect();
    for (text, cat) in CURRENT_LINES {
        let n = v2.iter().position(|l| *l == text).unwrap() + 1;
        let row = page
            .split(&format!("<tr id=\"L{n}\""))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for line {n}"));
        assert!(
            row.contains(&format!(">{cat}</td>")) && row.contains(&format!("tla{cat}")),
            "line {n} `{text}` should show {cat}: {row}"
        );
        let class = row
            .strip_prefix(" class=\"")
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        assert_eq!(
            class.split(' ').any(|c| c == "same"),
            cat == "CBC" || cat == "UBC",
            "line {n} ({cat}) under only changed code: {row}"
        );
    }
}

/// A namespace-machine spec in `repo` running `app` with `web_arg` on
/// `web` and `client_arg` on `client`, plus `extra` TOML.
fn spec(repo: &Path, file: &str, web_arg: &str, client_arg: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[machines.web]
programs = ["{app}"]

[machines.client]
programs = ["{app}"]

[test]
script = '''
start_all();
web.succeed("app {web_arg}");
client.succeed("app {client_arg}");
'''
{extra}"#,
        app = repo.join("app").display()
    );
    let path = repo.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn covnet_run(repo: &Path, spec: &Path, out: &str, extra: &[&str]) -> crate::report::Run {
    run(
        Command::new(covnet_bin())
            .args(["run", "--coverage", "--no-console"])
            .args(["--backend", "namespace", "--out", out])
            .arg(spec)
            .args(extra)
            .current_dir(repo),
        SLOW,
    )
}

/// `covnet run` takes the differential options from the spec's
/// `[coverage]` table and from the command line: the baseline is the
/// `coverage.json` of an earlier run of the same spec, the change a git
/// range, and the run's reports carry the categories, per machine.
#[test]
fn covnet_run_reports_and_gates_differential_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("calc.c"), V1).unwrap();
    git(&repo, &["add", "calc.c"]);
    git(&repo, &["commit", "-qm", "baseline"]);
    build(&repo);
    let plain = spec(&repo, "base.toml", "10", "200", "");
    let o = covnet_run(&repo, &plain, "base", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);

    std::fs::write(repo.join("calc.c"), V2).unwrap();
    git(&repo, &["commit", "-qam", "change"]);
    build(&repo);
    // The spec carries the comparison and the gates: coverage was lost.
    let gated = spec(
        &repo,
        "gated.toml",
        "1",
        "3",
        "[coverage]\nbaseline = \"base/coverage.json\"\ndiff_base = \"HEAD~1\"\nfail_on_lost_coverage = true\n",
    );
    let o = covnet_run(&repo, &gated, "gated", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", o.stderr);
    for needle in [
        "3 line(s) lost their baseline coverage",
        "Differential coverage (lcov 2.x categories):",
    ] {
        assert!(o.stderr.contains(needle), "{needle}: {}", o.stderr);
    }
    let read = |p: &str| -> Value {
        serde_json::from_slice(&std::fs::read(repo.join(p)).unwrap()).unwrap()
    };
    let json = read("gated/coverage.json");
    let diff = &json["differential"];
    for (k, n) in [
        ("UNC", 3),
        ("LBC", 3),
        ("UIC", 2),
        ("GNC", 4),
        ("CBC", 10),
        ("DCB", 4),
    ] {
        assert_eq!(diff["totals"]["lines"][k], n, "{k}: {}", diff["totals"]);
    }
    let machines = diff["captures"].as_array().unwrap();
    let machine = |name: &str| machines.iter().find(|m| m["name"] == name).unwrap();
    assert_eq!(counts(machine("web"), "lines")["LBC"], 2);
    assert_eq!(counts(machine("client"), "lines")["LBC"], 3);
    assert_file_page(&repo.join("gated/report"), "client");

    // The command line over a spec without differential settings.
    let current = spec(&repo, "current.toml", "1", "3", "");
    let compare = ["--baseline", "base/coverage.json", "--diff-base", "HEAD~1"];
    let gate = |pct: &str, out: &str| {
        let mut args = compare.to_vec();
        args.extend(["--fail-under-new-lines", pct]);
        covnet_run(&repo, &current, out, &args)
    };
    let o = gate("57", "flags");
    assert_eq!(o.status.code(), Some(0), "{}", o.stderr);
    assert_eq!(
        read("flags/coverage.json")["differential"]["totals"]["lines"]["GNC"],
        4
    );
    let o = gate("60", "flags-low");
    assert_eq!(o.status.code(), Some(3), "{}", o.stderr);
    assert!(o.stderr.contains("4 of 7 new lines"), "{}", o.stderr);

    // A gate without a change, or a missing baseline: refused before
    // anything boots, naming the setting.
    let o = covnet_run(&repo, &current, "refused", &["--fail-on-lost-coverage"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("need a change to judge"), "{}", o.stderr);
    let o = covnet_run(
        &repo,
        &current,
        "refused",
        &["--baseline", "nope.json", "--diff-base", "HEAD~1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("baseline nope.json does not exist"),
        "{}",
        o.stderr
    );
    assert!(!repo.join("refused/coverage.json").exists());
    let bad = spec(
        &repo,
        "bad.toml",
        "1",
        "3",
        "[coverage]\nfail_under_new_lines = 50\n",
    );
    let o = covnet_run(&repo, &bad, "refused", &[]);
    assert!(
        o.stderr.contains("[coverage] fail_under_new_lines"),
        "{}",
        o.stderr
    );
}
