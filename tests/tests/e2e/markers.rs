//! Exclusion markers against lcov 1.x (checked by `lcov_tool::peer`): a C program with every marker kind
//! (`LCOV_EXCL_LINE`, `LCOV_EXCL_START`/`STOP`, `LCOV_EXCL_BR_LINE`,
//! `LCOV_EXCL_BR_START`/`STOP`, lcov's quirks: a stray STOP, a nested
//! START, START and STOP on one line, sections left open to the end of the
//! file) and user regexes, compiled with `gcc --coverage` and run.
//! `covnet merge` of the capture must equal `lcov --capture` of it (with
//! `--rc lcov_excl_line=…` / `lcov_excl_br_line=…` for the regexes) in
//! every `DA`, `FN`/`FNDA` and, per line, `BRDA` taken values (lcov 1.x
//! numbers branches differently, see `lcov_peer.rs`). The same source with
//! `GCOVR_EXCL_*` markers must give the same result, `--no-markers` must
//! equal `lcov --no-markers`, and the HTML report must mark the excluded
//! lines.

use std::path::Path;

use covnet_tests::lcov_tool::{covnet, diff_maps, lcov_summary, Program, Tracefile};

/// Well-formed markers of every kind: the GCOVR spelling means the same.
const MARKERS_C: &str = r#"#include <stdio.h>
#include <stdlib.h>

int quirks(int x);
int tail(int x);
int after(int x);

static int never_called(int x) /* LCOV_EXCL_LINE */
{
    return x * 7;
}

int classify(int x)
{
    if (x < 0)
        return -1; /* LCOV_EXCL_LINE */
    if (x > 100 || x == 55) { /* LCOV_EXCL_BR_LINE */
        return 100;
    }
    /* LCOV_EXCL_START */
    if (x == 42) {
        fprintf(stderr, "impossible\n");
        abort();
    }
    /* LCOV_EXCL_STOP */
    return x % 3;
}

int branchy(int a, int b)
{
    int r = 0;
    /* LCOV_EXCL_BR_START */
    if (a && b)
        r += 1;
    if (a || b)
        r += 2;
    /* LCOV_EXCL_BR_STOP */
    if (a > b) /* SKIP_BRANCHES */
        r += 4;
    if (r > 5) /* SKIP_LINE */
        r = 5;
    return r;
}

/* LCOV_EXCL_START */
static int dead(int x)
{
    return x ? never_called(x) : 0;
}
/* LCOV_EXCL_STOP */

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3;
    int t = 0;
    for (int i = 0; i < n; i++)
        t += classify(i) + branchy(i & 1, i & 2) + quirks(i) + tail(i) + after(i);
    if (argc > 5)
        t += dead(t);
    printf("%d\n", t);
    return 0;
}
"#;

/// lcov's own rules where gcovr's differ (no nesting, open sections run to
/// the end of the file); only ever written with LCOV markers.
const QUIRKS_C: &str = r#"int quirks(int x)
{
    int r = 0;
    /* LCOV_EXCL_STOP without a START: ignored */
    if (x > 1)
        r += 1;
    /* LCOV_EXCL_START */
    if (x > 2)
        r += 2;
    /* LCOV_EXCL_START again: no effect */
    if (x > 3)
        r += 3;
    /* LCOV_EXCL_STOP ends the section */
    if (x > 4)
        r += 4;
    /* LCOV_EXCL_START LCOV_EXCL_STOP on one line: the STOP wins */
    if (x > 5)
        r += 5;
    return r;
}

int tail(int x)
{
    /* LCOV_EXCL_BR_START never closed: branches to the end of the file */
    if (x & 1)
        return 1;
    return x > 7 ? 2 : 3;
}

/* LCOV_EXCL_START never closed: lines to the end of the file */
int after(int x)
{
    return x + 1;
}
"#;

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// 1-based numbers of the lines of `text` containing `needle`.
fn lines_with(text: &str, needle: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| u32::try_from(i + 1).expect("small file"))
        .collect()
}

