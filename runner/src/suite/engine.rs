//! The shard protocols of the engines covnet runs under, read from their
//! own environment variables, so a suite shards without flags: Slurm job
//! arrays, Kubernetes Indexed Jobs, Bazel's test sharding and GitLab's
//! parallel jobs. covnet schedules nothing itself: the engine starts one
//! covnet per shard, each finds its slice here.
//!
//! Reading is pure ([`detect`] takes a variable lookup), so every protocol
//! is tested with exactly the variables its engine sets.

use std::fmt;
use std::path::PathBuf;

use super::partition::{Kind, Partition};

/// Which protocol chose the shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `--partition` on the command line.
    Flag,
    /// A Slurm job array (`SLURM_ARRAY_TASK_ID`, `_COUNT`, `_MIN`).
    Slurm,
    /// A Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, the count given
    /// once with `--shards` or `COVNET_SHARDS`).
    Kubernetes,
    /// Bazel test sharding (`TEST_TOTAL_SHARDS`, `TEST_SHARD_INDEX`).
    Bazel {
        /// `TEST_SHARD_STATUS_FILE`: touched to tell Bazel covnet shards.
        status_file: Option<PathBuf>,
        /// `XML_OUTPUT_FILE`: where Bazel wants the JUnit.
        xml_output: Option<PathBuf>,
        /// `TEST_UNDECLARED_OUTPUTS_DIR`: where outputs go.
        outputs_dir: Option<PathBuf>,
    },
    /// GitLab CI `parallel:` jobs (`CI_NODE_INDEX`, `CI_NODE_TOTAL`).
    GitLab,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Flag => "--partition",
            Protocol::Slurm => "Slurm job array (SLURM_ARRAY_TASK_ID/COUNT/MIN)",
            Protocol::Kubernetes => "Kubernetes Indexed Job (JOB_COMPLETION_INDEX)",
            Protocol::Bazel { .. } => "Bazel test sharding (TEST_SHARD_INDEX/TEST_TOTAL_SHARDS)",
            Protocol::GitLab => "GitLab parallel jobs (CI_NODE_INDEX/CI_NODE_TOTAL)",
        })
    }
}

/// The shard a run takes and the protocol that said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharding {
    /// The slice.
    pub partition: Partition,
    /// Where it came from.
    pub protocol: Protocol,
}

/// An engine's variables that do not make a shard.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{protocol}: {why}")]
pub struct EngineError {
    /// Which engine's variables.
    pub protocol: &'static str,
    /// What is wrong, naming the variables.
    pub why: String,
}

