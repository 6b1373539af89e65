//! Suites past one host (`covnet run SPEC...`, `--partition`, the engines'
//! variables, shard bundles, `covnet merge BUNDLE...`), end to end on
//! namespace machines: a program built with gcc `--coverage` in a build
//! tree outside the suite, five specs running it several ways on two
//! machines each.
//!
//! - The suite on one host and the same suite as 4 count shards (separate
//!   output directories) merged from their bundles give the same
//!   tracefile, byte for byte, and the same per-machine table.
//! - A missing shard is named (exit 2, and in the HTML report); a shard
//!   of another build (the program rebuilt) is refused naming the `.gcno`.
//! - Slurm job arrays, Kubernetes Indexed Jobs, Bazel test sharding and
//!   GitLab parallel jobs shard the suite from exactly the variables each
//!   engine sets; the hash shards of each merge back to the one-host run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::report::{covnet_bin, run, run_ok};

const SLOW: Duration = Duration::from_secs(300);

const APP_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static int words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ')
            in = 0;
        else if (!in) {
            in = 1;
            n++;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (strcmp(argv[1], "fib") == 0)
        printf("%d\n", fib(argc > 2 ? atoi(argv[2]) : 10));
    else if (strcmp(argv[1], "words") == 0)
        printf("%d\n", words(argc > 2 ? argv[2] : ""));
    else if (strcmp(argv[1], "fail") == 0)
        return 1;
    else
        puts("unknown");
    return 0;
}
"#;

/// The suite: spec file (relative to `suite/`) and each machine's command.
const SPECS: [(&str, &str, &str); 5] = [
    ("alpha.toml", "app fib 5", "app words 'a b c'"),
    ("beta.toml", "app fib 12", "app other"),
    ("gamma/spec.toml", "app words ''", "app fib 1"),
    ("net/delta.toml", "app words 'x  y'", "app fib 3"),
    ("net/epsilon.toml", "app other", "app fib 7"),
];

/// The engines' variables, removed from every covnet run unless a test
/// sets them: a test must not shard because its host is a CI job.
const ENGINE_VARS: [&str; 11] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "JOB_COMPLETION_INDEX",
    "COVNET_SHARDS",
    "TEST_TOTAL_SHARDS",
    "TEST_SHARD_INDEX",
    "TEST_SHARD_STATUS_FILE",
    "XML_OUTPUT_FILE",
    "CI_NODE_INDEX",
    "CI_NODE_TOTAL",
];

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.path("src")).unwrap();
        std::fs::write(f.path("src/app.c"), APP_C).unwrap();
        f.build("");
        for (file, web, client) in SPECS {
            let path = f.path("suite").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let app = f.path("build/app").display().to_string();
            let text = format!(
                "[machines.web]\nprograms = [\"{app}\"]\n\n[machines.client]\nprograms = [\"{app}\"]\n\n[test]\nscript = '''\nstart_all();\nweb.succeed(\"{}\");\nclient.succeed(\"{}\");\n'''\n",
                web.replace("app", &app),
                client.replace("app", &app)
            );
            std::fs::write(path, text).unwrap();
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds `src/app.c` (plus `extra` appended) into `build/`, outside
    /// the suite.
    fn build(&self, extra: &str) {
        let build = self.path("build");
        let _ = std::fs::remove_dir_all(&build);
        std::fs::create_dir_all(&build).unwrap();
        let src = self.path("src/app.c");
        std::fs::write(&src, format!("{APP_C}{extra}")).unwrap();
        run_ok(
            Command::new("gcc")
                .args(["--coverage", "-O0", "-o", "app"])
                .arg(&src)
                .current_dir(&build),
            SLOW,
        );
    }

    /// `covnet ARGS` in the fixture, with `env` as the only engine
    /// variables.
    fn covnet(&self, args: &[&str], env: &[(&str, &str)]) -> crate::report::Run {
        let mut cmd = Command::new(covnet_bin());
        cmd.args(args).current_dir(self.dir.path());
        for v in ENGINE_VARS {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied());
        run(&mut cmd, SLOW)
    }

    /// `covnet run suite --coverage --backend namespace --out OUT EXTRA`.
    fn run_suite(&self, out: &str, extra: &[&str], env: &[(&str, &str)]) -> crate::report::Run {
        let mut args = vec![
            "run",
            "suite",
            "--coverage",
            "--no-console",
            "--backend",
            "namespace",
            "--out",
            out,
        ];
        args.extend(extra);
        self.covnet(&args, env)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.read(rel)).unwrap()
    }
}

