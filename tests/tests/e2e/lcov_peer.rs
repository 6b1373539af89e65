//! covnet against lcov 1.x (the setup installs Debian's package; `lcov_tool::peer` checks the major): tracefile merges must equal `lcov -a`, and
//! covnet's own reading of captures must equal `lcov --capture` (geninfo,
//! which runs GCC's gcov).
//!
//! What the comparison shows (the system GCC, lcov 1.x, Debian 12):
//!
//! * Lines (`DA`), functions (`FN`/`FNDA`) and the branch found/hit totals
//!   agree exactly for every single capture. On the zstd bench corpus
//!   (`bench/merge`, 50 captures, 2050 `.gcda`) covnet's capture merge also
//!   equals lcov on the `gcov-tool merge` oracle for all 24620 lines and
//!   1872 functions.
//! * Branch *numbering* differs: lcov 1.x puts every branch of a line into
//!   block 0 with running branch numbers, while covnet numbers one block per
//!   branching basic block (gcov's line entries, as lcov 2.x does). The
//!   tests therefore compare the taken values of each line as a multiset.
//! * `-` versus `0`: geninfo 1.x writes `-` only when the whole *line* never
//!   ran; covnet writes `-` when the *block* holding the branch never ran
//!   (gcov's "never executed", and lcov's own documented meaning of `-`). On
//!   lines that ran but have an unexecuted branching block (465 of 6252
//!   branch lines of the zstd corpus) lcov says `0` where covnet says `-`.
//!   Totals (BRF/BRH) and `lcov -a` sums are unaffected (`-` + n = 0 + n).
//!   The small fixture here has no such line, so the multisets are equal.
//! * Combining captures is where the two differ on purpose: `lcov -a` adds
//!   the `DA` line counts of each capture, covnet sums the raw arc counters
//!   and solves once, which is what gcov reports for `gcov-tool merge`
//!   output. Lines inside a loop written on one line (the `walk` function of
//!   the fixture, `gcov-format.md` §9.2) get a different count; whether a
//!   line is hit never differs. `merged_captures_match_gcov_tool_merge`
//!   checks covnet against `gcov-tool merge` + lcov, and
//!   `lcov_add_differs_only_on_non_additive_lines` pins the difference
//!   (covnet 2, `lcov -a` 3 on the fixture).

use std::path::{Path, PathBuf};

use covnet_tests::lcov_tool::{
    covnet, diff_maps, lcov_add, lcov_summary, run_ok, Program, Tracefile,
};

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// The fixture program and three captures (the third runs twice and
/// reaches the one-line loop with an odd and an even argument).
fn program_with_captures() -> (Program, Vec<(String, PathBuf)>) {
    let p = Program::build().expect("build the C fixture with gcc --coverage");
    let caps = vec![
        ("c1".to_owned(), p.capture("c1", &["3"]).expect("run c1")),
        (
            "c2".to_owned(),
            p.capture("c2", &["9", "40"]).expect("run c2"),
        ),
        (
            "c3".to_owned(),
            p.capture("c3", &["41", "0"]).expect("run c3"),
        ),
    ];
    (p, caps)
}

#[test]
fn tracefile_merge_equals_lcov_add() {
    let (p, caps) = program_with_captures();
    let infos: Vec<PathBuf> = caps
        .iter()
        .map(|(n, c)| p.lcov_capture(c, n).expect("lcov --capture"))
        .collect();
    let work = p.dir.path();
    let lcov_all = work.join("lcov-all.info");
    let refs: Vec<&Path> = infos.iter().map(PathBuf::as_path).collect();
    lcov_add(&refs, &lcov_all).expect("lcov -a");
    for per_capture in [false, true] {
        let out = work.join(format!("covnet-all-{per_capture}.info"));
        let mut args = vec![
            "merge",
            s(&infos[0]),
            s(&infos[1]),
            s(&infos[2]),
            "-o",
            s(&out),
        ];
        if per_capture {
            args.push("--per-capture");
        }
        let res = covnet(&args, work).expect("run covnet");
        assert_eq!(res.code(), 0, "{res}");
        assert_eq!(
            lcov_summary(&out).expect("lcov reads covnet's output"),
            lcov_summary(&lcov_all).expect("lcov reads its own output"),
            "per_capture={per_capture}"
        );
        let (ours, theirs) = (
            Tracefile::read(&out).expect("read"),
            Tracefile::read(&lcov_all).expect("read"),
        );
        assert!(!theirs.lines.is_empty());
        let d = diff_maps("covnet", &ours.lines, "lcov -a", &theirs.lines);
        assert!(d.is_empty(), "DA differ:\n{d}");
        let d = diff_maps("covnet", &ours.branches, "lcov -a", &theirs.branches);
        assert!(d.is_empty(), "BRDA differ:\n{d}");
        let d = diff_maps("covnet", &ours.functions, "lcov -a", &theirs.functions);
        assert!(d.is_empty(), "FN/FNDA differ:\n{d}");
        if per_capture {
            assert_eq!(ours.tests, vec!["c1", "c2", "c3"]);
        }
        eprintln!(
            "compared {} lines, {} branch lines, {} functions with lcov -a",
            theirs.lines.len(),
            theirs.branches.len(),
            theirs.functions.len()
        );
    }
}

