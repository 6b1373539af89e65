//! A streaming writer for the cpio `newc` format the Linux kernel unpacks
//! as an initramfs: directories, regular files, symlinks and device nodes,
//! owned by root, with mtime 0 so equal inputs give equal bytes.

use std::io::{self, Write};

/// `S_IFDIR`.
pub const S_IFDIR: u32 = 0o040000;
/// `S_IFREG`.
pub const S_IFREG: u32 = 0o100000;
/// `S_IFLNK`.
pub const S_IFLNK: u32 = 0o120000;
/// `S_IFCHR`.
pub const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

/// An entry that cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write cpio entry `{name}`")]
pub struct CpioError {
    /// The entry's name in the archive.
    pub name: String,
    /// Why.
    #[source]
    pub kind: CpioErrorKind,
}

/// Why an entry cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpioErrorKind {
    /// The underlying writer failed.
    #[error("write failed")]
    Io(#[from] io::Error),
    /// Empty, absolute, or containing NUL or `.`/`..` components.
    #[error("invalid entry name")]
    InvalidName,
    /// Larger than the format's 4 GiB limit.
    #[error("{len} bytes is more than newc's 4 GiB limit")]
    TooLarge {
        /// The size.
        len: u64,
    },
    /// A reader gave fewer bytes than announced.
    #[error("source gave {got} bytes, {expected} announced")]
    ShortRead {
        /// Announced.
        expected: u64,
        /// Delivered.
        got: u64,
    },
    /// More than 2³² entries.
    #[error("too many entries")]
    TooManyEntries,
}

/// Writes a newc archive entry by entry; call [`CpioWriter::finish`] to
/// write the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A directory `name` (relative, e.g. `usr/bin`) with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, 0, &mut io::empty())
    }

    /// A regular file with contents `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        let len = data.len() as u64;
        self.entry(name, S_IFREG | (perm & 0o7777), 1, len, &mut &data[..])
    }

    /// A regular file of `len` bytes read from `reader`.
    pub fn file_from_reader(
        &mut self,
        name: &str,
        perm: u32,
        len: u64,
        reader: &mut dyn io::Read,
    ) -> Result<(), CpioError> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, len, reader)
    }

    /// A symlink `name` pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        let t = target.as_bytes();
        if t.is_empty() || t.contains(&0) {
            return Err(CpioError {
                name: name.to_owned(),
                kind: CpioErrorKind::InvalidName,
            });
        }
        self.entry(name, S_IFLNK | 0o777, 1, t.len() as u64, &mut &t[..])
    }

    /// A character device node.
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        check_name(name)?;
        let ino = self.take_ino(name)?;
        let fields = Header {
            ino,
            mode: S_IFCHR | (perm & 0o7777),
            nlink: 1,
            filesize: 0,
            rdev: (major, minor),
        };
        self.header(name, &fields)
            .map_err(|e| wrap(name, CpioErrorKind::Io(e)))
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        let fields = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            filesize: 0,
            rdev: (0, 0),
        };
        self.header(TRAILER, &fields)
            .and_then(|()| {
                // Pad the archive to a 512-byte block like GNU cpio does.
                let pad = (512 - (self.written % 512) as usize) % 512;
                self.write(&vec![0u8; pad])
            })
            .and_then(|()| self.out.flush())
            .map_err(|e| wrap(TRAILER, CpioErrorKind::Io(e)))?;
        Ok(self.out)
    }

    fn take_ino(&mut self, name: &str) -> Result<u32, CpioError> {
        let ino = self.next_ino;
        self.next_ino = ino
            .checked_add(1)
            .ok_or_else(|| wrap(name, CpioErrorKind::TooManyEntries))?;
        Ok(ino)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        len: u64,
        data: &mut dyn io::Read,
    ) -> Result<(), CpioError> {
        check_name(name)?;
        let filesize =
            u32::try_from(len).map_err(|_| wrap(name, CpioErrorKind::TooLarge { len }))?;
        let ino = self.take_ino(name)?;
        let fields = Header {
            ino,
            mode,
            nlink,
            filesize,
            rdev: (0, 0),
        };
        self.header(name, &fields)
            .map_err(|e| wrap(name, CpioErrorKind::Io(e)))?;
        let got = {
            let mut limited = io::Read::take(&mut *data, len);
            let mut counter = Counting {
                inner: &mut self.out,
                count: 0,
            };
            io::copy(&mut limited, &mut counter).map_err(|e| wrap(name, CpioErrorKind::Io(e)))?;
            counter.count
        };
        self.written += got;
        if got != len {
            return Err(wrap(name, CpioErrorKind::ShortRead { expected: len, got }));
        }
        self.pad4().map_err(|e| wrap(name, CpioErrorKind::Io(e)))
    }

    fn header(&mut self, name: &str, h: &Header) -> io::Result<()> {
        let namesize = name.len() + 1;
        let mut buf = Vec::with_capacity(HEADER_LEN + namesize + 3);
        buf.extend_from_slice(MAGIC);
        for v in [
            h.ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime
            h.filesize,
            0, // devmajor
            0, // devminor
            h.rdev.0,
            h.rdev.1,
            u32::try_from(namesize).unwrap_or(u32::MAX),
            0, // check
        ] {
            buf.extend_from_slice(format!("{v:08x}").as_bytes());
        }
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        self.write(&buf)?;
        self.pad4()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0u8; 3][..pad])
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    rdev: (u32, u32),
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn wrap(name: &str, kind: CpioErrorKind) -> CpioError {
    CpioError {
        name: name.to_owned(),
        kind,
    }
}

