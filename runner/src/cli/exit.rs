//! Documented exit codes of the `covnet` binary, in one place.

/// Everything asked for succeeded.
#[allow(dead_code)]
pub const SUCCESS: u8 = 0;
/// An error stopped the command (bad input, failed machine, I/O error).
pub const FAILURE: u8 = 1;
/// The command finished but some inputs were bad and skipped (`--keep-going`),
/// or a test script failed.
#[allow(dead_code)]
pub const PARTIAL: u8 = 2;
/// The run was interrupted by a signal (Ctrl-C, SIGTERM, SIGHUP); every
/// machine was stopped.
pub const INTERRUPTED: u8 = 130;
/// A coverage threshold (`--fail-under-*`) was not met.
#[allow(dead_code)]
pub const BELOW_THRESHOLD: u8 = 3;
