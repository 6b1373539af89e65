//! Errors of the gcov readers and solver.
//!
//! [`ErrorKind`] says what went wrong and where (byte offset, offending
//! value); it is `Copy` and knows nothing of file names. [`Error`] wraps a
//! kind with the path of the file it was found in (set by the caller), the
//! path of the file it was checked against (the `.gcno` of a `.gcda`, or the
//! first capture's `.gcda`) and, where known, the function concerned.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::bytes::Version;

/// Which kind of gcov file a reader expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A notes file (`.gcno`), written by the compiler.
    Notes,
    /// A data file (`.gcda`), written by the instrumented program.
    Data,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Notes => "notes (.gcno)",
            FileKind::Data => "data (.gcda)",
        })
    }
}

/// What is wrong with a gcov file, with the byte offset and the offending
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file ends inside a header word or a record header.
    #[error("file truncated at offset {offset}: {needed} more bytes needed, {available} left")]
    Truncated {
        /// Offset of the incomplete item.
        offset: u64,
        /// Bytes the item needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The first word is neither the expected magic nor its byte swap.
    #[error("not a gcov {expected} file: magic 0x{found:08x} at offset 0")]
    BadMagic {
        /// The kind of file that was expected.
        expected: FileKind,
        /// The word found.
        found: u32,
    },
    /// The version word names a GCC whose layout covnet cannot read.
    #[error("unsupported version {version} (word 0x{:08x}) at offset 4; covnet reads GCC 8 to 15", version.word())]
    UnsupportedVersion {
        /// The version found.
        version: Version,
    },
    /// A record claims more bytes than the file has left.
    #[error("record 0x{tag:08x} at offset {offset} claims {length} bytes, only {available} left")]
    RecordOverrun {
        /// Offset of the record's tag.
        offset: u64,
        /// The record's tag.
        tag: u32,
        /// Declared payload length in bytes.
        length: u64,
        /// Bytes left after the record header.
        available: u64,
    },
    /// A record's payload is shorter than its contents need.
    #[error(
        "record 0x{tag:08x} at offset {offset} is too short ({length} bytes) for its contents"
    )]
    RecordTooShort {
        /// Offset of the record's tag.
        offset: u64,
        /// The record's tag.
        tag: u32,
        /// Declared payload length in bytes.
        length: u64,
    },
    /// A record's payload has bytes left after its contents.
    #[error(
        "record size mismatch: record 0x{tag:08x} at offset {offset} has {unread} bytes unread"
    )]
    RecordSizeMismatch {
        /// Offset of the record's tag.
        offset: u64,
        /// The record's tag.
        tag: u32,
        /// Bytes left unread.
        unread: u64,
    },
    /// A BLOCKS, ARCS, LINES or COUNTERS record outside any function.
    #[error("record 0x{tag:08x} at offset {offset} is outside any function")]
    OutsideFunction {
        /// Offset of the record's tag.
        offset: u64,
        /// The record's tag.
        tag: u32,
    },
    /// A function has a second BLOCKS record.
    #[error("second BLOCKS record at offset {offset}")]
    DuplicateBlocks {
        /// Offset of the record's tag.
        offset: u64,
    },
    /// The block count is implausible for the file size.
    #[error("BLOCKS record at offset {offset} declares {blocks} blocks, more than the file can describe ({limit})")]
    TooManyBlocks {
        /// Offset of the record's tag.
        offset: u64,
        /// Declared number of blocks.
        blocks: u32,
        /// The largest plausible number.
        limit: u64,
    },
    /// A function has fewer than the two blocks ENTRY and EXIT.
    #[error("function at offset {offset} has {blocks} blocks, needs at least entry and exit")]
    TooFewBlocks {
        /// Offset of the function's record.
        offset: u64,
        /// Its number of blocks.
        blocks: u32,
    },
    /// A block index at or beyond the function's block count.
    #[error("block index {block} at offset {offset} out of range (function has {blocks} blocks)")]
    BadBlock {
        /// Offset of the offending word.
        offset: u64,
        /// The index found.
        block: u32,
        /// The function's number of blocks.
        blocks: u32,
    },
    /// An arc into ENTRY or out of EXIT.
    #[error("impossible arc {src} -> {dst} at offset {offset} (into entry or out of exit)")]
    BadArc {
        /// Offset of the ARCS record.
        offset: u64,
        /// Source block.
        src: u32,
        /// Destination block.
        dst: u32,
    },
    /// A second ARCS record for the same source block.
    #[error("second ARCS record for block {block} at offset {offset}")]
    DuplicateArcs {
        /// Offset of the record's tag.
        offset: u64,
        /// The source block.
        block: u32,
    },
    /// A line number in a LINES record before any file name.
    #[error("line {line} at offset {offset} precedes any file name")]
    LineWithoutFile {
        /// Offset of the line number.
        offset: u64,
        /// The line number.
        line: u32,
    },
    /// Two functions of one notes file have the same ident.
    #[error("function ident {ident} at offset {offset} appears twice")]
    DuplicateIdent {
        /// Offset of the second FUNCTION record.
        offset: u64,
        /// The ident.
        ident: u32,
    },
    /// A FUNCTION record of a data file with a length other than 0 or 3 words.
    #[error("FUNCTION record at offset {offset} has length {length}, expected 0 or 3 words")]
    BadFunctionLength {
        /// Offset of the record's tag.
        offset: u64,
        /// Declared length in bytes.
        length: u64,
    },
    /// A data file has two arc counter records for one function.
    #[error("second arc counter record for one function at offset {offset}")]
    DuplicateCounters {
        /// Offset of the record's tag.
        offset: u64,
    },
    /// Data and notes come from different GCC versions.
    #[error("version mismatch: data written by {data}, notes by {notes}")]
    VersionMismatch {
        /// Version of the notes file.
        notes: Version,
        /// Version of the data file.
        data: Version,
    },
    /// Data and notes come from different compilations.
    #[error("stamp mismatch with notes file: data stamp 0x{data:08x}, notes stamp 0x{notes:08x} (offset 8)")]
    StampMismatch {
        /// Stamp of the notes file.
        notes: u32,
        /// Stamp of the data file.
        data: u32,
    },
    /// Two captures of one object disagree on the object checksum.
    #[error("object checksum 0x{found:08x} at offset 12 differs from 0x{first:08x} of the first capture")]
    ChecksumMismatch {
        /// Checksum of the first capture.
        first: u32,
        /// Checksum of this capture.
        found: u32,
    },
    /// A data function has no counterpart in the notes.
    #[error("function ident {ident} at offset {offset} is not in the notes file")]
    UnknownFunction {
        /// Offset of the FUNCTION record.
        offset: u64,
        /// The ident.
        ident: u32,
    },
    /// A data function's checksums differ from the notes'.
    #[error("profile mismatch for function ident {ident} at offset {offset}: lineno/cfg checksums 0x{data_lineno:08x}/0x{data_cfg:08x}, notes have 0x{notes_lineno:08x}/0x{notes_cfg:08x}")]
    FunctionMismatch {
        /// Offset of the FUNCTION record.
        offset: u64,
        /// The ident.
        ident: u32,
        /// Line checksum in the notes.
        notes_lineno: u32,
        /// CFG checksum in the notes.
        notes_cfg: u32,
        /// Line checksum in the data.
        data_lineno: u32,
        /// CFG checksum in the data.
        data_cfg: u32,
    },
    /// A data function has a different number of arc counters than the
    /// notes' non-tree arcs.
    #[error(
        "counter record at offset {offset} holds {found} arc counters, notes expect {expected}"
    )]
    CounterCount {
        /// Offset of the counter record.
        offset: u64,
        /// Number of instrumented arcs in the notes.
        expected: u64,
        /// Number of counters in the data.
        found: u64,
    },
    /// Summing counters of several captures overflowed `i64`.
    #[error("counter {index} of the record at offset {offset} overflows when summed")]
    CounterOverflow {
        /// Offset of the counter record.
        offset: u64,
        /// Index of the counter in its record.
        index: u64,
    },
    /// The flow graph cannot be solved (corrupt or mismatched notes).
    #[error("flow graph of the function at offset {offset} is unsolvable at block {block}")]
    Unsolvable {
        /// Offset of the function's notes record.
        offset: u64,
        /// First block left without a count.
        block: u32,
    },
    /// A capture index at or beyond the number of captures.
    #[error("capture index {index} out of range ({n_captures} captures)")]
    CaptureIndex {
        /// The index given.
        index: usize,
        /// The number of captures given.
        n_captures: usize,
    },
}