#[test]
fn single_capture_equals_lcov_capture() {
    let (p, caps) = program_with_captures();
    let work = p.dir.path();
    for (name, dir) in &caps {
        let peer = p.lcov_capture(dir, name).expect("lcov --capture");
        let out = work.join(format!("covnet-{name}.info"));
        let res = covnet(
            &["merge", "--build", s(&p.build), s(dir), "-o", s(&out)],
            work,
        )
        .expect("run covnet");
        assert_eq!(res.code(), 0, "{res}");
        assert_eq!(
            lcov_summary(&out).expect("lcov reads covnet's output"),
            lcov_summary(&peer).expect("lcov summary"),
            "capture {name}"
        );
        let (ours, theirs) = (
            Tracefile::read(&out).expect("read"),
            Tracefile::read(&peer).expect("read"),
        );
        let d = diff_maps("covnet", &ours.lines, "lcov", &theirs.lines);
        assert!(d.is_empty(), "capture {name}: DA differ:\n{d}");
        let d = diff_maps("covnet", &ours.functions, "lcov", &theirs.functions);
        assert!(d.is_empty(), "capture {name}: functions differ:\n{d}");
        let d = diff_maps(
            "covnet",
            &ours.branch_multisets(),
            "lcov",
            &theirs.branch_multisets(),
        );
        assert!(d.is_empty(), "capture {name}: branches differ:\n{d}");
        eprintln!(
            "capture {name}: {} lines, {} branch lines, {} functions equal to lcov --capture",
            theirs.lines.len(),
            theirs.branches.len(),
            theirs.functions.len()
        );
    }
}

/// `gcov-tool merge` of the captures' `.gcda`, then `lcov --capture` of the
/// result: the oracle for covnet's capture merge (summed counters).
fn gcov_tool_merged(p: &Program, caps: &[(String, PathBuf)]) -> PathBuf {
    let inner = |c: &Path| c.join(p.build.strip_prefix("/").expect("absolute build dir"));
    let mut acc = inner(&caps[0].1);
    for (i, (_, c)) in caps.iter().enumerate().skip(1) {
        let out = p.dir.path().join(format!("gcov-tool-{i}"));
        run_ok(
            std::process::Command::new("gcov-tool")
                .arg("merge")
                .arg(&acc)
                .arg(inner(c))
                .arg("-o")
                .arg(&out),
        )
        .expect("gcov-tool merge");
        acc = out;
    }
    // lcov_capture expects a GCOV_PREFIX-style tree.
    let tree = p.dir.path().join("merged-capture");
    let dest = inner(&tree);
    std::fs::create_dir_all(&dest).expect("mkdir");
    for e in std::fs::read_dir(&acc).expect("read merged dir") {
        let e = e.expect("entry").path();
        std::fs::copy(&e, dest.join(e.file_name().expect("name"))).expect("copy");
    }
    p.lcov_capture(&tree, "merged")
        .expect("lcov --capture of merged")
}

#[test]
fn merged_captures_match_gcov_tool_merge() {
    let (p, caps) = program_with_captures();
    let work = p.dir.path();
    let oracle = Tracefile::read(&gcov_tool_merged(&p, &caps)).expect("read");
    let out = work.join("covnet-captures.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&caps[0].1),
            s(&caps[1].1),
            s(&caps[2].1),
            "-o",
            s(&out),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let ours = Tracefile::read(&out).expect("read");
    let d = diff_maps("covnet", &ours.lines, "gcov-tool merge", &oracle.lines);
    assert!(d.is_empty(), "DA differ from gcov on gcov-tool merge:\n{d}");
    let d = diff_maps(
        "covnet",
        &ours.functions,
        "gcov-tool merge",
        &oracle.functions,
    );
    assert!(d.is_empty(), "functions differ:\n{d}");
    let d = diff_maps(
        "covnet",
        &ours.branch_multisets(),
        "gcov-tool merge",
        &oracle.branch_multisets(),
    );
    assert!(d.is_empty(), "branches differ:\n{d}");
}

#[test]
fn lcov_add_differs_only_on_non_additive_lines() {
    let (p, caps) = program_with_captures();
    let work = p.dir.path();
    let infos: Vec<PathBuf> = caps
        .iter()
        .map(|(n, c)| p.lcov_capture(c, n).expect("lcov --capture"))
        .collect();
    let lcov_all = work.join("lcov-all.info");
    let refs: Vec<&Path> = infos.iter().map(PathBuf::as_path).collect();
    lcov_add(&refs, &lcov_all).expect("lcov -a");
    let out = work.join("covnet-captures.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&caps[0].1),
            s(&caps[1].1),
            s(&caps[2].1),
            "-o",
            s(&out),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let (ours, added) = (
        Tracefile::read(&out).expect("read"),
        Tracefile::read(&lcov_all).expect("read"),
    );
    assert_eq!(
        ours.lines.keys().collect::<Vec<_>>(),
        added.lines.keys().collect::<Vec<_>>()
    );
    let util_c = p.src.join("util.c");
    let walk_line = 22;
    for (k, v) in &ours.lines {
        let w = added.lines[k];
        assert_eq!(*v > 0, w > 0, "hit status must agree at {k:?}");
        if *v != w {
            assert_eq!(
                (k.0.as_str(), k.1),
                (s(&util_c), walk_line),
                "only the one-line loop is non-additive: {k:?} covnet={v} lcov -a={w}"
            );
        }
    }
    let key = (s(&util_c).to_owned(), walk_line);
    assert_ne!(
        ours.lines[&key], added.lines[&key],
        "c2 (walk(0,3,2)) and c3 (walk(1,0,3)) make the one-line loop non-additive"
    );
    // Branch and function counts are plain arc counts: additive.
    assert_eq!(ours.functions, added.functions);
    assert_eq!(ours.branch_multisets(), added.branch_multisets());
    eprintln!(
        "walk line: covnet (summed counters) {} vs lcov -a (summed line counts) {}",
        ours.lines[&(s(&util_c).to_owned(), walk_line)],
        added.lines[&(s(&util_c).to_owned(), walk_line)]
    );
}
