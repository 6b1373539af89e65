//! The report formats CI services read, each checked by its consumer's own
//! reader or schema: gcovr 8 reads covnet's gcovr JSON (and covnet reads
//! gcovr's), xmllint validates the SonarQube XML against SonarQube's
//! documented schema, the Coveralls JSON is checked against the API's
//! documented structure (digests by `md5sum`), and the CSV against the
//! totals of covnet's JSON report. The coverage is real: the merge tests'
//! C program built with `gcc --coverage` and run at test time.
//!
//! gcovr is looked for at `/opt/covnet/gcovr/bin/gcovr` (where
//! `scripts/setup.sh` installs it), then as `gcovr` on PATH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use covnet_tests::lcov_tool::{covnet, parse_summary, run, Output, Program, COMMAND_DEADLINE};
use serde_json::Value;

/// Where `scripts/setup.sh` installs gcovr 8.
const GCOVR_VENV_BIN: &str = "/opt/covnet/gcovr/bin/gcovr";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// Found/hit of lines, functions and branches.
type Totals = [(u64, u64); 3];

/// gcovr 8, or a failure that says how to get it.
fn gcovr() -> PathBuf {
    let candidates = [PathBuf::from(GCOVR_VENV_BIN), PathBuf::from("gcovr")];
    for c in candidates {
        let Ok(out) = run(Command::new(&c).arg("--version"), COMMAND_DEADLINE) else {
            continue;
        };
        let first = out.stdout.lines().next().unwrap_or_default().to_owned();
        if out.status.success() && first.starts_with("gcovr 8.") {
            return c;
        }
    }
    panic!(
        "gcovr 8 not found at {GCOVR_VENV_BIN} nor on PATH (hint: run scripts/setup.sh, which installs it from PyPI)"
    );
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd, COMMAND_DEADLINE).expect("start the command");
    assert!(out.status.success(), "{out}");
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The totals of covnet's JSON report (`--json`).
fn report_totals(report: &Value) -> Totals {
    let t = &report["totals"];
    ["lines", "functions", "branches"].map(|k| (num(&t[k]["total"]), num(&t[k]["hit"])))
}

/// The totals of gcovr's `--json-summary`.
fn gcovr_summary_totals(summary: &Value) -> Totals {
    ["line", "function", "branch"].map(|k| {
        (
            num(&summary[format!("{k}_total")]),
            num(&summary[format!("{k}_covered")]),
        )
    })
}

/// The totals of gcovr's `--txt-summary` (`lines: 88.9% (8 out of 9)`).
fn gcovr_txt_totals(text: &str) -> Totals {
    ["lines", "functions", "branches"].map(|k| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("no `{k}:` line in gcovr's summary:\n{text}"));
        let inner = line
            .split_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected gcovr summary line {line:?}"));
        let (hit, total) = inner
            .split_once(" out of ")
            .unwrap_or_else(|| panic!("unexpected gcovr summary line {line:?}"));
        (total.parse().expect("total"), hit.parse().expect("hit"))
    })
}

/// The program with three runs in one capture, reported by covnet from the
/// capture directory into `out/` in every format (cwd: the program's
/// temporary directory, so Coveralls names are `src/…`).
struct Reported {
    p: Program,
    capture: PathBuf,
    out: PathBuf,
    totals: Totals,
    report: Value,
}

