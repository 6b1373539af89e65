//! gcov's primitive encoding: words, 64-bit counters, strings, byte order,
//! the version word and the record framing, with a cursor that never panics.
//!
//! Byte order is decided at run time by the magic; the layout (length units,
//! string padding, header fields) by the version word.

use std::fmt;

use crate::error::{ErrorKind, FileKind};

/// Magic of a notes file (`"gcno"`).
pub const NOTES_MAGIC: u32 = 0x6763_6e6f;
/// Magic of a data file (`"gcda"`).
pub const DATA_MAGIC: u32 = 0x6763_6461;

/// Tag of a FUNCTION record.
pub const TAG_FUNCTION: u32 = 0x0100_0000;
/// Tag of a BLOCKS record.
pub const TAG_BLOCKS: u32 = 0x0141_0000;
/// Tag of an ARCS record.
pub const TAG_ARCS: u32 = 0x0143_0000;
/// Tag of a LINES record.
pub const TAG_LINES: u32 = 0x0145_0000;
/// Tag of the arc counters record (counter kind 0).
pub const TAG_COUNTER_ARCS: u32 = 0x01a1_0000;
/// Tag of the OBJECT_SUMMARY record (GCC 9 on).
pub const TAG_OBJECT_SUMMARY: u32 = 0xa100_0000;

/// Whether `tag` is a counter record (any counter kind).
pub fn is_counter_tag(tag: u32) -> bool {
    tag & 0xffff == 0 && (TAG_COUNTER_ARCS..0x0200_0000).contains(&tag) && tag & 0x0001_0000 != 0
}

/// Byte order of a gcov file, decided by its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Written by a little-endian machine.
    Little,
    /// Written by a big-endian machine.
    Big,
}

impl Endian {
    fn word(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    /// Encodes a word in this byte order.
    pub fn bytes(self, w: u32) -> [u8; 4] {
        match self {
            Endian::Little => w.to_le_bytes(),
            Endian::Big => w.to_be_bytes(),
        }
    }

    /// Decides the byte order from the first four bytes of a file.
    pub fn detect(first: [u8; 4], kind: FileKind) -> Result<Endian, ErrorKind> {
        let magic = match kind {
            FileKind::Notes => NOTES_MAGIC,
            FileKind::Data => DATA_MAGIC,
        };
        if u32::from_le_bytes(first) == magic {
            Ok(Endian::Little)
        } else if u32::from_be_bytes(first) == magic {
            Ok(Endian::Big)
        } else {
            Err(ErrorKind::BadMagic {
                expected: kind,
                found: u32::from_le_bytes(first),
            })
        }
    }
}

/// GCC major versions whose files the test suite writes with a real
/// compiler and compares with that compiler's own `gcov` (the system GCC and
/// GCC 11 of `scripts/setup.sh`; `exactness::tested_gcc_majors_are_the_compiled_ones`
/// keeps this list honest). Other versions in [`Version::layout`]'s range
/// are read by the same layout rules, checked only against files covnet's
/// own test writer makes.
pub const TESTED_GCC_MAJORS: &[u32] = &[11, 12];

/// The version word of a notes or data file (offset 4, in the byte order
/// its magic gives), or `None` when the file is too short or not gcov's.
pub fn peek_version(data: &[u8], kind: FileKind) -> Option<Version> {
    let first: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let endian = Endian::detect(first, kind).ok()?;
    let word: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    Some(Version(endian.word(word)))
}

/// The compilation stamp of a `.gcno` or `.gcda` file (the word after the
/// version), without parsing further; `None` if the header is not one.
/// Notes and data files of one compilation share it, so it names a build.
pub fn peek_stamp(data: &[u8], kind: FileKind) -> Option<u32> {
    let first: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let endian = Endian::detect(first, kind).ok()?;
    let word: [u8; 4] = data.get(8..12)?.try_into().ok()?;
    Some(endian.word(word))
}

/// A gcov version word: four ASCII characters, e.g. `"B22*"` for GCC 12.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32);

impl Version {
    /// The raw word.
    pub fn word(self) -> u32 {
        self.0
    }

