//! Blind spots: code shipped to a machine that none of its captures
//! covers.
//!
//! A coverage report counts only instrumented code. The ELF files installed
//! on a machine (its programs and their shared-library closure) say, through
//! their DWARF ([`crate::dwarf`]), which source files and functions were
//! compiled into them. A source file of those that no capture of the
//! machine has in its coverage is a *blind spot*: it runs there, and no
//! report can say whether it was tested. Each blind file comes with its
//! executable-line count from the line tables and its functions that have
//! code; ELF files without any debug information are named, since what they
//! hold cannot be known.
//!
//! The comparison is by source path, after the same renaming the coverage
//! got (path maps, include/exclude filters): a file is covered when the
//! machine's coverage has it, whatever its line counts. Blind-spot figures
//! are a separate total; they are never added to the covered line rate.

use std::collections::{BTreeMap, BTreeSet};

use crate::dwarf::{BinaryDebug, Debug};
use crate::model::Coverage;

/// The blind spots of one machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineBlindSpots {
    /// The machine's name.
    pub machine: String,
    /// What it runs that its coverage does not see.
    pub blind: BlindSpots,
}

/// Blind spots of a set of ELF files against one machine's coverage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlindSpots {
    /// One entry per ELF file, in the order given.
    pub binaries: Vec<BinaryBlindSpots>,
}

/// The blind spots of one ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryBlindSpots {
    /// The ELF file.
    pub path: String,
    /// Where its debug information came from, or that it has none.
    pub debug: DebugSource,
    /// Source files compiled into it that no capture covers, by path.
    pub files: Vec<BlindFile>,
    /// How many of its source files the coverage does have.
    pub covered_files: usize,
}

/// Where an ELF file's debug information came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DebugSource {
    /// Its own DWARF.
    Embedded,
    /// A separate debug file (build id or `.gnu_debuglink`).
    Separate(String),
    /// None found: what the file holds is unknown.
    Missing,
}

/// One source file that runs on the machine and that no capture covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlindFile {
    /// Source path, renamed as the coverage's paths are.
    pub path: String,
    /// Executable lines (from the line tables).
    pub lines: BTreeSet<u32>,
    /// Its functions that have code, by line and name.
    pub functions: Vec<BlindFunction>,
}

/// A function with code in a blind file.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlindFunction {
    /// Declaration line.
    pub line: u32,
    /// Source name.
    pub name: String,
}

/// Totals of a machine's blind spots, each source file, line and function
/// counted once however many ELF files hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlindTotals {
    /// ELF files examined.
    pub binaries: u64,
    /// ELF files without any debug information.
    pub binaries_without_debug: u64,
    /// Source files no capture covers.
    pub files: u64,
    /// Their executable lines.
    pub lines: u64,
    /// Their functions that have code.
    pub functions: u64,
}

/// The source files of `cov` that the machine's captures have: those owned
/// by some capture `i` with `mine(i, name)` (every file when `cov` keeps no
/// captures).
pub fn covered_files(cov: &Coverage, mine: impl Fn(usize, &str) -> bool) -> BTreeSet<String> {
    let ours: Vec<usize> = cov
        .captures
        .iter()
        .enumerate()
        .filter(|(i, name)| mine(*i, name))
        .map(|(i, _)| i)
        .collect();
    cov.files
        .iter()
        .filter(|(_, f)| cov.captures.is_empty() || ours.iter().any(|&i| f.owned_by_capture(i)))
        .map(|(path, _)| path.clone())
        .collect()
}

