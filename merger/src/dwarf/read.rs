//! The DWARF walk: compilation units, the source files their line
//! programs name, the executable lines of each file, and the functions
//! (`DW_TAG_subprogram`) with their declaration and whether they have code.
//!
//! **Which line-table rows count.** A line is executable when some row of
//! some line program attributes an address to it: every row except the
//! `DW_LNE_end_sequence` rows (which mark the first address *after* a
//! sequence) and rows with line 0 (code the compiler could not attribute
//! to any line). Rows count whether or not `is_stmt` is set: a non-stmt row
//! still says that machine code of that line starts there. These are the
//! distinct `(file, line)` pairs of the rows that `objdump
//! --dwarf=decodedline` and `llvm-dwarfdump --debug-line` list (their
//! end-of-sequence rows aside), which the tests check against objdump.
//! Sequences of code the linker discarded are counted as those tools list
//! them.
//!
//! Limits: `DW_AT_abstract_origin`/`DW_AT_specification` are followed
//! within a unit only (a function whose name is in another unit, as after
//! LTO, is left out of the functions, not of the lines); split DWARF
//! (`-gsplit-dwarf` `.dwo` files) gives the lines of the skeleton units'
//! line programs but no functions; relocatable objects (`.o`) are read
//! without applying their relocations.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitRef};

use super::elf::Elf;
use super::error::DwarfErrorKind;
use crate::paths::normalize;

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// What the DWARF of one ELF file says it was compiled from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugInfo {
    /// Compilation units, in `.debug_info` order.
    pub units: Vec<CompUnit>,
    /// Source files by absolute, normalised path (relative only when the
    /// DWARF gives no directory at all): those with executable lines or
    /// with a function that has code.
    pub files: BTreeMap<String, SourceFile>,
}

/// One compilation unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompUnit {
    /// Its primary source file (`DW_AT_name` against `DW_AT_comp_dir`).
    pub name: String,
    /// The compiler's working directory (`DW_AT_comp_dir`), if given.
    pub comp_dir: Option<String>,
    /// `DW_AT_producer` (the compiler and its options), if given.
    pub producer: Option<String>,
    /// DWARF version of the unit.
    pub version: u16,
}

/// One source file compiled into the ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFile {
    /// Executable lines (see the module doc for which rows count).
    pub lines: BTreeSet<u32>,
    /// Functions declared in this file, by declaration line and name,
    /// each once however many units or instances define it.
    pub functions: Vec<Function>,
}

/// One function (`DW_TAG_subprogram` that is not a mere declaration).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    /// Line of the declaration (`DW_AT_decl_line`; 0 when not given).
    pub line: u32,
    /// Source name (`DW_AT_name`), through `DW_AT_abstract_origin` or
    /// `DW_AT_specification` where the entry itself has none.
    pub name: String,
    /// Linkage (mangled) name, if given.
    pub linkage_name: Option<String>,
    /// Some instance has machine code in the file (a non-zero `DW_AT_low_pc`
    /// or `DW_AT_ranges`), as opposed to only inlined or discarded copies.
    pub has_code: bool,
}

impl DebugInfo {
    /// Reads the DWARF of a parsed ELF file; `Ok(None)` when it has none.
    pub(crate) fn from_elf(elf: &Elf<'_>) -> Result<Option<DebugInfo>, DwarfErrorKind> {
        if !elf.has_dwarf() {
            return Ok(None);
        }
        let sections = gimli::DwarfSections::load(|id| elf.section(id.name()))?;
        let endian = elf.endian();
        let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
        let mut info = DebugInfo::default();
        let mut headers = dwarf.units();
        loop {
            let header = match headers.next() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(error) => {
                    return Err(DwarfErrorKind::Dwarf {
                        section: ".debug_info",
                        offset: 0,
                        unit: 0,
                        error,
                    })
                }
            };
            let at = header.debug_info_offset().map_or(0, |o| o.0 as u64);
            let bad = |(section, offset, error): Failure| DwarfErrorKind::Dwarf {
                section,
                offset,
                unit: at,
                error,
            };
            let unit = dwarf
                .unit(header)
                .map_err(|e| bad((".debug_info", at, e)))?;
            let unit = unit.unit_ref(&dwarf);
            read_unit(unit, at, &mut info).map_err(bad)?;
        }
        for file in info.files.values_mut() {
            file.functions.sort();
            file.functions.dedup_by(|b, a| {
                let same = a.line == b.line && a.name == b.name;
                if same {
                    a.has_code |= b.has_code;
                    if a.linkage_name.is_none() {
                        a.linkage_name = b.linkage_name.take();
                    }
                }
                same
            });
        }
        Ok(Some(info))
    }

    /// Distinct executable lines over all files.
    pub fn executable_lines(&self) -> u64 {
        self.files.values().map(|f| f.lines.len() as u64).sum()
    }
}

