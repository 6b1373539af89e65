//! The coverage mapping clang `-fcoverage-mapping` puts into a binary, in
//! the layout of coverage mapping version 6 (LLVM 13 to 16).
//!
//! * `__llvm_covmap`: per translation unit, a header of four 32-bit words
//!   (record count and coverage size, both 0, the size of the file names,
//!   the version) and the encoded file names (LEB128 count, uncompressed and
//!   compressed sizes, then, zlib-compressed or not, each name as a LEB128
//!   length and bytes; the first name is the compilation directory, which
//!   relative names are resolved against), padded to 8 bytes.
//! * `__llvm_covfun`: per function, the MD5 of its name, the size of its
//!   mapping, its structural hash, the MD5 of its translation unit's encoded
//!   file names, and the mapping, padded to 8 bytes.
//! * `__llvm_prf_names`: the functions' names, in blocks (LEB128
//!   uncompressed and compressed sizes, then the names separated by `\x01`,
//!   zlib-compressed or not).
//!
//! A mapping lists the function's files (indices into its translation
//! unit's names), its counter expressions (pairs of counters, an
//! expression's kind being given by the counters that refer to it), and per
//! file its regions: a counter or a kind (expansion, skipped, branch with
//! two counters), then the line delta, start column, line count and end
//! column (bit 31 marks a gap region). Within one binary a function appears
//! once; a real record replaces a dummy one (hash 0, one zero region), as
//! LLVM's reader does.

use std::collections::HashMap;
use std::io::Read;

use md5::{Digest, Md5};
use object::{Object, ObjectSection};

use super::error::{LlvmErrorKind, Section};
use super::reader::Reader;

/// The coverage mapping version covnet reads, as stored (LLVM counts from
/// 0: this is version 6, written by LLVM 13 to 16).
pub const MAPPING_VERSION: u32 = 5;

/// A counter of a region or expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Always zero.
    Zero,
    /// The function's counter with this index.
    Value(u32),
    /// The function's expression with this index.
    Expression(u32),
}

/// `lhs - rhs` or `lhs + rhs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expression {
    /// Whether the expression adds (else it subtracts).
    pub add: bool,
    /// Left operand.
    pub lhs: Counter,
    /// Right operand.
    pub rhs: Counter,
}

/// What a region stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKind {
    /// Code that ran as often as the region's counter says.
    Code = 0,
    /// A macro expansion or include: the code is in another file id.
    Expansion = 1,
    /// Code the preprocessor skipped.
    Skipped = 2,
    /// Between statements: not code of its own.
    Gap = 3,
    /// A condition: true and false counters.
    Branch = 4,
}

/// One region of a function's mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its counter (the true counter of a branch).
    pub count: Counter,
    /// The false counter of a branch ([`Counter::Zero`] otherwise).
    pub false_count: Counter,
    /// Index into the function's files.
    pub file_id: u32,
    /// The file an expansion expands (0 otherwise).
    pub expanded_file_id: u32,
    /// First line (1-based).
    pub line_start: u32,
    /// First column (1-based).
    pub col_start: u32,
    /// Last line.
    pub line_end: u32,
    /// Column after the end (`u32::MAX`: end of line).
    pub col_end: u32,
    /// The kind.
    pub kind: RegionKind,
}

/// One function's coverage mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionMapping {
    /// PGO name (local functions carry a `file:` prefix).
    pub name: String,
    /// MD5 of the name.
    pub name_ref: u64,
    /// Structural hash.
    pub func_hash: u64,
    /// The files of its file ids.
    pub filenames: Vec<String>,
    /// Counter expressions.
    pub expressions: Vec<Expression>,
    /// Regions, in mapping order.
    pub regions: Vec<Region>,
    /// File offset of the function record, for messages.
    pub offset: u64,
}

/// The low 64 bits of an MD5, as LLVM's `MD5Hash` (little-endian).
pub fn md5_hash(bytes: &[u8]) -> u64 {
    let digest = Md5::digest(bytes);
    let mut low = [0u8; 8];
    for (d, s) in low.iter_mut().zip(digest.iter()) {
        *d = *s;
    }
    u64::from_le_bytes(low)
}

