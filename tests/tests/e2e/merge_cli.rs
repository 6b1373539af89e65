//! `covnet merge` / `covnet summary` on captures of a C program built at
//! test time: output accepted by lcov 1.x and genhtml, attribution,
//! JSON, and bad inputs (orphan, truncated and stale `.gcda`) with and
//! without `--keep-going`.

use std::path::{Path, PathBuf};

use covnet_tests::lcov_tool::{covnet, genhtml, lcov_summary, parse_summary, Program, Tracefile};

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn three_captures(p: &Program) -> Vec<PathBuf> {
    vec![
        p.capture("c1", &["3"]).expect("run c1"),
        p.capture("c2", &["9"]).expect("run c2"),
        p.capture("c3", &["41"]).expect("run c3"),
    ]
}

#[test]
fn merged_captures_are_accepted_by_lcov_and_genhtml() {
    let p = Program::build().expect("build the C fixture with gcc --coverage");
    let caps = three_captures(&p);
    let work = p.dir.path();
    let out = work.join("all.info");
    let per = work.join("per.info");
    let json = work.join("all.json");
    let base = [
        "merge",
        "--build",
        s(&p.build),
        s(&caps[0]),
        s(&caps[1]),
        s(&caps[2]),
    ];
    let mut args = base.to_vec();
    args.extend(["-o", s(&out), "--json", s(&json)]);
    let res = covnet(&args, work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let ours = parse_summary(&res.stderr).expect("covnet prints a summary");
    let peer = lcov_summary(&out).expect("lcov --summary accepts the output without warnings");
    assert_eq!(ours, peer);
    assert!(peer.lines.1 > 20 && peer.lines.0 > 0, "{peer:?}");
    assert!(peer.functions.1 >= 4 && peer.branches.1 > 0, "{peer:?}");
    genhtml(&out, &work.join("html"), false).expect("genhtml accepts the output");

    // covnet summary agrees with lcov.
    let res = covnet(&["summary", s(&out)], work).expect("run covnet summary");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(parse_summary(&res.stdout).expect("summary"), peer);

    // Per-capture sections: genhtml --show-details shows each capture.
    let mut args = base.to_vec();
    args.extend(["-o", s(&per), "--per-capture"]);
    let res = covnet(&args, work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let per_summary = lcov_summary(&per).expect("lcov accepts per-capture output");
    assert_eq!(
        per_summary.lines, peer.lines,
        "hit status is the same per capture"
    );
    assert_eq!(per_summary.functions, peer.functions);
    let t = Tracefile::read(&per).expect("read");
    assert_eq!(t.tests, vec!["c1", "c2", "c3"]);
    genhtml(&per, &work.join("html-details"), true).expect("genhtml --show-details");

    // JSON carries the attribution.
    let bytes = std::fs::read(&json).expect("json written");
    let cov = covnet_merger::json::from_slice(&bytes).expect("valid covnet JSON");
    assert_eq!(cov.captures, vec!["c1", "c2", "c3"]);
    let util = cov
        .files
        .get(s(&p.src.join("util.c")))
        .expect("util.c present under its absolute path");
    let classify = util
        .functions
        .iter()
        .find(|f| f.name == "classify")
        .expect("classify");
    assert_eq!(classify.by_capture, vec![3, 9, 41]);
    assert_eq!(classify.count, 53);
    let never = util
        .functions
        .iter()
        .find(|f| f.name == "unused")
        .expect("unused");
    assert_eq!(never.by_capture.len(), 3);

    // The JSON reads back as an input and gives the same tracefile.
    let again = work.join("again.info");
    let res = covnet(&["merge", s(&json), "-o", s(&again)], work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let (a, b) = (
        Tracefile::read(&out).expect("read"),
        Tracefile::read(&again).expect("read"),
    );
    assert_eq!(a, b);

    // Filters and path maps.
    let mapped = work.join("mapped.info");
    let mut args = base.to_vec();
    let map = format!("{}=/project", s(&p.src));
    args.extend([
        "-o",
        s(&mapped),
        "--path-map",
        &map,
        "--exclude",
        "*/main.c",
        "--lcov-format",
        "2",
    ]);
    let res = covnet(&args, work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let text = std::fs::read_to_string(&mapped).expect("written");
    assert!(text.contains("SF:/project/util.c\n"), "{text}");
    assert!(!text.contains("main.c"), "{text}");
    assert!(text.contains("FNL:"), "lcov 2 format: {text}");
}

#[test]
fn never_run_objects_count_as_zero() {
    let p = Program::build().expect("build");
    let empty = p.dir.path().join("captures/empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = p.dir.path().join("zero.info");
    let res = covnet(
        &["merge", "--build", s(&p.build), s(&empty), "-o", s(&out)],
        p.dir.path(),
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let sum = lcov_summary(&out).expect("lcov accepts it");
    assert!(sum.lines.1 > 20, "{sum:?}");
    assert_eq!((sum.lines.0, sum.functions.0, sum.branches.0), (0, 0, 0));
}

/// Runs covnet twice: without --keep-going (must fail naming `culprit`) and
/// with it (must exit 2, name it, and write the rest).
fn check_bad_input(p: &Program, caps: &[&Path], culprit: &str, out_name: &str) -> Tracefile {
    let out = p.dir.path().join(out_name);
    let mut args = vec!["merge", "--build", s(&p.build)];
    args.extend(caps.iter().map(|c| s(c)));
    args.extend(["-o", s(&out)]);
    let res = covnet(&args, p.dir.path()).expect("run covnet");
    assert_eq!(res.code(), 1, "{res}");
    assert!(
        res.stderr.contains(culprit),
        "error must name {culprit}: {res}"
    );
    assert!(res.stderr.contains("hint:"), "{res}");
    assert!(!out.exists(), "no output on failure");
    args.push("--keep-going");
    let res = covnet(&args, p.dir.path()).expect("run covnet");
    assert_eq!(res.code(), 2, "{res}");
    assert!(res.stderr.contains(culprit), "{res}");
    lcov_summary(&out).expect("lcov accepts the partial output");
    Tracefile::read(&out).expect("read")
}

#[test]
fn orphan_truncated_and_stale_gcda() {
    let p = Program::build().expect("build");
    let caps = three_captures(&p);
    let good = p.dir.path().join("good.info");
    let res = covnet(
        &["merge", "--build", s(&p.build), s(&caps[0]), "-o", s(&good)],
        p.dir.path(),
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let good = Tracefile::read(&good).expect("read");

    // A .gcda with no .gcno.
    let orphan_cap = p.dir.path().join("captures/orphan");
    let ghost = orphan_cap.join("elsewhere/ghost.gcda");
    std::fs::create_dir_all(ghost.parent().expect("parent")).expect("mkdir");
    let gcda = p.gcda_files(&caps[1]).expect("list");
    std::fs::copy(&gcda["main.gcda"], &ghost).expect("copy");
    let t = check_bad_input(&p, &[&caps[0], &orphan_cap], "ghost.gcda", "orphan.info");
    assert_eq!(
        t.lines, good.lines,
        "the orphan adds nothing, the rest is kept"
    );

    // A truncated .gcda: the other capture's counts of that object survive.
    let trunc_cap = p.dir.path().join("captures/trunc");
    let inner = trunc_cap.join(p.build.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inner).expect("mkdir");
    let bytes = std::fs::read(&gcda["util.gcda"]).expect("read");
    std::fs::write(inner.join("util.gcda"), &bytes[..bytes.len() / 2]).expect("write");
    let t = check_bad_input(&p, &[&caps[0], &trunc_cap], "util.gcda", "trunc.info");
    assert_eq!(t.lines, good.lines, "c1 kept, the truncated file dropped");

    // A stale .gcda: util.c recompiled after the run (new stamp).
    p.compile("util").expect("recompile");
    let t = check_bad_input(&p, &[&caps[0], &caps[1]], "util.gcda", "stale.info");
    let main_c = s(&p.src.join("main.c")).to_owned();
    let util_c = s(&p.src.join("util.c")).to_owned();
    assert!(
        t.lines.iter().any(|((f, _), c)| *f == main_c && *c > 0),
        "main.c still merged"
    );
    assert!(
        t.lines
            .iter()
            .filter(|((f, _), _)| *f == util_c)
            .all(|(_, c)| *c == 0),
        "util.c only from the new, never-run notes"
    );
}

#[test]
fn mixed_inputs_names_and_usage_errors() {
    let p = Program::build().expect("build");
    let work = p.dir.path();
    let c1 = p.capture("c1", &["3"]).expect("run c1");
    let c2 = p.capture("c2", &["9"]).expect("run c2");
    let peer = p.lcov_capture(&c2, "c2").expect("lcov --capture");
    let out = work.join("mixed.info");
    let args = [
        "merge",
        "--build",
        s(&p.build),
        s(&c1),
        s(&peer),
        "--name",
        "machine-1",
        "--name",
        "machine-2",
        "--per-capture",
        "-o",
        s(&out),
    ];
    let res = covnet(&args, work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let t = Tracefile::read(&out).expect("read");
    assert_eq!(
        t.tests,
        vec!["machine_1", "machine_2"],
        "sanitised names, input order"
    );
    lcov_summary(&out).expect("lcov accepts mixed output");
    // Same as merging the two captures directly (one run each, so line
    // counts are additive here).
    let direct = work.join("direct.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&c1),
            s(&c2),
            "-o",
            s(&direct),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(t.lines, Tracefile::read(&direct).expect("read").lines);

    // Usage errors: exit 1 with a hint, nothing written.
    let bad = work.join("bad.info");
    // Without --build, a capture that mirrors absolute build paths pairs
    // with the notes where gcc left them: the same result as with it.
    let found = work.join("found.info");
    let res = covnet(&["merge", s(&c1), "-o", s(&found)], work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let with_build = work.join("with-build.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&c1),
            "-o",
            s(&with_build),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(
        Tracefile::read(&found).expect("read").lines,
        Tracefile::read(&with_build).expect("read").lines
    );
    // A capture whose paths lead nowhere: nothing paired is exit 2 ("inputs
    // skipped"), with where covnet looked and the flag that fixes it.
    let lost = work.join("captures/lost");
    std::fs::create_dir_all(lost.join("elsewhere")).expect("mkdir");
    let gcda = p.gcda_files(&c1).expect("list");
    std::fs::copy(&gcda["main.gcda"], lost.join("elsewhere/main.gcda")).expect("copy");
    let res = covnet(&["merge", s(&lost), "-o", s(&bad)], work).expect("run covnet");
    assert_eq!(res.code(), 2, "{res}");
    assert!(
        res.stderr
            .contains("none of the 1 .gcda file(s) found its .gcno")
            && res.stderr.contains("elsewhere/main.gcda")
            && res
                .stderr
                .contains("covnet looked at each .gcda's own build path")
            && res.stderr.contains("--build DIR"),
        "{res}"
    );
    assert!(!bad.exists(), "{res}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "merge",
                "--build",
                s(&p.build),
                s(&c1),
                "--name",
                "a",
                "--name",
                "b",
                "-o",
                s(&bad),
            ],
            "--name",
        ),
        (
            vec!["merge", "/nonexistent/x.info", "-o", s(&bad)],
            "/nonexistent/x.info",
        ),
        (
            vec![
                "merge",
                "--build",
                s(&p.build),
                s(&c1),
                "--path-map",
                "nope",
                "-o",
                s(&bad),
            ],
            "nope",
        ),
    ];
    for (args, needle) in cases {
        let res = covnet(&args, work).expect("run covnet");
        assert_eq!(res.code(), 1, "{res}");
        assert!(res.stderr.contains(needle), "{needle}: {res}");
        assert!(!bad.exists(), "{res}");
    }
    let garbage = work.join("garbage.info");
    std::fs::write(&garbage, "hello\n").expect("write");
    let res = covnet(&["merge", s(&garbage), s(&peer), "-o", s(&bad)], work).expect("run");
    assert_eq!(res.code(), 1, "{res}");
    assert!(res.stderr.contains("garbage.info:1"), "{res}");
    let res = covnet(
        &[
            "merge",
            s(&garbage),
            s(&peer),
            "-o",
            s(&bad),
            "--keep-going",
        ],
        work,
    )
    .expect("run");
    assert_eq!(res.code(), 2, "{res}");
    assert!(res.stderr.contains("garbage.info:1"), "{res}");
    lcov_summary(&bad).expect("the good input was written");
}

/// `-fprofile-dir` makes GCC write `#`-mangled names into one directory;
/// with the build tree moved, `--path-map` maps the old build path.
#[test]
fn profile_dir_names_and_moved_build_tree() {
    let p = Program::build_with(&["-fprofile-dir={dir}/pd"]).expect("build");
    let cap = p.capture("pd", &["9"]).expect("run");
    let pd = cap
        .join(p.dir.path().strip_prefix("/").expect("absolute"))
        .join("pd");
    let names: Vec<String> = std::fs::read_dir(&pd)
        .expect("profile dir written")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with('#')), "{names:?}");
    let expected = p.dir.path().join("expected.info");
    let res = covnet(
        &["merge", "--build", s(&p.build), s(&cap), "-o", s(&expected)],
        p.dir.path(),
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let expected = Tracefile::read(&expected).expect("read");
    assert!(expected.lines.values().any(|c| *c > 0));
    // Move the build tree: the mangled names still name the old place.
    let moved = p.dir.path().join("moved-build");
    std::fs::rename(&p.build, &moved).expect("move build tree");
    let out = p.dir.path().join("moved.info");
    let map = format!("{}={}", s(&p.build), s(&moved));
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&moved),
            s(&cap),
            "--path-map",
            &map,
            "-o",
            s(&out),
        ],
        p.dir.path(),
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(Tracefile::read(&out).expect("read"), expected);
}

/// A 0-byte `.gcda` (a program killed while writing it) counts as "not
/// executed" in its capture, with a warning naming it; the merge succeeds
/// and equals the merge without that capture's file.
#[test]
fn empty_gcda_is_not_executed_with_a_warning() {
    let p = Program::build().expect("build");
    let work = p.dir.path();
    let good = p.capture("good", &["3"]).expect("run good");
    let broken = p.capture("broken", &["9"]).expect("run broken");
    let files = p.gcda_files(&broken).expect("list");
    let (_, victim) = files.iter().next().expect("a .gcda");
    std::fs::write(victim, b"").expect("truncate");

    let out = work.join("with-empty.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&good),
            s(&broken),
            "-o",
            s(&out),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert!(
        res.stderr.contains("is empty") && res.stderr.contains(s(victim)),
        "{res}"
    );
    std::fs::remove_file(victim).expect("remove");
    let without = work.join("without.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&p.build),
            s(&good),
            s(&broken),
            "-o",
            s(&without),
        ],
        work,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(
        Tracefile::read(&out).expect("read").lines,
        Tracefile::read(&without).expect("read").lines
    );
}

/// Rewrites the version word (offset 4, little-endian) of a gcov file from
/// the system GCC's major to `major`, keeping the minor digit.
fn set_gcc_major(path: &Path, major: u32) {
    let mut bytes = std::fs::read(path).expect("read");
    let word = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let [_, _, minor, star] = word.to_be_bytes();
    let tens = b'A' + u8::try_from(major / 10).expect("small");
    let ones = b'0' + u8::try_from(major % 10).expect("small");
    let patched = u32::from_be_bytes([tens, ones, minor, star]);
    bytes[4..8].copy_from_slice(&patched.to_le_bytes());
    std::fs::write(path, bytes).expect("write");
}

/// Notes of a GCC version no real-compiler test covers are read (same
/// layout), with one notice per run naming the version, however many
/// objects carry it; the tested version prints none.
#[test]
fn untested_gcc_version_is_named_once() {
    let p = Program::build().expect("build");
    let cap = p.capture("c1", &["3"]).expect("run");
    let work = p.dir.path();
    let tested = work.join("tested.info");
    let res = covnet(&["merge", s(&cap), "-o", s(&tested)], work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert!(!res.stderr.contains("notice:"), "{res}");

    // The system GCC's files relabelled as GCC 13 (same byte-length layout).
    let gcda = p.gcda_files(&cap).expect("list");
    assert!(gcda.len() >= 2, "several objects: {gcda:?}");
    for path in gcda.values() {
        set_gcc_major(path, 13);
    }
    for e in std::fs::read_dir(&p.build).expect("read build").flatten() {
        if e.path().extension().is_some_and(|x| x == "gcno") {
            set_gcc_major(&e.path(), 13);
        }
    }
    let relabelled = work.join("relabelled.info");
    let res = covnet(&["merge", s(&cap), "-o", s(&relabelled)], work).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    assert_eq!(
        res.stderr.matches("notice:").count(),
        1,
        "one notice per run: {res}"
    );
    assert!(
        res.stderr.contains("gcc 13.") && res.stderr.contains("no test compiles with this version"),
        "{res}"
    );
    assert_eq!(
        Tracefile::read(&relabelled).expect("read").lines,
        Tracefile::read(&tested).expect("read").lines,
        "the same layout rules, the same counts"
    );
}
