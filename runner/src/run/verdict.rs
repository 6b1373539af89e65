//! How a run ended: the test's result and the coverage's outcome, typed.
//! The CLI maps a [`Verdict`] to an exit code; a library user reads it.

use std::path::PathBuf;
use std::time::Duration;

use crate::coverage::notices::GatherEnd;
use crate::script::junit::TestCase;

/// How the test script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestResult {
    /// Every step and subtest passed.
    Passed,
    /// A step, subtest or the script failed.
    Failed,
    /// The script did not finish within its timeout.
    TimedOut,
    /// A signal (or [`super::Interruption`]) stopped the run.
    Interrupted,
    /// covnet itself failed (a machine or image could not be set up).
    Broken,
}

/// How the coverage part of a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoverageOutcome {
    /// Coverage was not asked for.
    Off,
    /// Every pulled file is in the report and the thresholds are met.
    Complete,
    /// The report was written without some inputs (unpaired or bad
    /// `.gcda` files).
    Incomplete,
    /// There is no report: nothing could be paired or nothing is left
    /// ([`GatherEnd::NothingToReport`]), or an input could not be read
    /// ([`GatherEnd::Failed`]).
    NothingToReport(GatherEnd),
    /// A `fail_under` threshold was not met.
    BelowThreshold,
    /// The coverage part failed (settings, writing the reports); why.
    Failed(String),
}

impl CoverageOutcome {
    /// Whether the coverage leaves a passed test passed.
    pub fn is_ok(&self) -> bool {
        matches!(self, CoverageOutcome::Off | CoverageOutcome::Complete)
    }
}

/// The test's result and the coverage's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How the script ended.
    pub test: TestResult,
    /// How the coverage part ended (collected whatever the test's
    /// result).
    pub coverage: CoverageOutcome,
    /// The machines could not all be stopped cleanly.
    pub shutdown_failed: bool,
}

impl Verdict {
    /// Whether the run passed as a whole: test passed, coverage complete
    /// (or off), every machine stopped cleanly.
    pub fn passed(&self) -> bool {
        self.test == TestResult::Passed && self.coverage.is_ok() && !self.shutdown_failed
    }
}

/// Everything a run gave.
#[derive(Debug)]
pub struct RunOutcome {
    /// How it ended.
    pub verdict: Verdict,
    /// Subtests (and the script) as test cases, for JUnit.
    pub cases: Vec<TestCase>,
    /// Why the script failed, with where in the script or spec.
    pub failure: Option<String>,
    /// The failure bundle (console logs, pcaps, the script), when written.
    pub bundle: Option<PathBuf>,
    /// Why the machines could not all be stopped cleanly.
    pub shutdown_error: Option<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Wall time of the script.
    pub script_time: Duration,
}
