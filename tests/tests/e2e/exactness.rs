//! covnet's gcov arithmetic against gcov itself: fixtures compiled with the
//! system GCC and GCC 11 at -O0 to -O3, run several ways into separate captures; for
//! every capture, for "never run", and for the `gcov-tool merge` of all
//! captures, covnet's lines, branches and functions must equal
//! `gcov -b -t --json-format` exactly.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use covnet_merger::model::Coverage;
use covnet_merger::{object_coverage, Capture};
use covnet_tests::gcc::{
    compare, has_gcda, Build, Compared, Differences, Oracle, Program, Toolchain, GCC11, SYSTEM_GCC,
};

const C_PROGRAM: Program = Program {
    name: "cprog",
    sources: &["main.c", "util.c", "oneline.c", "extra.c"],
    cxx: false,
    runs: &[
        &["loop", "3"],
        &["loop2", "4"],
        &["loop", "7"],
        &["exit", "2"],
        &["abort"],
        &["jmp", "5"],
        &["fork", "4"],
        &[],
    ],
    silent_runs: &[4],
};

const CXX_PROGRAM: Program = Program {
    name: "cxxprog",
    sources: &["cxx.cc"],
    cxx: true,
    runs: &[&["4"], &["7"], &["2"], &["5", "uncaught"], &["0"]],
    silent_runs: &[3],
};

fn check(tc: Toolchain, program: &Program) -> Result<()> {
    check_builds(tc, program, &["-O0", "-O1", "-O2", "-O3"], &[])
}

