//! Guest images: a base initramfs with busybox, the kernel modules the
//! guest needs and covnet's init, and a layer per machine with its programs
//! (with their ELF closure) and files; plus the choice of kernel.

pub mod closure;
pub mod cpio;
pub mod guest_files;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod pvh;

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Puts the finished file `tmp` at `path` unless a file is there already
/// (another process wrote the same content first): the first file stays,
/// with its modification time, which snapshot keys record
/// ([`file_version`]). `tmp` stays for the caller to remove.
pub fn link_new(tmp: &Path, path: &Path) -> io::Result<()> {
    match std::fs::hard_link(tmp, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// One line naming a host file as it is now: `<what> <path> <size> bytes,
/// modified <mtime>`. Hashed into cache keys that follow a file by its
/// version, not its contents (the snapshot key, the unpacked PVH kernel).
pub fn file_version(what: &str, path: &Path) -> io::Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display())))?;
    let mtime = meta
        .modified()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(format!(
        "{what} {} {} bytes, modified {}.{:09}",
        path.display(),
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}
