//! Getting coverage data off a machine through any shell.
//!
//! The collector knows nothing of QEMU: it drives a [`Shell`]-like channel
//! (a VM console, a local shell, ssh) to flush, list, pull and reset the
//! `.gcda` files under a machine's `GCOV_PREFIX` tree.
#![deny(missing_docs)]