impl ErrorKind {
    /// Advice for the user, for the CLI's `(hint: ...)` line.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::BadMagic { .. } => {
                "pass .gcno notes and .gcda data files written by gcc --coverage"
            }
            ErrorKind::UnsupportedVersion { .. } => {
                "covnet reads files of GCC 8 to 15; files written by clang --coverage are not supported"
            }
            ErrorKind::VersionMismatch { .. } => {
                "the program ran with a different GCC's runtime than the one that compiled the notes; rebuild and rerun with one GCC"
            }
            ErrorKind::StampMismatch { .. } => {
                "the object was recompiled after the run, or the notes come from another build; rerun the program built from these notes"
            }
            ErrorKind::ChecksumMismatch { .. } => {
                "the captures ran differently built programs; merge only captures of the same build"
            }
            ErrorKind::FunctionMismatch { .. }
            | ErrorKind::UnknownFunction { .. }
            | ErrorKind::CounterCount { .. } => {
                "the data does not belong to these notes; rebuild and rerun, or check the path mapping"
            }
            ErrorKind::Truncated { .. }
            | ErrorKind::RecordOverrun { .. }
            | ErrorKind::RecordTooShort { .. } => {
                "the file is truncated, often because the program was killed while writing it"
            }
            ErrorKind::CounterOverflow { .. } => "the summed counters exceed 2^63; merge fewer captures",
            _ => return None,
        })
    }
}

/// A gcov error naming the file it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// The file in which the problem was found.
    pub path: PathBuf,
    /// The file it was checked against, if any (the notes of a data file,
    /// or the first capture's data file).
    pub against: Option<PathBuf>,
    /// Demangled name of the function concerned, if known.
    pub function: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid gcov file {}", self.path.display())?;
        if let Some(against) = &self.against {
            write!(f, " (checked against {})", against.display())?;
        }
        if let Some(function) = &self.function {
            write!(f, " in function `{function}`")?;
        }
        Ok(())
    }
}

impl Error {
    /// An error of `kind` found in the file at `path`.
    pub fn new(path: &Path, kind: ErrorKind) -> Self {
        Error {
            path: path.to_path_buf(),
            against: None,
            function: None,
            kind,
        }
    }

    /// Names the file `self.path` was checked against.
    pub fn against(mut self, other: &Path) -> Self {
        self.against = Some(other.to_path_buf());
        self
    }

    /// Names the function concerned.
    pub fn in_function(mut self, name: String) -> Self {
        self.function = Some(name);
        self
    }
}
