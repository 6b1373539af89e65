//! Harness for covnet's end-to-end tests: builds C fixtures with
//! `gcc --coverage` (and with clang for LLVM coverage) at test time, runs
//! GCC's `gcov` (and `llvm-cov`) as the oracle, and
//! guards VMs so that a failed test leaves nothing running; starts a private
//! Slurm cluster for the sharded-suite tests.
#![deny(missing_docs)]

pub mod budget;
pub mod clang;
pub mod fuzz_bodies;
pub mod gcc;
pub mod lcov_tool;
pub mod oracle;
pub mod pty;
pub mod running;
pub mod slurm;