type SectionError = (Option<Section>, LlvmErrorKind);

fn in_section(section: Section) -> impl Fn(LlvmErrorKind) -> SectionError {
    move |k| (Some(section), k)
}

/// A section's bytes and file offset.
fn section<'d>(
    file: &object::File<'d>,
    which: Section,
) -> Result<Option<(&'d [u8], u64)>, SectionError> {
    let Some(s) = file.section_by_name(&which.to_string()) else {
        return Ok(None);
    };
    let compressed = s
        .compressed_file_range()
        .map_err(|_| (Some(which), LlvmErrorKind::NotObject))?;
    if compressed.format != object::CompressionFormat::None {
        return Err((
            Some(which),
            LlvmErrorKind::CompressedSection { section: which },
        ));
    }
    let data = s
        .data()
        .map_err(|_| (Some(which), LlvmErrorKind::NotObject))?;
    let offset = s.file_range().map_or(0, |(o, _)| o);
    Ok(Some((data, offset)))
}

/// Reads the coverage mapping of an ELF binary or shared object.
pub fn read_object(bytes: &[u8]) -> Result<Vec<FunctionMapping>, SectionError> {
    let file = object::File::parse(bytes).map_err(|_| (None, LlvmErrorKind::NotObject))?;
    let big = !file.is_little_endian();
    let get = |s: Section| -> Result<(&[u8], u64), SectionError> {
        section(&file, s)?.ok_or((None, LlvmErrorKind::MissingSection { section: s }))
    };
    let (covmap, covmap_off) = get(Section::Covmap)?;
    let (covfun, covfun_off) = get(Section::Covfun)?;
    let (names, names_off) = get(Section::Names)?;
    let names = read_names(names, names_off).map_err(in_section(Section::Names))?;
    let units = read_covmap(covmap, covmap_off, big).map_err(in_section(Section::Covmap))?;
    read_covfun(covfun, covfun_off, big, &units, &names).map_err(in_section(Section::Covfun))
}

fn inflate(data: &[u8], size: u64, offset: u64) -> Result<Vec<u8>, LlvmErrorKind> {
    let bad = LlvmErrorKind::Decompress {
        offset,
        expected: size,
    };
    let mut out = Vec::new();
    let limit = size.saturating_add(1);
    flate2::read::ZlibDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| bad)?;
    if out.len() as u64 != size {
        return Err(bad);
    }
    Ok(out)
}

/// `__llvm_prf_names`: MD5 of each name → name.
fn read_names(data: &[u8], base: u64) -> Result<HashMap<u64, String>, LlvmErrorKind> {
    let mut out = HashMap::new();
    let mut r = Reader::new(data, base, false);
    while r.remaining() > 0 {
        let raw_size = r.uleb()?;
        let packed_size = r.uleb()?;
        let at = r.offset();
        let text = if packed_size == 0 {
            r.bytes(raw_size)?.to_vec()
        } else {
            inflate(r.bytes(packed_size)?, raw_size, at)?
        };
        for name in text.split(|&b| b == 1) {
            let name = String::from_utf8_lossy(name).into_owned();
            out.insert(md5_hash(name.as_bytes()), name);
        }
        // Zero padding after a block.
        while data.get(r.pos()) == Some(&0) {
            r.skip(1)?;
        }
    }
    Ok(out)
}

/// Joins a relative file name to the compilation directory and removes
/// `.` and `..` components, as LLVM's reader does.
fn resolve(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        return name.to_owned();
    }
    let joined = if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    };
    let absolute = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    if absolute {
        format!("/{body}")
    } else {
        body
    }
}

