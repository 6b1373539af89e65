//! The kernel a VM boots through its PVH entry: the ELF `vmlinux` inside
//! an x86 bzImage, unpacked once and kept in the image cache.
//!
//! QEMU boots an ELF kernel that carries a PVH entry note
//! (`XEN_ELFNOTE_PHYS32_ENTRY`) straight at that entry, with the kernel's
//! segments loaded by QEMU itself; a bzImage instead goes through the
//! firmware's loader and the kernel's own decompressor, which under TCG
//! costs about half a second of emulated work per boot (and leaves both
//! copies of the kernel in guest memory, so in every snapshot). Debian's
//! kernels have `CONFIG_PVH=y`; the cloud kernel's payload is LZ4
//! (legacy frames), the generic one's XZ (not unpacked here: those boot
//! as they are).
//!
//! [`unpack`] is pure (bytes in, bytes out, typed errors with offsets);
//! [`cached`] adds the cache file next to the initramfs images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

/// Why a bzImage yields no PVH kernel (it then boots as it is).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PvhError {
    /// No x86 boot protocol header (`HdrS` at 0x202), or one older than
    /// 2.08, which does not locate the payload.
    #[error("not an x86 bzImage with boot protocol 2.08 or later")]
    NotBzImage,
    /// The payload's offset or length points outside the file.
    #[error("the payload (offset {offset}, {length} bytes) lies outside the image")]
    PayloadBounds {
        /// Payload offset in the file.
        offset: usize,
        /// Payload length.
        length: usize,
    },
    /// The payload is compressed with something this module does not
    /// unpack (XZ, zstd, bzip2, LZMA, LZO).
    #[error("payload compressed with {0} (only LZ4 and gzip are unpacked)")]
    Compression(&'static str),
    /// The compressed payload is damaged at this offset of the payload.
    #[error("damaged payload at offset {offset}: {what}")]
    Damaged {
        /// Offset in the payload.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// The unpacked kernel is not a 64-bit ELF file.
    #[error("the unpacked payload is not a 64-bit ELF kernel")]
    NotElf,
    /// The kernel has no PVH entry note (built without `CONFIG_PVH`).
    #[error("the kernel has no PVH entry note (built without CONFIG_PVH)")]
    NoPvhEntry,
}

/// The `vmlinux` inside `bzimage`, if it can boot through the PVH entry.
pub fn unpack(bzimage: &[u8]) -> Result<Vec<u8>, PvhError> {
    let payload = payload(bzimage)?;
    let vmlinux = match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => unlz4_legacy(payload)?,
        [0x1f, 0x8b, ..] => gunzip(payload)?,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => return Err(PvhError::Compression("XZ")),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err(PvhError::Compression("zstd")),
        [b'B', b'Z', b'h', ..] => return Err(PvhError::Compression("bzip2")),
        [0x89, b'L', b'Z', b'O', ..] => return Err(PvhError::Compression("LZO")),
        _ => return Err(PvhError::Compression("an unknown format")),
    };
    if !has_pvh_entry(&vmlinux)? {
        return Err(PvhError::NoPvhEntry);
    }
    Ok(vmlinux)
}

/// The compressed kernel: `payload_offset` (0x248) and `payload_length`
/// (0x24c) of the setup header, relative to the protected-mode code,
/// which starts after `setup_sects` (0x1f1; 0 means 4) sectors of setup.
fn payload(data: &[u8]) -> Result<&[u8], PvhError> {
    if data.get(0x202..0x206) != Some(b"HdrS") {
        return Err(PvhError::NotBzImage);
    }
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if u16_at(0x206).ok_or(PvhError::NotBzImage)? < 0x208 {
        return Err(PvhError::NotBzImage);
    }
    let sects = match data.get(0x1f1).copied().ok_or(PvhError::NotBzImage)? {
        0 => 4,
        n => usize::from(n),
    };
    let offset = (sects + 1) * 512 + u32_at(0x248).ok_or(PvhError::NotBzImage)?;
    let length = u32_at(0x24c).ok_or(PvhError::NotBzImage)?;
    offset
        .checked_add(length)
        .and_then(|end| data.get(offset..end))
        .ok_or(PvhError::PayloadBounds { offset, length })
}

