//! covnet's end-to-end tests: one binary, one module per topic.

mod blindspots;
mod browser;
mod build_trees;
mod cleanup;
mod collect_ssh;
mod corruption;
mod coverage_run;
mod diffcov;
mod exactness;
mod faults;
mod features;
mod formats;
mod fuzz_regressions;
mod isolation;
mod lcov_peer;
mod llvm;
mod markers;
mod merge_cli;
mod namespace;
mod report;
mod scale;
mod service_flush;
mod slurm;
mod subversion;
mod suite;
mod vm_network;
