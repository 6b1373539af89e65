//! LLVM source-based coverage read natively: a C program and a shared
//! library built with `clang-16 -fprofile-instr-generate -fcoverage-mapping`
//! at test time, run several ways with `LLVM_PROFILE_FILE`; covnet's lines,
//! branches and functions must equal `llvm-cov-16 export` over
//! `llvm-profdata-16 merge` of the same profiles, per process set and
//! merged. Corrupt profiles and binaries give errors naming the file.

use std::fs;
use std::path::{Path, PathBuf};

use covnet_tests::clang::{json_functions, llvm_cov, profraws, LlvmBuild};
use covnet_tests::lcov_tool::{covnet, diff_maps, Tracefile};

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Runs covnet merge with the build's objects over `inputs` into `out`.
fn covnet_merge(b: &LlvmBuild, inputs: &[&Path], out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["merge"];
    for o in b.objects() {
        args.extend(["--object", s(o)]);
    }
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend(["-o", s(out)]);
    args.extend(extra);
    let res = covnet(&args, b.dir.path()).expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    res.stderr
}

/// Asserts that `ours` has llvm-cov's lines, branches and functions.
fn assert_same(what: &str, ours: &Tracefile, oracle: &Tracefile) {
    let d = diff_maps("llvm-cov", &oracle.lines, "covnet", &ours.lines);
    assert!(d.is_empty(), "{what}: line counts differ:\n{d}");
    let d = diff_maps("llvm-cov", &oracle.branches, "covnet", &ours.branches);
    assert!(d.is_empty(), "{what}: branches differ:\n{d}");
    let d = diff_maps("llvm-cov", &oracle.functions, "covnet", &ours.functions);
    assert!(d.is_empty(), "{what}: functions differ:\n{d}");
}

struct Runs {
    build: LlvmBuild,
    /// Two process sets (each a capture directory).
    sets: Vec<PathBuf>,
}

/// Builds the fixture and runs it: set "one" with two processes (one of
/// them never reaching the library), set "two" with three, one of which
/// writes with the `%m` pool pattern (online merging into one file).
fn runs() -> Runs {
    let build = LlvmBuild::new().expect("build the fixture with clang-16");
    let root = build.dir.path().join("captures");
    let one = root.join("one");
    let two = root.join("two");
    build.run_into(&["2"], &one, "%p-%m.profraw").expect("run");
    build
        .run_into(&["7", "11"], &one, "%p-%m.profraw")
        .expect("run");
    build
        .run_into(&["12", "4"], &two, "%p-%m.profraw")
        .expect("run");
    build
        .run_into(&["0", "1"], &two, "pool-%m.profraw")
        .expect("run");
    build
        .run_into(&["5", "30"], &two, "pool-%m.profraw")
        .expect("run");
    Runs {
        build,
        sets: vec![one, two],
    }
}