/// Finds the shard: `flag` if given, else the first engine whose variables
/// are set (Slurm, Kubernetes, Bazel, GitLab), else none (the whole suite).
/// `shards` is the count given once for engines that do not publish it
/// (Kubernetes). Engine-chosen shards use hash slicing, so a spec keeps its
/// shard when the suite grows.
pub fn detect(
    flag: Option<Partition>,
    shards: Option<u32>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Sharding>, EngineError> {
    if let Some(partition) = flag {
        return Ok(Some(Sharding {
            partition,
            protocol: Protocol::Flag,
        }));
    }
    let num = |protocol: &'static str, name: &str| -> Result<Option<u32>, EngineError> {
        match var(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| EngineError {
                protocol,
                why: format!("{name}={v:?} is not a whole number"),
            }),
        }
    };
    let make = |protocol: Protocol, label: &'static str, shard: u32, total: u32| {
        Partition::new(Kind::Hash, shard, total)
            .map(|partition| {
                Some(Sharding {
                    partition,
                    protocol,
                })
            })
            .map_err(|e| EngineError {
                protocol: label,
                why: format!("shard {shard} of {total}: {}", e.why),
            })
    };
    const SLURM: &str = "Slurm job array";
    if let Some(id) = num(SLURM, "SLURM_ARRAY_TASK_ID")? {
        let count = num(SLURM, "SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| EngineError {
            protocol: SLURM,
            why: "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into(),
        })?;
        let min = num(SLURM, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let shard = id.checked_sub(min).ok_or_else(|| EngineError {
            protocol: SLURM,
            why: format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"),
        })?;
        return make(Protocol::Slurm, SLURM, shard + 1, count);
    }
    const K8S: &str = "Kubernetes Indexed Job";
    if let Some(index) = num(K8S, "JOB_COMPLETION_INDEX")? {
        let total = match shards {
            Some(n) => n,
            None => num(K8S, "COVNET_SHARDS")?.ok_or_else(|| EngineError {
                protocol: K8S,
                why: "JOB_COMPLETION_INDEX is set but the shard count is not: pass --shards N (the Job's completions) or set COVNET_SHARDS".into(),
            })?,
        };
        return make(Protocol::Kubernetes, K8S, index + 1, total);
    }
    const BAZEL: &str = "Bazel test sharding";
    if let Some(total) = num(BAZEL, "TEST_TOTAL_SHARDS")? {
        let index = num(BAZEL, "TEST_SHARD_INDEX")?.ok_or_else(|| EngineError {
            protocol: BAZEL,
            why: "TEST_TOTAL_SHARDS is set but TEST_SHARD_INDEX is not".into(),
        })?;
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let protocol = Protocol::Bazel {
            status_file: path("TEST_SHARD_STATUS_FILE"),
            xml_output: path("XML_OUTPUT_FILE"),
            outputs_dir: path("TEST_UNDECLARED_OUTPUTS_DIR"),
        };
        return make(protocol, BAZEL, index + 1, total);
    }
    const GITLAB: &str = "GitLab parallel jobs";
    if let Some(index) = num(GITLAB, "CI_NODE_INDEX")? {
        let total = num(GITLAB, "CI_NODE_TOTAL")?.ok_or_else(|| EngineError {
            protocol: GITLAB,
            why: "CI_NODE_INDEX is set but CI_NODE_TOTAL is not".into(),
        })?;
        return make(Protocol::GitLab, GITLAB, index, total);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn shard(vars: &[(&str, &str)], shards: Option<u32>) -> Sharding {
        detect(None, shards, env(vars))
            .expect("valid")
            .expect("a shard")
    }

    #[test]
    fn slurm_array_with_an_offset_index_range() {
        // sbatch --array=3-6: four tasks, ids 3..=6.
        let s = shard(
            &[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "3"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
            ],
            None,
        );
        assert_eq!(s.partition.to_string(), "hash:3/4");
        assert_eq!(s.protocol, Protocol::Slurm);
    }

    #[test]
    fn kubernetes_needs_the_count_once() {
        let vars = [("JOB_COMPLETION_INDEX", "0")];
        let e = detect(None, None, env(&vars)).expect_err("no count");
        assert!(e.to_string().contains("--shards N"), "{e}");
        assert_eq!(shard(&vars, Some(4)).partition.to_string(), "hash:1/4");
        let with_env = [("JOB_COMPLETION_INDEX", "3"), ("COVNET_SHARDS", "4")];
        assert_eq!(shard(&with_env, None).partition.to_string(), "hash:4/4");
    }

    #[test]
    fn bazel_sharding_and_its_files() {
        let s = shard(
            &[
                ("TEST_TOTAL_SHARDS", "4"),
                ("TEST_SHARD_INDEX", "1"),
                ("TEST_SHARD_STATUS_FILE", "/tmp/x/status"),
                ("XML_OUTPUT_FILE", "/tmp/x/test.xml"),
                ("TEST_UNDECLARED_OUTPUTS_DIR", "/tmp/x/outputs"),
            ],
            None,
        );
        assert_eq!(s.partition.to_string(), "hash:2/4");
        assert_eq!(
            s.protocol,
            Protocol::Bazel {
                status_file: Some("/tmp/x/status".into()),
                xml_output: Some("/tmp/x/test.xml".into()),
                outputs_dir: Some("/tmp/x/outputs".into()),
            }
        );
    }

    #[test]
    fn gitlab_is_one_based() {
        let s = shard(&[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")], None);
        assert_eq!(s.partition.to_string(), "hash:2/3");
        assert_eq!(s.protocol, Protocol::GitLab);
    }

    #[test]
    fn the_flag_wins_and_nothing_set_is_the_whole_suite() {
        let flag: Partition = "count:1/2".parse().expect("valid");
        let vars = [("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")];
        let s = detect(Some(flag), None, env(&vars))
            .expect("ok")
            .expect("some");
        assert_eq!((s.partition, s.protocol), (flag, Protocol::Flag));
        assert_eq!(detect(None, None, env(&[])).expect("ok"), None);
    }

    #[test]
    fn broken_variables_name_themselves() {
        for (vars, needle) in [
            (
                vec![("SLURM_ARRAY_TASK_ID", "x")],
                "SLURM_ARRAY_TASK_ID=\"x\"",
            ),
            (
                vec![("SLURM_ARRAY_TASK_ID", "1")],
                "SLURM_ARRAY_TASK_COUNT is not",
            ),
            (
                vec![
                    ("SLURM_ARRAY_TASK_ID", "1"),
                    ("SLURM_ARRAY_TASK_COUNT", "2"),
                    ("SLURM_ARRAY_TASK_MIN", "3"),
                ],
                "below SLURM_ARRAY_TASK_MIN",
            ),
            (vec![("TEST_TOTAL_SHARDS", "2")], "TEST_SHARD_INDEX is not"),
            (
                vec![("TEST_TOTAL_SHARDS", "2"), ("TEST_SHARD_INDEX", "2")],
                "shard 3 of 2",
            ),
            (
                vec![("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "2")],
                "shard 0 of 2",
            ),
        ] {
            let e = detect(None, None, env(&vars)).expect_err(needle);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
