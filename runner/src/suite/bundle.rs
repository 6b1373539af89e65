//! Shard bundles: what one shard of a suite brings back, and their exact
//! merge.
//!
//! A bundle is a directory: `manifest.json` ([`Manifest`]: the suite, the
//! partition and the protocol that chose it, each spec's machines,
//! captures and result, the host, the times, covnet's version and the
//! identity of the build), `junit.xml`, and one directory per spec with
//! its usual outputs (`coverage.json` with its machines' captures,
//! `build.json`, the pulled `.gcda` trees, the report).
//!
//! The combined coverage of a suite is the fold, in suite order, of every
//! spec's `coverage.json` with its captures renamed `<spec>/<machine>`
//! ([`fold`]). A one-host suite run and the merge of its shards' bundles
//! fold the same files in the same order, so they give the same
//! tracefile and the same per-machine tables; the fold holds one spec's
//! coverage beside the total at a time (memory bounded by the largest
//! spec, not by the suite).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use covnet_merger::model::Coverage;
use serde::{Deserialize, Serialize};

use super::partition::Partition;
use crate::coverage::identity::{self, BuildIdentity, Conflict};

/// The manifest's file name in a bundle.
pub const MANIFEST: &str = "manifest.json";

/// The manifest's `format` value.
pub const FORMAT: &str = "covnet-shard-bundle";

/// The manifest of a shard bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Layout version of the bundle (1).
    pub version: u32,
    /// Version of the covnet that wrote it.
    pub covnet: String,
    /// The whole suite the shard is a slice of.
    pub suite: SuiteInfo,
    /// The shard (`None`: the whole suite on one host).
    pub partition: Option<PartitionInfo>,
    /// The protocol that chose the shard (`--partition`, Slurm, ...), or
    /// `none`.
    pub protocol: String,
    /// Host name of the machine that ran the shard.
    pub host: String,
    /// Start and end, seconds since the Unix epoch.
    pub started: u64,
    /// End, seconds since the Unix epoch.
    pub finished: u64,
    /// Coverage was collected.
    pub coverage: bool,
    /// The specs this shard ran, in suite order.
    pub specs: Vec<SpecEntry>,
    /// Every `.gcno` the shard's coverage was paired with.
    pub build: BuildIdentity,
}

/// The suite a shard belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteInfo {
    /// Every spec id of the suite, sorted.
    pub specs: Vec<String>,
}

/// A shard, as written in a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// `count` or `hash`.
    pub kind: PartitionKind,
    /// 1-based shard number.
    pub shard: u32,
    /// Number of shards.
    pub total: u32,
}

/// How a suite is sliced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionKind {
    /// Round robin over the sorted ids.
    Count,
    /// By a stable hash of each id.
    Hash,
}

impl From<Partition> for PartitionInfo {
    fn from(p: Partition) -> PartitionInfo {
        PartitionInfo {
            kind: match p.kind {
                super::partition::Kind::Count => PartitionKind::Count,
                super::partition::Kind::Hash => PartitionKind::Hash,
            },
            shard: p.shard,
            total: p.total,
        }
    }
}

/// One spec of a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecEntry {
    /// Its id in the suite (its directory in the bundle).
    pub id: String,
    /// The spec file on the shard's host.
    pub path: PathBuf,
    /// Its machines.
    pub machines: Vec<String>,
    /// The captures of its coverage (`<id>/<machine>`, with phases and
    /// subtests).
    pub captures: Vec<String>,
    /// How its test ended: `passed`, `failed`, `timed out`,
    /// `interrupted`, `broken` or `not run`.
    pub result: String,
    /// How its coverage ended (`complete`, `incomplete`, `off`, ...).
    pub coverage: String,
    /// Wall time, seconds.
    pub elapsed: f64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl SpecEntry {
    /// The spec passed with complete coverage (or coverage off).
    pub fn ok(&self) -> bool {
        self.result == "passed" && matches!(self.coverage.as_str(), "complete" | "off")
    }
}

