//! Raw profiles (`.profraw`): what a program built with clang
//! `-fprofile-instr-generate` writes at exit, in the layout of raw profile
//! version 8 (LLVM 14 to 16).
//!
//! A file holds one or more profiles back to back (zero padding between
//! them is skipped). Each is a header of eleven 64-bit words (magic,
//! version and flags, then the sizes and deltas below), the binary ids,
//! the data records (one per instrumented function: MD5 of its name, its
//! structural hash, a pointer to its counters relative to the record, its
//! number of counters and value sites), the counters, the function names and
//! the value profile data. Byte order is the writer's, told by the magic.
//! Counters of byte-coverage profiles are one byte each, 0 meaning "ran".
//!
//! [`parse`] returns the records with their counters; [`Profile`] sums the
//! records of any number of raw profiles per function (MD5 of the name and
//! structural hash), as `llvm-profdata merge` does.

use std::collections::HashMap;

use super::error::LlvmErrorKind;
use super::reader::Reader;

/// The raw profile version covnet reads (`INSTR_PROF_RAW_VERSION` of LLVM
/// 14 to 16).
pub const RAW_VERSION: u64 = 8;

/// Magic of a raw profile written by a 64-bit program (`\xfflprofr\x81`).
pub const MAGIC_64: u64 = 255 << 56
    | (b'l' as u64) << 48
    | (b'p' as u64) << 40
    | (b'r' as u64) << 32
    | (b'o' as u64) << 24
    | (b'f' as u64) << 16
    | (b'r' as u64) << 8
    | 129;
/// Magic of a raw profile written by a 32-bit program (`\xfflprofR\x81`).
pub const MAGIC_32: u64 = (MAGIC_64 & !(0xff << 8)) | (b'R' as u64) << 8;

const FLAGS_MASK: u64 = 0xff00_0000_0000_0000;
const FLAG_DEBUG_CORRELATE: u64 = 1 << 59;
const FLAG_BYTE_COVERAGE: u64 = 1 << 60;
/// Header: eleven 64-bit words.
const HEADER_SIZE: u64 = 88;
/// Data record of a 64-bit program: name ref, function hash, counter
/// pointer, function pointer, values pointer (8 bytes each), number of
/// counters (4), value sites of the two value kinds (2 each).
const DATA_SIZE: u64 = 48;

/// One function's record in a raw profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// MD5 of the function's PGO name (low 64 bits, little-endian).
    pub name_ref: u64,
    /// Structural hash of the function.
    pub func_hash: u64,
    /// Its counters.
    pub counts: Vec<u64>,
    /// File offset of the data record, for messages.
    pub offset: u64,
}

/// Reads every profile of a raw profile file.
pub fn parse(data: &[u8]) -> Result<Vec<Record>, LlvmErrorKind> {
    let mut records = Vec::new();
    let mut start = 0usize;
    loop {
        let rest = data.get(start..).unwrap_or_default();
        // Zero padding between (and after) profiles.
        let skip = rest.iter().take_while(|&&b| b == 0).count();
        start += skip;
        if start >= data.len() {
            break;
        }
        if start % 8 != 0 {
            return Err(LlvmErrorKind::BadHeader {
                offset: start as u64,
                field: "alignment of the next profile",
                value: start as u64,
            });
        }
        let rest = data.get(start..).unwrap_or_default();
        let used = parse_one(rest, start as u64, &mut records)?;
        start += used.max(1);
    }
    if records.is_empty() && data.iter().all(|&b| b == 0) {
        // An all-zero file is no profile at all: say what was expected.
        let found = Reader::new(data, 0, false).u64().unwrap_or(0);
        return Err(LlvmErrorKind::BadMagic { offset: 0, found });
    }
    Ok(records)
}

