//! The identity of a build: every `.gcno` file a coverage was paired
//! with, by path, compilation stamp and SHA-256. Coverage of two builds
//! must never be added up (the counters of one object would land on the
//! blocks of another), so a run writes its build's identity next to its
//! coverage (`build.json`) and merging shard bundles compares them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use covnet_merger::bytes::peek_stamp;
use covnet_merger::error::FileKind;
use serde::{Deserialize, Serialize};

/// File name of a run's build identity in its output directory.
pub const FILE: &str = "build.json";

/// One `.gcno` of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notes {
    /// Its path on the host that ran the test (after path maps).
    pub path: PathBuf,
    /// The compilation stamp in its header.
    pub stamp: u32,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The `.gcno` files of a build, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildIdentity {
    /// Every notes file.
    pub notes: Vec<Notes>,
}

/// A notes file whose identity differs between two builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The notes path.
    pub path: PathBuf,
    /// Its identity in the first build.
    pub first: Notes,
    /// Its identity in the second.
    pub second: Notes,
}

/// Why an identity could not be taken or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A notes file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A notes file has no gcov header.
    #[error("{} is not a gcov notes file (no .gcno header)", path.display())]
    NotNotes {
        /// The file.
        path: PathBuf,
    },
}

impl BuildIdentity {
    /// Reads the stamp and checksum of every file of `notes`.
    pub fn of(notes: &[PathBuf]) -> Result<BuildIdentity, IdentityError> {
        let mut out = Vec::with_capacity(notes.len());
        for path in notes {
            let bytes = std::fs::read(path).map_err(|source| IdentityError::Read {
                path: path.clone(),
                source,
            })?;
            out.push(Notes::of(path, &bytes)?);
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        Ok(BuildIdentity { notes: out })
    }

    /// The notes files both builds have with different stamps or bytes.
    /// Files only one of them has do not conflict: two specs of one build
    /// run different programs.
    pub fn conflicts(&self, other: &BuildIdentity) -> Vec<Conflict> {
        let mine: BTreeMap<&Path, &Notes> =
            self.notes.iter().map(|n| (n.path.as_path(), n)).collect();
        other
            .notes
            .iter()
            .filter_map(|n| {
                let m = mine.get(n.path.as_path())?;
                (m.stamp != n.stamp || m.sha256 != n.sha256).then(|| Conflict {
                    path: n.path.clone(),
                    first: (*m).clone(),
                    second: n.clone(),
                })
            })
            .collect()
    }

    /// Adds `other`'s files that `self` lacks (callers check
    /// [`BuildIdentity::conflicts`] first).
    pub fn extend(&mut self, other: &BuildIdentity) {
        let have: std::collections::BTreeSet<PathBuf> =
            self.notes.iter().map(|n| n.path.clone()).collect();
        self.notes.extend(
            other
                .notes
                .iter()
                .filter(|n| !have.contains(&n.path))
                .cloned(),
        );
        self.notes.sort_by(|a, b| a.path.cmp(&b.path));
    }
}

impl Notes {
    /// The identity of the notes file `path` with contents `bytes`.
    pub fn of(path: &Path, bytes: &[u8]) -> Result<Notes, IdentityError> {
        let stamp = peek_stamp(bytes, FileKind::Notes).ok_or_else(|| IdentityError::NotNotes {
            path: path.to_path_buf(),
        })?;
        let sha256 = covnet_collector::collect::hex_sha256(bytes);
        Ok(Notes {
            path: path.to_path_buf(),
            stamp,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(path: &str, stamp: u32, body: u8) -> Notes {
        let mut bytes = b"oncg*22B".to_vec();
        bytes.extend(stamp.to_le_bytes());
        bytes.push(body);
        Notes::of(Path::new(path), &bytes).unwrap()
    }

    #[test]
    fn builds_conflict_only_on_shared_files_that_differ() {
        let a = BuildIdentity {
            notes: vec![notes("/b/x.gcno", 1, 0), notes("/b/y.gcno", 2, 0)],
        };
        let same = BuildIdentity {
            notes: vec![notes("/b/y.gcno", 2, 0), notes("/b/z.gcno", 3, 0)],
        };
        assert!(a.conflicts(&same).is_empty());
        let rebuilt = BuildIdentity {
            notes: vec![notes("/b/x.gcno", 1, 1), notes("/b/y.gcno", 9, 0)],
        };
        let c = a.conflicts(&rebuilt);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].path, Path::new("/b/x.gcno"));
        assert_ne!(
            c[0].first.sha256, c[0].second.sha256,
            "same stamp, new bytes"
        );
        assert_eq!((c[1].first.stamp, c[1].second.stamp), (2, 9));
        let mut all = a.clone();
        all.extend(&same);
        assert_eq!(all.notes.len(), 3);
        assert!(Notes::of(Path::new("/x"), b"not notes").is_err());
    }
}