/// Asserts that two tracefiles hold the same lines, functions and branch
/// values (per line, as multisets) and the same lcov summary.
fn assert_same(ours: &Path, theirs: &Path, what: &str) -> Tracefile {
    assert_eq!(
        lcov_summary(ours).expect("lcov reads covnet's output"),
        lcov_summary(theirs).expect("lcov reads its own output"),
        "{what}: summaries"
    );
    let (a, b) = (
        Tracefile::read(ours).expect("read covnet's tracefile"),
        Tracefile::read(theirs).expect("read lcov's tracefile"),
    );
    assert!(!b.lines.is_empty(), "{what}: lcov found no lines");
    let d = diff_maps("covnet", &a.lines, "lcov", &b.lines);
    assert!(d.is_empty(), "{what}: DA differ:\n{d}");
    let d = diff_maps("covnet", &a.functions, "lcov", &b.functions);
    assert!(d.is_empty(), "{what}: FN/FNDA differ:\n{d}");
    let d = diff_maps(
        "covnet",
        &a.branch_multisets(),
        "lcov",
        &b.branch_multisets(),
    );
    assert!(d.is_empty(), "{what}: BRDA differ:\n{d}");
    eprintln!(
        "{what}: {} lines, {} branch lines, {} functions equal to lcov --capture",
        b.lines.len(),
        b.branches.len(),
        b.functions.len()
    );
    b
}

const REGEX_ARGS: [&str; 4] = [
    "--exclude-line-regex",
    "SKIP_LINE",
    "--exclude-branch-regex",
    "SKIP_BRAN?CHES",
];
const LCOV_REGEX_ARGS: [&str; 4] = [
    "--rc",
    "lcov_excl_line=LCOV_EXCL_LINE|SKIP_LINE",
    "--rc",
    "lcov_excl_br_line=LCOV_EXCL_BR_LINE|SKIP_BRAN?CHES",
];

