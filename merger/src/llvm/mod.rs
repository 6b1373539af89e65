//! LLVM source-based coverage, read natively: raw profiles (`.profraw`) of
//! programs built with clang `-fprofile-instr-generate -fcoverage-mapping`
//! and the coverage mapping inside those programs and shared libraries,
//! evaluated into lines, branches and functions as `llvm-cov export` does
//! over `llvm-profdata merge` of the same profiles.
//!
//! * [`profraw`]: raw profile version 8 (LLVM 14 to 16), both byte orders;
//!   [`profraw::Profile`] sums counters per function as `llvm-profdata
//!   merge` does.
//! * [`covmap`]: `__llvm_covmap`, `__llvm_covfun` and `__llvm_prf_names`
//!   of coverage mapping version 6 (LLVM 13 to 16), zlib-compressed names
//!   included.
//! * [`segments`]: regions → segments → line counts.
//! * [`report`]: functions and branches, and the [`crate::model`] result,
//!   with per-capture attribution.
//!
//! Readers work on borrowed bytes, never panic, and fail with an
//! [`LlvmError`] naming the file, the section and the offset; versions
//! other than those above are refused, naming the version.

pub mod covmap;
pub mod error;
pub mod profraw;
mod reader;
pub mod report;
pub mod segments;

use std::fs;
use std::path::{Path, PathBuf};

pub use error::{LlvmError, LlvmErrorKind, Section};

/// Reads the coverage mapping of the binary at `path` (its bytes).
pub fn read_object(path: &Path, bytes: &[u8]) -> Result<Vec<covmap::FunctionMapping>, LlvmError> {
    covmap::read_object(bytes).map_err(|(section, kind)| LlvmError::binary(path, section, kind))
}

/// Reads the raw profile at `path` (its bytes).
pub fn read_profile(path: &Path, bytes: &[u8]) -> Result<Vec<profraw::Record>, LlvmError> {
    profraw::parse(bytes).map_err(|kind| LlvmError::profile(path, kind))
}

/// The raw profiles of one capture (machine, run, process set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSet {
    /// Capture name.
    pub name: String,
    /// Its `.profraw` files.
    pub profiles: Vec<PathBuf>,
}

/// A problem with one LLVM input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Reading a file failed.
    #[error("failed to read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bad profile or binary.
    #[error(transparent)]
    Invalid(#[from] LlvmError),
}

impl InputError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            InputError::Io { path, .. } => path,
            InputError::Invalid(e) => &e.path,
        }
    }
}

/// The result of [`gather`].
#[derive(Debug, Default)]
pub struct Gathered {
    /// Coverage of every source file of the binaries, captures named and
    /// attributed.
    pub coverage: crate::model::Coverage,
    /// Functions llvm-cov would leave out too.
    pub dropped: report::Dropped,
    /// Profiles that could not be read (left out when keeping going).
    pub skipped: Vec<InputError>,
    /// How many profiles were read.
    pub profiles_read: usize,
}

fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    fs::read(path).map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the binaries' mappings and every capture's profiles and computes
/// the coverage (see [`report::coverage`]). A bad binary always fails; a
/// bad profile fails unless `keep_going`, which leaves it out and lists it
/// in [`Gathered::skipped`]. With `attribute` off the captures are pooled
/// into one named `merged`.
pub fn gather(
    objects: &[PathBuf],
    sets: &[ProfileSet],
    keep_going: bool,
    attribute: bool,
) -> Result<Gathered, InputError> {
    let mut mappings = Vec::with_capacity(objects.len());
    for path in objects {
        mappings.push(read_object(path, &read(path)?)?);
    }
    let mut names: Vec<String> = Vec::new();
    let mut profiles: Vec<profraw::Profile> = Vec::new();
    let mut skipped = Vec::new();
    let mut profiles_read = 0;
    for set in sets {
        let name = if attribute {
            set.name.as_str()
        } else {
            "merged"
        };
        let ci = match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                names.push(name.to_owned());
                profiles.push(profraw::Profile::default());
                names.len() - 1
            }
        };
        for path in &set.profiles {
            let added = read(path).and_then(|bytes| {
                let records = read_profile(path, &bytes)?;
                let profile = profiles.get_mut(ci).ok_or_else(|| {
                    InputError::Invalid(LlvmError::profile(
                        path,
                        LlvmErrorKind::BadHeader {
                            offset: 0,
                            field: "capture",
                            value: ci as u64,
                        },
                    ))
                })?;
                profile
                    .add(&records)
                    .map_err(|k| InputError::Invalid(LlvmError::profile(path, k)))
            });
            match added {
                Ok(()) => profiles_read += 1,
                Err(e) if keep_going => skipped.push(e),
                Err(e) => return Err(e),
            }
        }
    }
    let outcome = report::coverage(&mappings, &profiles).map_err(|(oi, kind)| {
        let path = objects.get(oi).cloned().unwrap_or_default();
        InputError::Invalid(LlvmError::binary(&path, Some(Section::Covfun), kind))
    })?;
    let mut coverage = outcome.coverage;
    coverage.captures = names;
    Ok(Gathered {
        coverage,
        dropped: outcome.dropped,
        skipped,
        profiles_read,
    })
}

/// The `.profraw` files under `root` (symlinked directories not followed),
/// sorted; unreadable directories are returned as errors.
pub fn find_profiles(root: &Path) -> (Vec<PathBuf>, Vec<InputError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(source) => {
                errors.push(InputError::Io { path: dir, source });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(source) => {
                    errors.push(InputError::Io {
                        path: dir.clone(),
                        source,
                    });
                    continue;
                }
            };
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(_) if path.extension().is_some_and(|e| e == "profraw") && path.is_file() => {
                    found.push(path)
                }
                Ok(_) => {}
                Err(source) => errors.push(InputError::Io { path, source }),
            }
        }
    }
    found.sort();
    (found, errors)
}

/// Source files that both `gcov` (coverage from gcc's `.gcda` files) and
/// `llvm` cover: instrumented both ways, their counts are not comparable
/// and must not be added. Removes them from `llvm` (gcc's counts stay) and
/// returns their paths.
pub fn set_aside_mixed(
    gcov: &crate::model::Coverage,
    llvm: &mut crate::model::Coverage,
) -> Vec<String> {
    let mixed: Vec<String> = llvm
        .files
        .keys()
        .filter(|k| gcov.files.contains_key(*k))
        .cloned()
        .collect();
    for k in &mixed {
        llvm.files.remove(k);
    }
    mixed
}
