//! Errors of the LLVM readers: a `Copy` kind with the offset and the
//! offending value, wrapped in [`LlvmError`], which names the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Which part of an instrumented binary an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// `__llvm_covmap`: per translation unit, the file names.
    Covmap,
    /// `__llvm_covfun`: per function, the coverage mapping.
    Covfun,
    /// `__llvm_prf_names`: the instrumented functions' names.
    Names,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Covmap => "__llvm_covmap",
            Section::Covfun => "__llvm_covfun",
            Section::Names => "__llvm_prf_names",
        })
    }
}

/// What is wrong with a raw profile or a binary's coverage mapping. Offsets
/// are from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlvmErrorKind {
    /// The data ends inside an item.
    #[error("truncated at offset {offset}: {needed} more bytes needed, {available} left")]
    Truncated {
        /// Offset of the incomplete item.
        offset: u64,
        /// Bytes the item needs.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// The first eight bytes are not a raw profile's magic.
    #[error("not an LLVM raw profile: magic 0x{found:016x} at offset {offset}")]
    BadMagic {
        /// Offset of the header.
        offset: u64,
        /// The word found (read little-endian).
        found: u64,
    },
    /// A raw profile of a 32-bit program.
    #[error(
        "raw profile at offset {offset} was written by a 32-bit program, covnet reads 64-bit ones"
    )]
    ThirtyTwoBit {
        /// Offset of the header.
        offset: u64,
    },
    /// A raw profile version other than the one covnet reads.
    #[error("unsupported raw profile version {version} at offset {offset}; covnet reads version {supported} (LLVM 16)", supported = super::profraw::RAW_VERSION)]
    UnsupportedRawVersion {
        /// Offset of the version word.
        offset: u64,
        /// The version found (flags masked off).
        version: u64,
    },
    /// A raw profile whose counters need the binary's debug information to
    /// be attributed (`-debug-info-correlate`).
    #[error(
        "raw profile at offset {offset} needs debug-info correlation, which covnet does not do"
    )]
    DebugInfoCorrelation {
        /// Offset of the header.
        offset: u64,
    },
    /// A header field is inconsistent (sizes beyond the file, a misaligned
    /// size).
    #[error("bad raw profile header at offset {offset}: {field} is {value}")]
    BadHeader {
        /// Offset of the header.
        offset: u64,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A data record's counters lie outside the counters section.
    #[error("data record at offset {offset} points to counters outside the counters section (offset {counter_offset}, {num_counters} counters)")]
    CountersOutOfRange {
        /// Offset of the data record.
        offset: u64,
        /// Its counters' offset within the counters section.
        counter_offset: u64,
        /// Its number of counters.
        num_counters: u32,
    },
    /// Two data records of one function (name and structural hash) hold
    /// different numbers of counters.
    #[error("data record at offset {offset} of function 0x{name_ref:016x} (hash 0x{func_hash:016x}) has {found} counters, an earlier record {expected}")]
    CounterCountMismatch {
        /// Offset of the later record.
        offset: u64,
        /// MD5 of the function name.
        name_ref: u64,
        /// Structural hash.
        func_hash: u64,
        /// Counters of the first record.
        expected: u32,
        /// Counters of this record.
        found: u32,
    },
    /// A LEB128 number longer than 64 bits or beyond its field's limit.
    #[error("number at offset {offset} is out of range")]
    BadNumber {
        /// Offset of the number.
        offset: u64,
    },
    /// The file is not an object file `object` can read.
    #[error("not an ELF object file")]
    NotObject,
    /// The binary has no coverage mapping (`-fcoverage-mapping` missing).
    #[error(
        "no {section} section: not built with clang -fprofile-instr-generate -fcoverage-mapping"
    )]
    MissingSection {
        /// The missing section.
        section: Section,
    },
    /// A section is compressed (`SHF_COMPRESSED`).
    #[error("section {section} is compressed, which covnet does not read")]
    CompressedSection {
        /// The section.
        section: Section,
    },
    /// A coverage mapping version other than the one covnet reads.
    #[error("unsupported coverage mapping version {version} (field value {raw}) at offset {offset}; covnet reads version {supported} (LLVM 13 to 16)", version = u64::from(*raw) + 1, supported = u64::from(super::covmap::MAPPING_VERSION) + 1)]
    UnsupportedMappingVersion {
        /// Offset of the version field.
        offset: u64,
        /// The field as stored (LLVM counts versions from 0).
        raw: u32,
    },
    /// zlib data that does not inflate to the declared size.
    #[error("zlib data at offset {offset} does not inflate to the declared {expected} bytes")]
    Decompress {
        /// Offset of the compressed data.
        offset: u64,
        /// Declared uncompressed size.
        expected: u64,
    },
    /// A function record names a translation unit whose file names are not
    /// in `__llvm_covmap`.
    #[error("function record at offset {offset} refers to unknown file names 0x{hash:016x}")]
    UnknownFilenames {
        /// Offset of the function record.
        offset: u64,
        /// The file names' hash.
        hash: u64,
    },
    /// A function record's name hash is not in `__llvm_prf_names`.
    #[error("function record at offset {offset} names function 0x{name_ref:016x}, which is not in __llvm_prf_names")]
    UnknownName {
        /// Offset of the function record.
        offset: u64,
        /// MD5 of the name.
        name_ref: u64,
    },
    /// A file index beyond the translation unit's file names.
    #[error("file index {index} at offset {offset} out of range ({count} file names)")]
    BadFileIndex {
        /// Offset of the index.
        offset: u64,
        /// The index.
        index: u64,
        /// Number of file names.
        count: u64,
    },
    /// An expression index beyond the function's expressions.
    #[error("expression {index} at offset {offset} out of range ({count} expressions)")]
    BadExpression {
        /// Offset of the counter.
        offset: u64,
        /// The index.
        index: u64,
        /// Number of expressions.
        count: u64,
    },
    /// An expanded file id beyond the function's files.
    #[error("expansion into file id {file_id} at offset {offset} out of range ({count} files)")]
    BadExpansion {
        /// Offset of the region.
        offset: u64,
        /// The file id.
        file_id: u64,
        /// Number of files of the function.
        count: u64,
    },
    /// A region kind covnet does not know (MC/DC regions of later LLVMs).
    #[error("unknown region kind {kind} at offset {offset}")]
    BadRegionKind {
        /// Offset of the region.
        offset: u64,
        /// The kind.
        kind: u64,
    },
    /// A region that ends before it starts, or whose lines overflow.
    #[error("region at offset {offset} ends before it starts")]
    BadRegion {
        /// Offset of the region.
        offset: u64,
    },
    /// A function's mapping has no region.
    #[error("function record at offset {offset} has no region")]
    NoRegions {
        /// Offset of the function record.
        offset: u64,
    },
    /// Counter expressions that refer to themselves.
    #[error(
        "counter expression {index} of the function record at offset {offset} refers to itself"
    )]
    ExpressionCycle {
        /// Offset of the function record.
        offset: u64,
        /// The expression.
        index: u64,
    },
}