fn check_name(name: &str) -> Result<(), CpioError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(wrap(name, CpioErrorKind::InvalidName))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("etc", 0o755).unwrap();
        w.file("etc/hostname", 0o644, b"server\n").unwrap();
        w.file("etc/empty", 0o600, b"").unwrap();
        w.symlink("etc/link", "hostname").unwrap();
        w.char_device("console", 0o600, 5, 1).unwrap();
        let mut r: &[u8] = b"abc";
        w.file_from_reader("etc/abc", 0o755, 3, &mut r).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_layout_is_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a", 0o644, b"xy").unwrap();
        let out = w.finish().unwrap();
        let header = std::str::from_utf8(&out[..HEADER_LEN]).unwrap();
        assert_eq!(
            header,
            concat!(
                "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
                "00000002", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000"
            )
        );
        // name "a\0" pads 112 -> 112, data "xy" pads to 116.
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..116], b"xy\0\0");
        assert_eq!(&out[116..122], MAGIC);
        assert_eq!(out.len() % 512, 0);
    }

    #[test]
    fn equal_inputs_give_equal_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn gnu_cpio_or_busybox_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        // busybox cpio: -i extract, -d make dirs; the device node needs
        // root, so list first and extract only the rest.
        let list = Command::new("timeout")
            .args(["10", "busybox", "cpio", "-t", "-F"])
            .arg(&archive)
            .output()
            .expect("busybox (busybox-static) is required");
        assert!(list.status.success(), "{list:?}");
        let names = String::from_utf8(list.stdout).unwrap();
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            [
                "etc",
                "etc/hostname",
                "etc/empty",
                "etc/link",
                "console",
                "etc/abc"
            ]
        );
        let x = Command::new("timeout")
            .args(["10", "busybox", "cpio", "-i", "-d", "-F"])
            .arg(&archive)
            .arg("etc/*")
            .current_dir(&out_dir)
            .output()
            .unwrap();
        assert!(x.status.success(), "{x:?}");
        assert_eq!(
            std::fs::read(out_dir.join("etc/hostname")).unwrap(),
            b"server\n"
        );
        assert_eq!(std::fs::read(out_dir.join("etc/abc")).unwrap(), b"abc");
        assert_eq!(
            std::fs::read_link(out_dir.join("etc/link")).unwrap(),
            std::path::Path::new("hostname")
        );
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(out_dir.join("etc/empty")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn bad_names_and_short_reads_are_errors() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["", "/abs", "a/../b", "a//b", "nul\0"] {
            let e = w.file(bad, 0o644, b"").unwrap_err();
            assert!(matches!(e.kind, CpioErrorKind::InvalidName), "{bad:?}");
        }
        let mut r: &[u8] = b"ab";
        let e = w.file_from_reader("x", 0o644, 5, &mut r).unwrap_err();
        assert!(matches!(
            e.kind,
            CpioErrorKind::ShortRead {
                expected: 5,
                got: 2
            }
        ));
        assert_eq!(e.name, "x");
        let e = w.symlink("l", "").unwrap_err();
        assert!(matches!(e.kind, CpioErrorKind::InvalidName));
    }
}
