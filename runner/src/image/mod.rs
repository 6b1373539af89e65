//! Guest images: an initramfs per machine with busybox, the kernel modules
//! the guest needs, covnet's init, and the machine's programs (with their
//! ELF closure) and files; plus the choice of kernel.

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