impl LlvmErrorKind {
    /// Advice for the user, for the CLI's `(hint: ...)` line.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            LlvmErrorKind::Truncated { .. } => {
                "the file is truncated, often because the program was killed while writing it"
            }
            LlvmErrorKind::BadMagic { .. } => {
                "pass .profraw files written by programs built with clang -fprofile-instr-generate"
            }
            LlvmErrorKind::UnsupportedRawVersion { .. }
            | LlvmErrorKind::UnsupportedMappingVersion { .. } => {
                "covnet reads what clang 16 writes (Debian 12's clang-16); build with that clang, or export with the llvm-cov of your clang"
            }
            LlvmErrorKind::MissingSection { .. } => {
                "pass with --object the instrumented programs and shared libraries, built with -fprofile-instr-generate -fcoverage-mapping"
            }
            LlvmErrorKind::CounterCountMismatch { .. } => {
                "the profiles come from differently built programs; merge only profiles of the same build"
            }
            _ => return None,
        })
    }
}

/// An LLVM coverage error naming the file it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LlvmError {
    /// The raw profile or binary in which the problem was found.
    pub path: PathBuf,
    /// Whether `path` is an instrumented binary (else a raw profile).
    pub binary: bool,
    /// The section of the binary, where known.
    pub section: Option<Section>,
    /// What is wrong.
    #[source]
    pub kind: LlvmErrorKind,
}

impl fmt::Display for LlvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.binary {
            return write!(f, "invalid LLVM raw profile {}", self.path.display());
        }
        write!(
            f,
            "invalid LLVM coverage mapping in {}",
            self.path.display()
        )?;
        if let Some(s) = self.section {
            write!(f, " (section {s})")?;
        }
        Ok(())
    }
}

impl LlvmError {
    /// An error of the raw profile at `path`.
    pub fn profile(path: &Path, kind: LlvmErrorKind) -> Self {
        LlvmError {
            path: path.to_path_buf(),
            binary: false,
            section: None,
            kind,
        }
    }

    /// An error of the binary at `path`, in `section` if known.
    pub fn binary(path: &Path, section: Option<Section>, kind: LlvmErrorKind) -> Self {
        LlvmError {
            path: path.to_path_buf(),
            binary: true,
            section,
            kind,
        }
    }
}