/// Builds `program` at each of `opts`, runs it into one capture per
/// argument list, and compares every capture, "never run" and the merge of
/// all captures with gcov.
fn check_builds(
    tc: Toolchain,
    program: &Program,
    opts: &[&str],
    generated: &[(&str, String)],
) -> Result<()> {
    let mut total = Compared::default();
    let mut diffs = Differences::default();
    for &opt in opts {
        let build = Build::with_generated(tc, program, opt, generated)?;
        let mut caps: Vec<PathBuf> = Vec::new();
        for (i, args) in program.runs.iter().enumerate() {
            let dir = build.dir.path().join(format!("capture{i}"));
            build.run_into(args, &dir)?;
            // Prove each capture is what the comparison assumes: data from
            // every run that exits normally, none from abort() and the like.
            let silent = program.silent_runs.contains(&i);
            anyhow::ensure!(
                has_gcda(&dir) != silent,
                "{} {opt}: run {i} {args:?} {} .gcda files in {}",
                tc.label,
                if silent { "wrote" } else { "wrote no" },
                dir.display()
            );
            caps.push(dir);
        }
        // Some count of each data-writing capture is nonzero (checked
        // after the objects are solved).
        let mut counted = vec![false; caps.len()];
        let merged = build.gcov_tool_merge(&caps, &build.dir.path().join("merged"))?;
        for stem in &build.objects {
            let gcno_path = build.gcno(stem);
            let notes = fs::read(&gcno_path)?;
            let datas: Vec<Option<(PathBuf, Vec<u8>)>> = caps
                .iter()
                .map(|c| {
                    let p = c.join(format!("{stem}.gcda"));
                    fs::read(&p).ok().map(|b| (p, b))
                })
                .collect();
            let what = |case: &str| format!("{} {opt} {stem}.gcno {case}", tc.label);

            // Never run.
            let cov = object_coverage(&gcno_path, &notes, &[], 0)?;
            let oracle = Oracle::from_json(&build.gcov_json(stem, None)?)?;
            total.add(compare(
                &what("no data"),
                &cov,
                &oracle,
                build.dir.path(),
                &mut diffs,
            ));

            // Each capture on its own.
            let mut singles: Vec<Coverage> = Vec::new();
            for (i, d) in datas.iter().enumerate() {
                let captures: Vec<Capture<'_>> = d
                    .iter()
                    .map(|(p, b)| Capture {
                        index: 0,
                        path: p,
                        bytes: b,
                    })
                    .collect();
                let cov = object_coverage(&gcno_path, &notes, &captures, 1)?;
                if cov
                    .files
                    .values()
                    .any(|f| f.lines.values().any(|l| l.count > 0))
                {
                    counted[i] = true;
                }
                let gcda = d.as_ref().map(|(p, _)| p.as_path());
                let oracle = Oracle::from_json(&build.gcov_json(stem, gcda)?)?;
                total.add(compare(
                    &what(&format!("capture {i}")),
                    &cov,
                    &oracle,
                    build.dir.path(),
                    &mut diffs,
                ));
                singles.push(cov);
            }

            // All captures merged, like gcov on `gcov-tool merge` output.
            let captures: Vec<Capture<'_>> = datas
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    d.as_ref().map(|(p, b)| Capture {
                        index: i,
                        path: p,
                        bytes: b,
                    })
                })
                .collect();
            let cov = object_coverage(&gcno_path, &notes, &captures, caps.len())?;
            // gcov-tool writes an object's data iff some capture has it.
            let merged_gcda = merged.join(format!("{stem}.gcda"));
            anyhow::ensure!(
                merged_gcda.exists() != captures.is_empty(),
                "{}: gcov-tool merge output {} exists: {}, captures with data: {}",
                what("merged"),
                merged_gcda.display(),
                merged_gcda.exists(),
                captures.len()
            );
            let merged_gcda = merged_gcda.exists().then_some(merged_gcda);
            let oracle = Oracle::from_json(&build.gcov_json(stem, merged_gcda.as_deref())?)?;
            total.add(compare(
                &what("merged"),
                &cov,
                &oracle,
                build.dir.path(),
                &mut diffs,
            ));
            // Source keys are absolute paths of the real files.
            for path in cov.files.keys() {
                if !(path.starts_with('/') && std::path::Path::new(path).is_file()) {
                    diffs.mismatches.push(format!(
                        "{}: source key {path} is not an existing absolute path",
                        what("paths")
                    ));
                }
            }

            // The per-capture attribution equals each capture solved alone.
            for (path, file) in &cov.files {
                for (ln, line) in &file.lines {
                    for (i, single) in singles.iter().enumerate() {
                        let alone = single.files.get(path).and_then(|f| f.lines.get(ln));
                        let (count, taken) = alone.map_or((0, Vec::new()), |l| {
                            (l.count, l.branches.iter().map(|b| b.taken).collect())
                        });
                        let by: Vec<Option<i64>> = line
                            .branches
                            .iter()
                            .map(|b| b.by_capture.get(i).copied().flatten())
                            .collect();
                        if line.by_capture.get(i) != Some(&count) || by != taken {
                            diffs.mismatches.push(format!(
                                "{}: {path}:{ln}: by_capture[{i}] = {:?}/{by:?}, alone {count}/{taken:?}",
                                what("attribution"),
                                line.by_capture.get(i)
                            ));
                        }
                    }
                }
                for f in &file.functions {
                    let alone: Vec<i64> = singles
                        .iter()
                        .map(|s| {
                            s.files
                                .get(path)
                                .and_then(|sf| {
                                    sf.functions
                                        .iter()
                                        .find(|g| g.name == f.name && g.start_line == f.start_line)
                                })
                                .map_or(0, |g| g.count)
                        })
                        .collect();
                    if f.by_capture != alone {
                        diffs.mismatches.push(format!(
                            "{}: {path}: {} by_capture {:?}, alone {alone:?}",
                            what("attribution"),
                            f.name,
                            f.by_capture
                        ));
                    }
                }
            }
        }
        for (i, got) in counted.iter().enumerate() {
            anyhow::ensure!(
                *got || program.silent_runs.contains(&i),
                "{} {opt}: capture {i} ({:?}) has no nonzero count in any object",
                tc.label,
                program.runs.get(i)
            );
        }
    }
    // Demangling of system-header templates may differ where cpp_demangle
    // cannot parse GCC's encoding; shown, not failed.
    for d in diffs
        .demangling
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        println!("demangling differs: {d}");
    }
    println!(
        "{} {}: compared {} lines, {} branches, {} functions with gcov; {} mismatches, {} demangled-name differences in system headers",
        tc.label,
        program.name,
        total.lines,
        total.branches,
        total.functions,
        diffs.mismatches.len(),
        diffs.demangling.len()
    );
    if !diffs.mismatches.is_empty() {
        let shown: Vec<&String> = diffs.mismatches.iter().take(60).collect();
        anyhow::bail!(
            "{} mismatches with gcov:\n{shown:#?}",
            diffs.mismatches.len()
        );
    }
    anyhow::ensure!(
        total.lines > 0 && total.branches > 0 && total.functions > 0,
        "nothing compared"
    );
    Ok(())
}

#[test]
fn system_gcc_c_matches_gcov() -> Result<()> {
    check(SYSTEM_GCC, &C_PROGRAM).context("system gcc C fixtures")
}

#[test]
fn system_gcc_cxx_matches_gcov() -> Result<()> {
    check(SYSTEM_GCC, &CXX_PROGRAM).context("system gcc C++ fixtures")
}

#[test]
fn gcc11_c_matches_gcov() -> Result<()> {
    check(GCC11, &C_PROGRAM).context("gcc-11 C fixtures")
}

#[test]
fn gcc11_cxx_matches_gcov() -> Result<()> {
    check(GCC11, &CXX_PROGRAM).context("gcc-11 C++ fixtures")
}

