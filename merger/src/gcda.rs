//! The data file (`.gcda`): per-function arc counters and the run summary.

use std::fmt;

use crate::bytes::{self, Endian, Records, Version, TAG_COUNTER_ARCS, TAG_FUNCTION};
use crate::bytes::{is_counter_tag, TAG_OBJECT_SUMMARY};
use crate::error::{ErrorKind, FileKind};

/// A parsed data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// Version of the GCC whose runtime wrote it.
    pub version: Version,
    /// Byte order.
    pub endian: Endian,
    /// Compilation stamp, equal to the notes'.
    pub stamp: u32,
    /// Object checksum (GCC 12 on).
    pub checksum: Option<u32>,
    /// Program exits merged into this file (GCC 9 on).
    pub runs: Option<u32>,
    /// Sum over runs of the largest arc counter (GCC 9 on).
    pub sum_max: Option<u32>,
    /// Functions present in the program, in file order (placeholders
    /// for absent functions are skipped).
    pub functions: Vec<DataFunction<'a>>,
}

/// One function's record and its arc counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFunction<'a> {
    /// Offset of the FUNCTION record.
    pub offset: u64,
    /// Identifier, as in the notes.
    pub ident: u32,
    /// Checksum of the declaration line and name.
    pub lineno_checksum: u32,
    /// Checksum of the CFG shape.
    pub cfg_checksum: u32,
    /// The arc counters, if the record was present.
    pub arcs: Option<Counters<'a>>,
}

/// A borrowed run of 64-bit counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters<'a> {
    /// Offset of the counter record.
    pub offset: u64,
    /// Number of counters.
    pub len: u64,
    /// The stored counters; `None` when the record said "all zero".
    bytes: Option<&'a [u8]>,
    endian: Endian,
}

impl<'a> Counters<'a> {
    /// The counters in order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + 'a {
        let endian = self.endian;
        let stored = self.bytes.map(|b| {
            b.chunks_exact(8).map(move |c| {
                let mut lo = [0u8; 4];
                let mut hi = [0u8; 4];
                lo.copy_from_slice(c.get(..4).unwrap_or(&[0; 4]));
                hi.copy_from_slice(c.get(4..).unwrap_or(&[0; 4]));
                let (lo, hi) = match endian {
                    Endian::Little => (u32::from_le_bytes(lo), u32::from_le_bytes(hi)),
                    Endian::Big => (u32::from_be_bytes(lo), u32::from_be_bytes(hi)),
                };
                ((u64::from(hi) << 32) | u64::from(lo)) as i64
            })
        });
        let zeros = match stored {
            Some(_) => 0,
            None => self.len,
        };
        stored.into_iter().flatten().chain((0..zeros).map(|_| 0))
    }
}

impl<'a> Data<'a> {
    /// Parses a data file.
    pub fn parse(data: &'a [u8]) -> Result<Self, ErrorKind> {
        let (mut cur, version) = bytes::open(data, FileKind::Data)?;
        let layout = cur.layout();
        let stamp = cur.u32()?;
        let checksum = if layout.has_checksum {
            Some(cur.u32()?)
        } else {
            None
        };
        let mut out = Data {
            version,
            endian: cur.endian(),
            stamp,
            checksum,
            runs: None,
            sum_max: None,
            functions: Vec::new(),
        };
        let mut in_function = false;
        let mut records = Records::new(cur);
        while let Some(rec) = records.next_record()? {
            let mut p = rec.payload;
            match rec.tag {
                TAG_OBJECT_SUMMARY => {
                    out.runs = Some(p.u32()?);
                    out.sum_max = Some(p.u32()?);
                }
                TAG_FUNCTION if rec.length == 0 => in_function = false,
                TAG_FUNCTION => {
                    if rec.length != 3 * 4 {
                        return Err(ErrorKind::BadFunctionLength {
                            offset: rec.offset,
                            length: rec.length,
                        });
                    }
                    out.functions.push(DataFunction {
                        offset: rec.offset,
                        ident: p.u32()?,
                        lineno_checksum: p.u32()?,
                        cfg_checksum: p.u32()?,
                        arcs: None,
                    });
                    in_function = true;
                }
                TAG_COUNTER_ARCS => {
                    let f = match out.functions.last_mut() {
                        Some(f) if in_function => f,
                        _ => {
                            return Err(ErrorKind::OutsideFunction {
                                offset: rec.offset,
                                tag: rec.tag,
                            })
                        }
                    };
                    if f.arcs.is_some() {
                        return Err(ErrorKind::DuplicateCounters { offset: rec.offset });
                    }
                    let len = rec.length / 8;
                    if rec.length % 8 != 0 {
                        return Err(ErrorKind::RecordSizeMismatch {
                            offset: rec.offset,
                            tag: rec.tag,
                            unread: rec.length % 8,
                        });
                    }
                    let bytes = if rec.all_zero {
                        None
                    } else {
                        Some(p.take(rec.length)?)
                    };
                    f.arcs = Some(Counters {
                        offset: rec.offset,
                        len,
                        bytes,
                        endian: out.endian,
                    });
                }
                tag if is_counter_tag(tag) => continue,
                tag if tag & 0x00ff_ffff == 0 && tag != TAG_FUNCTION => {
                    // Another top-level record (e.g. GCC 8's program
                    // summary): skipped, and it ends the function.
                    in_function = false;
                    continue;
                }
                _ => continue,
            }
            p.finish()?;
        }
        Ok(out)
    }
}

