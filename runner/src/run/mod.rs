//! One run of a spec: the network of machines built from it, the shell
//! proxy that `covnet shell` talks to, the failure bundle, and the
//! orchestration of `covnet run` (plan, script, coverage, verdict).

pub mod bundle;
pub mod collection;
pub mod network;
pub mod orchestrate;
pub mod plan;
pub mod shell_proxy;
pub mod verdict;

pub use orchestrate::{execute, Interruption, RunError};
pub use plan::{PlanError, RunPlan, RunRequest};
pub use verdict::{CoverageOutcome, RunOutcome, TestResult, Verdict};
