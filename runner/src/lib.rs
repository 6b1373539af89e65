//! Boot networks of machines from a spec and drive test scripts on them.
//!
//! The runner owns the spec, guest images, QEMU processes, the virtual
//! switch, the shell channel to each machine and the test-script engine; the
//! `covnet` binary is a thin CLI over it and the other covnet crates.
#![deny(missing_docs)]

pub mod bundle;
pub mod coverage;
pub mod driver;
pub mod events;
pub mod faults;
pub mod flush;
pub mod image;
pub mod junit;
pub mod machine;
pub mod network;
pub mod rundir;
pub mod script;
pub mod shell_proxy;
pub mod spec;
pub mod switch;