/// Reads one profile at the start of `data` (file offset `base`) and
/// returns how many bytes it takes.
fn parse_one(data: &[u8], base: u64, out: &mut Vec<Record>) -> Result<usize, LlvmErrorKind> {
    let mut probe = Reader::new(data, base, false);
    let magic = probe.u64()?;
    let big = if magic == MAGIC_64 {
        false
    } else if magic.swap_bytes() == MAGIC_64 {
        true
    } else if magic == MAGIC_32 || magic.swap_bytes() == MAGIC_32 {
        return Err(LlvmErrorKind::ThirtyTwoBit { offset: base });
    } else {
        return Err(LlvmErrorKind::BadMagic {
            offset: base,
            found: magic,
        });
    };
    let mut h = Reader::new(data, base, big);
    h.skip(8)?;
    let version_offset = h.offset();
    let version_word = h.u64()?;
    let version = version_word & !FLAGS_MASK;
    if version != RAW_VERSION {
        return Err(LlvmErrorKind::UnsupportedRawVersion {
            offset: version_offset,
            version,
        });
    }
    if version_word & FLAG_DEBUG_CORRELATE != 0 {
        return Err(LlvmErrorKind::DebugInfoCorrelation { offset: base });
    }
    let counter_size: u64 = if version_word & FLAG_BYTE_COVERAGE != 0 {
        1
    } else {
        8
    };
    let binary_ids_size = h.u64()?;
    let num_data = h.u64()?;
    let padding_before_counters = h.u64()?;
    let num_counters = h.u64()?;
    let padding_after_counters = h.u64()?;
    let names_size = h.u64()?;
    let counters_delta = h.u64()?;
    let _names_delta = h.u64()?;
    let _value_kind_last = h.u64()?;

    let bad = |field: &'static str, value: u64| LlvmErrorKind::BadHeader {
        offset: base,
        field,
        value,
    };
    if binary_ids_size % 8 != 0 {
        return Err(bad("BinaryIdsSize", binary_ids_size));
    }
    let total = data.len() as u64;
    // The end of a part that starts at `start` and takes `parts` bytes:
    // an overflow is a bad header, an end beyond the file a truncation.
    let end = |start: u64, parts: &[u64], field: &'static str, value: u64| {
        let end = parts
            .iter()
            .try_fold(start, |acc, &p| acc.checked_add(p))
            .ok_or(bad(field, value))?;
        if end > total {
            return Err(LlvmErrorKind::Truncated {
                offset: base + start,
                needed: end - start,
                available: total.saturating_sub(start),
            });
        }
        Ok(end)
    };
    let data_bytes = num_data
        .checked_mul(DATA_SIZE)
        .ok_or(bad("DataSize", num_data))?;
    let counter_bytes = num_counters
        .checked_mul(counter_size)
        .ok_or(bad("CountersSize", num_counters))?;
    let data_start = end(
        HEADER_SIZE,
        &[binary_ids_size],
        "BinaryIdsSize",
        binary_ids_size,
    )?;
    let counters_start = end(
        data_start,
        &[data_bytes, padding_before_counters],
        "DataSize",
        num_data,
    )?;
    let names_start = end(
        counters_start,
        &[counter_bytes, padding_after_counters],
        "CountersSize",
        num_counters,
    )?;
    let names_padding = (8 - names_size % 8) % 8;
    let value_start = end(
        names_start,
        &[names_size, names_padding],
        "NamesSize",
        names_size,
    )?;

    let counters = data
        .get(counters_start as usize..(counters_start + counter_bytes) as usize)
        .unwrap_or_default();
    let mut values = Reader::new(
        data.get(value_start as usize..).unwrap_or_default(),
        base + value_start,
        big,
    );
    let mut records = Reader::new(
        data.get(data_start as usize..(data_start + data_bytes) as usize)
            .unwrap_or_default(),
        base + data_start,
        big,
    );
    for i in 0..num_data {
        let offset = records.offset();
        let name_ref = records.u64()?;
        let func_hash = records.u64()?;
        let counter_ptr = records.u64()?;
        let _function_ptr = records.u64()?;
        let _values_ptr = records.u64()?;
        let n = records.u32()?;
        let sites = [records.u16()?, records.u16()?];
        // The counter pointer is relative to the record; the header's delta
        // is from the first record to the counters.
        let counter_offset = counter_ptr
            .wrapping_add(i.wrapping_mul(DATA_SIZE))
            .wrapping_sub(counters_delta);
        let out_of_range = LlvmErrorKind::CountersOutOfRange {
            offset,
            counter_offset,
            num_counters: n,
        };
        if n == 0 {
            return Err(out_of_range);
        }
        let len = u64::from(n) * counter_size;
        let raw = counter_offset
            .checked_add(len)
            .filter(|&end| end <= counter_bytes)
            .and_then(|end| counters.get(counter_offset as usize..end as usize))
            .ok_or(out_of_range)?;
        let mut c = Reader::new(raw, base + counters_start + counter_offset, big);
        let mut counts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            counts.push(if counter_size == 1 {
                // Byte coverage: 0 means the block ran.
                u64::from(c.bytes(1)?.first() == Some(&0))
            } else {
                c.u64()?
            });
        }
        if sites.iter().any(|&s| s != 0) {
            // Value profile data: a 32-bit total size, then the kinds; not
            // needed for coverage, skipped whole.
            let at = values.offset();
            let size = values.u32()?;
            if size < 8 || size % 8 != 0 {
                return Err(LlvmErrorKind::BadNumber { offset: at });
            }
            values.skip(u64::from(size) - 4)?;
        }
        out.push(Record {
            name_ref,
            func_hash,
            counts,
            offset,
        });
    }
    Ok(value_start as usize + values.pos())
}

