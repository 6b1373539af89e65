//! Errors of the DWARF reader: [`DwarfErrorKind`] says what is wrong (the
//! section, the offset, the offending value); [`DwarfError`] names the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with an ELF file or its debug information.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DwarfErrorKind {
    /// The file cannot be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The file does not start with the ELF magic.
    #[error("not an ELF file: magic {found:02x?} at offset 0")]
    NotElf {
        /// The first bytes found (fewer when the file is shorter).
        found: Vec<u8>,
    },
    /// The `object` parser rejected the ELF structure.
    #[error("malformed ELF: {0}")]
    Elf(#[source] object::Error),
    /// A debug section is compressed in a format covnet cannot inflate.
    #[error("section {section} is compressed with {format}, covnet inflates only zlib")]
    UnsupportedCompression {
        /// The section name.
        section: &'static str,
        /// The compression format found.
        format: &'static str,
    },
    /// A zlib-compressed debug section does not inflate.
    #[error("section {section} does not inflate (zlib)")]
    Inflate {
        /// The section name.
        section: &'static str,
        /// What flate2 said.
        #[source]
        source: std::io::Error,
    },
    /// A compressed section inflates to another size than its header says.
    #[error("section {section} inflates to {found} bytes, its header says {expected}")]
    InflatedSize {
        /// The section name.
        section: &'static str,
        /// Size in the compression header.
        expected: u64,
        /// Size actually inflated (at most `expected + 1`).
        found: u64,
    },
    /// gimli rejected the DWARF of a compilation unit.
    #[error("bad DWARF in {section} at offset 0x{offset:x} (unit at .debug_info offset 0x{unit:x}): {error}")]
    Dwarf {
        /// The section being read when it failed.
        section: &'static str,
        /// Offset in that section, as far as known (the unit's or the line
        /// program's start).
        offset: u64,
        /// Offset of the compilation unit's header in `.debug_info`.
        unit: u64,
        /// gimli's error.
        #[source]
        error: gimli::Error,
    },
}

impl DwarfErrorKind {
    /// Advice for the user, for the CLI's `(hint: ...)` line.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            DwarfErrorKind::NotElf { .. } => {
                "pass ELF programs or shared libraries (the files installed on the machine)"
            }
            DwarfErrorKind::UnsupportedCompression { .. } => {
                "rebuild with -gz=zlib, or decompress with `objcopy --decompress-debug-sections`"
            }
            DwarfErrorKind::Elf(_)
            | DwarfErrorKind::Inflate { .. }
            | DwarfErrorKind::InflatedSize { .. }
            | DwarfErrorKind::Dwarf { .. } => {
                "the file is damaged or truncated; compare it with the file the build produced"
            }
            DwarfErrorKind::Read(_) => return None,
        })
    }
}

/// A DWARF reader error naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub struct DwarfError {
    /// The file in which the problem was found (a program, a library or
    /// its separate debug file).
    pub path: PathBuf,
    /// What is wrong.
    #[source]
    pub kind: DwarfErrorKind,
}

impl fmt::Display for DwarfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failed to read debug information of {}",
            self.path.display()
        )
    }
}

impl DwarfError {
    /// An error of `kind` found in the file at `path`.
    pub fn new(path: &Path, kind: DwarfErrorKind) -> Self {
        DwarfError {
            path: path.to_path_buf(),
            kind,
        }
    }
}