fn reported() -> Reported {
    let p = Program::build().expect("build the C fixture with gcc --coverage");
    let capture = p.capture("web", &["3", "7"]).expect("run the fixture");
    let out = p.dir.path().join("out");
    let f = |name: &str| out.join(name).to_string_lossy().into_owned();
    let (json, gcovr_json, sonar, coveralls, csv) = (
        f("report.json"),
        f("gcovr.json"),
        f("sonarqube.xml"),
        f("coveralls.json"),
        f("coverage.csv"),
    );
    let res = covnet(
        &[
            "report",
            s(&capture),
            "--build",
            s(&p.build),
            "--json",
            &json,
            "--gcovr-json",
            &gcovr_json,
            "--sonarqube",
            &sonar,
            "--coveralls",
            &coveralls,
            "--csv",
            &csv,
        ],
        p.dir.path(),
    )
    .expect("run covnet report");
    assert_eq!(res.code(), 0, "{res}");
    let report = read_json(&out.join("report.json"));
    let totals = report_totals(&report);
    // Real coverage: something hit, something missed in every kind.
    for (found, hit) in totals {
        assert!(found > hit && hit > 0, "{totals:?}");
    }
    Reported {
        p,
        capture,
        out,
        totals,
        report,
    }
}

#[test]
fn gcovr_8_reads_covnets_gcovr_json_and_covnet_reads_gcovrs() {
    let gcovr = gcovr();
    let r = reported();
    let root = r.p.dir.path();

    // gcovr reads covnet's file with --json-add-tracefile and prints
    // covnet's totals, in its summary JSON and on the terminal.
    let summary = root.join("gcovr-summary.json");
    let out = run_ok(
        Command::new(&gcovr)
            .arg("--json-add-tracefile")
            .arg(r.out.join("gcovr.json"))
            .args([
                "--root",
                s(root),
                "--txt-summary",
                "--json-summary",
                s(&summary),
            ])
            .current_dir(root),
    );
    assert_eq!(
        gcovr_summary_totals(&read_json(&summary)),
        r.totals,
        "{out}"
    );
    assert_eq!(gcovr_txt_totals(&out.stdout), r.totals, "{out}");
    // Per file too.
    let files = read_json(&summary)["files"].clone();
    let per_file: BTreeMap<String, u64> = files
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_owned(),
                num(&f["branch_total"]),
            )
        })
        .collect();
    let ours: BTreeMap<String, u64> = r.report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let path = Path::new(f["path"].as_str().unwrap());
            let rel = path.strip_prefix(root).expect("under the root");
            (
                rel.to_string_lossy().into_owned(),
                num(&f["totals"]["branches"]["total"]),
            )
        })
        .collect();
    assert_eq!(per_file, ours);

    // gcovr's own JSON over the same build (the capture's .gcda copied next
    // to the .gcno, where gcovr looks): covnet report and covnet merge read
    // it and get gcovr's totals.
    for (_, gcda) in r.p.gcda_files(&r.capture).expect("capture's .gcda") {
        let name = gcda.file_name().expect("file name");
        std::fs::copy(&gcda, r.p.build.join(name)).expect("copy .gcda");
    }
    let theirs = root.join("theirs.json");
    let theirs_summary = root.join("theirs-summary.json");
    let out = run_ok(
        Command::new(&gcovr)
            .args(["--root", s(root), "--json", s(&theirs)])
            .args(["--json-summary", s(&theirs_summary)])
            .arg(&r.p.build)
            .current_dir(root),
    );
    let gcovr_totals = gcovr_summary_totals(&read_json(&theirs_summary));
    assert!(gcovr_totals[2].0 > 0, "gcovr found no branches\n{out}");
    let back = root.join("back.json");
    let res = covnet(&["report", s(&theirs), "--json", s(&back)], root).expect("covnet report");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(report_totals(&read_json(&back)), gcovr_totals);
    let info = root.join("theirs.info");
    let res = covnet(&["merge", s(&theirs), "-o", s(&info)], root).expect("covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    let merged = parse_summary(&res.stderr).expect("covnet merge prints a summary");
    let as_peer = |t: Totals| ((t[0].1, t[0].0), (t[1].1, t[1].0), (t[2].1, t[2].0));
    assert_eq!(
        (merged.lines, merged.functions, merged.branches),
        as_peer(gcovr_totals)
    );
}