/// Counters of any number of raw profiles, summed per function as
/// `llvm-profdata merge` sums them (saturating).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Per MD5 of the name: per structural hash, the counters.
    functions: HashMap<u64, Vec<(u64, Vec<u64>)>>,
}

/// What a profile holds for a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Counters of the function with this name and hash.
    Found(&'a [u64]),
    /// The name is there, with other hashes only (a different build).
    HashMismatch,
    /// The name is not there.
    Unknown,
}

impl Profile {
    /// Adds the records of one raw profile.
    pub fn add(&mut self, records: &[Record]) -> Result<(), LlvmErrorKind> {
        // Check first, so that a refused profile adds nothing.
        for r in records {
            if let Lookup::Found(counts) = self.lookup(r.name_ref, r.func_hash) {
                if counts.len() != r.counts.len() {
                    return Err(LlvmErrorKind::CounterCountMismatch {
                        offset: r.offset,
                        name_ref: r.name_ref,
                        func_hash: r.func_hash,
                        expected: counts.len() as u32,
                        found: r.counts.len() as u32,
                    });
                }
            }
        }
        for r in records {
            let entries = self.functions.entry(r.name_ref).or_default();
            match entries.iter_mut().find(|(h, _)| *h == r.func_hash) {
                Some((_, counts)) => {
                    if counts.len() != r.counts.len() {
                        return Err(LlvmErrorKind::CounterCountMismatch {
                            offset: r.offset,
                            name_ref: r.name_ref,
                            func_hash: r.func_hash,
                            expected: counts.len() as u32,
                            found: r.counts.len() as u32,
                        });
                    }
                    for (a, b) in counts.iter_mut().zip(&r.counts) {
                        *a = a.saturating_add(*b);
                    }
                }
                None => entries.push((r.func_hash, r.counts.clone())),
            }
        }
        Ok(())
    }

    /// Adds another profile's counters (for per-capture profiles summed
    /// into one).
    pub fn absorb(&mut self, other: &Profile) {
        for (&name_ref, entries) in &other.functions {
            for (hash, counts) in entries {
                let mine = self.functions.entry(name_ref).or_default();
                match mine.iter_mut().find(|(h, _)| h == hash) {
                    Some((_, c)) if c.len() == counts.len() => {
                        for (a, b) in c.iter_mut().zip(counts) {
                            *a = a.saturating_add(*b);
                        }
                    }
                    Some(_) => {}
                    None => mine.push((*hash, counts.clone())),
                }
            }
        }
    }