/// Decodes one translation unit's encoded file names.
fn decode_filenames(blob: &[u8], base: u64) -> Result<Vec<String>, LlvmErrorKind> {
    let mut r = Reader::new(blob, base, false);
    let count = r.uleb_size()?;
    let raw_size = r.uleb()?;
    let packed_size = r.uleb()?;
    let at = r.offset();
    let owned;
    let (raw, raw_base): (&[u8], u64) = if packed_size == 0 {
        (r.bytes(raw_size)?, at)
    } else {
        owned = inflate(r.bytes(packed_size)?, raw_size, at)?;
        // Offsets inside inflated data point at the compressed block.
        (&owned, at)
    };
    let mut n = Reader::new(raw, raw_base, false);
    let mut names = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = n.uleb()?;
        names.push(String::from_utf8_lossy(n.bytes(len)?).into_owned());
    }
    let dir = names.first().cloned().unwrap_or_default();
    for name in names.iter_mut().skip(1) {
        *name = resolve(&dir, name);
    }
    Ok(names)
}

/// `__llvm_covmap`: MD5 of each unit's encoded names → its file names.
fn read_covmap(
    data: &[u8],
    base: u64,
    big: bool,
) -> Result<HashMap<u64, Vec<String>>, LlvmErrorKind> {
    let mut units = HashMap::new();
    let mut r = Reader::new(data, base, big);
    while r.remaining() > 0 && !r.rest_is_zero() {
        let _n_records = r.u32()?;
        let filenames_size = r.u32()?;
        let _coverage_size = r.u32()?;
        let version_at = r.offset();
        let version = r.u32()?;
        if version != MAPPING_VERSION {
            return Err(LlvmErrorKind::UnsupportedMappingVersion {
                offset: version_at,
                raw: version,
            });
        }
        let at = r.offset();
        let blob = r.bytes(u64::from(filenames_size))?;
        units.insert(md5_hash(blob), decode_filenames(blob, at)?);
        r.align8();
    }
    Ok(units)
}

/// Whether a mapping is a dummy: one file, no expression, one region with
/// a zero counter (an unused inline function).
fn is_dummy(mapping: &[u8]) -> bool {
    let mut r = Reader::new(mapping, 0, false);
    let mut check = || -> Result<bool, LlvmErrorKind> {
        if r.uleb()? != 1 {
            return Ok(false);
        }
        r.uleb()?;
        if r.uleb()? != 0 || r.uleb()? != 1 {
            return Ok(false);
        }
        Ok(r.uleb()? & 3 == 0)
    };
    check().unwrap_or(false)
}

/// `__llvm_covfun`: every function's mapping, decoded.
fn read_covfun(
    data: &[u8],
    base: u64,
    big: bool,
    units: &HashMap<u64, Vec<String>>,
    names: &HashMap<u64, String>,
) -> Result<Vec<FunctionMapping>, LlvmErrorKind> {
    struct Raw<'a> {
        offset: u64,
        name_ref: u64,
        func_hash: u64,
        files: &'a [String],
        mapping: &'a [u8],
        mapping_at: u64,
    }
    let mut order: Vec<Raw<'_>> = Vec::new();
    let mut by_name: HashMap<u64, usize> = HashMap::new();
    let mut r = Reader::new(data, base, big);
    while r.remaining() > 0 && !r.rest_is_zero() {
        let offset = r.offset();
        let name_ref = r.u64()?;
        let size = r.u32()?;
        let func_hash = r.u64()?;
        let filenames_ref = r.u64()?;
        let mapping_at = r.offset();
        let mapping = r.bytes(u64::from(size))?;
        r.align8();
        let files = units
            .get(&filenames_ref)
            .ok_or(LlvmErrorKind::UnknownFilenames {
                offset,
                hash: filenames_ref,
            })?;
        let raw = Raw {
            offset,
            name_ref,
            func_hash,
            files,
            mapping,
            mapping_at,
        };
        match by_name.get(&name_ref) {
            None => {
                by_name.insert(name_ref, order.len());
                order.push(raw);
            }
            Some(&i) => {
                if let Some(old) = order.get_mut(i) {
                    let old_dummy = old.func_hash == 0 && is_dummy(old.mapping);
                    let new_dummy = func_hash == 0 && is_dummy(mapping);
                    if old_dummy && !new_dummy {
                        *old = Raw {
                            offset: old.offset,
                            ..raw
                        };
                    }
                }
            }
        }
    }
    order
        .into_iter()
        .map(|raw| {
            let name = names
                .get(&raw.name_ref)
                .cloned()
                .ok_or(LlvmErrorKind::UnknownName {
                    offset: raw.offset,
                    name_ref: raw.name_ref,
                })?;
            let (filenames, expressions, regions) =
                decode_mapping(raw.mapping, raw.mapping_at, big, raw.files)?;
            if regions.is_empty() {
                return Err(LlvmErrorKind::NoRegions { offset: raw.offset });
            }
            Ok(FunctionMapping {
                name,
                name_ref: raw.name_ref,
                func_hash: raw.func_hash,
                filenames,
                expressions,
                regions,
                offset: raw.offset,
            })
        })
        .collect()
}

