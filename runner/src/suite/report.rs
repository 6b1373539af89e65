//! What a suite (or one shard of it) leaves in its output directory: one
//! JUnit file with a `<testsuite>` per spec, the suite's combined coverage
//! report (`<spec>/<machine>` captures, folded as [`bundle::fold`] does)
//! and the bundle's manifest with the build's identity.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use covnet_merger::lcov::LcovFormat;
use covnet_merger::model::Coverage;

use super::bundle::{self, BundleError, Manifest, SpecEntry, SuiteInfo};
use super::discover::Suite;
use super::engine::Sharding;
use super::execute::SpecRun;
use crate::coverage::identity::BuildIdentity;
use crate::run::{CoverageOutcome, TestResult};
use crate::script::junit::{self, Outcome, TestCase, TestSuite};

/// The JUnit file's name in the suite's output directory.
pub const JUNIT: &str = "junit.xml";

/// Why the suite's outputs could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteReportError {
    /// A file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The specs' coverage could not be combined.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The combined report could not be written.
    #[error("failed to write the suite's coverage report")]
    Report(#[source] covnet_reporter::Error),
}

/// What the suite wrote.
#[derive(Debug)]
pub struct SuiteReport {
    /// The manifest (also in `manifest.json`).
    pub manifest: Manifest,
    /// The combined coverage, when some spec brought any.
    pub coverage: Option<Coverage>,
    /// What the combined coverage lacks (failed specs, specs without
    /// coverage, builds that disagree), also in the report's notes.
    pub notes: Vec<String>,
}

/// How a suite ran, for its outputs.
pub struct SuiteOutputs<'a> {
    /// The whole suite.
    pub suite: &'a Suite,
    /// The slice this host ran (`None`: all of it).
    pub sharding: Option<&'a Sharding>,
    /// The specs this host ran, in suite order.
    pub runs: &'a [SpecRun],
    /// Coverage was collected.
    pub coverage: bool,
    /// lcov dialect of the combined tracefiles.
    pub lcov_format: LcovFormat,
    /// When the suite started.
    pub started: SystemTime,
    /// Extra JUnit file (e.g. Bazel's `XML_OUTPUT_FILE`).
    pub junit: Option<PathBuf>,
}

/// Writes the suite's JUnit, combined coverage report and manifest into
/// `out`.
pub fn write(out: &Path, s: &SuiteOutputs<'_>) -> Result<SuiteReport, SuiteReportError> {
    let suites: Vec<TestSuite> = s.runs.iter().map(test_suite).collect();
    for path in std::iter::once(out.join(JUNIT)).chain(s.junit.clone()) {
        let file = std::fs::File::create(&path).map_err(|source| SuiteReportError::Write {
            path: path.clone(),
            source,
        })?;
        junit::write_xml(&suites, std::io::BufWriter::new(file))
            .map_err(|source| SuiteReportError::Write { path, source })?;
    }

    // Every spec's coverage, folded in suite order (each spec's captures
    // named on the way, for the manifest).
    let folded = if s.coverage {
        let order = s.runs.iter().map(|r| (r.spec.id.as_str(), r.out.clone()));
        bundle::fold(order, true)?
    } else {
        bundle::Folded::default()
    };
    let mut captures = folded.captures;
    let entries: Vec<SpecEntry> = s
        .runs
        .iter()
        .map(|r| entry(r, captures.remove(&r.spec.id).unwrap_or_default()))
        .collect();
    let mut notes = Vec::new();
    for e in entries.iter().filter(|e| !e.ok()) {
        notes.push(format!(
            "spec `{}`: test {}, coverage {}{}",
            e.id,
            e.result,
            e.coverage,
            e.error
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ));
    }
    // The build: every spec's notes, which must agree.
    let mut build = BuildIdentity::default();
    for r in s.runs {
        if let Some(id) = bundle::read_identity(&r.out)? {
            for c in build.conflicts(&id) {
                notes.push(format!(
                    "spec `{}` measured another build of {} than the specs before it (rebuilt during the suite?)",
                    r.spec.id,
                    c.path.display()
                ));
            }
            build.extend(&id);
        }
    }
    match &folded.coverage {
        Some(c) => {
            let mut info = covnet_reporter::RunInfo::now(
                suite_title(s),
                s.runs.iter().map(|r| r.spec.id.clone()).collect(),
            );
            info.notes = notes.clone();
            let outputs = covnet_reporter::outputs::Outputs::run_layout(out, s.lcov_format);
            covnet_reporter::outputs::write_all(c, &info, &outputs)
                .map_err(SuiteReportError::Report)?;
        }
        None if s.coverage => notes.push("no spec brought coverage: no combined report".to_owned()),
        None => {}
    }

    let manifest = Manifest {
        format: bundle::FORMAT.into(),
        version: 1,
        covnet: env!("CARGO_PKG_VERSION").into(),
        suite: SuiteInfo {
            specs: s.suite.ids().into_iter().map(str::to_owned).collect(),
        },
        partition: s.sharding.map(|sh| sh.partition.into()),
        protocol: s
            .sharding
            .map_or_else(|| "none".to_owned(), |sh| sh.protocol.to_string()),
        host: hostname(),
        started: seconds(s.started),
        finished: seconds(SystemTime::now()),
        coverage: s.coverage,
        specs: entries,
        build,
    };
    manifest.write(out)?;
    Ok(SuiteReport {
        manifest,
        coverage: folded.coverage,
        notes,
    })
}

