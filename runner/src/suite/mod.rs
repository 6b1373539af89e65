//! Suites of specs past one host: which slice of a suite this host runs
//! ([`partition`]) and how the engines that provide the hosts say so
//! ([`engine`]: Slurm job arrays, Kubernetes Indexed Jobs, Bazel test
//! sharding, GitLab parallel jobs). covnet provides the shard protocol and
//! the exact merge; the engine provides the hosts.

pub mod bundle;
pub mod discover;
pub mod engine;
pub mod execute;
pub mod partition;
pub mod report;