/// The per-machine table of a covnet JSON report: name and totals of each
/// capture.
fn machine_table(report: &Value) -> Vec<(String, String)> {
    report["captures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["totals"].to_string(),
            )
        })
        .collect()
}

fn assert_ok(r: &crate::report::Run, what: &str) {
    assert_eq!(
        r.status.code(),
        Some(0),
        "{what}\n--- stdout\n{}\n--- stderr\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn a_suite_sharded_four_ways_merges_into_the_one_host_run() {
    let f = Fixture::new();
    let one = f.run_suite("one", &["-j", "2"], &[]);
    assert_ok(&one, "one host");
    assert!(
        one.stderr.contains("suite of 5 specs, all on this host"),
        "{}",
        one.stderr
    );
    assert!(
        one.stderr.contains("[alpha] "),
        "prefixed output: {}",
        one.stderr
    );
    assert!(
        one.stderr.contains("PASSED: 5 of 5 spec(s) passed"),
        "{}",
        one.stderr
    );
    // One JUnit file, a <testsuite> per spec.
    let junit = f.read("one/junit.xml");
    for id in ["alpha", "beta", "gamma", "net/delta", "net/epsilon"] {
        assert!(
            junit.contains(&format!("<testsuite name=\"{id}\"")),
            "{id}: {junit}"
        );
    }
    // Captures are <spec>/<machine>, in suite order.
    let report = f.json("one/coverage.json");
    let names: Vec<String> = machine_table(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "alpha/web",
            "alpha/client",
            "beta/web",
            "beta/client",
            "gamma/web",
            "gamma/client",
            "net/delta/web",
            "net/delta/client",
            "net/epsilon/web",
            "net/epsilon/client"
        ]
    );
    let manifest = f.json("one/manifest.json");
    assert_eq!(manifest["format"], "covnet-shard-bundle");
    assert_eq!(manifest["specs"].as_array().unwrap().len(), 5);
    assert_eq!(
        manifest["specs"][0]["captures"],
        serde_json::json!(["alpha/web", "alpha/client"])
    );
    assert!(manifest["partition"].is_null());
    let build = manifest["build"]["notes"].as_array().unwrap();
    assert_eq!(build.len(), 1, "{build:?}");
    let gcno = build[0]["path"].as_str().unwrap().to_owned();
    assert!(
        gcno.starts_with(&f.path("build").display().to_string()) && gcno.ends_with(".gcno"),
        "{gcno}"
    );

    // The same suite as four count shards, each in its own directory.
    let mut shards = Vec::new();
    let mut seen = Vec::new();
    for k in 1..=4 {
        let out = format!("shard-{k}");
        let r = f.run_suite(&out, &["--partition", &format!("{k}/4")], &[]);
        assert_ok(&r, &out);
        assert!(
            r.stderr
                .contains(&format!("shard {k}/4 (count slicing) by --partition")),
            "{}",
            r.stderr
        );
        let m = f.json(&format!("{out}/manifest.json"));
        assert_eq!(m["partition"]["shard"], k);
        assert_eq!(m["suite"]["specs"].as_array().unwrap().len(), 5);
        for s in m["specs"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_owned());
        }
        shards.push(out);
    }
    seen.sort();
    assert_eq!(seen, ["alpha", "beta", "gamma", "net/delta", "net/epsilon"]);
    let shard_args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["merge".into()];
        a.extend(shards.iter().cloned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = shard_args(&["-o", "merged.info"]);
    let merged = f.covnet(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_ok(&merged, "merge");
    assert_eq!(f.read("merged.info"), f.read("one/coverage.info"));
    let args = shard_args(&["--per-capture", "-o", "merged-per.info"]);
    assert_ok(
        &f.covnet(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]),
        "merge --per-capture",
    );
    assert_eq!(
        f.read("merged-per.info"),
        f.read("one/coverage-per-machine.info")
    );
    // The per-machine table of the report of the bundles.
    let mut args: Vec<&str> = vec!["report"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--json", "merged.json", "--html", "site"]);
    assert_ok(&f.covnet(&args, &[]), "report of the bundles");
    assert_eq!(
        machine_table(&f.json("merged.json")),
        machine_table(&report)
    );
    assert_eq!(f.json("merged.json")["totals"], report["totals"]);

    // A shard missing: named, exit 2, and in the report's notes.
    let three: Vec<&str> = shards[..3].iter().map(String::as_str).collect();
    let mut args = vec!["merge"];
    args.extend(&three);
    args.extend(["-o", "three.info"]);
    let r = f.covnet(&args, &[]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("shard 4/4 is missing"), "{}", r.stderr);
    let mut args = vec!["report"];
    args.extend(&three);
    args.extend(["--html", "site-three"]);
    let r = f.covnet(&args, &[]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    let index = f.read("site-three/index.html");
    assert!(
        index.contains("shard 4/4 is missing") && index.contains("did not run"),
        "{index}"
    );

    // A shard of another build is refused, naming the notes file.
    f.build("int rebuilt(void) { return 1; }\n");
    let r = f.run_suite("shard-4b", &["--partition", "4/4"], &[]);
    assert_ok(&r, "shard 4 of the new build");
    let mut args = vec!["merge"];
    args.extend(&three);
    args.extend(["shard-4b", "-o", "mixed.info"]);
    let r = f.covnet(&args, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("measured different builds") && r.stderr.contains(&gcno),
        "{}",
        r.stderr
    );
    assert!(!f.path("mixed.info").exists());
}

/// An engine's variables for one shard.
type Env = Vec<(&'static str, &'static str)>;

#[test]
fn engines_shard_the_suite_from_their_own_variables() {
    let f = Fixture::new();
    assert_ok(&f.run_suite("one", &[], &[]), "one host");
    let one = f.read("one/coverage-per-machine.info");
    // Each engine's two shards (hash slicing), with exactly its variables.
    let slurm = |id: &'static str| {
        vec![
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
        ]
    };
    let status = f.path("bazel-status");
    let xml = f.path("bazel-junit.xml");
    let outputs = f.path("bazel-out");
    std::fs::create_dir_all(&outputs).unwrap();
    let (status_s, xml_s, outputs_s) = (
        status.display().to_string(),
        xml.display().to_string(),
        outputs.display().to_string(),
    );
    let cases: Vec<(&str, &str, Vec<Env>, Vec<&str>)> = vec![
        (
            "slurm",
            "Slurm job array",
            vec![slurm("3"), slurm("4")],
            vec![],
        ),
        (
            "k8s",
            "Kubernetes Indexed Job",
            vec![
                vec![("JOB_COMPLETION_INDEX", "0")],
                vec![("JOB_COMPLETION_INDEX", "1")],
            ],
            vec!["--shards", "2"],
        ),
        (
            "gitlab",
            "GitLab parallel jobs",
            vec![
                vec![("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "2")],
                vec![("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "2")],
            ],
            vec![],
        ),
    ];
    for (name, protocol, shards, extra) in cases {
        let mut outs = Vec::new();
        for (i, env) in shards.iter().enumerate() {
            let out = format!("{name}-{i}");
            let r = f.run_suite(&out, &extra, env);
            assert_ok(&r, &out);
            assert!(
                r.stderr
                    .contains(&format!("shard {}/2 (hash slicing) by {protocol}", i + 1)),
                "{}",
                r.stderr
            );
            assert!(f.json(&format!("{out}/manifest.json"))["protocol"]
                .as_str()
                .unwrap()
                .starts_with(protocol));
            outs.push(out);
        }
        let merged = format!("{name}.info");
        let mut args = vec!["merge"];
        args.extend(outs.iter().map(String::as_str));
        args.extend(["--per-capture", "-o", &merged]);
        assert_ok(&f.covnet(&args, &[]), name);
        assert_eq!(f.read(&merged), one, "{name}: merged hash shards");
    }
    // Kubernetes without the count: told how to give it.
    let r = f.run_suite("k8s-x", &[], &[("JOB_COMPLETION_INDEX", "0")]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("--shards N"), "{}", r.stderr);

    // Bazel: the status file touched, JUnit where Bazel wants it, the
    // bundle under the undeclared outputs.
    let mut bazel_outs = Vec::new();
    for index in ["0", "1"] {
        let _ = std::fs::remove_file(&status);
        let _ = std::fs::remove_file(&xml);
        let env = [
            ("TEST_TOTAL_SHARDS", "2"),
            ("TEST_SHARD_INDEX", index),
            ("TEST_SHARD_STATUS_FILE", status_s.as_str()),
            ("XML_OUTPUT_FILE", xml_s.as_str()),
            ("TEST_UNDECLARED_OUTPUTS_DIR", outputs_s.as_str()),
        ];
        let args = [
            "run",
            "suite",
            "--coverage",
            "--no-console",
            "--backend",
            "namespace",
        ];
        let r = f.covnet(&args, &env);
        assert_ok(&r, "bazel shard");
        assert!(r.stderr.contains("by Bazel test sharding"), "{}", r.stderr);
        assert!(status.exists(), "TEST_SHARD_STATUS_FILE touched");
        assert!(
            std::fs::read_to_string(&xml)
                .unwrap()
                .contains("<testsuites"),
            "JUnit at XML_OUTPUT_FILE"
        );
        let bundle = outputs.join("covnet");
        assert!(bundle.join("manifest.json").is_file());
        let keep = f.path(&format!("bazel-{index}"));
        std::fs::rename(&bundle, &keep).unwrap();
        bazel_outs.push(keep.display().to_string());
    }
    let mut args = vec!["merge"];
    args.extend(bazel_outs.iter().map(String::as_str));
    args.extend(["--per-capture", "-o", "bazel.info"]);
    assert_ok(&f.covnet(&args, &[]), "bazel merge");
    assert_eq!(f.read("bazel.info"), one, "bazel: merged hash shards");
}

/// The suite submitted to a real Slurm (a private cluster on loopback,
/// `covnet_tests::slurm`) as a job array of 4 tasks, each a covnet that
/// finds its shard in the array's variables; the 4 bundles merge into
/// exactly the one-host run.
#[test]
fn a_suite_as_a_slurm_job_array_merges_into_the_one_host_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    assert_ok(&f.run_suite("one", &[], &[]), "one host");
    let cluster = covnet_tests::slurm::Cluster::start(&f.path("slurm")).expect("Slurm starts");
    let script = f.path("shard.sh");
    // Indices 7-10: the shard is the index minus SLURM_ARRAY_TASK_MIN.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} run suite --coverage --no-console --backend namespace --out shard-$SLURM_ARRAY_TASK_ID\n",
            covnet_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let job = cluster
        .submit_array(&script, "7-10", f.dir.path())
        .expect("sbatch --array");
    let end = cluster.wait(&job, SLOW).expect("the array ends");
    end.check().expect("every shard passes");
    let mut shards = Vec::new();
    let mut specs = 0;
    for task in 7..=10 {
        let out = format!("shard-{task}");
        let m = f.json(&format!("{out}/manifest.json"));
        assert_eq!(m["partition"]["shard"], task - 6, "{m}");
        assert_eq!(m["partition"]["total"], 4);
        assert_eq!(m["partition"]["kind"], "hash");
        assert!(m["protocol"]
            .as_str()
            .unwrap()
            .starts_with("Slurm job array"));
        let log = std::fs::read_to_string(job.output(task)).unwrap();
        assert!(
            log.contains(&format!(
                "shard {}/4 (hash slicing) by Slurm job array",
                task - 6
            )),
            "{log}"
        );
        specs += m["specs"].as_array().unwrap().len();
        shards.push(out);
    }
    cluster.shutdown().expect("Slurm stops");
    assert_eq!(specs, SPECS.len(), "every spec in exactly one shard");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--per-capture", "-o", "slurm.info"]);
    assert_ok(&f.covnet(&args, &[]), "merge of the Slurm shards");
    assert_eq!(
        f.read("slurm.info"),
        f.read("one/coverage-per-machine.info")
    );
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["-o", "slurm-all.info"]);
    assert_ok(&f.covnet(&args, &[]), "merge of the Slurm shards");
    assert_eq!(f.read("slurm-all.info"), f.read("one/coverage.info"));
}

/// SIGTERM to a suite stops every running spec's machines, starts no
/// further spec, still writes the JUnit and the manifest, and exits 130
/// with nothing left running.
#[test]
fn a_signal_stops_the_running_specs_and_starts_no_more() {
    use covnet_tests::running::{alive, children_of, run_dirs_in, wait_until, CovnetRun};
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(
            suite.join(format!("{name}.toml")),
            "[defaults]\nbackend = \"namespace\"\ncommand_timeout = \"10m\"\n[machines.m]\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"READY\");\nm.succeed(\"sleep 900\");\n'''\n",
        )
        .unwrap();
    }
    let base = dir.path().join("runs");
    std::fs::create_dir(&base).unwrap();
    let mut run = CovnetRun::spawn(
        &["run", "suite", "-j", "2", "--no-console", "--out", "out"],
        dir.path(),
        &base,
    )
    .expect("covnet starts");
    let limit = Duration::from_secs(120);
    let ready = |run: &CovnetRun, spec: &str| {
        run.stderr()
            .lines()
            .any(|l| l.starts_with(&format!("[{spec}] ")) && l.ends_with("] READY"))
    };
    wait_until("a and b run", limit, || {
        ready(&run, "a") && ready(&run, "b")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", run.stderr()));
    let children = children_of(run.pid());
    assert!(children.len() >= 2, "two machines' inits: {children:?}");
    run.signal(libc::SIGTERM).expect("SIGTERM");
    let status = run.wait(limit).expect("covnet ends");
    let stderr = run.stderr();
    assert_eq!(status.code(), Some(130), "{stderr}");
    wait_until("the machines are gone", limit, || {
        !children.iter().any(|&p| alive(p))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{stderr}"));
    assert!(
        run_dirs_in(&base).is_empty(),
        "run directories left: {stderr}"
    );
    assert!(
        stderr.contains("NOT RUN: c: the suite was stopped: SIGTERM received"),
        "{stderr}"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/manifest.json")).unwrap(),
    )
    .unwrap();
    let results: Vec<&str> = manifest["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["interrupted", "interrupted", "not run"],
        "{stderr}"
    );
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 3, "{junit}");
}

/// A shard whose slice is empty runs nothing and says so: a warning, an
/// EMPTY SHARD verdict (never PASSED), exit 0 (an engine starts every
/// shard), and a bundle that lists no spec.
#[test]
fn an_empty_shard_says_so() {
    let f = Fixture::new();
    let r = f.covnet(
        &[
            "run",
            "suite/alpha.toml",
            "--backend",
            "namespace",
            "--no-console",
            "--partition",
            "count:2/2",
            "--out",
            "empty",
        ],
        &[],
    );
    assert_ok(&r, "empty shard");
    assert!(
        r.stderr
            .contains("this shard holds none of the suite's 1 specs")
            && r.stderr.contains("EMPTY SHARD: 0 of 0")
            && !r.stderr.contains("PASSED"),
        "{}",
        r.stderr
    );
    assert!(f.json("empty/manifest.json")["specs"]
        .as_array()
        .unwrap()
        .is_empty());
}
