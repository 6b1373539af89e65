//! The site's numbers, read back out of the written HTML, against the model.

use super::*;
use crate::sample;

fn info() -> RunInfo {
    RunInfo {
        title: "Sample <run>".into(),
        timestamp: 1_795_615_148,
        inputs: vec!["a.info".into(), "runs/b & c".into()],
        notes: vec!["machine `c <x>` crashed".into()],
        blind_spots: vec![],
    }
}

/// Text of the element whose opening tag contains `marker` (first match
/// after `from`), up to the next `<`.
fn text_after<'h>(html: &'h str, marker: &str) -> &'h str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in page"));
    let rest = &html[at..];
    let open_end = rest.find('>').unwrap() + 1;
    let body = &rest[open_end..];
    &body[..body.find('<').unwrap()]
}

/// The `<tr …>` … `</tr>` element whose opening tag contains `marker`.
fn row<'h>(html: &'h str, marker: &str) -> &'h str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in page"));
    let start = html[..at + marker.len()].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn index_totals_and_per_file_counts_match_the_model() {
    let cov = sample::coverage();
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(&cov, &info(), dir.path()).unwrap();
    assert_eq!(site.pages, 3);
    assert_eq!(site.missing_sources.len(), 3, "no sources on disk");
    let index = read(&dir.path().join("index.html"));
    let s = cov.summary();

    assert_eq!(
        text_after(&index, r#"id="lines-hit-total""#),
        format!("{}/{}", s.lines_hit, s.lines_found)
    );
    assert_eq!(text_after(&index, r#"id="lines-pct""#), "63.6%"); // 7 of 11
                                                                  // A partial run says so, escaped, on every page's header.
    assert!(
        index.contains(r#"<li class="note">machine `c &#60;x&#62;` crashed</li>"#)
            || index.contains(r#"<li class="note">machine `c &lt;x&gt;` crashed</li>"#),
        "run notes missing from the index"
    );
    assert_eq!((s.lines_hit, s.lines_found), (7, 11));
    assert_eq!(
        text_after(&index, r#"id="functions-hit-total""#),
        format!("{}/{}", s.functions_hit, s.functions_found)
    );
    assert_eq!(
        text_after(&index, r#"id="branches-hit-total""#),
        format!("{}/{}", s.branches_hit, s.branches_found)
    );
    // Header: escaped title, date, inputs.
    assert!(
        index.contains("<h1>Sample &#60;run&#62;</h1>")
            || index.contains("<h1>Sample &lt;run&gt;</h1>")
    );
    assert!(index.contains("2026-11-25 13:59:08 UTC"));
    assert!(index.contains("runs/b &#38; c") || index.contains("runs/b &amp; c"));

    // Per-file rows.
    let tree = Tree::new(&cov);
    assert_eq!(tree.root, "/proj");
    for f in &tree.files {
        let marker = format!(r#"data-path="{}""#, askama_escape(&f.rel));
        let r = row(&index, &marker);
        let s = &f.summary;
        assert_eq!(
            text_after(r, r#"class="num ln""#),
            format!("{}/{}", s.lines_hit, s.lines_found),
            "{}",
            f.rel
        );
        assert_eq!(
            text_after(r, r#"class="num fn""#),
            format!("{}/{}", s.functions_hit, s.functions_found)
        );
        assert_eq!(
            text_after(r, r#"class="num bn""#),
            format!("{}/{}", s.branches_hit, s.branches_found)
        );
    }
    // Directory rows carry totals of everything below.
    let src = row(&index, r#"data-dir="src" data-depth"#);
    assert!(src.contains(r#"data-f="ln">7/9<"#), "{src}");
    let root = row(&index, r#"data-dir="" data-depth"#);
    assert!(root.contains(">(all files)<"));
    assert!(root.contains(r#"data-f="ln">7/11<"#));

    // Per-machine totals: web hit server 2,3,4,6 + odd 10,12.
    let web = row(&index, r#"data-machine="web""#);
    assert_eq!(text_after(web, r#"class="num ml""#), "6/11");
    assert_eq!(text_after(web, r#"class="num mu""#), "3"); // server 3, 4; odd 10
    let db = row(&index, r#"data-machine="db""#);
    assert_eq!(text_after(db, r#"class="num ml""#), "2/11");
    assert_eq!(text_after(db, r#"class="num mu""#), "1");
    assert!(index.contains("gcov line counts are not additive"));
    assert!(index.contains(r#"<option value="2">db</option>"#));
}

fn askama_escape(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[test]
fn file_pages_annotate_lines_branches_functions_and_machines() {
    let cov = sample::coverage();
    let dir = tempfile::tempdir().unwrap();
    // Put one source on disk: the page must show its (escaped) text.
    let src_dir = tempfile::tempdir().unwrap();
    let src_path = src_dir.path().join("server.c");
    std::fs::write(
        &src_path,
        "#include <stdio.h>\nint main(void) {\n  a();\n  if (x && y)\n    b();\n  c(); // <tag> & \"q\"\n}\nstatic void unused(void) { d(); }\n\r\n",
    )
    .unwrap();
    let mut cov2 = cov.clone();
    let server = cov2.files.remove("/proj/src/server.c").unwrap();
    let src_key = src_path.to_str().unwrap().to_owned();
    cov2.files.insert(src_key.clone(), server);
    write_site(&cov2, &info(), dir.path()).unwrap();

    let tree = Tree::new(&cov2);
    let names = page_names(&tree.files);
    let i = tree.files.iter().position(|f| f.path == src_key).unwrap();
    let page = read(&dir.path().join("files").join(&names[i]));
    // Every source line is present, numbered, escaped.
    assert!(
        page.contains(r#"<td>#include &#60;stdio.h&#62;</td>"#),
        "{page}"
    );
    assert!(page.contains("c(); // &#60;tag&#62; &#38; &#34;q&#34;"));
    assert!(
        page.contains(r#"<tr id="L9">"#),
        "9 lines, the last one blank"
    );
    assert!(!page.contains(r#"id="L10""#));
    assert!(!page.contains("source-missing"));
    // Hit, partly hit, missed: classes *and* symbols.
    let l2 = row(&page, r#"id="L2""#);
    assert!(
        l2.contains(r#"class="h""#) && l2.contains("✓") && l2.contains(r#"<td class="c">3</td>"#)
    );
    assert!(l2.contains(r#"<td class="w">all</td>"#));
    let l4 = row(&page, r#"id="L4""#);
    assert!(l4.contains(r#"class="p u""#) && l4.contains("◐"), "{l4}");
    assert!(l4.contains(">✓2</span>") && l4.contains(">✗0</span>"));
    assert!(l4.contains("only web"));
    let l5 = row(&page, r#"id="L5""#);
    assert!(l5.contains(r#"class="m""#) && l5.contains("✗") && l5.contains(r#"data-c="0,0,0""#));
    let l6 = row(&page, r#"id="L6""#);
    assert!(l6.contains(r#"class="p""#) && l6.contains(r#"data-u="1""#));
    assert!(l6.contains(r#"<td class="w">web, client</td>"#));
    assert!(row(&page, r#"id="L8""#).contains("only db"));
    let l1 = row(&page, r#"id="L1""#);
    assert!(
        l1.starts_with(r#"<tr id="L1"><td>1</td><td></td><td></td>"#),
        "not instrumented"
    );
    // Function table links to the line anchor.
    assert!(page.contains(r##"<a href="#L8" title="unused">unused</a>"##));
    assert!(page.contains("web 1 · client 1 · db 1"));
    // File totals.
    assert_eq!(text_after(&page, r#"id="lines-hit-total""#), "5/6");
    assert_eq!(text_after(&page, r#"id="branches-hit-total""#), "1/2");

    // The page of a source that is not on disk still has its counts.
    let j = tree
        .files
        .iter()
        .position(|f| f.rel.contains("odd"))
        .unwrap();
    assert!(names[j].ends_with(".html") && !names[j].contains('"') && !names[j].contains('<'));
    let odd = read(&dir.path().join("files").join(&names[j]));
    assert!(odd.contains("source-missing"));
    assert!(odd.contains("net::get&#60;int&#62;&#38;() &#60;&#38;&#62;"));
    let l12 = row(&odd, r#"id="L12""#);
    assert!(l12.contains(">✓7</span>") && l12.contains(">–</span>") && l12.contains(">✓1</span>"));
    assert!(l12.contains(r#"data-c="3,4,-""#));
    assert_eq!(text_after(&odd, r#"id="lines-hit-total""#), "2/3");
}

#[test]
fn page_names_are_safe_and_unique() {
    let mut cov = Coverage::default();
    for p in [
        "/a/b/c.c",
        "/a/b_c.c",
        "/a/b/../c.c",
        "/a/x y.c",
        "/a/..hidden",
        "/a/ü.c",
    ] {
        cov.files.insert(p.into(), Default::default());
    }
    let long = format!("/a/{}.c", "d".repeat(400));
    cov.files.insert(long, Default::default());
    let tree = Tree::new(&cov);
    let names = page_names(&tree.files);
    let set: HashSet<&String> = names.iter().collect();
    assert_eq!(set.len(), names.len());
    for n in &names {
        assert!(n.len() < 200, "{n}");
        assert!(!n.starts_with('.'));
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    }
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(&cov, &info(), dir.path()).unwrap();
    assert_eq!(site.pages, names.len());
    for n in &names {
        assert!(dir.path().join("files").join(n).is_file());
    }
}

#[test]
fn single_capture_has_no_machine_view() {
    let mut cov = sample::coverage();
    cov.captures.truncate(1);
    let dir = tempfile::tempdir().unwrap();
    write_site(&cov, &info(), dir.path()).unwrap();
    let index = read(&dir.path().join("index.html"));
    assert!(!index.contains(r#"id="machine""#));
    assert!(!index.contains(r#"id="machines""#));
}

#[test]
fn excluded_lines_and_branches_are_shown_as_excluded() {
    let mut cov = sample::coverage();
    let dir = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src_path = src_dir.path().join("server.c");
    std::fs::write(
        &src_path,
        "#include <stdio.h>\nint main(void) {\n  a();\n  if (x && y) // LCOV_EXCL_BR_LINE\n    b(); // GCOVR_EXCL_LINE\n  c();\n}\nstatic void unused(void) { d(); }\n",
    )
    .unwrap();
    let server = cov.files.remove("/proj/src/server.c").unwrap();
    let src_key = src_path.to_str().unwrap().to_owned();
    cov.files.insert(src_key.clone(), server);
    // A source that is not on disk: its excluded lines are listed too.
    let odd_key = cov
        .files
        .keys()
        .find(|k| k.contains("odd"))
        .unwrap()
        .clone();
    cov.files
        .get_mut(&odd_key)
        .unwrap()
        .excluded_lines
        .insert(99);
    let rules = covnet_merger::exclude::Rules::new(true, None, None).unwrap();
    let report = covnet_merger::exclude::apply_markers(
        &mut cov,
        &rules,
        covnet_merger::exclude::read_source,
    );
    assert_eq!(report.dropped.lines, 1, "line 5 of server.c");
    write_site(&cov, &info(), dir.path()).unwrap();

    let tree = Tree::new(&cov);
    let names = page_names(&tree.files);
    let i = tree.files.iter().position(|f| f.path == src_key).unwrap();
    let page = read(&dir.path().join("files").join(&names[i]));
    let l5 = row(&page, r#"id="L5""#);
    assert!(
        l5.contains(r#"class="e""#) && l5.contains("⊘") && !l5.contains("data-c"),
        "{l5}"
    );
    assert!(l5.contains("b(); // GCOVR_EXCL_LINE"), "{l5}");
    let l4 = row(&page, r#"id="L4""#);
    assert!(l4.contains(r#"class="br e""#), "{l4}");
    assert!(
        !l4.contains("✗0") && !l4.contains("✓2"),
        "branches gone: {l4}"
    );
    assert!(!l4.contains(r#"class="e""#), "the line itself counts: {l4}");
    assert!(page.contains(r#"id="legend-excluded""#));
    // Excluded data is not counted: 5 of 5 lines, no branches.
    assert_eq!(text_after(&page, r#"id="lines-hit-total""#), "5/5");
    assert_eq!(text_after(&page, r#"id="branches-hit-total""#), "0/0");

    let j = tree.files.iter().position(|f| f.path == odd_key).unwrap();
    let odd = read(&dir.path().join("files").join(&names[j]));
    assert!(row(&odd, r#"id="L99""#).contains(r#"class="e""#));
    // Pages without exclusions have no legend entry for them.
    let k = tree
        .files
        .iter()
        .position(|f| f.path != odd_key && f.path != src_key)
        .unwrap();
    let other = read(&dir.path().join("files").join(&names[k]));
    assert!(!other.contains("legend-excluded"));
}

#[test]
fn blind_spots_are_a_section_of_their_own_beside_the_rates() {
    let cov = sample::coverage();
    let dir = tempfile::tempdir().unwrap();
    let plain = read(&{
        write_site(&cov, &info(), dir.path()).unwrap();
        dir.path().join("index.html")
    });
    assert!(
        !plain.contains("blind-spots"),
        "no section when none computed"
    );
    let mut with = info();
    with.blind_spots = crate::blindspots::tests::sample();
    let dir2 = tempfile::tempdir().unwrap();
    write_site(&cov, &with, dir2.path()).unwrap();
    let index = read(&dir2.path().join("index.html"));
    assert!(index.contains(r#"id="blind-spots""#));
    assert_eq!(
        text_after(&index, r#"<h3 class="blind-machine" data-machine="server""#),
        "server: not instrumented: 1 source file(s), 3 executable line(s), 1 function(s); 1 of 2 ELF file(s) without debug information"
    );
    let r = row(&index, "/src/lib/util.c");
    assert!(
        r.contains("/opt/lib/libutil.so") && r.contains(r#"<td class="num">3</td>"#),
        "{r}"
    );
    assert!(r.contains("util_twice"), "{r}");
    let r = row(&index, "/lib/libc.so.6");
    assert!(
        r.contains("nodebug") && r.contains("no debug information"),
        "{r}"
    );
    // The rates are those of the coverage alone.
    assert_eq!(text_after(&index, r#"id="lines-pct""#), "63.6%");
}
