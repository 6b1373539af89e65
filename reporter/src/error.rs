//! The reporter's error type: what failed, on which path.

use std::io;
use std::path::PathBuf;

/// A report could not be written (or a JSON report could not be read).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Creating an output directory failed.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing an output file failed.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading an input file failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A JSON report is not valid JSON or not covnet's report format.
    #[error("failed to parse JSON report {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error (carries line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A JSON report parsed but its content is inconsistent.
    #[error("invalid JSON report {path}: {problem}")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the source file and line.
        problem: String,
    },
}