fn suite_title(s: &SuiteOutputs<'_>) -> String {
    match s.sharding {
        Some(sh) => format!(
            "suite of {} specs, shard {}/{}",
            s.suite.specs.len(),
            sh.partition.shard,
            sh.partition.total
        ),
        None => format!("suite of {} specs", s.suite.specs.len()),
    }
}

/// A spec's run as the manifest lists it.
fn entry(r: &SpecRun, captures: Vec<String>) -> SpecEntry {
    let (result, cov, error) = match &r.outcome {
        Err(e) => ("not run".to_owned(), "none".to_owned(), Some(e.clone())),
        Ok(o) => (
            match o.verdict.test {
                TestResult::Passed => "passed",
                TestResult::Failed => "failed",
                TestResult::TimedOut => "timed out",
                TestResult::Interrupted => "interrupted",
                TestResult::Broken => "broken",
            }
            .to_owned(),
            match &o.verdict.coverage {
                CoverageOutcome::Off => "off".to_owned(),
                CoverageOutcome::Complete => "complete".to_owned(),
                CoverageOutcome::Incomplete => "incomplete".to_owned(),
                CoverageOutcome::NothingToReport(_) => "nothing to report".to_owned(),
                CoverageOutcome::BelowThreshold => "below threshold".to_owned(),
                CoverageOutcome::Failed(why) => format!("failed: {why}"),
            },
            o.failure
                .clone()
                .or_else(|| o.shutdown_error.clone())
                .map(|f| f.lines().next().unwrap_or_default().to_owned()),
        ),
    };
    SpecEntry {
        id: r.spec.id.clone(),
        path: r.spec.path.clone(),
        machines: r.machines.clone(),
        captures,
        result,
        coverage: cov,
        elapsed: r.elapsed.as_secs_f64(),
        error,
    }
}

/// A spec's run as a JUnit `<testsuite>` named by its id.
fn test_suite(r: &SpecRun) -> TestSuite {
    match &r.outcome {
        Ok(o) => TestSuite {
            name: r.spec.id.clone(),
            cases: o.cases.clone(),
            elapsed: o.script_time,
        },
        Err(e) => TestSuite {
            name: r.spec.id.clone(),
            cases: vec![TestCase {
                name: "script".into(),
                elapsed: r.elapsed,
                outcome: Outcome::Error {
                    message: e.lines().next().unwrap_or_default().to_owned(),
                    detail: e.clone(),
                },
                output: String::new(),
            }],
            elapsed: r.elapsed,
        },
    }
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This host's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