/// Largest block of the LZ4 legacy format, uncompressed.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// Unpacks LZ4's legacy frame format as the kernel build writes it
/// (`lz4 -l`): the magic, then blocks each behind its compressed length,
/// then (the kernel's own addition) the unpacked size, which is checked.
fn unlz4_legacy(payload: &[u8]) -> Result<Vec<u8>, PvhError> {
    const MAGIC: u32 = 0x184c_2102;
    // The worst case of a block that does not compress, plus slack.
    const MAX_BLOCK: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
    // Sized once by the trailer (capped: it is unchecked until the end),
    // not grown by doubling: a cloud kernel is ~50 MB, and doubling would
    // hold up to twice that while covnet builds its images.
    let trailer = payload
        .len()
        .checked_sub(4)
        .and_then(|at| payload.get(at..))
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
    let mut out = Vec::with_capacity(trailer.min(256 << 20));
    let mut at = 4;
    loop {
        let Some(word) = payload.get(at..at + 4) else {
            return Err(PvhError::Damaged {
                offset: at,
                what: "the stream ends without the unpacked size",
            });
        };
        let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        if n == MAGIC {
            at += 4;
            continue;
        }
        let rest = payload.len() - at - 4;
        if rest == 0 {
            // The trailer: the unpacked size.
            if n as usize != out.len() {
                return Err(PvhError::Damaged {
                    offset: at,
                    what: "the unpacked size differs from the trailer",
                });
            }
            return Ok(out);
        }
        let n = n as usize;
        if n > MAX_BLOCK || n > rest {
            return Err(PvhError::Damaged {
                offset: at,
                what: "a block longer than the format allows or than the stream",
            });
        }
        let block = &payload[at + 4..at + 4 + n];
        lz4_block(block, &mut out, LZ4_LEGACY_BLOCK).map_err(|(o, what)| PvhError::Damaged {
            offset: at + 4 + o,
            what,
        })?;
        at += 4 + n;
    }
}