#[test]
fn llvm_counts_equal_llvm_cov_per_process_set_and_merged() {
    let r = runs();
    let b = &r.build;
    let work = b.dir.path().join("work");
    fs::create_dir_all(&work).expect("mkdir");
    let mut all_profiles = Vec::new();
    let mut per_set = Vec::new();
    for (i, set) in r.sets.iter().enumerate() {
        let profiles = profraws(set).expect("profiles");
        assert!(profiles.len() >= 2, "{profiles:?}");
        all_profiles.extend(profiles.iter().cloned());
        let oracle =
            llvm_cov(&b.objects(), &profiles, &work.join(format!("o{i}"))).expect("llvm-cov");
        // The fixture exercises what it should: a library, a header, branches.
        assert!(oracle.lcov.lines.len() > 30, "{:?}", oracle.lcov.lines);
        assert!(oracle.lcov.branches.len() > 5);
        let out = work.join(format!("set{i}.info"));
        covnet_merge(b, &[set], &out, &[]);
        let ours = Tracefile::read(&out).expect("read covnet output");
        assert_same(&format!("process set {i}"), &ours, &oracle.lcov);
        // Functions also as llvm-cov's JSON export has them.
        let json = json_functions(&oracle.json).expect("json");
        let ours_fn: std::collections::BTreeMap<(String, String), i64> = ours
            .functions
            .iter()
            .map(|(k, (_, c))| (k.clone(), *c))
            .collect();
        let d = diff_maps("llvm-cov JSON", &json, "covnet", &ours_fn);
        assert!(
            d.is_empty(),
            "process set {i}: functions differ from the JSON:\n{d}"
        );
        per_set.push(oracle.lcov);
    }
    // All processes of both sets, merged, and each set's part of it.
    let oracle = llvm_cov(&b.objects(), &all_profiles, &work.join("all")).expect("llvm-cov");
    let out = work.join("all.info");
    let set_refs: Vec<&Path> = r.sets.iter().map(PathBuf::as_path).collect();
    covnet_merge(b, &set_refs, &out, &["--per-capture"]);
    let sections = Tracefile::read_sections(&out).expect("read sections");
    assert_eq!(sections.keys().collect::<Vec<_>>(), ["one", "two"]);
    for (name, oracle_set) in ["one", "two"].iter().zip(&per_set) {
        assert_same(
            &format!("capture {name} of the merge"),
            &sections[*name],
            oracle_set,
        );
    }
    let combined = work.join("combined.info");
    covnet_merge(b, &set_refs, &combined, &[]);
    let ours = Tracefile::read(&combined).expect("read");
    assert_same("all processes merged", &ours, &oracle.lcov);
    // Single .profraw files as inputs: the same as their directory.
    let single = work.join("single.info");
    let files: Vec<&Path> = all_profiles.iter().map(PathBuf::as_path).collect();
    covnet_merge(b, &files, &single, &[]);
    assert_same(
        "profiles as inputs",
        &Tracefile::read(&single).expect("read"),
        &oracle.lcov,
    );
}

/// Copies `src` to `dst` with `edit` applied to its bytes.
fn corrupt(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(src).expect("read");
    edit(&mut bytes);
    fs::write(dst, bytes).expect("write");
}

/// covnet merge of `inputs` must fail with a message holding all `needles`.
fn fails_naming(b: &LlvmBuild, objects: &[&Path], inputs: &[&Path], needles: &[&str]) {
    let mut args = vec!["merge"];
    for o in objects {
        args.extend(["--object", s(o)]);
    }
    args.extend(inputs.iter().map(|p| s(p)));
    let out = b.dir.path().join("bad.info");
    args.extend(["-o", s(&out)]);
    let res = covnet(&args, b.dir.path()).expect("run covnet");
    assert_ne!(res.code(), 0, "{res}");
    assert!(!res.stderr.contains("panicked"), "{res}");
    for n in needles {
        assert!(res.stderr.contains(n), "no {n:?} in the error:\n{res}");
    }
}

/// Byte range of an ELF section, found with `object`.
fn section_range(path: &Path, name: &str) -> std::ops::Range<usize> {
    use object::{Object, ObjectSection};
    let bytes = fs::read(path).expect("read");
    let file = object::File::parse(&*bytes).expect("ELF");
    let (off, len) = file
        .section_by_name(name)
        .and_then(|s| s.file_range())
        .expect("section");
    off as usize..(off + len) as usize
}