type Decoded = (Vec<String>, Vec<Expression>, Vec<Region>);

/// Decodes one function's mapping against its unit's file names.
fn decode_mapping(
    data: &[u8],
    base: u64,
    big: bool,
    unit_files: &[String],
) -> Result<Decoded, LlvmErrorKind> {
    let mut r = Reader::new(data, base, big);
    let n_files = r.uleb_size()?;
    let mut filenames = Vec::with_capacity(n_files as usize);
    for _ in 0..n_files {
        let at = r.offset();
        let index = r.uleb32()?;
        let name = unit_files
            .get(index as usize)
            .ok_or(LlvmErrorKind::BadFileIndex {
                offset: at,
                index: u64::from(index),
                count: unit_files.len() as u64,
            })?;
        filenames.push(name.clone());
    }
    let n_exprs = r.uleb_size()?;
    // Kinds are set by the counters that refer to an expression.
    let mut expressions = vec![
        Expression {
            add: false,
            lhs: Counter::Zero,
            rhs: Counter::Zero,
        };
        n_exprs as usize
    ];
    for i in 0..n_exprs as usize {
        let lhs = read_counter(&mut r, &mut expressions)?;
        let rhs = read_counter(&mut r, &mut expressions)?;
        if let Some(e) = expressions.get_mut(i) {
            e.lhs = lhs;
            e.rhs = rhs;
        }
    }
    let mut regions = Vec::new();
    for file_id in 0..n_files as u32 {
        let n_regions = r.uleb_size()?;
        let mut line = 0u32;
        for _ in 0..n_regions {
            let at = r.offset();
            let encoded = r.uleb32()?;
            let mut kind = RegionKind::Code;
            let mut count = Counter::Zero;
            let mut false_count = Counter::Zero;
            let mut expanded_file_id = 0u32;
            if encoded & 3 != 0 {
                count = decode_counter(encoded, at, &mut expressions)?;
            } else if encoded & 4 != 0 {
                kind = RegionKind::Expansion;
                expanded_file_id = encoded >> 3;
                if u64::from(expanded_file_id) >= n_files {
                    return Err(LlvmErrorKind::BadExpansion {
                        offset: at,
                        file_id: u64::from(expanded_file_id),
                        count: n_files,
                    });
                }
            } else {
                match encoded >> 3 {
                    0 => {}
                    2 => kind = RegionKind::Skipped,
                    4 => {
                        kind = RegionKind::Branch;
                        count = read_counter(&mut r, &mut expressions)?;
                        false_count = read_counter(&mut r, &mut expressions)?;
                    }
                    other => {
                        return Err(LlvmErrorKind::BadRegionKind {
                            offset: at,
                            kind: u64::from(other),
                        })
                    }
                }
            }
            let delta = r.uleb32()?;
            let mut col_start = r.uleb32()?;
            let n_lines = r.uleb32()?;
            let mut col_end = r.uleb32()?;
            if col_end & (1 << 31) != 0 {
                kind = RegionKind::Gap;
                col_end &= !(1 << 31);
            }
            if col_start == 0 && col_end == 0 {
                col_start = 1;
                col_end = u32::MAX;
            }
            let bad = LlvmErrorKind::BadRegion { offset: at };
            let line_start = line.checked_add(delta).ok_or(bad)?;
            let line_end = line_start.checked_add(n_lines).ok_or(bad)?;
            if (line_start, col_start) > (line_end, col_end) {
                return Err(bad);
            }
            line = line_start;
            regions.push(Region {
                count,
                false_count,
                file_id,
                expanded_file_id,
                line_start,
                col_start,
                line_end,
                col_end,
                kind,
            });
        }
    }
    propagate_expansion_counts(&mut regions, n_files as usize);
    Ok((filenames, expressions, regions))
}

