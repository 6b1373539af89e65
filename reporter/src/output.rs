//! Output files: buffered, flushed, and failing with the path in the error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::Error;

/// Creates (truncates) `path` and lets `body` stream into it through a
/// buffer; any I/O failure becomes [`Error::Write`] naming `path`.
pub(crate) fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(err)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    body(&mut w).map_err(err)?;
    w.flush().map_err(err)
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Reads `path` whole; a failure becomes [`Error::Read`] naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}