#[test]
fn sonarqube_xml_validates_against_the_generic_coverage_schema() {
    let r = reported();
    let xsd =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sonarqube/sonar-generic-coverage.xsd");
    let xml = r.out.join("sonarqube.xml");
    let out = run_ok(
        Command::new("xmllint")
            .args(["--noout", "--schema", s(&xsd), s(&xml)])
            .current_dir(r.p.dir.path()),
    );
    assert!(out.stderr.contains("validates"), "{out}");
    // The schema really checks: a wrong boolean fails it.
    let text = std::fs::read_to_string(&xml).expect("read the XML");
    let bad = r.p.dir.path().join("bad.xml");
    std::fs::write(
        &bad,
        text.replacen(r#"covered="true""#, r#"covered="yes""#, 1),
    )
    .unwrap();
    let out = run(
        Command::new("xmllint").args(["--noout", "--schema", s(&xsd), s(&bad)]),
        COMMAND_DEADLINE,
    )
    .expect("run xmllint");
    assert!(!out.status.success(), "{out}");

    // Lines and branches add up to covnet's totals.
    let attr = |tag: &str, name: &str| -> Vec<String> {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|v| vec![v.to_owned()])
            .unwrap_or_default()
    };
    let (mut lines, mut hit, mut branches, mut taken) = (0, 0, 0, 0);
    for tag in text.split("<lineToCover").skip(1) {
        lines += 1;
        hit += u64::from(attr(tag, "covered") == ["true"]);
        branches += attr(tag, "branchesToCover")
            .iter()
            .map(|v| v.parse::<u64>().unwrap())
            .sum::<u64>();
        taken += attr(tag, "coveredBranches")
            .iter()
            .map(|v| v.parse::<u64>().unwrap())
            .sum::<u64>();
    }
    assert_eq!(
        [(lines, hit), (branches, taken)],
        [r.totals[0], r.totals[2]]
    );
}

#[test]
fn coveralls_json_has_digests_and_a_count_per_source_line() {
    let r = reported();
    let root = r.p.dir.path();
    let doc = read_json(&r.out.join("coveralls.json"));
    let files = doc["source_files"].as_array().expect("source_files");
    assert_eq!(files.len(), r.report["files"].as_array().unwrap().len());
    let (mut lines, mut hit, mut branches, mut taken) = (0, 0, 0, 0);
    for f in files {
        let name = f["name"].as_str().expect("name");
        assert!(
            name.starts_with("src/"),
            "names are relative to the cwd: {name}"
        );
        let source = root.join(name);
        // The digest is the MD5 `md5sum` computes of the source.
        let md5 = run_ok(Command::new("md5sum").arg(&source));
        let want = md5.stdout.split_whitespace().next().unwrap_or_default();
        assert_eq!(f["source_digest"], want, "{name}");
        // One entry per source line, null where nothing is instrumented.
        let text = std::fs::read_to_string(&source).unwrap();
        let coverage = f["coverage"].as_array().expect("coverage");
        assert_eq!(coverage.len(), text.lines().count(), "{name}");
        for c in coverage.iter().filter(|c| !c.is_null()) {
            lines += 1;
            hit += u64::from(num(c) > 0);
        }
        // Branches: flat, [line, block, branch, hits] each.
        let b: Vec<u64> = f["branches"]
            .as_array()
            .map(|a| a.iter().map(num).collect())
            .unwrap_or_default();
        assert_eq!(b.len() % 4, 0, "{name}");
        for quad in b.chunks(4) {
            assert!(
                !coverage[quad[0] as usize - 1].is_null(),
                "{name}: branch on a line without coverage: {quad:?}"
            );
            branches += 1;
            taken += u64::from(quad[3] > 0);
        }
    }
    assert_eq!(
        [(lines, hit), (branches, taken)],
        [r.totals[0], r.totals[2]]
    );
    assert!(doc["run_at"].as_str().is_some_and(|d| d.ends_with(" UTC")));
}