    fn chars(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// `(major, minor)` of the GCC that wrote the file, if the word follows
    /// one of GCC's schemes.
    pub fn gcc(self) -> Option<(u32, u32)> {
        let [a, b, c, _] = self.chars();
        let digit = |x: u8| x.is_ascii_digit().then(|| u32::from(x - b'0'));
        if a.is_ascii_uppercase() {
            Some((u32::from(a - b'A') * 10 + digit(b)?, digit(c)?))
        } else {
            Some((digit(a)?, digit(b)? * 10 + digit(c)?))
        }
    }

    /// Whether a real compiler of this major version is part of the test
    /// suite ([`TESTED_GCC_MAJORS`]).
    pub fn tested_with_real_compiler(self) -> bool {
        self.gcc()
            .is_some_and(|(major, _)| TESTED_GCC_MAJORS.contains(&major))
    }

    /// The layout of files with this version, if covnet can read them.
    pub fn layout(self) -> Result<Layout, ErrorKind> {
        match self.gcc() {
            Some((major @ 8..=15, _)) => Ok(Layout {
                byte_lengths: major >= 12,
                has_checksum: major >= 12,
                has_cwd: major >= 9,
                has_end_column: major >= 9,
            }),
            _ => Err(ErrorKind::UnsupportedVersion { version: self }),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gcc() {
            Some((major, minor)) => {
                write!(f, "gcc {major}.{minor}")?;
                if major == 4 && (minor == 2 || minor == 8) {
                    f.write_str(" (or LLVM's emulation of it)")?;
                }
                Ok(())
            }
            None => write!(f, "unknown version 0x{:08x}", self.0),
        }
    }
}

/// Version-dependent layout of gcov files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Record lengths and string lengths count bytes (GCC 12 on); before,
    /// they count 4-byte words and strings are NUL-padded to a word.
    pub byte_lengths: bool,
    /// Headers carry a checksum word after the stamp (GCC 12 on).
    pub has_checksum: bool,
    /// Notes headers carry the compiler's working directory (GCC 9 on).
    pub has_cwd: bool,
    /// Notes FUNCTION records carry an end column (GCC 9 on).
    pub has_end_column: bool,
}

impl Layout {
    /// Bytes per length unit.
    pub fn unit(self) -> u64 {
        if self.byte_lengths {
            1
        } else {
            4
        }
    }
}

/// Record context of a cursor, for error messages.
#[derive(Clone, Copy, Debug)]
struct RecordCtx {
    offset: u64,
    tag: u32,
}

/// A read position in a borrowed file, bounded by `end`; every read checks
/// bounds and returns an error instead of panicking.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    endian: Endian,
    layout: Layout,
    record: Option<RecordCtx>,
}

impl<'a> Cursor<'a> {
    /// A cursor over the whole of `data`.
    pub fn new(data: &'a [u8], endian: Endian, layout: Layout) -> Self {
        Cursor {
            data,
            pos: 0,
            end: data.len(),
            endian,
            layout,
            record: None,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left before the end of the cursor's range.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos) as u64
    }

    /// The file's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The file's byte order.
    pub fn endian(&self) -> Endian {
        self.endian
    }

    fn short(&self, needed: u64) -> ErrorKind {
        match self.record {
            Some(r) => ErrorKind::RecordTooShort {
                offset: r.offset,
                tag: r.tag,
                length: self.remaining(),
            },
            None => ErrorKind::Truncated {
                offset: self.offset(),
                needed,
                available: self.remaining(),
            },
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], ErrorKind> {
        if n > self.remaining() {
            let e = self.short(n);
            self.pos = self.end;
            return Err(e);
        }
        let start = self.pos;
        // n <= remaining, so this fits in usize and within `end`.
        let stop = start + n as usize;
        self.pos = stop;
        self.data.get(start..stop).ok_or(ErrorKind::Truncated {
            offset: start as u64,
            needed: n,
            available: 0,
        })
    }

    /// Reads one 32-bit word.
    pub fn u32(&mut self) -> Result<u32, ErrorKind> {
        let b = self.take(4)?;
        let mut w = [0u8; 4];
        w.copy_from_slice(b);
        Ok(self.endian.word(w))
    }

    /// Reads one 64-bit counter (low word first).
    pub fn counter(&mut self) -> Result<i64, ErrorKind> {
        let lo = self.u32()?;
        let hi = self.u32()?;
        Ok(((u64::from(hi) << 32) | u64::from(lo)) as i64)
    }

    /// Reads a string; `n == 0` is the empty string. Returns the bytes up to
    /// the first NUL.
    pub fn string(&mut self) -> Result<&'a [u8], ErrorKind> {
        let n = u64::from(self.u32()?) * self.layout.unit();
        let raw = self.take(n)?;
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(raw.get(..len).unwrap_or_default())
    }

    /// Checks that a record's payload was consumed completely.
    pub fn finish(&self) -> Result<(), ErrorKind> {
        match (self.record, self.remaining()) {
            (_, 0) => Ok(()),
            (Some(r), unread) => Err(ErrorKind::RecordSizeMismatch {
                offset: r.offset,
                tag: r.tag,
                unread,
            }),
            (None, unread) => Err(ErrorKind::RecordSizeMismatch {
                offset: self.offset(),
                tag: 0,
                unread,
            }),
        }
    }
}

/// One record: tag, length and payload.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Offset of the tag word.
    pub offset: u64,
    /// The tag.
    pub tag: u32,
    /// Declared payload length in bytes (for all-zero counter records: the
    /// size the counters would have had).
    pub length: u64,
    /// Negative length on a counter record: the counters are all zero and
    /// not stored.
    pub all_zero: bool,
    /// The payload (empty when `all_zero`).
    pub payload: Cursor<'a>,
}

/// Iterates the records after a file header.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    cur: Cursor<'a>,
    done: bool,
}

