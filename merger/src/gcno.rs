//! The notes file (`.gcno`): functions, their blocks, arcs and lines.
//!
//! Zero-copy: names and file names borrow the input bytes.

use std::collections::HashSet;
use std::fmt;

use crate::bytes::TAG_LINES;
use crate::bytes::{self, Cursor, Endian, Records, Version, TAG_ARCS, TAG_BLOCKS, TAG_FUNCTION};
use crate::error::{ErrorKind, FileKind};

/// Arc flag: on the spanning tree, no counter.
pub const ARC_ON_TREE: u32 = 1;
/// Arc flag: fake arc (call that may not return, or nonlocal entry).
pub const ARC_FAKE: u32 = 2;
/// Arc flag: falls through to the next block.
pub const ARC_FALLTHROUGH: u32 = 4;

/// A parsed notes file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notes<'a> {
    /// Version of the GCC that wrote it.
    pub version: Version,
    /// Byte order.
    pub endian: Endian,
    /// Compilation stamp; equal in the matching data files.
    pub stamp: u32,
    /// Header checksum word (GCC 12 on; always 0 in notes).
    pub checksum: Option<u32>,
    /// The compiler's working directory (GCC 9 on).
    pub cwd: Option<&'a [u8]>,
    /// 0 for Ada: gcov then never prints the unexecuted-block marker.
    pub supports_unexecuted_blocks: bool,
    /// Functions in file order.
    pub functions: Vec<NotesFunction<'a>>,
}

/// One function of a notes file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotesFunction<'a> {
    /// Offset of the FUNCTION record.
    pub offset: u64,
    /// Identifier, unique within the object.
    pub ident: u32,
    /// Checksum of the declaration line and name.
    pub lineno_checksum: u32,
    /// Checksum of the CFG shape.
    pub cfg_checksum: u32,
    /// Mangled (assembler) name.
    pub name: &'a [u8],
    /// Made by the compiler (static initialisers...): gcov drops these.
    pub artificial: bool,
    /// Source file of the declaration, as the compiler saw it.
    pub source: &'a [u8],
    /// Line of the declaration.
    pub start_line: u32,
    /// Column of the declaration.
    pub start_column: u32,
    /// Line of the closing brace.
    pub end_line: u32,
    /// Column of the closing brace (GCC 9 on, else 0).
    pub end_column: u32,
    /// Number of blocks including ENTRY (0) and EXIT (1).
    pub blocks: u32,
    /// Arcs in file order.
    pub arcs: Vec<NotesArc>,
    /// Line locations of blocks, in file order.
    pub locations: Vec<Location<'a>>,
}

/// One arc of the flow graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotesArc {
    /// Source block.
    pub src: u32,
    /// Destination block.
    pub dst: u32,
    /// Flags ([`ARC_ON_TREE`], [`ARC_FAKE`], [`ARC_FALLTHROUGH`]).
    pub flags: u32,
}

impl NotesArc {
    /// On the spanning tree: no counter, the count is derived.
    pub fn on_tree(&self) -> bool {
        self.flags & ARC_ON_TREE != 0
    }
    /// Fake arc.
    pub fn fake(&self) -> bool {
        self.flags & ARC_FAKE != 0
    }
    /// Fallthrough arc.
    pub fn fallthrough(&self) -> bool {
        self.flags & ARC_FALLTHROUGH != 0
    }
}

/// Lines of one file covered by one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    /// The block.
    pub block: u32,
    /// The source file, as the compiler named it.
    pub file: &'a [u8],
    /// Line numbers in file order (gcov sorts them before use).
    pub lines: Vec<u32>,
}

impl NotesFunction<'_> {
    /// Number of arc counters the data file must hold for this function.
    pub fn counters(&self) -> usize {
        self.arcs.iter().filter(|a| !a.on_tree()).count()
    }

    /// Mangled name, lossily converted for display.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