/// A gimli error, the section it was met in and the offset there of what
/// was being read (the unit, or its line program).
type Failure = (&'static str, u64, gimli::Error);

fn read_unit<'d>(unit: UnitRef<'_, R<'d>>, at: u64, info: &mut DebugInfo) -> Result<(), Failure> {
    let info_err = |e| (".debug_info", at, e);
    let comp_dir = unit.comp_dir.map(|d| d.to_string_lossy().into_owned());
    let name = unit
        .name
        .map(|n| join(comp_dir.as_deref(), None, &n.to_string_lossy()))
        .unwrap_or_default();
    let mut producer = None;
    {
        let mut entries = unit.entries();
        if let Some(root) = entries.next_dfs().map_err(info_err)? {
            if let Some(v) = root.attr_value(gimli::DW_AT_producer) {
                producer = Some(string(unit, v).map_err(info_err)?);
            }
        }
    }
    info.units.push(CompUnit {
        name,
        comp_dir: comp_dir.clone(),
        producer,
        version: unit.header.version(),
    });

    // File table paths, by index, computed once per index.
    let mut paths: HashMap<u64, Option<String>> = HashMap::new();
    let line_at = unit
        .line_program
        .as_ref()
        .map_or(0, |p| p.header().offset().0 as u64);
    let line_err = |e| (".debug_line", line_at, e);
    let header = unit.line_program.as_ref().map(|p| p.header().clone());
    let mut file_path = |index: u64| -> Result<Option<String>, gimli::Error> {
        if let Some(p) = paths.get(&index) {
            return Ok(p.clone());
        }
        let path = match &header {
            Some(h) => file_entry_path(unit, h, index, comp_dir.as_deref())?,
            None => None,
        };
        paths.insert(index, path.clone());
        Ok(path)
    };

    if let Some(program) = unit.line_program.clone() {
        let mut rows = program.rows();
        while let Some((_, row)) = rows.next_row().map_err(line_err)? {
            if row.end_sequence() {
                continue;
            }
            let Some(line) = row.line() else { continue };
            let Some(path) = file_path(row.file_index()).map_err(line_err)? else {
                continue;
            };
            let line = u32::try_from(line.get()).unwrap_or(u32::MAX);
            info.files.entry(path).or_default().lines.insert(line);
        }
    }

    let mut entries = unit.entries();
    while let Some(entry) = entries.next_dfs().map_err(info_err)? {
        if entry.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        if entry.attr_value(gimli::DW_AT_declaration).is_some() {
            continue;
        }
        let has_code = has_code(unit, entry).map_err(info_err)?;
        let Some(decl) = declaration(unit, entry, 0).map_err(info_err)? else {
            continue;
        };
        let Some(name) = decl.name else { continue };
        let Some(file) = decl.file else { continue };
        let Some(path) = file_path(file).map_err(line_err)? else {
            continue;
        };
        info.files
            .entry(path)
            .or_default()
            .functions
            .push(Function {
                line: decl.line,
                name,
                linkage_name: decl.linkage_name,
                has_code,
            });
    }
    Ok(())
}

