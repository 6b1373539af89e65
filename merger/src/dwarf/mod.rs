//! What an ELF file was compiled from, read from its DWARF with `gimli`:
//! compilation units, source files with their executable lines (from the
//! line programs) and functions.
//!
//! This lives in the merger because it is one more reader of "which source
//! lines exist" beside the `.gcno` reader: the coverage model says what
//! instrumented code counted, the DWARF says what code was shipped at all,
//! and [`crate::blindspots`] compares the two. Like the gcov readers it is
//! pure over borrowed bytes ([`read_slice`]), with the file IO in one
//! adapter ([`read_path`]) that also finds separate debug files
//! ([`DebugSearch`]).
//!
//! Which line-table rows count as executable lines is documented in
//! [`DebugInfo`]'s module ([`read`]); debug sections compressed with zlib
//! (`-gz`, `SHF_COMPRESSED` or GNU `.zdebug_*`) are inflated with `flate2`.

mod elf;
mod error;
pub mod read;
mod split;

use std::path::{Path, PathBuf};

pub use elf::DebugLinks;
pub use error::{DwarfError, DwarfErrorKind};
pub use read::{CompUnit, DebugInfo, Function, SourceFile};
pub use split::DebugSearch;

/// The debug information of one ELF file, or where it was looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Debug {
    /// DWARF was found.
    Found {
        /// The file it was read from: the ELF file itself or its separate
        /// debug file.
        from: PathBuf,
        /// What it says.
        info: DebugInfo,
    },
    /// Neither the file nor a separate debug file has DWARF.
    Missing {
        /// The separate debug files looked for (none existed or matched).
        searched: Vec<PathBuf>,
    },
}

/// One ELF file and its debug information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryDebug {
    /// The ELF file as named by the caller.
    pub path: PathBuf,
    /// Its debug information.
    pub debug: Debug,
}

/// Reads the DWARF embedded in the ELF file `data`; `Ok(None)` when it has
/// none (stripped, or built without `-g`).
pub fn read_slice(data: &[u8]) -> Result<Option<DebugInfo>, DwarfErrorKind> {
    DebugInfo::from_elf(&elf::Elf::parse(data)?)
}

/// The build id and `.gnu_debuglink` of the ELF file `data`.
pub fn links(data: &[u8]) -> Result<DebugLinks<'_>, DwarfErrorKind> {
    elf::Elf::parse(data)?.links()
}

/// Names `path` in the errors of its bytes.
fn err(path: &Path) -> impl Fn(DwarfErrorKind) -> DwarfError + '_ {
    move |kind| DwarfError::new(path, kind)
}

/// Reads the debug information of the ELF file at `path`: its own DWARF,
/// or else that of its separate debug file found through `search`, or else
/// [`Debug::Missing`]. Errors name the file they concern (the program or
/// its debug file).
pub fn read_path(path: &Path, search: &DebugSearch) -> Result<BinaryDebug, DwarfError> {
    let data = std::fs::read(path).map_err(|e| DwarfError::new(path, DwarfErrorKind::Read(e)))?;
    let parsed = elf::Elf::parse(&data).map_err(err(path))?;
    if let Some(info) = DebugInfo::from_elf(&parsed).map_err(err(path))? {
        return Ok(BinaryDebug {
            path: path.to_path_buf(),
            debug: Debug::Found {
                from: path.to_path_buf(),
                info,
            },
        });
    }
    let links = parsed.links().map_err(err(path))?;
    let candidates = search.candidates(path, &links);
    for c in &candidates {
        let bytes = match std::fs::read(&c.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DwarfError::new(&c.path, DwarfErrorKind::Read(e))),
        };
        let Ok(candidate) = elf::Elf::parse(&bytes) else {
            continue;
        };
        if !c.check.passes(&candidate, &bytes) {
            continue;
        }
        if let Some(info) = DebugInfo::from_elf(&candidate).map_err(err(&c.path))? {
            return Ok(BinaryDebug {
                path: path.to_path_buf(),
                debug: Debug::Found {
                    from: c.path.clone(),
                    info,
                },
            });
        }
    }
    Ok(BinaryDebug {
        path: path.to_path_buf(),
        debug: Debug::Missing {
            searched: candidates.into_iter().map(|c| c.path).collect(),
        },
    })
}

#[cfg(test)]
mod tests;
