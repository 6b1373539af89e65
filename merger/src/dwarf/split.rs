//! Separate debug files: where a stripped program's DWARF lives, found the
//! way gdb finds it. First by GNU build id,
//! `<root>/.build-id/<xx>/<rest>.debug` (the file must carry the same build
//! id), then by `.gnu_debuglink` name in the program's directory, its
//! `.debug/` subdirectory and `<root>/<directory>/` (the file's CRC-32 must
//! match the link's). `<root>` is `/usr/lib/debug` unless told otherwise.

use std::path::{Path, PathBuf};

use super::elf::{DebugLinks, Elf};

/// Where separate debug files are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugSearch {
    /// The global debug directory (gdb's `debug-file-directory`).
    pub root: PathBuf,
}

impl Default for DebugSearch {
    /// `/usr/lib/debug`, where Debian's `-dbgsym` packages install.
    fn default() -> Self {
        DebugSearch {
            root: PathBuf::from("/usr/lib/debug"),
        }
    }
}

/// A candidate separate debug file and what it must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Where to look.
    pub path: PathBuf,
    /// What the file there must carry to belong to the program.
    pub check: Check,
}

/// How a candidate is recognised as the program's debug file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Its build id equals this one.
    BuildId(Vec<u8>),
    /// The CRC-32 of its bytes equals this one.
    Crc(u32),
}

impl DebugSearch {
    /// The candidates for the program at `path` with `links`, in the order
    /// they are tried.
    pub(crate) fn candidates(&self, path: &Path, links: &DebugLinks<'_>) -> Vec<Candidate> {
        let mut out = Vec::new();
        if let Some(id) = links.build_id.filter(|id| id.len() >= 2) {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let (head, rest) = hex.split_at(2);
            out.push(Candidate {
                path: self
                    .root
                    .join(".build-id")
                    .join(head)
                    .join(format!("{rest}.debug")),
                check: Check::BuildId(id.to_vec()),
            });
        }
        if let Some((name, crc)) = links.debuglink {
            let name = String::from_utf8_lossy(name).into_owned();
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let dir = real.parent().unwrap_or(Path::new("/"));
            let global = self
                .root
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(&name);
            for p in [dir.join(&name), dir.join(".debug").join(&name), global] {
                if p != real {
                    out.push(Candidate {
                        path: p,
                        check: Check::Crc(crc),
                    });
                }
            }
        }
        out
    }
}

impl Check {
    /// Whether `data` (a parsed candidate and its bytes) passes the check.
    pub(crate) fn passes(&self, elf: &Elf<'_>, data: &[u8]) -> bool {
        match self {
            Check::BuildId(id) => elf
                .links()
                .ok()
                .and_then(|l| l.build_id)
                .is_some_and(|b| b == id.as_slice()),
            Check::Crc(crc) => {
                let mut c = flate2::Crc::new();
                c.update(data);
                c.sum() == *crc
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_gdbs_order() {
        let search = DebugSearch {
            root: PathBuf::from("/dbg"),
        };
        let links = DebugLinks {
            build_id: Some(&[0xab, 0xcd, 0xef]),
            debuglink: Some((b"prog.debug", 7)),
        };
        let got: Vec<PathBuf> = search
            .candidates(Path::new("/nonexistent/bin/prog"), &links)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(
            got,
            [
                "/dbg/.build-id/ab/cdef.debug",
                "/nonexistent/bin/prog.debug",
                "/nonexistent/bin/.debug/prog.debug",
                "/dbg/nonexistent/bin/prog.debug",
            ]
            .map(PathBuf::from)
        );
        assert!(search
            .candidates(Path::new("/x"), &DebugLinks::default())
            .is_empty());
    }
}
