use super::*;
use crate::model::{Branch, FunctionCoverage, LineCoverage};

fn markers() -> Rules {
    Rules::new(true, None, None).expect("no regex")
}

fn set(v: &[u32]) -> BTreeSet<u32> {
    v.iter().copied().collect()
}

/// Source text from lines (1-based in the assertions).
fn text(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[test]
fn lcov_line_and_section() {
    let src = text(&[
        "a",                       // 1
        "b // LCOV_EXCL_LINE",     // 2
        "c /* LCOV_EXCL_START */", // 3
        "d",                       // 4
        "e // LCOV_EXCL_STOP",     // 5: not excluded
        "f",                       // 6
    ]);
    let ex = scan(&src, &markers());
    assert_eq!(ex.lines, set(&[2, 3, 4]));
    assert!(ex.branch_lines.is_empty());
    assert!(ex.warnings.is_empty());
}

#[test]
fn lcov_sections_do_not_nest_and_run_to_eof() {
    let src = text(&[
        "LCOV_EXCL_STOP",                 // 1: stray, ignored
        "LCOV_EXCL_START",                // 2
        "LCOV_EXCL_START",                // 3: no effect
        "x",                              // 4
        "LCOV_EXCL_STOP",                 // 5: ends both
        "y",                              // 6
        "LCOV_EXCL_START LCOV_EXCL_STOP", // 7: STOP wins
        "z",                              // 8
        "LCOV_EXCL_START",                // 9: unterminated
        "w",                              // 10
    ]);
    let ex = scan(&src, &markers());
    assert_eq!(ex.lines, set(&[2, 3, 4, 9, 10]));
    assert_eq!(
        ex.warnings,
        vec![MarkerWarning::Unterminated {
            marker: "LCOV_EXCL_START".into(),
            line: 9
        }]
    );
    assert!(ex.warnings[0].to_string().contains("end of the file"));
}

#[test]
fn lcov_branch_markers_only_touch_branches() {
    let src = text(&[
        "if (a) // LCOV_EXCL_BR_LINE", // 1
        "LCOV_EXCL_BR_START",          // 2
        "if (b)",                      // 3
        "LCOV_EXCL_BR_STOP",           // 4
        "if (c) // LCOV_EXCL_LINE",    // 5
    ]);
    let ex = scan(&src, &markers());
    assert_eq!(ex.branch_lines, set(&[1, 2, 3]));
    assert_eq!(ex.lines, set(&[5]), "BR markers are not line markers");
}

#[test]
fn gcovr_markers_nest_and_ignore_unterminated() {
    let src = text(&[
        "a // GCOVR_EXCL_LINE",    // 1
        "GCOVR_EXCL_START",        // 2
        "GCOV_EXCL_START",         // 3: nested (gcovr's other prefix)
        "b",                       // 4
        "GCOVR_EXCL_STOP",         // 5: closes 3
        "c",                       // 6: still in 2
        "GCOVR_EXCL_STOP",         // 7: closes 2
        "d",                       // 8
        "GCOVR_EXCL_STOP",         // 9: stray
        "e // GCOVR_EXCL_BR_LINE", // 10
        "GCOVR_EXCL_START",        // 11: never closed
        "f // GCOVR_EXCL_LINE",    // 12: inside a section: ignored
    ]);
    let ex = scan(&src, &markers());
    assert_eq!(ex.lines, set(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(ex.branch_lines, set(&[10]));
    assert_eq!(
        ex.warnings,
        vec![
            MarkerWarning::StopWithoutStart {
                marker: "GCOVR_EXCL_STOP".into(),
                line: 9
            },
            MarkerWarning::Unterminated {
                marker: "GCOVR_EXCL_START".into(),
                line: 11
            },
        ]
    );
    assert!(ex.warnings[1].to_string().contains("ignored"));
}

#[test]
fn gcovr_markers_on_one_line_act_in_order() {
    let src = text(&[
        "GCOVR_EXCL_START GCOVR_EXCL_STOP", // 1: empty section
        "a",                                // 2
        "GCOVR_EXCL_BR_START",              // 3
        "b // GCOVR_EXCL_STOP",             // 4: line family, stray
        "GCOVR_EXCL_BR_STOP",               // 5
    ]);
    let ex = scan(&src, &markers());
    assert!(ex.lines.is_empty(), "{:?}", ex.lines);
    assert_eq!(ex.branch_lines, set(&[3, 4]));
    assert_eq!(ex.warnings.len(), 1, "{:?}", ex.warnings);
}

#[test]
fn regexes_add_to_markers_and_work_without_them() {
    let src = text(&["a SKIP", "b NOBR", "c // LCOV_EXCL_LINE"]);
    let rules = Rules::new(true, Some("SK.P"), Some("NOBR$")).expect("valid");
    let ex = scan(&src, &rules);
    assert_eq!(ex.lines, set(&[1, 3]));
    assert_eq!(ex.branch_lines, set(&[2]));
    let no_markers = Rules::new(false, Some("SKIP"), None).expect("valid");
    let ex = scan(&src, &no_markers);
    assert_eq!(ex.lines, set(&[1]), "--no-markers keeps only the regex");
    assert!(scan(&src, &Rules::default()).is_empty());
    let err = Rules::new(true, Some("a("), None).expect_err("bad regex");
    assert!(err.to_string().contains("a("), "{err}");
}

#[test]
fn line_numbers_without_final_newline_and_with_crlf() {
    let ex = scan("a\r\nb LCOV_EXCL_LINE\r\nc LCOV_EXCL_LINE", &markers());
    assert_eq!(ex.lines, set(&[2, 3]));
    assert!(scan("", &markers()).is_empty());
}

fn line(count: i64, branches: usize) -> LineCoverage {
    LineCoverage {
        count,
        branches: (0..branches)
            .map(|i| Branch {
                block: 0,
                branch: i as u32,
                taken: Some(1),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn function(name: &str, start_line: u32) -> FunctionCoverage {
    FunctionCoverage {
        name: name.into(),
        demangled: name.into(),
        start_line,
        count: 1,
        ..Default::default()
    }
}

fn sample() -> FileCoverage {
    let mut f = FileCoverage::default();
    for (no, count, br) in [(1, 1, 0), (2, 0, 2), (3, 5, 2), (4, 1, 0), (6, 2, 2)] {
        f.lines.insert(no, line(count, br));
    }
    f.functions = vec![
        function("kept", 1),
        function("gone", 2),
        function("body_gone", 5),
    ];
    f
}

#[test]
fn apply_drops_like_geninfo() {
    let mut f = sample();
    let ex = Exclusions {
        // 5 is not instrumented but starts a function.
        lines: set(&[2, 5, 7]),
        branch_lines: set(&[3, 4]),
        warnings: Vec::new(),
    };
    let dropped = apply(&mut f, &ex);
    assert_eq!(
        dropped,
        Dropped {
            lines: 1,
            branches: 4,
            functions: 2
        }
    );
    assert_eq!(
        f.lines.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 4, 6]
    );
    assert_eq!(f.lines[&3].count, 5, "branch exclusion keeps the count");
    assert!(f.lines[&3].branches.is_empty());
    assert_eq!(f.lines[&6].branches.len(), 2);
    let names: Vec<&str> = f.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["kept"]);
    assert_eq!(f.excluded_lines, set(&[2]), "only instrumented lines");
    assert_eq!(
        f.excluded_branch_lines,
        set(&[3]),
        "only lines with branches"
    );
    let s = f.summary();
    assert_eq!(
        (s.lines_found, s.branches_found, s.functions_found),
        (4, 2, 1)
    );
    // Idempotent.
    let again = apply(&mut f, &ex);
    assert_eq!(again, Dropped::default());
}

#[test]
fn apply_markers_reads_each_source() {
    let mut cov = Coverage::default();
    cov.files.insert("/src/a.c".into(), sample());
    cov.files.insert("/src/missing.c".into(), sample());
    let read = |p: &str| -> io::Result<String> {
        match p {
            "/src/a.c" => Ok(text(&[
                "",
                "x // LCOV_EXCL_LINE",
                "",
                "",
                "",
                "",
                "LCOV_EXCL_START",
            ])),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    };
    let report = apply_markers(&mut cov, &markers(), read);
    assert_eq!(report.dropped.lines, 1);
    assert_eq!(report.dropped.functions, 1);
    let msgs: Vec<String> = report.events.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("/src/a.c: line 7: LCOV_EXCL_START")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("/src/missing.c: cannot read")),
        "{msgs:?}"
    );
    assert_eq!(
        cov.files["/src/missing.c"],
        sample(),
        "unreadable: untouched"
    );
    let off = apply_markers(&mut cov, &Rules::default(), |_| {
        panic!("rules off: no reads")
    });
    assert!(off.events.is_empty());
}

#[test]
fn json_keeps_excluded_lines_and_lcov_ignores_them() {
    let mut cov = Coverage::default();
    let mut f = sample();
    apply(
        &mut f,
        &Exclusions {
            lines: set(&[2]),
            branch_lines: set(&[3]),
            warnings: Vec::new(),
        },
    );
    cov.files.insert("/src/a.c".into(), f);
    let mut out = Vec::new();
    crate::json::write(&cov, &mut out).expect("write json");
    let back = crate::json::read(out.as_slice()).expect("read json");
    assert_eq!(back, cov);
    let mut info = Vec::new();
    crate::lcov::write(&cov, &mut info, Default::default()).expect("write lcov");
    let info = String::from_utf8(info).expect("utf8");
    assert!(!info.contains("DA:2,"), "{info}");
    assert!(!info.contains("BRDA:3,"), "{info}");
    assert!(info.contains("DA:3,5"), "{info}");
}