impl<'a> Notes<'a> {
    /// Parses a notes file.
    pub fn parse(data: &'a [u8]) -> Result<Self, ErrorKind> {
        let (mut cur, version) = bytes::open(data, FileKind::Notes)?;
        let layout = cur.layout();
        let stamp = cur.u32()?;
        let checksum = if layout.has_checksum {
            Some(cur.u32()?)
        } else {
            None
        };
        let cwd = if layout.has_cwd {
            Some(cur.string()?)
        } else {
            None
        };
        let supports_unexecuted_blocks = cur.u32()? != 0;
        let mut notes = Notes {
            version,
            endian: cur.endian(),
            stamp,
            checksum,
            cwd,
            supports_unexecuted_blocks,
            functions: Vec::new(),
        };
        // Bound for block counts: every block but EXIT has an ARCS record
        // of at least 20 bytes; allow generous slack.
        let block_limit = data.len() as u64 / 4 + 2;
        let mut idents = HashSet::new();
        // Source blocks whose ARCS record was seen, for the current function.
        let mut arcs_seen: HashSet<u32> = HashSet::new();
        let mut in_function = false;
        let mut records = Records::new(cur);
        while let Some(rec) = records.next_record()? {
            let mut p = rec.payload;
            match rec.tag {
                TAG_FUNCTION => {
                    let f = parse_function(&mut p, rec.offset)?;
                    if !idents.insert(f.ident) {
                        return Err(ErrorKind::DuplicateIdent {
                            offset: rec.offset,
                            ident: f.ident,
                        });
                    }
                    notes.functions.push(f);
                    arcs_seen.clear();
                    in_function = true;
                }
                TAG_BLOCKS | TAG_ARCS | TAG_LINES => {
                    let f = match notes.functions.last_mut() {
                        Some(f) if in_function => f,
                        _ => {
                            return Err(ErrorKind::OutsideFunction {
                                offset: rec.offset,
                                tag: rec.tag,
                            })
                        }
                    };
                    match rec.tag {
                        TAG_BLOCKS => {
                            if f.blocks != 0 {
                                return Err(ErrorKind::DuplicateBlocks { offset: rec.offset });
                            }
                            let n = p.u32()?;
                            if u64::from(n) > block_limit {
                                return Err(ErrorKind::TooManyBlocks {
                                    offset: rec.offset,
                                    blocks: n,
                                    limit: block_limit,
                                });
                            }
                            f.blocks = n;
                        }
                        TAG_ARCS => parse_arcs(f, &mut p, rec.offset, &mut arcs_seen)?,
                        _ => parse_lines(f, &mut p)?,
                    }
                }
                tag => {
                    // Unknown records are skipped; one that is not a
                    // sub-record of a function ends the current function.
                    if !(tag & 0xff00_0000 == TAG_FUNCTION && tag & 0xffff == 0) {
                        in_function = false;
                    }
                    continue;
                }
            }
            p.finish()?;
        }
        Ok(notes)
    }
}

fn parse_function<'a>(p: &mut Cursor<'a>, offset: u64) -> Result<NotesFunction<'a>, ErrorKind> {
    let layout = p.layout();
    let ident = p.u32()?;
    let lineno_checksum = p.u32()?;
    let cfg_checksum = p.u32()?;
    let name = p.string()?;
    let artificial = p.u32()? != 0;
    let source = p.string()?;
    let start_line = p.u32()?;
    let start_column = p.u32()?;
    let end_line = p.u32()?;
    let end_column = if layout.has_end_column { p.u32()? } else { 0 };
    Ok(NotesFunction {
        offset,
        ident,
        lineno_checksum,
        cfg_checksum,
        name,
        artificial,
        source,
        start_line,
        start_column,
        end_line,
        end_column,
        blocks: 0,
        arcs: Vec::new(),
        locations: Vec::new(),
    })
}

fn check_block(f: &NotesFunction<'_>, block: u32, offset: u64) -> Result<(), ErrorKind> {
    if block >= f.blocks {
        return Err(ErrorKind::BadBlock {
            offset,
            block,
            blocks: f.blocks,
        });
    }
    Ok(())
}