    /// The counters of the function with MD5 name hash `name_ref` and
    /// structural hash `func_hash`.
    pub fn lookup(&self, name_ref: u64, func_hash: u64) -> Lookup<'_> {
        match self.functions.get(&name_ref) {
            None => Lookup::Unknown,
            Some(entries) => entries
                .iter()
                .find(|(h, _)| *h == func_hash)
                .map_or(Lookup::HashMismatch, |(_, c)| Lookup::Found(c)),
        }
    }

    /// Whether the profile has no function.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A version-8 raw profile with the given (name, hash, counters)
    /// records, little- or big-endian, as the LLVM 16 runtime lays it out.
    pub(crate) fn write(records: &[(u64, u64, Vec<u64>)], big: bool) -> Vec<u8> {
        let w = |v: u64| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let n_counters: u64 = records.iter().map(|r| r.2.len() as u64).sum();
        let mut out = Vec::new();
        // Counters follow the data directly: delta = data bytes.
        let data_bytes = records.len() as u64 * DATA_SIZE;
        for v in [
            MAGIC_64,
            RAW_VERSION,
            0,
            records.len() as u64,
            0,
            n_counters,
            0,
            0,
            data_bytes,
            0,
            1,
        ] {
            out.extend(w(v));
        }
        let mut first_counter = 0u64;
        for (i, (name, hash, counts)) in records.iter().enumerate() {
            out.extend(w(*name));
            out.extend(w(*hash));
            let ptr = data_bytes + first_counter * 8 - i as u64 * DATA_SIZE;
            out.extend(w(ptr));
            out.extend(w(0));
            out.extend(w(0));
            let n = counts.len() as u32;
            out.extend(if big {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            });
            out.extend([0u8; 4]);
            first_counter += counts.len() as u64;
        }
        for (_, _, counts) in records {
            for &c in counts {
                out.extend(w(c));
            }
        }
        out
    }

    #[test]
    fn reads_both_byte_orders_and_sums() {
        let recs = vec![(1, 10, vec![3, 4]), (2, 20, vec![5])];
        for big in [false, true] {
            let bytes = write(&recs, big);
            let parsed = parse(&bytes).expect("parse");
            let got: Vec<(u64, u64, Vec<u64>)> = parsed
                .iter()
                .map(|r| (r.name_ref, r.func_hash, r.counts.clone()))
                .collect();
            assert_eq!(got, recs);
        }
        let mut p = Profile::default();
        let a = parse(&write(&recs, false)).expect("parse");
        p.add(&a).expect("add");
        p.add(&a).expect("add");
        assert_eq!(p.lookup(1, 10), Lookup::Found(&[6, 8]));
        assert_eq!(p.lookup(1, 11), Lookup::HashMismatch);
        assert_eq!(p.lookup(3, 10), Lookup::Unknown);
    }

    #[test]
    fn two_profiles_in_one_file() {
        let mut bytes = write(&[(1, 1, vec![1])], false);
        bytes.extend(write(&[(2, 2, vec![2])], false));
        assert_eq!(parse(&bytes).expect("parse").len(), 2);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = write(&[(1, 10, vec![3, 4]), (2, 20, vec![5])], false);
        for len in 1..bytes.len() {
            let cut = bytes.get(..len).expect("prefix");
            assert!(parse(cut).is_err(), "prefix of {len} bytes accepted");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = parse(&b);
            }
        }
    }

    #[test]
    fn versions_and_magic_are_named() {
        let mut bytes = write(&[(1, 1, vec![1])], false);
        bytes[8] = 9;
        assert_eq!(
            parse(&bytes),
            Err(LlvmErrorKind::UnsupportedRawVersion {
                offset: 8,
                version: 9
            })
        );
        let err = parse(b"not a profile at all").expect_err("bad magic");
        assert!(matches!(err, LlvmErrorKind::BadMagic { .. }), "{err}");
    }
}