#[test]
fn markers_and_regexes_equal_lcov_capture() {
    let p = Program::build_sources(&[("markers.c", MARKERS_C), ("quirks.c", QUIRKS_C)])
        .expect("build the marker fixture with gcc --coverage");
    let cap = p.capture("run", &["9", "4"]).expect("run the fixture");
    let work = p.dir.path();
    let markers_c = p.src.join("markers.c");
    let quirks_c = p.src.join("quirks.c");

    // 1. Markers and regexes, as lcov applies them.
    let peer = p
        .lcov_capture_with(&cap, "markers", &LCOV_REGEX_ARGS)
        .expect("lcov --capture");
    let ours = work.join("covnet-markers.info");
    let mut args = vec!["merge", "--build", s(&p.build), s(&cap), "-o", s(&ours)];
    args.extend(REGEX_ARGS);
    let res = covnet(&args, work).expect("run covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    let lcov_excl = assert_same(&ours, &peer, "LCOV markers");
    // The open sections of quirks.c are reported, as lcov does.
    assert!(
        res.stderr.contains("LCOV_EXCL_START has no matching STOP")
            && res
                .stderr
                .contains("LCOV_EXCL_BR_START has no matching STOP"),
        "{res}"
    );

    // 2. Without markers, as `lcov --no-markers`: the markers mattered.
    let peer_all = p
        .lcov_capture_with(&cap, "no-markers", &["--no-markers"])
        .expect("lcov --capture --no-markers");
    let ours_all = work.join("covnet-no-markers.info");
    let res = covnet(
        &[
            "merge",
            "--no-markers",
            "--build",
            s(&p.build),
            s(&cap),
            "-o",
            s(&ours_all),
        ],
        work,
    )
    .expect("run covnet merge --no-markers");
    assert_eq!(res.code(), 0, "{res}");
    let all = assert_same(&ours_all, &peer_all, "no markers");
    let key = |f: &Path, l: u32| (s(f).to_owned(), l);
    for (file, text) in [(&markers_c, MARKERS_C), (&quirks_c, QUIRKS_C)] {
        for marker in ["LCOV_EXCL_LINE", "SKIP_LINE"] {
            for l in lines_with(text, marker) {
                assert!(
                    all.lines.contains_key(&key(file, l)),
                    "{}:{l} ({marker}) is instrumented",
                    file.display()
                );
                assert!(
                    !lcov_excl.lines.contains_key(&key(file, l)),
                    "{}:{l} ({marker}) is excluded",
                    file.display()
                );
            }
        }
        for marker in ["LCOV_EXCL_BR_LINE", "SKIP_BRANCHES"] {
            for l in lines_with(text, marker) {
                assert!(
                    all.branches.contains_key(&key(file, l)),
                    "{l}: has branches"
                );
                assert!(
                    lcov_excl.lines.contains_key(&key(file, l)),
                    "{l}: line kept"
                );
                assert!(!lcov_excl.branches.contains_key(&key(file, l)), "{l}");
            }
        }
    }
    let dropped = all.lines.len() - lcov_excl.lines.len();
    assert!(dropped >= 10, "only {dropped} lines excluded");
    assert!(
        all.functions.len() > lcov_excl.functions.len(),
        "functions starting on an excluded line are dropped"
    );

    // 3. The same markers spelled GCOVR_EXCL_* (markers.c only: quirks.c
    //    relies on lcov's rules) give the same result.
    std::fs::write(&markers_c, MARKERS_C.replace("LCOV_EXCL_", "GCOVR_EXCL_"))
        .expect("rewrite markers.c");
    let ours_gcovr = work.join("covnet-gcovr.info");
    let mut args = vec![
        "merge",
        "--build",
        s(&p.build),
        s(&cap),
        "-o",
        s(&ours_gcovr),
    ];
    args.extend(REGEX_ARGS);
    let res = covnet(&args, work).expect("run covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    assert_same(&ours_gcovr, &peer, "GCOVR markers");

    // 4. The HTML report shows the excluded lines as such.
    let html = work.join("html");
    let mut args = vec![
        "report",
        "--build",
        s(&p.build),
        s(&cap),
        "--html",
        s(&html),
    ];
    args.extend(REGEX_ARGS);
    let res = covnet(&args, work).expect("run covnet report");
    assert_eq!(res.code(), 0, "{res}");
    let page = std::fs::read_dir(html.join("files"))
        .expect("files/")
        .map(|e| e.expect("entry").path())
        .find(|p| s(p).contains("markers.c"))
        .expect("a page for markers.c");
    let page = std::fs::read_to_string(&page).expect("read page");
    let gcovr_text = MARKERS_C.replace("LCOV_EXCL_", "GCOVR_EXCL_");
    for l in lines_with(&gcovr_text, "GCOVR_EXCL_LINE") {
        let tag = format!(r#"<tr id="L{l}" class="e">"#);
        assert!(page.contains(&tag), "line {l} shown as excluded");
    }
    for l in lines_with(&gcovr_text, "GCOVR_EXCL_BR_LINE") {
        let at = page.find(&format!(r#"<tr id="L{l}""#)).expect("row");
        let row = &page[at..at + page[at..].find("</tr>").expect("row end")];
        assert!(row.contains(r#"class="br e""#), "line {l}: {row}");
    }
    assert!(page.contains(r#"id="legend-excluded""#));

    // 5. A bad regex is a usage error naming it, before any work.
    let res = covnet(
        &[
            "merge",
            "--exclude-branch-regex",
            "SKIP(",
            "--build",
            s(&p.build),
            s(&cap),
            "-o",
            s(&work.join("never.info")),
        ],
        work,
    )
    .expect("run covnet merge");
    assert_ne!(res.code(), 0, "{res}");
    assert!(res.stderr.contains("SKIP("), "{res}");
    assert!(!work.join("never.info").exists());
}