/// Appends one LZ4 block's output (at most `limit` bytes) to `out`. An
/// error gives the offset in the block and what was wrong.
fn lz4_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), (usize, &'static str)> {
    let start = out.len();
    let mut i = 0;
    // A length nibble of 15 continues in bytes up to one below 255.
    let more = |i: &mut usize, mut len: usize| -> Result<usize, (usize, &'static str)> {
        loop {
            let b = *block.get(*i).ok_or((*i, "a length runs past the block"))?;
            *i += 1;
            len += usize::from(b);
            if b != 255 {
                return Ok(len);
            }
        }
    };
    loop {
        let token = *block.get(i).ok_or((i, "the block ends without literals"))?;
        i += 1;
        let mut literals = usize::from(token >> 4);
        if literals == 15 {
            literals = more(&mut i, literals)?;
        }
        let lit = block
            .get(i..i + literals)
            .ok_or((i, "literals run past the block"))?;
        if out.len() - start + literals > limit {
            return Err((i, "the block unpacks to more than the format allows"));
        }
        out.extend_from_slice(lit);
        i += literals;
        if i == block.len() {
            return Ok(());
        }
        let off = block
            .get(i..i + 2)
            .ok_or((i, "a match offset runs past the block"))?;
        let offset = usize::from(u16::from_le_bytes([off[0], off[1]]));
        if offset == 0 || offset > out.len() - start {
            return Err((i, "a match reaches before the block's output"));
        }
        i += 2;
        let mut len = usize::from(token & 15);
        if len == 15 {
            len = more(&mut i, len)?;
        }
        len += 4;
        if out.len() - start + len > limit {
            return Err((i, "the block unpacks to more than the format allows"));
        }
        let from = out.len() - offset;
        if offset >= len {
            out.extend_from_within(from..from + len);
        } else {
            // Overlapping: the match repeats the last `offset` bytes.
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
}

/// Unpacks a gzip payload (the kernel build appends the unpacked size,
/// which gzip's own trailer already covers: trailing bytes are allowed).
fn gunzip(payload: &[u8]) -> Result<Vec<u8>, PvhError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .read_to_end(&mut out)
        .map_err(|_| PvhError::Damaged {
            offset: 0,
            what: "the gzip stream does not decode",
        })?;
    Ok(out)
}

/// Whether an ELF kernel has a Xen note of type 18
/// (`XEN_ELFNOTE_PHYS32_ENTRY`), the PVH entry point QEMU boots.
fn has_pvh_entry(vmlinux: &[u8]) -> Result<bool, PvhError> {
    const XEN_ELFNOTE_PHYS32_ENTRY: object::elf::NoteType = object::elf::NoteType(18);
    let elf = ElfFile64::<Endianness>::parse(vmlinux).map_err(|_| PvhError::NotElf)?;
    let endian = elf.endian();
    let headers = elf
        .elf_header()
        .program_headers(endian, vmlinux)
        .map_err(|_| PvhError::NotElf)?;
    for ph in headers {
        let Ok(Some(mut notes)) = ph.notes(endian, vmlinux) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The PVH kernel of `bzimage`, unpacked into `cache_dir` on first use
/// and reused while the image keeps its path, size and modification time.
/// The first file written stays (one unpacker per process; across
/// processes the first link wins): its modification time is part of every
/// snapshot key of the VMs that boot it, so replacing it with the same
/// bytes would still make their snapshots miss.
/// Errors: the image cannot be read, or has no PVH kernel ([`PvhError`]).
pub fn cached(bzimage: &Path, cache_dir: &Path) -> Result<PathBuf, CachedError> {
    static UNPACKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let version = super::file_version("covnet-pvh-1 kernel", bzimage).map_err(CachedError::Io)?;
    let hex = covnet_collector::collect::hex_sha256(version.as_bytes());
    let path = cache_dir.join(format!("{hex}.vmlinux"));
    let _one = UNPACKING.lock().unwrap_or_else(|p| p.into_inner());
    if path.is_file() {
        return Ok(path);
    }
    let data = std::fs::read(bzimage).map_err(CachedError::Io)?;
    let vmlinux = unpack(&data).map_err(CachedError::Pvh)?;
    std::fs::create_dir_all(cache_dir).map_err(CachedError::Io)?;
    // Unique per process and call; linked into place only if no other
    // process got there first.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let tmp = cache_dir.join(format!(".{hex}.vmlinux.{}.{call}", std::process::id()));
    let linked = std::fs::write(&tmp, &vmlinux).and_then(|()| super::link_new(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(CachedError::Io)?;
    Ok(path)
}

/// Why [`cached`] has no PVH kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CachedError {
    /// Reading the image or writing the cache failed.
    #[error(transparent)]
    Io(std::io::Error),
    /// The image has no PVH kernel.
    #[error(transparent)]
    Pvh(PvhError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped file: one setup sector, the header fields this
    /// module reads, the payload behind it.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; 2 * 512];
        data[0x1f1] = 1;
        data[0x202..0x206].copy_from_slice(b"HdrS");
        data[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        data[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        data[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&[0xaa; 16]);
        data.extend_from_slice(payload);
        data.extend_from_slice(&[0xbb; 8]);
        data
    }

    /// An LZ4 legacy stream of `blocks`, with the kernel's size trailer.
    fn legacy(blocks: &[&[u8]], unpacked: usize) -> Vec<u8> {
        let mut s = 0x184c_2102u32.to_le_bytes().to_vec();
        for b in blocks {
            s.extend_from_slice(&(b.len() as u32).to_le_bytes());
            s.extend_from_slice(b);
        }
        s.extend_from_slice(&(unpacked as u32).to_le_bytes());
        s
    }

    #[test]
    fn lz4_blocks_unpack_literals_matches_and_overlaps() {
        // "abc" then a match of 9 at offset 3 (overlapping), then "xyz"
        // as the last literals; a second block of 20 literals (15 + 5).
        let b1: &[u8] = &[0x35, b'a', b'b', b'c', 3, 0, 0x30, b'x', b'y', b'z'];
        let mut b2 = vec![0xf0, 5];
        b2.extend_from_slice(b"0123456789abcdefghij");
        let stream = legacy(&[b1, &b2], 35);
        let out = unlz4_legacy(&stream).unwrap();
        assert_eq!(out, b"abcabcabcabcxyz0123456789abcdefghij");
    }

    #[test]
    fn damaged_lz4_is_an_error_at_its_offset_never_a_panic() {
        let b1: &[u8] = &[0x35, b'a', b'b', b'c', 3, 0, 0x30, b'x', b'y', b'z'];
        let good = legacy(&[b1], 15);
        assert!(unlz4_legacy(&good).is_ok());
        // Every truncation and every single-byte change: an error or (for
        // a change that keeps the stream valid) some output; never a panic.
        for cut in 0..good.len() {
            assert!(unlz4_legacy(&good[..cut]).is_err(), "cut at {cut}");
        }
        for at in 4..good.len() {
            for v in [0u8, 1, 0x0f, 0xf0, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = unlz4_legacy(&bad);
            }
        }
        // A match before the start of the output.
        let bad = legacy(&[&[0x10, b'a', 9, 0, 0x10, b'b']], 6);
        assert_eq!(
            unlz4_legacy(&bad),
            Err(PvhError::Damaged {
                offset: 10,
                what: "a match reaches before the block's output"
            })
        );
        // The trailer disagrees.
        assert!(matches!(
            unlz4_legacy(&legacy(&[b1], 16)),
            Err(PvhError::Damaged {
                what: "the unpacked size differs from the trailer",
                ..
            })
        ));
    }

    #[test]
    fn the_payload_is_found_by_the_setup_header() {
        let payload = legacy(&[&[0x30, b'E', b'L', b'F']], 3);
        let image = bzimage(&payload);
        assert_eq!(super::payload(&image).unwrap(), payload.as_slice());
        // Not ELF once unpacked.
        assert_eq!(unpack(&image), Err(PvhError::NotElf));
        let mut old = image.clone();
        old[0x206..0x208].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(unpack(&old), Err(PvhError::NotBzImage));
        assert_eq!(unpack(b"MZ not a kernel"), Err(PvhError::NotBzImage));
        let mut long = image.clone();
        long[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(unpack(&long), Err(PvhError::PayloadBounds { .. })));
        let xz = bzimage(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]);
        assert_eq!(unpack(&xz), Err(PvhError::Compression("XZ")));
    }

    /// The host's kernel (as covnet finds it) unpacks to the same bytes as
    /// the `lz4` tool's, an ELF file with the PVH entry note.
    #[test]
    fn the_host_kernel_unpacks_like_lz4_and_has_a_pvh_entry() {
        let kernel = crate::image::kernel::Kernel::host_default()
            .expect("a guest kernel (run scripts/setup.sh)");
        let data = std::fs::read(&kernel.image).expect("read the kernel");
        let payload = payload(&data).expect("a bzImage");
        assert_eq!(
            &payload[..4],
            [0x02, 0x21, 0x4c, 0x18],
            "Debian's cloud kernel is LZ4"
        );
        let ours = unpack(&data).expect("a PVH kernel");
        let dir = tempfile::tempdir().unwrap();
        let packed = dir.path().join("payload.lz4");
        std::fs::write(&packed, payload).unwrap();
        let out = std::process::Command::new("lz4")
            .args(["-d", "-c"])
            .arg(&packed)
            .output()
            .expect("run lz4 (install it with scripts/setup.sh)");
        // lz4 reads the kernel's size trailer as a truncated block and says so.
        assert_eq!(ours.len(), out.stdout.len());
        assert!(ours == out.stdout, "differs from lz4's output");
        assert_eq!(&ours[..4], b"\x7fELF");
        // Cached once, then reused.
        let first = cached(&kernel.image, dir.path()).unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), ours);
        let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
        assert_eq!(cached(&kernel.image, dir.path()).unwrap(), first);
        assert_eq!(
            std::fs::metadata(&first).unwrap().modified().unwrap(),
            modified
        );
    }
}