#[test]
fn corrupt_profiles_and_mappings_give_errors_naming_file_and_version() {
    let b = LlvmBuild::new().expect("build the fixture with clang-16");
    let cap = b.dir.path().join("cap");
    b.run_into(&["6", "3"], &cap, "good.profraw").expect("run");
    let good = cap.join("good.profraw");
    let bad_dir = b.dir.path().join("bad");
    fs::create_dir_all(&bad_dir).expect("mkdir");
    let objects = b.objects();

    // Truncated in the middle of the counters.
    let cut = bad_dir.join("cut.profraw");
    corrupt(&good, &cut, |v| v.truncate(v.len() - 5));
    fails_naming(
        &b,
        &objects,
        &[&cut],
        &["cut.profraw", "truncated at offset"],
    );
    // A raw profile version covnet does not read.
    let v9 = bad_dir.join("v9.profraw");
    corrupt(&good, &v9, |v| v[8] = 9);
    fails_naming(&b, &objects, &[&v9], &["v9.profraw", "version 9"]);
    // Not a profile at all.
    let junk = bad_dir.join("junk.profraw");
    fs::write(&junk, b"this is not a raw profile").expect("write");
    fails_naming(&b, &objects, &[&junk], &["junk.profraw", "magic"]);
    // --keep-going leaves the bad one out and says so (exit 2).
    let out = b.dir.path().join("kept.info");
    let res = covnet(
        &[
            "merge",
            "--object",
            s(objects[0]),
            "--object",
            s(objects[1]),
            s(&good),
            s(&cut),
            "-o",
            s(&out),
            "--keep-going",
        ],
        b.dir.path(),
    )
    .expect("run covnet");
    assert_eq!(res.code(), 2, "{res}");
    assert!(res.stderr.contains("cut.profraw"), "{res}");

    // A coverage mapping version covnet does not read: the version word
    // of the first __llvm_covmap header (offset 12).
    let covmap = section_range(&b.exe, "__llvm_covmap");
    let v7 = bad_dir.join("prog-v7");
    corrupt(&b.exe, &v7, |v| v[covmap.start + 12] = 6);
    fails_naming(
        &b,
        &[&v7],
        &[&good],
        &["prog-v7", "mapping version 7", "__llvm_covmap"],
    );
    // Truncated mapping records: the covfun section's size halved in place
    // (its bytes zeroed from the middle on) must be a typed error or a
    // consistent reading, never a panic; and bit flips everywhere in the
    // three sections, read in-process, never panic.
    let covfun = section_range(&b.exe, "__llvm_covfun");
    let names = section_range(&b.exe, "__llvm_prf_names");
    let exe = fs::read(&b.exe).expect("read");
    let profile = covnet_merger::llvm::read_profile(&good, &fs::read(&good).expect("read"))
        .expect("good profile");
    let mut p = covnet_merger::llvm::profraw::Profile::default();
    p.add(&profile).expect("add");
    let mut typed = 0;
    for range in [covmap.clone(), covfun.clone(), names] {
        for i in range {
            for bit in [0u8, 3, 7] {
                let mut bytes = exe.clone();
                bytes[i] ^= 1 << bit;
                match covnet_merger::llvm::read_object(&v7, &bytes) {
                    Ok(m) => {
                        let _ = covnet_merger::llvm::report::coverage(&[m], &[p.clone()]);
                    }
                    Err(e) => {
                        assert_eq!(e.path, v7);
                        typed += 1;
                    }
                }
            }
        }
    }
    assert!(typed > 0, "no bit flip was detected at all");
    let half = bad_dir.join("prog-cut");
    corrupt(&b.exe, &half, |v| {
        let mid = covfun.start + (covfun.end - covfun.start) / 2;
        for x in &mut v[mid..covfun.end] {
            *x = 0xff;
        }
    });
    fails_naming(&b, &[&half], &[&good], &["prog-cut", "__llvm_covfun"]);
}