impl<'a> Records<'a> {
    /// Records from the cursor's position on.
    pub fn new(cur: Cursor<'a>) -> Self {
        Records { cur, done: false }
    }

    /// The next record; `None` at the end of the file or at a 0 tag.
    pub fn next_record(&mut self) -> Result<Option<Record<'a>>, ErrorKind> {
        if self.done || self.cur.remaining() == 0 {
            return Ok(None);
        }
        let r = self.read();
        match r {
            Ok(None) | Err(_) => self.done = true,
            Ok(Some(_)) => {}
        }
        r
    }

    fn read(&mut self) -> Result<Option<Record<'a>>, ErrorKind> {
        let offset = self.cur.offset();
        let tag = self.cur.u32()?;
        if tag == 0 {
            return Ok(None);
        }
        let raw = self.cur.u32()?;
        let unit = self.cur.layout.unit();
        if is_counter_tag(tag) && (raw as i32) < 0 {
            let units = u64::from((raw as i32).unsigned_abs());
            let mut payload = self.cur;
            payload.end = payload.pos;
            payload.record = Some(RecordCtx { offset, tag });
            return Ok(Some(Record {
                offset,
                tag,
                length: units * unit,
                all_zero: true,
                payload,
            }));
        }
        let length = u64::from(raw) * unit;
        let available = self.cur.remaining();
        if length > available {
            return Err(ErrorKind::RecordOverrun {
                offset,
                tag,
                length,
                available,
            });
        }
        let mut payload = self.cur;
        // length <= remaining, so the sum stays within the slice.
        payload.end = payload.pos + length as usize;
        payload.record = Some(RecordCtx { offset, tag });
        self.cur.pos = payload.end;
        Ok(Some(Record {
            offset,
            tag,
            length,
            all_zero: false,
            payload,
        }))
    }
}

