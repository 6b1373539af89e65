//! Getting coverage data off a machine through any shell.
//!
//! The collector knows nothing of QEMU: it drives a [`Shell`] (a VM's
//! console, the local machine, `ssh HOST sh`) to flush, list, pull and reset
//! the `.gcda` files (and clang's `.profraw` raw profiles) under a
//! machine's `GCOV_PREFIX` tree. Pulls travel as a tar stream (gzipped on
//! the machine when a sample compresses, unless turned off) and every file
//! is verified against a size and SHA-256 listing made on the machine.
//!
//! ```no_run
//! use std::time::Duration;
//! use covnet_collector::{Collector, LocalShell};
//! let c = Collector::new(LocalShell::new(), "/tmp/gcov-prefix", Duration::from_secs(60));
//! let pulled = c.pull(std::path::Path::new("capture/localhost"))?;
//! println!("{} files, {} bytes", pulled.files.len(), pulled.bytes);
//! # Ok::<(), covnet_collector::CollectError>(())
//! ```
#![deny(missing_docs)]

pub mod collect;
pub mod local;
mod process;
pub mod shell;
pub mod ssh;
pub mod tar;

pub use collect::{
    CollectError, CollectErrorKind, Collector, FlushReport, Pulled, RemoteFile, FLUSH_C_SOURCE,
    SHIM_C_SOURCE,
};
pub use local::LocalShell;
pub use shell::{Output, Shell, ShellError};
pub use ssh::SshShell;