#[test]
fn csv_rows_hold_each_files_totals() {
    let r = reported();
    let text = std::fs::read_to_string(r.out.join("coverage.csv")).expect("read the CSV");
    let mut rows = text.split_terminator("\r\n");
    let header: Vec<&str> = rows.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let mut sums = [(0u64, 0u64); 3];
    let mut per_file = BTreeMap::new();
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{row}");
        let get =
            |name: &str| -> u64 { cells[col(name)].parse().unwrap_or_else(|_| panic!("{row}")) };
        let t = [
            (get("line_total"), get("line_covered")),
            (get("function_total"), get("function_covered")),
            (get("branch_total"), get("branch_covered")),
        ];
        for (sum, (f, h)) in sums.iter_mut().zip(t) {
            sum.0 += f;
            sum.1 += h;
        }
        // line_percent is the covered share from 0 to 1, as gcovr writes it.
        let share: f64 = cells[col("line_percent")].parse().expect("line_percent");
        assert!(
            (share - t[0].1 as f64 / t[0].0 as f64).abs() < 1e-4,
            "{row}"
        );
        per_file.insert(cells[col("filename")].to_owned(), t);
    }
    assert_eq!(sums, r.totals);
    let ours: BTreeMap<String, Totals> = r.report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let t = &f["totals"];
            (
                f["relative"].as_str().unwrap().to_owned(),
                ["lines", "functions", "branches"]
                    .map(|k| (num(&t[k]["total"]), num(&t[k]["hit"]))),
            )
        })
        .collect();
    assert_eq!(per_file, ours);
}

/// `covnet run --coverage` writes the formats the spec's `[coverage]`
/// fields and the flags ask for: relative paths inside the output
/// directory, absolute ones as given, flags over the spec; each holds the
/// run's totals (namespace machines: the backend needs no guest kernel).
#[test]
fn covnet_run_writes_the_formats_of_its_spec_and_flags() {
    let ex = super::coverage_run::Example::build().expect("build the webserver example");
    let spec = ex.dir.join("formats.toml");
    let text = std::fs::read_to_string(ex.spec()).expect("read the spec");
    std::fs::write(
        &spec,
        format!(
            "{text}\n[coverage]\nsonarqube = true\ngcovr_json = \"more/gcovr.json\"\ncsv = \"spec.csv\"\ncoveralls = false\n"
        ),
    )
    .expect("write the spec");
    let abs_csv = ex.dir.join("flag.csv");
    let out = ex
        .run_with(
            &spec,
            "out",
            &[
                "--backend",
                "namespace",
                "--csv",
                s(&abs_csv),
                "--coveralls",
                "cov/coveralls.json",
            ],
        )
        .expect("covnet run");
    let totals = report_totals(&read_json(&out.join("coverage.json")));
    assert!(totals[0].1 > 0, "{totals:?}");
    assert!(
        !out.join("spec.csv").exists(),
        "--csv replaces the spec's csv"
    );
    for f in ["sonarqube.xml", "more/gcovr.json", "cov/coveralls.json"] {
        assert!(out.join(f).is_file(), "{f} missing from {}", out.display());
    }
    // The gcovr JSON reads back (by covnet) with the run's totals.
    let back = ex.dir.join("back.json");
    let gcovr_json = out.join("more/gcovr.json");
    let res =
        covnet(&["report", s(&gcovr_json), "--json", s(&back)], &ex.dir).expect("covnet report");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(report_totals(&read_json(&back)), totals);
    // The CSV at the absolute path holds them too.
    let csv = std::fs::read_to_string(&abs_csv).expect("the --csv file");
    let mut lines = (0, 0);
    for row in csv.split_terminator("\r\n").skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        lines.0 += cells[1].parse::<u64>().expect("line_total");
        lines.1 += cells[2].parse::<u64>().expect("line_covered");
    }
    assert_eq!(lines, totals[0]);
    // And the SonarQube XML passes its schema.
    let xsd =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sonarqube/sonar-generic-coverage.xsd");
    run_ok(
        Command::new("xmllint")
            .args(["--noout", "--schema", s(&xsd)])
            .arg(out.join("sonarqube.xml")),
    );
}
