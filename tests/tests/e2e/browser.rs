//! The HTML report in a real headless Chromium: the JS initialises
//! without errors, the DOM shows the totals and the per-machine breakdown,
//! the machine filter shows a file as one machine saw it, and a screenshot
//! is kept for a person to judge the design.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::report::{covnet_bin, fixture, model, row, run, run_ok, text_after};

const CHROMIUM: &str = "/usr/bin/chromium";
const LIMIT: Duration = Duration::from_secs(120);

/// Chromium headless with a fresh profile and nothing that reaches out to
/// the network.
fn chromium(profile: &Path) -> Command {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing (hint: bash scripts/setup.sh installs chromium)"
    );
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// The DOM after load (scripts ran), failing on any JavaScript error the
/// page logged.
fn dump_dom(profile: &Path, url: &str) -> String {
    let r = run(chromium(profile).arg("--dump-dom").arg(url), LIMIT);
    assert!(
        r.status.success(),
        "chromium failed on {url}: {}\n{}",
        r.status,
        r.stderr
    );
    for line in r.stderr.lines() {
        assert!(
            !(line.contains("Uncaught") || line.contains(":CONSOLE") && line.contains("Error")),
            "JavaScript error on {url}: {line}"
        );
    }
    assert!(
        r.stdout.contains(r#"data-covnet-js="ok""#),
        "the page's script did not mark itself initialised on {url}:\n{}",
        &r.stdout[..r.stdout.len().min(2000)]
    );
    r.stdout
}

fn url(path: &Path, query: &str) -> String {
    format!("file://{}{query}", path.display())
}

fn screenshot(profile: &Path, page: &str, png: &Path) {
    run_ok(
        chromium(profile)
            .arg(format!("--screenshot={}", png.display()))
            .arg(page),
        LIMIT,
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        png.display()
    );
    assert!(bytes.len() > 20_000, "a rendered page, not a blank one");
}

#[test]
fn report_works_in_headless_chromium() {
    let f = fixture();
    let out = f.dir.path().join("report");
    run_ok(
        Command::new(covnet_bin())
            .arg("report")
            .arg(&f.web)
            .arg(&f.client)
            .arg("--html")
            .arg(&out)
            .args(["--title", "Browser check"]),
        LIMIT,
    );
    let cov = model(&f);
    let total = cov.summary();
    let profile = tempfile::tempdir().unwrap();

    // Index as a browser sees it: totals and per-machine rows.
    let index = out.join("index.html");
    let dom = dump_dom(profile.path(), &url(&index, ""));
    assert_eq!(
        text_after(&dom, r#"id="lines-hit-total""#),
        format!("{}/{}", total.lines_hit, total.lines_found)
    );
    assert_eq!(
        text_after(&dom, r#"id="branches-hit-total""#),
        format!("{}/{}", total.branches_hit, total.branches_found)
    );
    let tree = covnet_reporter::tree::Tree::new(&cov);
    for (i, name) in cov.captures.iter().enumerate() {
        let s = tree.totals.per_capture[i];
        let m = row(&dom, &format!(r#"data-machine="{name}""#));
        assert_eq!(
            text_after(m, r#"class="num ml""#),
            format!("{}/{}", s.lines_hit, s.lines_found)
        );
    }

    // The machine filter (?m=1: client) rewrites the totals in the DOM.
    let dom = dump_dom(profile.path(), &url(&index, "?m=1"));
    let client = tree.totals.per_capture[1];
    assert!(dom.contains(r#"data-machine="1""#), "filter applied");
    assert_eq!(
        text_after(&dom, r#"id="lines-hit-total""#),
        format!("{}/{}", client.lines_hit, client.lines_found)
    );
    assert!(dom.contains("?m=1"), "links keep the machine");

    // A file page as the web machine saw it: counts are web's own.
    let (path, file) = cov
        .files
        .iter()
        .find(|(p, _)| p.ends_with("/main.c"))
        .expect("main.c in the model");
    let names = covnet_reporter::html::page_names(&tree.files);
    let i = tree.files.iter().position(|e| e.path == path).unwrap();
    let page: PathBuf = out.join("files").join(&names[i]);
    let dom = dump_dom(profile.path(), &url(&page, "?m=0"));
    for (no, l) in &file.lines {
        let tr = row(&dom, &format!(r#"<tr id="L{no}" class"#));
        assert_eq!(
            text_after(tr, r#"<td class="c""#),
            l.by_capture[0].to_string(),
            "line {no} as web saw it"
        );
        let mark = if l.by_capture[0] > 0 { "✓" } else { "✗" };
        let shown = text_after(tr, r#"<td class="k""#);
        assert!(
            shown == mark || (mark == "✓" && shown == "◐"),
            "line {no}: {shown}"
        );
    }
    assert!(row(&dom, r#"<tr id="L6" class"#).contains("only client"));

    // Screenshots for a person (kept under the target dir).
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    screenshot(profile.path(), &url(&index, ""), &shots.join("index.png"));
    screenshot(profile.path(), &url(&page, ""), &shots.join("file.png"));
    eprintln!("screenshots in {}", shots.display());
}