/// Why bundles could not be read or merged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file of a bundle could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest or `build.json` does not parse.
    #[error("{} is not a covnet shard bundle manifest: {why}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A spec's coverage does not read back.
    #[error("failed to read the coverage of spec `{spec}` ({})", path.display())]
    Coverage {
        /// The spec.
        spec: String,
        /// Its `coverage.json`.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: covnet_reporter::Error,
    },
    /// The coverages do not add up (a file's functions differ).
    #[error("failed to merge the coverage of spec `{spec}`")]
    Merge {
        /// The spec.
        spec: String,
        /// The conflict.
        #[source]
        source: covnet_merger::merge::MergeError,
    },
    /// Two bundles measured different builds.
    #[error("{} and {} measured different builds: {} differs (stamp {:08x}, sha256 {} in the first; stamp {:08x}, sha256 {} in the second)\n  (hint: merge only the shards of one build; rebuild and rerun the shards that ran another)", first.display(), second.display(), conflict.path.display(), conflict.first.stamp, short(&conflict.first.sha256), conflict.second.stamp, short(&conflict.second.sha256))]
    DifferentBuilds {
        /// One bundle.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// The `.gcno` that differs, as each bundle has it.
        conflict: Box<Conflict>,
    },
    /// Two bundles are shards of different suites.
    #[error("{} and {} are shards of different suites ({} specs: {}; {} specs: {})", first.display(), second.display(), first_specs.len(), first_specs.join(", "), second_specs.len(), second_specs.join(", "))]
    DifferentSuites {
        /// One bundle.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// The first's suite.
        first_specs: Vec<String>,
        /// The second's suite.
        second_specs: Vec<String>,
    },
    /// Two bundles both ran a spec.
    #[error("spec `{spec}` is in both {} and {} (the same shard twice?)", first.display(), second.display())]
    SpecTwice {
        /// The spec.
        spec: String,
        /// One bundle.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// No bundle held any coverage.
    #[error("the bundles hold no coverage (run the shards with --coverage)")]
    NoCoverage,
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl Manifest {
    /// Reads the manifest of the bundle `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, BundleError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| BundleError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if m.format != FORMAT || m.version != 1 {
            return Err(BundleError::Manifest {
                path,
                why: format!(
                    "format {:?} version {}, expected {FORMAT:?} version 1",
                    m.format, m.version
                ),
            });
        }
        Ok(m)
    }

    /// Writes the manifest into the bundle `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BundleError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(self).map_err(|e| BundleError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|source| BundleError::Read { path, source })
    }
}