/// A `gcov-dump -l`-like listing, for diagnostics.
impl fmt::Display for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data: {}, {:?}-endian, stamp 0x{:08x}",
            self.version, self.endian, self.stamp
        )?;
        if let Some(c) = self.checksum {
            write!(f, ", checksum 0x{c:08x}")?;
        }
        if let (Some(runs), Some(max)) = (self.runs, self.sum_max) {
            write!(f, ", runs {runs}, sum_max {max}")?;
        }
        writeln!(f)?;
        for func in &self.functions {
            write!(
                f,
                "function @{} ident={} lineno_checksum=0x{:08x} cfg_checksum=0x{:08x}",
                func.offset, func.ident, func.lineno_checksum, func.cfg_checksum
            )?;
            match &func.arcs {
                None => writeln!(f, " (no arc counters)")?,
                // All-zero records cost 8 bytes for any length: the listing
                // must not expand up to 2^28 zeros.
                Some(c) if c.bytes.is_none() => writeln!(f, "\n  arcs {}: all zero", c.len)?,
                Some(c) => {
                    write!(f, "\n  arcs {}:", c.len)?;
                    for v in c.iter() {
                        write!(f, " {v}")?;
                    }
                    writeln!(f)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{classify_data, Builder, Gcc};

    #[test]
    fn dump_and_zero_counters() {
        let bytes = classify_data(Gcc::V12, Endian::Little, &[3, -1]);
        let data = Data::parse(&bytes).unwrap();
        let text = data.to_string();
        assert!(
            text.contains("gcc 12.2") && text.contains("checksum 0x00005555"),
            "{text}"
        );
        assert!(text.contains("runs 1, sum_max 9"), "{text}");
        assert!(text.contains("  arcs 2: 3 -1\n"), "{text}");
        let mut b = Builder::data_header(Gcc::V11, Endian::Big, 1, 0);
        b.data_function(7, Err(3)).word(0);
        let bytes = b.bytes();
        let data = Data::parse(&bytes).unwrap();
        let arcs = data.functions[0].arcs.unwrap();
        assert_eq!(arcs.iter().collect::<Vec<_>>(), vec![0, 0, 0]);
        assert_eq!(data.checksum, None);
        assert!(data.to_string().contains("  arcs 3: all zero\n"));
    }

    /// Fuzzing found it (fuzz/regressions/gcda/all-zero-huge): a 16-byte
    /// record declaring 2^27 zero counters made the listing print them all.
    #[test]
    fn huge_all_zero_record_lists_in_one_line() {
        let mut b = Builder::data_header(Gcc::V12, Endian::Little, 1, 0);
        b.data_function(7, Err(1 << 27)).word(0);
        let bytes = b.bytes();
        let data = Data::parse(&bytes).unwrap();
        assert_eq!(data.functions[0].arcs.map(|c| c.len), Some(1 << 27));
        assert!(data.to_string().ends_with("  arcs 134217728: all zero\n"));
    }
}