/// An expansion region counts as the first region of the file it expands;
/// nested expansions need one pass per level.
fn propagate_expansion_counts(regions: &mut [Region], n_files: usize) {
    for _pass in 1..n_files {
        let mut expansion_of: Vec<Option<usize>> = vec![None; n_files];
        for (i, r) in regions.iter().enumerate() {
            if r.kind == RegionKind::Expansion {
                if let Some(slot) = expansion_of.get_mut(r.expanded_file_id as usize) {
                    *slot = Some(i);
                }
            }
        }
        for i in 0..regions.len() {
            let Some(r) = regions.get(i).copied() else {
                continue;
            };
            let Some(e) = expansion_of
                .get_mut(r.file_id as usize)
                .and_then(Option::take)
            else {
                continue;
            };
            if let Some(exp) = regions.get_mut(e) {
                exp.count = r.count;
            }
        }
    }
}

fn read_counter(
    r: &mut Reader<'_>,
    expressions: &mut [Expression],
) -> Result<Counter, LlvmErrorKind> {
    let at = r.offset();
    let v = r.uleb32()?;
    decode_counter(v, at, expressions)
}

fn decode_counter(
    v: u32,
    at: u64,
    expressions: &mut [Expression],
) -> Result<Counter, LlvmErrorKind> {
    let index = v >> 2;
    match v & 3 {
        0 => Ok(Counter::Zero),
        1 => Ok(Counter::Value(index)),
        tag => {
            let count = expressions.len() as u64;
            let e = expressions
                .get_mut(index as usize)
                .ok_or(LlvmErrorKind::BadExpression {
                    offset: at,
                    index: u64::from(index),
                    count,
                })?;
            e.add = tag == 3;
            Ok(Counter::Expression(index))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_llvm() {
        assert_eq!(resolve("/b/dir", "x.c"), "/b/dir/x.c");
        assert_eq!(resolve("/b/dir", "./sub/../y.c"), "/b/dir/y.c");
        assert_eq!(resolve("/b/dir", "../../../z.c"), "/z.c");
        assert_eq!(resolve("/b", "/abs/a.c"), "/abs/a.c");
    }

    #[test]
    fn md5_low_word() {
        // MD5("main") = fad58de7366495db4650cfefac2fcd61
        assert_eq!(md5_hash(b"main"), 0xdb95_6436_e78d_d5fa);
    }

    #[test]
    fn decodes_a_mapping_and_its_gaps() {
        // One file (index 1), one expression (#0 - #1), regions: code #0
        // at 2:5-4:2, a gap, a branch (#1, e0).
        let mapping = [
            1, 1, // files
            1, 0x01, 0x05, // expr 0 = #0 ? #1 (kind set by its users)
            3,    // three regions
            0x01, 2, 5, 2, 2, // code #0 2:5 -> 4:2
            0x02, 1, 1, 0, 0x81, 0x80, 0x80, 0x80, 0x08, // e0 (sub), gap 3:1 -> 3:1 (bit 31)
            0x20, 0x05, 0x02, 0, 7, 0, 12, // branch #1 / e0 at 3:7-3:12
        ];
        let files = vec!["/d".to_owned(), "/d/a.c".to_owned()];
        let (names, exprs, regions) = decode_mapping(&mapping, 0, false, &files).expect("decode");
        assert_eq!(names, vec!["/d/a.c"]);
        assert!(!exprs[0].add);
        assert_eq!(regions.len(), 3);
        assert_eq!(regions[1].kind, RegionKind::Gap);
        assert_eq!((regions[1].line_start, regions[1].col_end), (3, 1));
        assert_eq!(regions[2].kind, RegionKind::Branch);
        assert_eq!(regions[2].count, Counter::Value(1));
        assert_eq!(regions[2].false_count, Counter::Expression(0));
        for len in 0..mapping.len() {
            assert!(decode_mapping(&mapping[..len], 0, false, &files).is_err());
        }
    }
}
