//! Boot networks of machines from a spec and drive test scripts on them.
//!
//! The runner owns the spec, guest images, QEMU processes, the virtual
//! switch, the shell channel to each machine and the test-script engine; the
//! `covnet` binary is a thin CLI over it and the other covnet crates.
#![deny(missing_docs)]

pub mod accel;
pub mod console;
pub mod coverage;
pub mod diag;
pub mod events;
pub mod image;
pub mod machine;
pub mod namespace;
pub mod net;
pub mod process;
pub mod qemu;
pub mod run;
pub mod rundir;
pub mod script;
pub mod spec;
pub mod vm;