/// The blind spots of `binaries` against the source files `covered`.
/// `rename` maps a DWARF source path to its name in the report, or `None`
/// when the report's filters leave it out (it is then not a blind spot
/// either).
pub fn blind_spots<'a>(
    binaries: impl IntoIterator<Item = &'a BinaryDebug>,
    covered: &BTreeSet<String>,
    rename: impl Fn(&str) -> Option<String>,
) -> BlindSpots {
    let binaries = binaries
        .into_iter()
        .map(|b| {
            let path = b.path.to_string_lossy().into_owned();
            let (debug, info) = match &b.debug {
                Debug::Found { from, info } if *from == b.path => (DebugSource::Embedded, info),
                Debug::Found { from, info } => (
                    DebugSource::Separate(from.to_string_lossy().into_owned()),
                    info,
                ),
                Debug::Missing { .. } => {
                    return BinaryBlindSpots {
                        path,
                        debug: DebugSource::Missing,
                        files: Vec::new(),
                        covered_files: 0,
                    }
                }
            };
            let mut files: BTreeMap<String, BlindFile> = BTreeMap::new();
            let mut covered_files = BTreeSet::new();
            for (source, file) in &info.files {
                let Some(name) = rename(source) else { continue };
                let functions =
                    file.functions
                        .iter()
                        .filter(|f| f.has_code)
                        .map(|f| BlindFunction {
                            line: f.line,
                            name: f.name.clone(),
                        });
                if covered.contains(&name) {
                    covered_files.insert(name);
                    continue;
                }
                let blind = files.entry(name.clone()).or_insert_with(|| BlindFile {
                    path: name,
                    ..BlindFile::default()
                });
                if blind.lines.is_empty() {
                    // Most files come from one unit: a copy of the tree, not
                    // one insertion per line.
                    blind.lines = file.lines.clone();
                } else {
                    blind.lines.extend(file.lines.iter().copied());
                }
                blind.functions.extend(functions);
            }
            let files = files
                .into_values()
                .filter_map(|mut f| {
                    f.functions.sort();
                    f.functions.dedup();
                    (!f.lines.is_empty() || !f.functions.is_empty()).then_some(f)
                })
                .collect();
            BinaryBlindSpots {
                path,
                debug,
                files,
                covered_files: covered_files.len(),
            }
        })
        .collect();
    BlindSpots { binaries }
}

impl BlindSpots {
    /// Totals, each file, line and function once. A file that several
    /// binaries list counts the union of their lines and functions; one
    /// listed once (the common case: glibc's 1,700 files) counts its own,
    /// without a set of every line.
    pub fn totals(&self) -> BlindTotals {
        let mut by_path: BTreeMap<&str, Vec<&BlindFile>> = BTreeMap::new();
        let mut t = BlindTotals::default();
        for b in &self.binaries {
            t.binaries += 1;
            t.binaries_without_debug += u64::from(b.debug == DebugSource::Missing);
            for f in &b.files {
                by_path.entry(&f.path).or_default().push(f);
            }
        }
        t.files = by_path.len() as u64;
        for files in by_path.values() {
            if let [f] = files.as_slice() {
                t.lines += f.lines.len() as u64;
                let functions: BTreeSet<&BlindFunction> = f.functions.iter().collect();
                t.functions += functions.len() as u64;
                continue;
            }
            let lines: BTreeSet<u32> = files.iter().flat_map(|f| f.lines.iter().copied()).collect();
            let functions: BTreeSet<&BlindFunction> =
                files.iter().flat_map(|f| f.functions.iter()).collect();
            t.lines += lines.len() as u64;
            t.functions += functions.len() as u64;
        }
        t
    }