/// The library's source compiled both by gcc --coverage (into a program of
/// its own) and by clang: the report keeps gcc's counts for it and names
/// it, instead of adding counts of two kinds; the clang-only files keep
/// clang's counts.
#[test]
fn a_file_instrumented_by_gcc_and_clang_is_named_not_mixed() {
    use covnet_tests::gcc::run_ok;
    use std::process::Command;
    let b = LlvmBuild::new().expect("build the fixture with clang-16");
    let dir = b.dir.path();
    let llvm_cap = dir.join("llvm-cap");
    b.run_into(&["9", "8"], &llvm_cap, "%p-%m.profraw")
        .expect("run");
    // gcc: the same lib.c (same path) into gcc/, with a main of its own.
    let gdir = dir.join("gcc");
    fs::create_dir_all(&gdir).expect("mkdir");
    fs::write(
        dir.join("gmain.c"),
        "int lib_score(int);\nint main(void)\n{\n    return lib_score(4) > 100;\n}\n",
    )
    .expect("write");
    for src in ["lib.c", "gmain.c"] {
        let obj = gdir.join(src.replace(".c", ".o"));
        run_ok(
            Command::new("gcc")
                .args(["--coverage", "-O0", "-c", src, "-o"])
                .arg(&obj)
                .current_dir(dir),
        )
        .expect("gcc --coverage (hint: bash scripts/setup.sh)");
    }
    let gprog = gdir.join("gprog");
    run_ok(
        Command::new("gcc")
            .arg("--coverage")
            .arg(gdir.join("lib.o"))
            .arg(gdir.join("gmain.o"))
            .arg("-o")
            .arg(&gprog),
    )
    .expect("link");
    let gcc_cap = dir.join("gcc-cap");
    let out = covnet_tests::gcc::run(
        Command::new(&gprog).env("GCOV_PREFIX", &gcc_cap),
        covnet_tests::gcc::PROGRAM_DEADLINE,
    )
    .expect("run gprog");
    assert!(out.status.code().is_some(), "{out}");

    let gcc_only = dir.join("gcc.info");
    let res = covnet(
        &[
            "merge",
            "--build",
            s(&gdir),
            s(&gcc_cap),
            "-o",
            s(&gcc_only),
        ],
        dir,
    )
    .expect("run covnet");
    assert_eq!(res.code(), 0, "{res}");
    let llvm_only = dir.join("llvm.info");
    covnet_merge(&b, &[&llvm_cap], &llvm_only, &[]);
    let mixed = dir.join("mixed.info");
    let stderr = covnet_merge(&b, &[&gcc_cap, &llvm_cap], &mixed, &["--build", s(&gdir)]);
    let lib_c = dir.join("lib.c");
    let lib_c = s(&lib_c);
    assert!(
        stderr.contains(&format!(
            "{lib_c} is instrumented both by gcc --coverage and by clang"
        )),
        "{stderr}"
    );
    let pick = |t: &Tracefile, file: &str| -> std::collections::BTreeMap<u32, i64> {
        t.lines
            .iter()
            .filter(|((f, _), _)| f == file)
            .map(|((_, l), c)| (*l, *c))
            .collect()
    };
    let (g, l, m) = (
        Tracefile::read(&gcc_only).expect("read"),
        Tracefile::read(&llvm_only).expect("read"),
        Tracefile::read(&mixed).expect("read"),
    );
    assert!(!pick(&g, lib_c).is_empty() && !pick(&l, lib_c).is_empty());
    assert_ne!(pick(&g, lib_c), pick(&l, lib_c), "the two runs must differ");
    assert_eq!(pick(&m, lib_c), pick(&g, lib_c), "gcc's counts are kept");
    let main_c = dir.join("main.c");
    assert_eq!(
        pick(&m, s(&main_c)),
        pick(&l, s(&main_c)),
        "clang-only files keep clang's counts"
    );
}

/// `covnet run --coverage` on a namespace machine running the clang-built
/// program (and its shared library) from a script: covnet sets
/// `LLVM_PROFILE_FILE` below the machine's coverage prefix, pulls one
/// `.profraw` per process and binary, and the run's report equals
/// `llvm-cov export` over those very profiles.
#[test]
fn run_pulls_raw_profiles_and_reports_them_as_llvm_cov_does() {
    use covnet_tests::lcov_tool::covnet_bin;
    use std::process::Command;
    let b = LlvmBuild::new().expect("build the fixture with clang-16");
    let dir = b.dir.path();
    let spec = dir.join("spec.toml");
    fs::write(
        &spec,
        format!(
            r#"[machines.box]
programs = ["{exe}"]

[coverage]
objects = ["prog", "libscore.so"]

[test]
script = """
start_all();
box.succeed("{exe} 6 5");
box.succeed("{exe} 9");
"""
timeout = "2m"
"#,
            exe = s(&b.exe)
        ),
    )
    .expect("write spec");
    let out = dir.join("out");
    let res = covnet_tests::gcc::run(
        Command::new(covnet_bin().expect("covnet"))
            .args([
                "run",
                "--coverage",
                "--no-console",
                "--backend",
                "namespace",
                "--out",
            ])
            .arg(&out)
            .arg(&spec)
            .current_dir(dir),
        std::time::Duration::from_secs(300),
    )
    .expect("run covnet");
    assert!(res.status.success(), "{res}");
    // The capture mirrors the tree below the prefix /covnet/gcov.
    let pulled = profraws(&out.join("coverage/box/llvm")).expect("the run pulled .profraw files");
    // Two processes, each writing one profile per instrumented binary.
    assert_eq!(pulled.len(), 4, "{pulled:?}");
    let oracle = llvm_cov(&b.objects(), &pulled, &dir.join("oracle")).expect("llvm-cov");
    let ours = Tracefile::read(&out.join("coverage.info")).expect("read the run's report");
    assert_same("the run's report", &ours, &oracle.lcov);
}