/// Reads the magic and version and returns a cursor positioned after them.
pub fn open(data: &[u8], kind: FileKind) -> Result<(Cursor<'_>, Version), ErrorKind> {
    let first = data.get(..4).ok_or(ErrorKind::Truncated {
        offset: 0,
        needed: 4,
        available: data.len() as u64,
    })?;
    let mut magic = [0u8; 4];
    magic.copy_from_slice(first);
    let endian = Endian::detect(magic, kind)?;
    // A provisional layout lets the cursor read words; the real one
    // follows from the version.
    let provisional = Layout {
        byte_lengths: true,
        has_checksum: false,
        has_cwd: false,
        has_end_column: false,
    };
    let mut cur = Cursor::new(data, endian, provisional);
    cur.u32()?;
    let version = Version(cur.u32()?);
    cur.layout = version.layout()?;
    Ok((cur, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_in_either_byte_order() {
        use crate::testutil::{Builder, Gcc};
        for endian in [Endian::Little, Endian::Big] {
            let notes = Builder::notes_header(Gcc::V12, endian, 0x1234_5678).bytes();
            assert_eq!(peek_stamp(&notes, FileKind::Notes), Some(0x1234_5678));
            let data = Builder::data_header(Gcc::V11, endian, 7, 9).bytes();
            assert_eq!(peek_stamp(&data, FileKind::Data), Some(7));
            assert_eq!(peek_stamp(&notes[..11], FileKind::Notes), None);
            assert_eq!(peek_stamp(&data, FileKind::Notes), None, "wrong magic");
        }
    }

    #[test]
    fn version_decoding() {
        let v = |s: &[u8; 4]| Version(u32::from_be_bytes(*s));
        assert_eq!(v(b"B22*").gcc(), Some((12, 2)));
        assert_eq!(v(b"B22*").to_string(), "gcc 12.2");
        assert_eq!(v(b"A85*").gcc(), Some((8, 5)));
        assert_eq!(v(b"B13*").to_string(), "gcc 11.3");
        assert_eq!(v(b"408*").gcc(), Some((4, 8)));
        assert!(v(b"408*").to_string().contains("LLVM"));
        assert!(v(b"408*").layout().is_err());
        assert!(v(b"B50 ").layout().is_ok());
        assert_eq!(v(b"\x01\x02\x03\x04").gcc(), None);
        let l12 = v(b"B22*").layout().unwrap();
        assert!(l12.byte_lengths && l12.has_checksum && l12.has_cwd);
        let l8 = v(b"A85*").layout().unwrap();
        assert!(!l8.byte_lengths && !l8.has_cwd && !l8.has_end_column);
    }

    #[test]
    fn strings_both_layouts() {
        let l12 = Version(u32::from_be_bytes(*b"B22*")).layout().unwrap();
        let data = [
            8, 0, 0, 0, b'/', b't', b'm', b'p', b'/', b'g', b'x', 0, 7, 0, 0, 0,
        ];
        let mut c = Cursor::new(&data, Endian::Little, l12);
        assert_eq!(c.string().unwrap(), b"/tmp/gx");
        assert_eq!(c.u32().unwrap(), 7);
        let l11 = Version(u32::from_be_bytes(*b"B13*")).layout().unwrap();
        let data = [0, 0, 0, 2, b'a', b'.', b'c', 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut c = Cursor::new(&data, Endian::Big, l11);
        assert_eq!(c.string().unwrap(), b"a.c");
        assert_eq!(c.u32().unwrap(), 9);
        assert!(c.u32().is_err());
    }

    #[test]
    fn counters_low_word_first() {
        let l = Version(u32::from_be_bytes(*b"B22*")).layout().unwrap();
        let data = [1, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(
            Cursor::new(&data, Endian::Little, l).counter().unwrap(),
            (2 << 32) | 1
        );
        let data = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            Cursor::new(&data, Endian::Big, l).counter().unwrap(),
            (2 << 32) | 1
        );
    }
}