    /// The ELF files without any debug information.
    pub fn without_debug(&self) -> impl Iterator<Item = &BinaryBlindSpots> {
        self.binaries
            .iter()
            .filter(|b| b.debug == DebugSource::Missing)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dwarf::{DebugInfo, Function, SourceFile};
    use crate::model::FileCoverage;

    fn source(lines: &[u32], functions: &[(&str, u32, bool)]) -> SourceFile {
        SourceFile {
            lines: lines.iter().copied().collect(),
            functions: functions
                .iter()
                .map(|&(name, line, has_code)| Function {
                    line,
                    name: name.into(),
                    linkage_name: None,
                    has_code,
                })
                .collect(),
        }
    }

    fn binary(path: &str, files: &[(&str, SourceFile)]) -> BinaryDebug {
        BinaryDebug {
            path: PathBuf::from(path),
            debug: Debug::Found {
                from: PathBuf::from(path),
                info: DebugInfo {
                    units: Vec::new(),
                    files: files
                        .iter()
                        .map(|(p, f)| (p.to_string(), f.clone()))
                        .collect(),
                },
            },
        }
    }

    #[test]
    fn uncovered_files_are_blind_and_totals_count_each_line_once() {
        let prog = binary(
            "/bin/prog",
            &[
                ("/src/main.c", source(&[1, 2, 3], &[("main", 1, true)])),
                ("/src/h.h", source(&[7], &[("inl", 7, false)])),
            ],
        );
        let lib = binary(
            "/lib/libu.so",
            &[
                ("/src/h.h", source(&[7, 8], &[("inl", 7, true)])),
                (
                    "/lib/u.c",
                    source(&[4, 5], &[("u", 4, true), ("gone", 9, false)]),
                ),
                ("/usr/include/x.h", source(&[], &[("decl_only", 1, false)])),
            ],
        );
        let stripped = BinaryDebug {
            path: PathBuf::from("/lib/libc.so.6"),
            debug: Debug::Missing {
                searched: Vec::new(),
            },
        };
        let covered: BTreeSet<String> = ["/src/main.c".to_string()].into();
        let b = blind_spots(&[prog, lib, stripped], &covered, |p| Some(p.to_owned()));
        let names: Vec<Vec<&str>> = b
            .binaries
            .iter()
            .map(|b| b.files.iter().map(|f| f.path.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [vec!["/src/h.h"], vec!["/lib/u.c", "/src/h.h"], vec![]]
        );
        assert_eq!(b.binaries[0].covered_files, 1);
        assert_eq!(
            b.binaries[1].files[0].functions,
            [BlindFunction {
                line: 4,
                name: "u".into()
            }]
        );
        assert_eq!(
            b.totals(),
            BlindTotals {
                binaries: 3,
                binaries_without_debug: 1,
                files: 2,
                lines: 4,
                functions: 2,
            }
        );
        let none: Vec<&str> = b.without_debug().map(|b| b.path.as_str()).collect();
        assert_eq!(none, ["/lib/libc.so.6"]);

        // Renamed like the coverage; filtered out means not reported.
        let b = blind_spots(
            &[binary(
                "/bin/p",
                &[
                    ("/build/a.c", source(&[1], &[])),
                    ("/usr/x.h", source(&[2], &[])),
                ],
            )],
            &["/src/a.c".to_string()].into(),
            |p| (!p.starts_with("/usr/")).then(|| p.replace("/build/", "/src/")),
        );
        assert!(b.binaries[0].files.is_empty(), "{b:?}");
        assert_eq!(b.binaries[0].covered_files, 1);
    }

    #[test]
    fn covered_files_are_those_of_the_machines_captures() {
        let mut cov = Coverage {
            captures: vec!["server".into(), "client".into(), "server@p1".into()],
            ..Coverage::default()
        };
        for (path, owned) in [
            ("/a.c", vec![true, false, false]),
            ("/b.c", vec![false, true, false]),
            ("/c.c", vec![false, false, true]),
            ("/all.c", vec![]),
        ] {
            cov.files.insert(
                path.into(),
                FileCoverage {
                    owned_by: owned,
                    ..FileCoverage::default()
                },
            );
        }
        let server = covered_files(&cov, |_, n| n == "server" || n.starts_with("server@"));
        assert_eq!(server, ["/a.c", "/all.c", "/c.c"].map(String::from).into());
        cov.captures.clear();
        assert_eq!(covered_files(&cov, |_, _| false).len(), 4);
    }
}