/// §9.2: line counts are not additive; the merged count comes from summed
/// counters.
#[test]
fn one_line_loop_is_not_additive() -> Result<()> {
    let build = Build::new(SYSTEM_GCC, &C_PROGRAM, "-O0")?;
    let a = build.dir.path().join("a");
    let b = build.dir.path().join("b");
    build.run_into(&["loop", "3"], &a)?;
    build.run_into(&["loop2", "4"], &b)?;
    let gcno_path = build.gcno("oneline");
    let notes = fs::read(&gcno_path)?;
    let (pa, pb) = (a.join("oneline.gcda"), b.join("oneline.gcda"));
    let (da, db) = (fs::read(&pa)?, fs::read(&pb)?);
    let caps = [
        Capture {
            index: 0,
            path: &pa,
            bytes: &da,
        },
        Capture {
            index: 1,
            path: &pb,
            bytes: &db,
        },
    ];
    let cov = object_coverage(&gcno_path, &notes, &caps, 2)?;
    let line = cov
        .files
        .values()
        .find_map(|f| f.lines.get(&1))
        .context("line 1 of oneline.c missing")?;
    let sum: i64 = line.by_capture.iter().sum();
    println!(
        "one-line loop: captures {:?}, merged {}",
        line.by_capture, line.count
    );
    anyhow::ensure!(
        line.count != sum,
        "expected a non-additive line count, got {line:?}"
    );
    let merged = build.gcov_tool_merge(&[a, b], &build.dir.path().join("m"))?;
    let oracle =
        Oracle::from_json(&build.gcov_json("oneline", Some(&merged.join("oneline.gcda")))?)?;
    let theirs: BTreeMap<u32, i64> = oracle
        .lines
        .values()
        .flat_map(|l| l.iter().map(|(k, v)| (*k, v.count)))
        .collect();
    anyhow::ensure!(theirs.get(&1) == Some(&line.count), "gcov says {theirs:?}");
    Ok(())
}

/// A generated file of more than 9999 lines (gcov's text output changes
/// width there), 800 functions with loops, switches and one-line branches.
#[test]
fn large_generated_file_matches_gcov() -> Result<()> {
    let mut text = String::from("#include <stdlib.h>\n");
    for i in 0..800 {
        text.push_str(&format!(
            "int f{i}(int n)\n{{\n  int s = 0;\n  for (int k = 0; k < n; k++) {{\n    switch ((k + {i}) % 5) {{\n    case 0: s += k; break;\n    case 1: s -= 1; break;\n    case 2: if (s > 10) s /= 2; break;\n    default: s ^= k;\n    }}\n  }}\n  return s > {i} ? s : (s < 0 ? -s : {i});\n}}\n"
        ));
    }
    text.push_str("int main(int argc, char **argv)\n{\n  int n = argc > 1 ? atoi(argv[1]) : 3;\n  int t = 0;\n");
    for i in 0..800 {
        text.push_str(&format!("  if ((n + {i}) % 3) t += f{i}(n + {i} % 4);\n"));
    }
    text.push_str("  return t & 1;\n}\n");
    anyhow::ensure!(text.lines().count() > 9999, "generated file too short");
    const BIG: Program = Program {
        name: "big",
        sources: &["big.c"],
        cxx: false,
        runs: &[&["1"], &["4"], &["2"]],
        silent_runs: &[],
    };
    check_builds(SYSTEM_GCC, &BIG, &["-O0", "-O2"], &[("big.c", text)])
}

/// The merger's list of versions "tested with a real compiler" is exactly
/// the set of GCCs these tests compile with: the notes each toolchain
/// writes carry a version in the list, and every listed major is one of
/// them. When the setup's GCC moves to another major, this fails and names
/// it, so the docs and the run-time notice stay true.
#[test]
fn tested_gcc_majors_are_the_compiled_ones() -> Result<()> {
    let mut compiled = std::collections::BTreeSet::new();
    for tc in [SYSTEM_GCC, GCC11] {
        let build = Build::new(tc, &C_PROGRAM, "-O0")?;
        let notes = fs::read(build.gcno("main"))?;
        let version =
            covnet_merger::bytes::peek_version(&notes, covnet_merger::error::FileKind::Notes)
                .context("notes without a version")?;
        let (major, _) = version.gcc().context("not a GCC version word")?;
        anyhow::ensure!(
            major == tc.major()?,
            "{}: notes say {version}, -dumpversion says {}",
            tc.label,
            tc.major()?
        );
        anyhow::ensure!(
            version.tested_with_real_compiler(),
            "{} writes {version}, which covnet_merger::bytes::TESTED_GCC_MAJORS does not list: add it (and update README's \"Exact counts\")",
            tc.label
        );
        compiled.insert(major);
    }
    let listed: std::collections::BTreeSet<u32> = covnet_merger::bytes::TESTED_GCC_MAJORS
        .iter()
        .copied()
        .collect();
    anyhow::ensure!(
        listed == compiled,
        "TESTED_GCC_MAJORS lists {listed:?} but the tests compile with {compiled:?}"
    );
    Ok(())
}
