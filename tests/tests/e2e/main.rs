//! covnet's end-to-end tests: one binary, one module per topic.

mod browser;
mod report;
mod lcov_peer;
mod merge_cli;
mod exactness;
mod vm_network;
mod namespace;
mod corruption;