fn parse_arcs(
    f: &mut NotesFunction<'_>,
    p: &mut Cursor<'_>,
    offset: u64,
    seen: &mut HashSet<u32>,
) -> Result<(), ErrorKind> {
    let at = p.offset();
    let src = p.u32()?;
    check_block(f, src, at)?;
    if !seen.insert(src) {
        return Err(ErrorKind::DuplicateArcs { offset, block: src });
    }
    while p.remaining() >= 8 {
        let at = p.offset();
        let dst = p.u32()?;
        let flags = p.u32()?;
        check_block(f, dst, at)?;
        if dst == 0 || src == 1 {
            return Err(ErrorKind::BadArc { offset, src, dst });
        }
        f.arcs.push(NotesArc { src, dst, flags });
    }
    Ok(())
}

fn parse_lines<'a>(f: &mut NotesFunction<'a>, p: &mut Cursor<'a>) -> Result<(), ErrorKind> {
    let at = p.offset();
    let block = p.u32()?;
    check_block(f, block, at)?;
    let first = f.locations.len();
    loop {
        let at = p.offset();
        let line = p.u32()?;
        if line != 0 {
            match f.locations.get_mut(first..).and_then(|l| l.last_mut()) {
                Some(loc) => loc.lines.push(line),
                None => return Err(ErrorKind::LineWithoutFile { offset: at, line }),
            }
        } else {
            let file = p.string()?;
            if file.is_empty() {
                return Ok(());
            }
            f.locations.push(Location {
                block,
                file,
                lines: Vec::new(),
            });
        }
    }
}

/// Bytes shown as text, lossily.
struct Lossy<'a>(&'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

/// A `gcov-dump -l`-like listing, for diagnostics.
impl fmt::Display for Notes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.version.word().to_be_bytes();
        writeln!(
            f,
            "notes: {} ('{}'), {:?}-endian, stamp 0x{:08x}, cwd {}, unexecuted blocks {}",
            self.version,
            Lossy(&v),
            self.endian,
            self.stamp,
            Lossy(self.cwd.unwrap_or(b"-")),
            if self.supports_unexecuted_blocks {
                "yes"
            } else {
                "no"
            }
        )?;
        for func in &self.functions {
            writeln!(
                f,
                "function `{}` @{} ident={} lineno_checksum=0x{:08x} cfg_checksum=0x{:08x} {}:{}:{}-{}:{}{}",
                Lossy(func.name),
                func.offset,
                func.ident,
                func.lineno_checksum,
                func.cfg_checksum,
                Lossy(func.source),
                func.start_line,
                func.start_column,
                func.end_line,
                func.end_column,
                if func.artificial { " artificial" } else { "" }
            )?;
            writeln!(f, "  blocks {}", func.blocks)?;
            let mut src = None;
            for a in &func.arcs {
                if src != Some(a.src) {
                    if src.is_some() {
                        writeln!(f)?;
                    }
                    write!(f, "  block {}:", a.src)?;
                    src = Some(a.src);
                }
                let mut flags = Vec::new();
                if a.on_tree() {
                    flags.push("tree");
                }
                if a.fake() {
                    flags.push("fake");
                }
                if a.fallthrough() {
                    flags.push("fall");
                }
                write!(f, " {}:{:04x}", a.dst, a.flags)?;
                if !flags.is_empty() {
                    write!(f, "({})", flags.join(","))?;
                }
            }
            if src.is_some() {
                writeln!(f)?;
            }
            for loc in &func.locations {
                write!(f, "  lines block {}: `{}`", loc.block, Lossy(loc.file))?;
                for l in &loc.lines {
                    write!(f, " {l}")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{classify_notes, Gcc};

    #[test]
    fn dump_lists_functions_arcs_and_lines() {
        let bytes = classify_notes(Gcc::V11, Endian::Big);
        let notes = Notes::parse(&bytes).unwrap();
        let text = notes.to_string();
        assert!(
            text.starts_with("notes: gcc 11.3 ('B13*'), Big-endian, stamp 0x0000abcd, cwd /src")
        );
        assert!(text.contains("function `classify` @"), "{text}");
        assert!(
            text.contains("  block 2: 3:0004(fall) 4:0001(tree)\n"),
            "{text}"
        );
        assert!(text.contains("  lines block 2: `ifelse.c` 4 7\n"), "{text}");
        assert_eq!(notes.functions[0].counters(), 2);
    }
}