/// Whether `dir` is a shard bundle (holds a manifest).
pub fn is_bundle(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Reads the build identity a spec's run wrote (`None` without one).
pub fn read_identity(spec_dir: &Path) -> Result<Option<BuildIdentity>, BundleError> {
    let path = spec_dir.join(identity::FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BundleError::Manifest {
                path,
                why: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BundleError::Read { path, source }),
    }
}

/// Folds specs' coverage in the order given: each `(id, spec directory)`
/// whose `coverage.json` exists is read, its captures renamed
/// `<id>/<capture>`, and merged into the total. Specs without coverage
/// are skipped (their absence is the caller's to report). `Ok(None)`
/// when no spec had coverage. Without `attribute`, each spec's per-capture
/// counts are dropped before it joins the total (memory per line, not per
/// line and capture).
pub fn fold<'a>(
    specs: impl IntoIterator<Item = (&'a str, PathBuf)>,
    attribute: bool,
) -> Result<Folded, BundleError> {
    // Adjacent partial totals merge when they hold as many specs (a
    // binary counter): merging costs lines times captures, so a linear
    // fold of many attributed specs would cost that for every spec, this
    // only for every level. Order is kept: captures stay in suite order.
    // Without attribution each spec joins the total at once (memory: the
    // total and one spec).
    let mut stack: Vec<(u32, String, Coverage)> = Vec::new();
    let mut captures = BTreeMap::new();
    let join = |left: (u32, String, Coverage), right: (u32, String, Coverage)| {
        let (level, first, a) = left;
        let (_, id, b) = right;
        covnet_merger::merge::merge(a, b)
            .map(|c| (level + 1, first, c))
            .map_err(|source| BundleError::Merge { spec: id, source })
    };
    for (id, dir) in specs {
        let path = dir.join("coverage.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(BundleError::Read { path, source }),
        };
        let (mut cov, _) = covnet_reporter::json::read_slice(&bytes, &path).map_err(|source| {
            BundleError::Coverage {
                spec: id.to_owned(),
                path: path.clone(),
                source,
            }
        })?;
        drop(bytes);
        for c in &mut cov.captures {
            *c = format!("{id}/{c}");
        }
        captures.insert(id.to_owned(), cov.captures.clone());
        if !attribute {
            cov = covnet_merger::merge::without_attribution(cov);
        }
        stack.push((0, id.to_owned(), cov));
        while stack.len() >= 2 {
            let n = stack.len();
            if attribute && stack[n - 2].0 != stack[n - 1].0 {
                break;
            }
            let (Some(right), Some(left)) = (stack.pop(), stack.pop()) else {
                break;
            };
            stack.push(join(left, right)?);
        }
    }
    let mut total: Option<(u32, String, Coverage)> = None;
    while let Some(left) = stack.pop() {
        total = Some(match total {
            None => left,
            Some(right) => join(left, right)?,
        });
    }
    Ok(Folded {
        coverage: total.map(|(_, _, c)| c),
        captures,
    })
}

/// What [`fold`] gives: the total, and each spec's captures as named in it.
#[derive(Debug, Default)]
pub struct Folded {
    /// The specs' coverage added up (`None`: no spec had any).
    pub coverage: Option<Coverage>,
    /// Spec id → its captures (`<id>/<capture>`), for the specs read.
    pub captures: BTreeMap<String, Vec<String>>,
}

/// Bundles merged: the suite's coverage and what is missing from it.
#[derive(Debug)]
pub struct MergedBundles {
    /// The suite's combined coverage (`<spec>/<machine>` captures).
    pub coverage: Coverage,
    /// Every spec of the suite in no bundle, every shard missing, every
    /// spec that failed: for the report's notes.
    pub notes: Vec<String>,
    /// The build all bundles measured.
    pub build: BuildIdentity,
    /// The manifests, in the order given.
    pub manifests: Vec<Manifest>,
}

impl MergedBundles {
    /// Whether every spec of the suite ran, passed and brought its
    /// coverage.
    pub fn complete(&self) -> bool {
        self.notes.is_empty()
    }
}

/// Merges shard bundles into the suite's coverage: refuses bundles of
/// different suites or builds, names missing shards, specs and failures,
/// and folds every spec's coverage in suite order (as a one-host run of
/// the suite does); `attribute` keeps the per-capture counts.
pub fn merge(bundles: &[PathBuf], attribute: bool) -> Result<MergedBundles, BundleError> {
    let manifests: Vec<Manifest> = bundles
        .iter()
        .map(|b| Manifest::read(b))
        .collect::<Result<_, _>>()?;
    let mut notes = Vec::new();
    // One suite.
    if let Some((first, m0)) = bundles.first().zip(manifests.first()) {
        for (b, m) in bundles.iter().zip(&manifests).skip(1) {
            if m.suite != m0.suite {
                return Err(BundleError::DifferentSuites {
                    first: first.clone(),
                    second: b.clone(),
                    first_specs: m0.suite.specs.clone(),
                    second_specs: m.suite.specs.clone(),
                });
            }
        }
    }
    // One build: every pair of bundles agrees on the notes they share.
    let mut build = BuildIdentity::default();
    let mut owner: Vec<(PathBuf, BuildIdentity)> = Vec::new();
    for (b, m) in bundles.iter().zip(&manifests) {
        for (other, id) in &owner {
            if let Some(c) = id.conflicts(&m.build).into_iter().next() {
                return Err(BundleError::DifferentBuilds {
                    first: other.clone(),
                    second: b.clone(),
                    conflict: Box::new(c),
                });
            }
        }
        build.extend(&m.build);
        owner.push((b.clone(), m.build.clone()));
    }
    // Which bundle ran each spec.
    let suite: Vec<String> = manifests
        .first()
        .map(|m| m.suite.specs.clone())
        .unwrap_or_default();
    let mut ran: std::collections::BTreeMap<&str, (usize, &SpecEntry)> = Default::default();
    for (i, m) in manifests.iter().enumerate() {
        for s in &m.specs {
            if let Some((j, _)) = ran.insert(&s.id, (i, s)) {
                return Err(BundleError::SpecTwice {
                    spec: s.id.clone(),
                    first: bundles[j].clone(),
                    second: bundles[i].clone(),
                });
            }
        }
    }
    // Missing shards: the partitions seen say how many there are.
    if let Some(total) = manifests
        .iter()
        .filter_map(|m| m.partition)
        .map(|p| p.total)
        .max()
    {
        let have: std::collections::BTreeSet<u32> = manifests
            .iter()
            .filter_map(|m| m.partition.map(|p| p.shard))
            .collect();
        for k in 1..=total {
            if !have.contains(&k) {
                notes.push(format!(
                    "shard {k}/{total} is missing: no bundle of it was given"
                ));
            }
        }
    }
    for id in &suite {
        match ran.get(id.as_str()) {
            None => notes.push(format!("spec `{id}` did not run: no bundle holds it")),
            Some((i, s)) if !s.ok() => notes.push(format!(
                "spec `{id}` (in {}): test {}, coverage {}{}",
                bundles[*i].display(),
                s.result,
                s.coverage,
                s.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    let order = suite.iter().filter_map(|id| {
        let (i, s) = ran.get(id.as_str())?;
        Some((s.id.as_str(), bundles[*i].join(&s.id)))
    });
    let coverage = fold(order, attribute)?
        .coverage
        .ok_or(BundleError::NoCoverage)?;
    Ok(MergedBundles {
        coverage,
        notes,
        build,
        manifests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::identity::Notes;

    fn manifest(specs: &[&str], shard: u32, total: u32, ran: &[(&str, &str)]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: 1,
            covnet: "test".into(),
            suite: SuiteInfo {
                specs: specs.iter().map(|s| s.to_string()).collect(),
            },
            partition: Some(PartitionInfo {
                kind: PartitionKind::Count,
                shard,
                total,
            }),
            protocol: "--partition".into(),
            host: "h".into(),
            started: 0,
            finished: 1,
            coverage: true,
            specs: ran
                .iter()
                .map(|(id, result)| SpecEntry {
                    id: id.to_string(),
                    path: PathBuf::from(format!("/s/{id}.toml")),
                    machines: vec!["m".into()],
                    captures: vec![format!("{id}/m")],
                    result: result.to_string(),
                    coverage: "complete".into(),
                    elapsed: 1.0,
                    error: None,
                })
                .collect(),
            build: BuildIdentity::default(),
        }
    }

    fn bundle(root: &Path, name: &str, m: &Manifest, lines: &[(&str, i64)]) -> PathBuf {
        let dir = root.join(name);
        for s in &m.specs {
            std::fs::create_dir_all(dir.join(&s.id)).unwrap();
            let lcov: String = lines
                .iter()
                .map(|(f, n)| format!("TN:m\nSF:{f}\nDA:1,{n}\nend_of_record\n"))
                .collect();
            let cov = covnet_merger::lcov::read(lcov.as_bytes(), Path::new("x.info"), "m").unwrap();
            covnet_reporter::json::write_path(
                &cov,
                &covnet_reporter::RunInfo::now("t", vec![]),
                &dir.join(&s.id).join("coverage.json"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        m.write(&dir).unwrap();
        dir
    }

    #[test]
    fn shards_merge_in_suite_order_and_gaps_are_named() {
        let t = tempfile::tempdir().unwrap();
        let suite = ["a", "b", "c"];
        let b2 = bundle(
            t.path(),
            "s2",
            &manifest(&suite, 2, 3, &[("b", "failed")]),
            &[("/x.c", 2)],
        );
        let b1 = bundle(
            t.path(),
            "s1",
            &manifest(&suite, 1, 3, &[("a", "passed")]),
            &[("/x.c", 1)],
        );
        let m = merge(&[b2.clone(), b1.clone()], true).unwrap();
        assert_eq!(m.coverage.captures, ["a/m", "b/m"], "suite order");
        assert_eq!(m.coverage.files["/x.c"].lines[&1].count, 3);
        assert_eq!(m.coverage.files["/x.c"].lines[&1].by_capture, [1, 2]);
        assert_eq!(m.notes.len(), 3, "{:?}", m.notes);
        assert!(m.notes[0].contains("shard 3/3 is missing"));
        assert!(m.notes[1].contains("spec `b`") && m.notes[1].contains("failed"));
        assert!(m.notes[2].contains("spec `c` did not run"));
        assert!(!m.complete());

        let plain = merge(&[b2.clone(), b1.clone()], false).unwrap();
        assert!(plain.coverage.captures.is_empty());
        assert_eq!(plain.coverage.files["/x.c"].lines[&1].count, 3);
        let e = merge(&[b1.clone(), b1.clone()], true).unwrap_err();
        assert!(matches!(e, BundleError::SpecTwice { .. }), "{e}");
        let other = bundle(
            t.path(),
            "o",
            &manifest(&["a", "z"], 2, 2, &[("z", "passed")]),
            &[],
        );
        let e = merge(&[b1.clone(), other], true).unwrap_err();
        assert!(matches!(e, BundleError::DifferentSuites { .. }), "{e}");
    }

    #[test]
    fn the_fold_equals_merging_one_spec_after_the_other() {
        let t = tempfile::tempdir().unwrap();
        let mut specs = Vec::new();
        let mut linear: Option<Coverage> = None;
        for i in 0..7i64 {
            let id = format!("s{i}");
            let lcov: String = (0..=i % 3)
                .map(|f| {
                    format!(
                        "TN:a\nSF:/f{f}.c\nFN:1,g{f}\nFNDA:{i},g{f}\nDA:1,{i}\nDA:{},{}\nBRDA:1,0,0,{i}\nBRDA:1,0,1,-\nend_of_record\nTN:b\nSF:/f{f}.c\nDA:1,1\nend_of_record\n",
                        2 + i,
                        i * 2
                    )
                })
                .collect();
            let mut cov =
                covnet_merger::lcov::read(lcov.as_bytes(), Path::new("x.info"), "m").unwrap();
            let dir = t.path().join(&id);
            std::fs::create_dir_all(&dir).unwrap();
            covnet_reporter::json::write_path(
                &cov,
                &covnet_reporter::RunInfo::now("t", vec![]),
                &dir.join("coverage.json"),
            )
            .unwrap();
            for c in &mut cov.captures {
                *c = format!("{id}/{c}");
            }
            linear = Some(match linear {
                None => cov,
                Some(acc) => covnet_merger::merge::merge(acc, cov).unwrap(),
            });
            specs.push((id, dir));
        }
        let linear = linear.unwrap();
        let order = || specs.iter().map(|(id, dir)| (id.as_str(), dir.clone()));
        let folded = fold(order(), true).unwrap();
        assert_eq!(folded.captures["s3"], ["s3/a", "s3/b"]);
        assert_eq!(folded.coverage.unwrap(), linear);
        assert_eq!(
            fold(order(), false).unwrap().coverage.unwrap(),
            covnet_merger::merge::without_attribution(linear)
        );
    }

    #[test]
    fn bundles_of_different_builds_are_refused_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let notes = |body: u8| {
            let mut bytes = b"oncg*22B".to_vec();
            bytes.extend(5u32.to_le_bytes());
            bytes.push(body);
            Notes::of(Path::new("/b/x.gcno"), &bytes).unwrap()
        };
        let mut m1 = manifest(&["a", "b"], 1, 2, &[("a", "passed")]);
        m1.build.notes.push(notes(1));
        let mut m2 = manifest(&["a", "b"], 2, 2, &[("b", "passed")]);
        m2.build.notes.push(notes(2));
        let b1 = bundle(t.path(), "s1", &m1, &[("/x.c", 1)]);
        let b2 = bundle(t.path(), "s2", &m2, &[("/x.c", 1)]);
        let e = merge(&[b1, b2], true).unwrap_err().to_string();
        assert!(
            e.contains("different builds") && e.contains("/b/x.gcno"),
            "{e}"
        );
        assert!(e.contains("s1") && e.contains("s2"), "{e}");
    }
}