/// The absolute, normalised path of file `index` of a line program.
fn file_entry_path<'d>(
    unit: UnitRef<'_, R<'d>>,
    header: &gimli::LineProgramHeader<R<'d>>,
    index: u64,
    comp_dir: Option<&str>,
) -> Result<Option<String>, gimli::Error> {
    let Some(file) = header.file(index) else {
        return Ok(None);
    };
    let name = string(unit, file.path_name())?;
    // Directory 0 is the compilation directory itself (DWARF 5; "the
    // current directory" before): joined below, not twice.
    let dir = match file.directory(header) {
        Some(d) if file.directory_index() != 0 => Some(string(unit, d)?),
        _ => None,
    };
    Ok(Some(join(comp_dir, dir.as_deref(), &name)))
}

/// `name` resolved against `dir`, and that against `comp_dir`, normalised.
fn join(comp_dir: Option<&str>, dir: Option<&str>, name: &str) -> String {
    let mut path = name.to_owned();
    for base in [dir, comp_dir].into_iter().flatten() {
        if path.starts_with('/') {
            break;
        }
        if !base.is_empty() {
            path = format!("{}/{path}", base.trim_end_matches('/'));
        }
    }
    normalize(&path)
}

fn string<'d>(
    unit: UnitRef<'_, R<'d>>,
    value: AttributeValue<R<'d>>,
) -> Result<String, gimli::Error> {
    Ok(unit.attr_string(value)?.to_string_lossy().into_owned())
}

/// Whether a subprogram entry has machine code of its own.
fn has_code<'d>(
    unit: UnitRef<'_, R<'d>>,
    entry: &gimli::DebuggingInformationEntry<R<'d>>,
) -> Result<bool, gimli::Error> {
    if let Some(v) = entry.attr_value(gimli::DW_AT_low_pc) {
        // 0 (and all ones) are the linkers' tombstones for discarded code.
        return Ok(unit
            .attr_address(v)?
            .is_some_and(|a| a != 0 && a != u64::MAX && a != u64::from(u32::MAX)));
    }
    if entry.attr_value(gimli::DW_AT_ranges).is_some() {
        let mut ranges = unit.die_ranges(entry)?;
        while let Some(r) = ranges.next()? {
            if r.begin != 0 && r.begin < r.end {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What a subprogram declares, following `DW_AT_abstract_origin` and
/// `DW_AT_specification` within the unit for what the entry lacks.
#[derive(Default)]
struct Declaration {
    name: Option<String>,
    linkage_name: Option<String>,
    file: Option<u64>,
    line: u32,
}

/// How many origin/specification links are followed.
const MAX_LINKS: usize = 8;

fn declaration<'d>(
    unit: UnitRef<'_, R<'d>>,
    entry: &gimli::DebuggingInformationEntry<R<'d>>,
    depth: usize,
) -> Result<Option<Declaration>, gimli::Error> {
    let mut decl = Declaration::default();
    if let Some(v) = entry.attr_value(gimli::DW_AT_name) {
        decl.name = Some(string(unit, v)?);
    }
    for at in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name] {
        if decl.linkage_name.is_none() {
            if let Some(v) = entry.attr_value(at) {
                decl.linkage_name = Some(string(unit, v)?);
            }
        }
    }
    if let Some(AttributeValue::FileIndex(f)) = entry.attr_value(gimli::DW_AT_decl_file) {
        decl.file = Some(f);
    }
    if let Some(AttributeValue::Udata(l)) = entry.attr_value(gimli::DW_AT_decl_line) {
        decl.line = u32::try_from(l).unwrap_or(u32::MAX);
    }
    let complete = decl.name.is_some() && decl.file.is_some();
    if complete || depth >= MAX_LINKS {
        return Ok(Some(decl));
    }
    for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        if let Some(AttributeValue::UnitRef(offset)) = entry.attr_value(at) {
            let target = unit.entry(offset)?;
            if let Some(origin) = declaration(unit, &target, depth + 1)? {
                decl.name = decl.name.or(origin.name);
                decl.linkage_name = decl.linkage_name.or(origin.linkage_name);
                if decl.file.is_none() {
                    decl.file = origin.file;
                    decl.line = origin.line;
                }
            }
            break;
        }
    }
    Ok(Some(decl))
}
