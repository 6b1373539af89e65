//! Slices of a suite for sharded runs: which specs this host runs, chosen
//! the same way on every host from the suite's names alone.
//!
//! Two kinds, as cargo-nextest has them: `count:K/N` deals the suite's
//! specs, sorted by name, round-robin (spec `i` goes to shard `i % N + 1`:
//! even counts, but adding a spec moves others), and `hash:K/N` puts each
//! spec in shard `h(name) % N + 1` with a fixed hash (a spec stays in its
//! shard whatever else the suite holds). Shards are numbered from 1.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// How a suite is sliced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Round-robin over the sorted names.
    Count,
    /// By a fixed hash of each name.
    Hash,
}

/// One slice: shard `shard` of `total` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// How names are dealt.
    pub kind: Kind,
    /// This shard, from 1 to `total`.
    pub shard: u32,
    /// How many shards there are.
    pub total: u32,
}

/// A `--partition` value that is not `count:K/N` or `hash:K/N` with
/// `1 <= K <= N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid partition `{given}`: {why} (expected count:K/N or hash:K/N with 1 <= K <= N, e.g. hash:2/4)")]
pub struct PartitionError {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Partition {
    /// Shard `shard` of `total`, checked.
    pub fn new(kind: Kind, shard: u32, total: u32) -> Result<Partition, PartitionError> {
        let err = |why| PartitionError {
            given: format!("{}:{shard}/{total}", kind.name()),
            why,
        };
        if total == 0 {
            return Err(err("the shard count is 0"));
        }
        if shard == 0 || shard > total {
            return Err(err("the shard is not between 1 and the count"));
        }
        Ok(Partition { kind, shard, total })
    }

    /// Whether the spec named `name`, at `index` in the suite sorted by
    /// name, belongs to this shard.
    pub fn contains(&self, index: usize, name: &str) -> bool {
        let total = u64::from(self.total);
        let slot = match self.kind {
            Kind::Count => index as u64 % total,
            Kind::Hash => stable_hash(name) % total,
        };
        slot + 1 == u64::from(self.shard)
    }

    /// The names of `suite` (any order) that this shard runs, sorted.
    pub fn select<'a>(&self, suite: &[&'a str]) -> Vec<&'a str> {
        let mut sorted: Vec<&str> = suite.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .into_iter()
            .enumerate()
            .filter(|(i, name)| self.contains(*i, name))
            .map(|(_, name)| name)
            .collect()
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Count => "count",
            Kind::Hash => "hash",
        }
    }
}

/// A 64-bit hash of `name` that never changes between hosts, runs or
/// covnet versions (the first 8 bytes of its SHA-256).
pub fn stable_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Partition, PartitionError> {
        let err = |why| PartitionError {
            given: s.to_owned(),
            why,
        };
        let (kind, rest) = match s.split_once(':') {
            Some(("count", rest)) => (Kind::Count, rest),
            Some(("hash", rest)) => (Kind::Hash, rest),
            Some(_) => return Err(err("the kind is neither count nor hash")),
            None => (Kind::Count, s),
        };
        let (k, n) = rest.split_once('/').ok_or_else(|| err("no `/`"))?;
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| err("the shard is not a number"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| err("the count is not a number"))?;
        Partition::new(kind, k, n).map_err(|e| PartitionError {
            given: s.to_owned(),
            why: e.why,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.kind.name(), self.shard, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: [&str; 7] = ["web", "dns", "mail", "ssh", "nfs", "ldap", "proxy"];

    #[test]
    fn every_spec_in_exactly_one_shard_of_each_kind() {
        for kind in [Kind::Count, Kind::Hash] {
            for total in 1..=8 {
                let mut seen: Vec<&str> = Vec::new();
                for shard in 1..=total {
                    let p = Partition::new(kind, shard, total).expect("valid");
                    seen.extend(p.select(&SUITE));
                }
                seen.sort_unstable();
                let mut all = SUITE.to_vec();
                all.sort_unstable();
                assert_eq!(seen, all, "{kind:?} over {total}");
            }
        }
    }

    #[test]
    fn count_deals_round_robin_over_sorted_names() {
        let p: Partition = "count:2/3".parse().expect("valid");
        // sorted: dns ldap mail nfs proxy ssh web
        assert_eq!(p.select(&SUITE), ["ldap", "proxy"]);
        let q: Partition = "1/3".parse().expect("count by default");
        assert_eq!(q.select(&SUITE), ["dns", "nfs", "web"]);
    }

    #[test]
    fn hash_shards_are_stable_and_independent_of_the_rest() {
        // Fixed values: a change here would move specs between shards on
        // hosts running different covnet versions.
        assert_eq!(stable_hash("web"), 0x4b5e_57f6_eb2f_42b9);
        assert_eq!(stable_hash("dns"), 0xdd75_a9d6_fb30_9c43);
        let p: Partition = "hash:1/4".parse().expect("valid");
        let alone = p.select(&["web"]);
        let with_others = p.select(&SUITE);
        assert_eq!(alone.contains(&"web"), with_others.contains(&"web"));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (given, why) in [
            ("hash:0/4", "the shard is not between 1 and the count"),
            ("hash:5/4", "the shard is not between 1 and the count"),
            ("count:1/0", "the shard count is 0"),
            ("mod:1/2", "the kind is neither count nor hash"),
            ("hash:1-2", "no `/`"),
            ("hash:x/2", "the shard is not a number"),
        ] {
            let e = given.parse::<Partition>().expect_err(given);
            assert_eq!(e.why, why, "{given}");
            assert!(e.to_string().contains(given), "{e}");
        }
        assert_eq!(
            "hash:3/4".parse::<Partition>().expect("ok").to_string(),
            "hash:3/4"
        );
    }
}
