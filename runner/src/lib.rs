//! Boot networks of machines from a spec and drive test scripts on them.
//!
//! The runner owns the spec ([`spec`]), guest images and machines (QEMU
//! VMs and namespace machines), the virtual network ([`net`]), the
//! test-script engine ([`script`]), a run's coverage ([`coverage`]) and the
//! orchestration of a whole run ([`run`]: plan, script, coverage, typed
//! verdict), told as [`events`]. The library never prints; the `covnet`
//! binary is a thin CLI over it and the other covnet crates. The module map
//! is in `docs/architecture.md`.
#![deny(missing_docs)]

pub mod coverage;
pub mod diag;
pub mod events;
pub mod image;
pub mod machine;
pub mod net;
pub mod run;
pub mod rundir;
pub mod script;
pub mod spec;
pub mod stop;
pub mod suite;
