//! lcov tracefile I/O: a streaming reader and a writer for lcov 1.16 and 2.x.
//!
//! The reader accepts everything lcov 1.16 through 2.3 write (see
//! `shared/docs/gcov-format.md` §11): `TN`, `SF`, `FN` with or without an end
//! line, `FNDA`, `FNL`/`FNA` (lcov ≥ 2.2), `BRDA` with `-` and the `e`/`f`/`U`
//! prefixes, `DA` with an optional checksum and negative counts, `VER`,
//! `MCDC`/`MCF`/`MCH` (skipped), `#` comments and `end_of_record`. The
//! `*F`/`*H` total lines are checked for syntax only: totals are always
//! recomputed from the data, as lcov does. Duplicate `DA` and `BRDA` entries
//! within one record add up. Branches marked `U` (excluded) are dropped, as
//! lcov leaves them out of every total. Each `TN` section becomes a capture
//! of the resulting [`Coverage`].
//!
//! The writer emits one record per source file with `FNF/FNH/BRF/BRH/LF/LH`
//! and `end_of_record`, either in the lcov-1.x-safe form ([`LcovFormat::V1`])
//! or with lcov 2.2+ function leaders and exception prefixes
//! ([`LcovFormat::V2`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use crate::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};

/// What went wrong on one line of a tracefile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LcovErrorKind {
    /// Reading the input failed.
    #[error("read error")]
    Io(#[source] io::Error),
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// The line is neither `KEY:value`, `end_of_record` nor a comment.
    #[error("not a tracefile line: {0:?}")]
    Syntax(String),
    /// A field that must be a number is not one.
    #[error("{key}: field {field:?} is not a number")]
    BadNumber {
        /// The record key (`DA`, `BRDA`, …).
        key: &'static str,
        /// The offending field.
        field: String,
    },
    /// A record has too few fields.
    #[error("{key}: missing field in {value:?}")]
    MissingField {
        /// The record key.
        key: &'static str,
        /// The whole value after the colon.
        value: String,
    },
    /// A data line appears outside an `SF` … `end_of_record` record.
    #[error("{0} outside a source file record (no SF before it)")]
    OutsideRecord(&'static str),
    /// `SF` while the previous record is still open.
    #[error("SF:{0} before end_of_record of the previous source file")]
    NestedRecord(String),
    /// The input ended inside a record.
    #[error("input ends inside the record of {0} (missing end_of_record)")]
    Unterminated(String),
    /// `FNA` names a leader index no `FNL` defined.
    #[error("FNA refers to unknown function leader index {0}")]
    UnknownLeader(u64),
    /// Summing two counts overflowed.
    #[error("count overflow while adding duplicate entries")]
    Overflow,
    /// A function name of the form `<digits>,…`, which an `FN` line would
    /// read as an end line and a different name.
    #[error("{key}: function name {name:?} starts like a line number")]
    AmbiguousName {
        /// The record key (`FN`, `FNDA` or `FNA`).
        key: &'static str,
        /// The name.
        name: String,
    },
}

/// An error while reading a tracefile, naming the file and the line.
///
/// Its message already includes the kind, so [`std::error::Error::source`]
/// skips the kind and returns the kind's own cause (an I/O error), which
/// keeps error chains free of repetition.
#[derive(Debug)]
pub struct LcovError {
    /// The tracefile (as given by the caller).
    pub file: PathBuf,
    /// 1-based line number (0 when the error is not tied to a line).
    pub line: u64,
    /// What went wrong.
    pub kind: LcovErrorKind,
}

impl std::fmt::Display for LcovError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.kind)
    }
}

impl std::error::Error for LcovError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// One record of a tracefile: a source file within a test section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The `TN` of the section the record belongs to ("" when none).
    pub test_name: String,
    /// The `SF` path exactly as written.
    pub source: String,
    /// The counts of the record (without `by_capture`).
    pub file: FileCoverage,
}

/// A record read and checked but not yet built into a [`FileCoverage`]:
/// its counts in sorted runs, a fraction of the memory of the line map
/// [`Parsed::into_record`] builds. A reader can run ahead of the code
/// that merges its records and hold them in this form.
#[derive(Debug)]
pub struct Parsed {
    test_name: String,
    source: String,
    da: SortedRuns<u32, i64>,
    branches: SortedRuns<(u32, u32, u32), Branch>,
    functions: Vec<FunctionCoverage>,
}

impl Parsed {
    /// The `TN` of the section the record belongs to ("" when none).
    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// The record, its lines in a map (what [`Reader::next_record`]
    /// returns).
    pub fn into_record(self) -> Record {
        // The lines and the branches each come out sorted: merge them,
        // the branches grouped by line, into the map's bulk build (sorted
        // input packs the tree's nodes full).
        let mut counts = self.da.into_sorted().peekable();
        let mut branches = self.branches.into_sorted().peekable();
        // Each line's branches in a vector of their number (pushed one by
        // one, two branches would take room for four: 20 MB per tracefile
        // on the reporter corpus).
        let mut on_line: Vec<Branch> = Vec::new();
        let lines: BTreeMap<u32, LineCoverage> = std::iter::from_fn(|| {
            let next_branch = branches.peek().map(|((l, _, _), _)| *l);
            let line = match (counts.peek(), next_branch) {
                (Some(&(a, _)), Some(b)) => a.min(b),
                (Some(&(a, _)), None) => a,
                (None, Some(b)) => b,
                (None, None) => return None,
            };
            let count = counts.next_if(|&(a, _)| a == line).map_or(0, |(_, c)| c);
            on_line.clear();
            while let Some((_, b)) = branches.next_if(|((l, _, _), _)| *l == line) {
                on_line.push(b);
            }
            let mut line_branches = Vec::new();
            if !on_line.is_empty() {
                line_branches.reserve_exact(on_line.len());
                line_branches.append(&mut on_line);
            }
            Some((
                line,
                LineCoverage {
                    count,
                    branches: line_branches,
                    ..LineCoverage::default()
                },
            ))
        })
        .collect();
        Record {
            test_name: self.test_name,
            source: self.source,
            file: FileCoverage {
                lines,
                functions: self.functions,
                ..FileCoverage::default()
            },
        }
    }
}

/// Streaming reader of lcov tracefiles: yields one [`Record`] at a time.
pub struct Reader<R> {
    input: R,
    file: PathBuf,
    line_no: u64,
    buf: Vec<u8>,
    test_name: String,
}

/// The state of the record being read.
#[derive(Default)]
struct OpenRecord {
    source: String,
    /// `DA` counts by line, built into the lines map in one go by
    /// [`Parsed::into_record`] (densely packed).
    da: SortedRuns<u32, i64>,
    /// Functions in order of appearance; `(name, start_line)` is the key.
    functions: Vec<FunctionCoverage>,
    by_name: HashMap<String, usize>,
    /// Function index by (name, start line).
    by_key: HashMap<(String, u32), usize>,
    /// `FNDA` counts seen before the matching `FN`.
    pending_counts: Vec<(String, i64)>,
    /// Branches by (line, block, branch), as `da` holds lines.
    branches: SortedRuns<(u32, u32, u32), Branch>,
    /// Names of non-numeric branch expressions, by (line, block).
    branch_exprs: HashMap<(u32, u32, String), u32>,
    /// Number of branch expressions seen per (line, block).
    branch_expr_count: HashMap<(u32, u32), u32>,
    /// `FNL` leaders: index → (start line, end line).
    leaders: HashMap<u64, (u32, u32)>,
}

impl<R: BufRead> Reader<R> {
    /// Reads tracefile records from `input`; `file` names it in errors.
    pub fn new(input: R, file: impl Into<PathBuf>) -> Self {
        Reader {
            input,
            file: file.into(),
            line_no: 0,
            buf: Vec::new(),
            test_name: String::new(),
        }
    }

    fn err(&self, kind: LcovErrorKind) -> LcovError {
        LcovError {
            file: self.file.clone(),
            line: self.line_no,
            kind,
        }
    }

    /// Returns the next record, `Ok(None)` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, LcovError> {
        Ok(self.next_parsed()?.map(Parsed::into_record))
    }

    /// [`Reader::next_record`] in the form [`Parsed`], its line map not
    /// built yet: the same records and the same errors.
    pub fn next_parsed(&mut self) -> Result<Option<Parsed>, LcovError> {
        let mut open: Option<OpenRecord> = None;
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| self.err(LcovErrorKind::Io(e)))?;
            if n == 0 {
                return match open {
                    Some(rec) => Err(self.err(LcovErrorKind::Unterminated(rec.source))),
                    None => Ok(None),
                };
            }
            self.line_no += 1;
            let buf = std::mem::take(&mut self.buf);
            let result = self.line(&buf, &mut open);
            self.buf = buf;
            if let Some(rec) = result? {
                return Ok(Some(rec));
            }
        }
    }

    /// Handles one line; returns a record when it was `end_of_record`.
    fn line(
        &mut self,
        raw: &[u8],
        open: &mut Option<OpenRecord>,
    ) -> Result<Option<Parsed>, LcovError> {
        if let (Some(value), Some(rec)) = (raw.strip_prefix(b"DA:"), open.as_mut()) {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            let value = value.strip_suffix(b"\r").unwrap_or(value);
            if let Some(res) = rec.da_fast(value) {
                return res.map(|()| None).map_err(|k| self.err(k));
            }
        }
        let text = std::str::from_utf8(raw).map_err(|_| self.err(LcovErrorKind::InvalidUtf8))?;
        let text = text.trim_end_matches(['\n', '\r']);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(None);
        }
        if trimmed == "end_of_record" {
            let Some(rec) = open.take() else {
                return Err(self.err(LcovErrorKind::OutsideRecord("end_of_record")));
            };
            return rec
                .finish(self.test_name.clone())
                .map(Some)
                .map_err(|k| self.err(k));
        }
        let Some((key, value)) = text.split_once(':') else {
            return Err(self.err(LcovErrorKind::Syntax(text.to_owned())));
        };
        let key = key.trim();
        match key {
            "TN" => {
                self.test_name = value.trim().to_owned();
                Ok(None)
            }
            "SF" => {
                if let Some(prev) = open {
                    return Err(self.err(LcovErrorKind::NestedRecord(prev.source.clone())));
                }
                *open = Some(OpenRecord {
                    source: value.to_owned(),
                    ..OpenRecord::default()
                });
                Ok(None)
            }
            "LF" | "LH" | "FNF" | "FNH" | "BRF" | "BRH" | "MCF" | "MCH" => {
                let key = static_key(key);
                self.record(open, key)?;
                parse_u64(key, value.trim()).map_err(|k| self.err(k))?;
                Ok(None)
            }
            "VER" | "MCDC" => {
                self.record(open, static_key(key))?;
                Ok(None)
            }
            "DA" | "FN" | "FNDA" | "FNL" | "FNA" | "BRDA" => {
                let key = static_key(key);
                let rec = self.record(open, key)?;
                let res = match key {
                    "DA" => rec.da(value),
                    "FN" => rec.fn_(value),
                    "FNDA" => rec.fnda(value),
                    "FNL" => rec.fnl(value),
                    "FNA" => rec.fna(value),
                    _ => rec.brda(value),
                };
                res.map_err(|k| self.err(k))?;
                Ok(None)
            }
            _ if !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                // A record type from a newer lcov: skip it, as lcov does.
                Ok(None)
            }
            _ => Err(self.err(LcovErrorKind::Syntax(text.to_owned()))),
        }
    }

    fn record<'o>(
        &self,
        open: &'o mut Option<OpenRecord>,
        key: &'static str,
    ) -> Result<&'o mut OpenRecord, LcovError> {
        open.as_mut()
            .ok_or_else(|| self.err(LcovErrorKind::OutsideRecord(key)))
    }
}

fn static_key(key: &str) -> &'static str {
    const KEYS: [&str; 16] = [
        "DA", "FN", "FNDA", "FNL", "FNA", "BRDA", "LF", "LH", "FNF", "FNH", "BRF", "BRH", "MCF",
        "MCH", "VER", "MCDC",
    ];
    KEYS.iter().find(|k| **k == key).copied().unwrap_or("?")
}

/// A non-empty run of ASCII digits as an `i64` (`None` on anything else
/// or on overflow).
fn parse_decimal(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0i64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
    })
}

fn parse_u64(key: &'static str, s: &str) -> Result<u64, LcovErrorKind> {
    s.trim().parse().map_err(|_| LcovErrorKind::BadNumber {
        key,
        field: s.to_owned(),
    })
}

fn parse_u32(key: &'static str, s: &str) -> Result<u32, LcovErrorKind> {
    s.trim().parse().map_err(|_| LcovErrorKind::BadNumber {
        key,
        field: s.to_owned(),
    })
}

fn parse_i64(key: &'static str, s: &str) -> Result<i64, LcovErrorKind> {
    let s = s.trim();
    // lcov writes very large counts in floating-point notation at times;
    // accept an integral float as well.
    s.parse::<i64>()
        .or_else(|_| match s.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(f as i64),
            _ => Err(()),
        })
        .map_err(|_| LcovErrorKind::BadNumber {
            key,
            field: s.to_owned(),
        })
}

fn missing(key: &'static str, value: &str) -> LcovErrorKind {
    LcovErrorKind::MissingField {
        key,
        value: value.to_owned(),
    }
}

impl OpenRecord {
    fn da(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        let mut fields = value.splitn(3, ',');
        let line = parse_u32("DA", fields.next().unwrap_or(""))?;
        let count = parse_i64("DA", fields.next().ok_or_else(|| missing("DA", value))?)?;
        self.add_da(line, count)
    }

    /// Adds `count` to line `line` (duplicate `DA` lines add up).
    fn add_da(&mut self, line: u32, count: i64) -> Result<(), LcovErrorKind> {
        if let Some(c) = self.da.get_or_add(line, || count) {
            *c = c.checked_add(count).ok_or(LcovErrorKind::Overflow)?;
        }
        Ok(())
    }

    /// `DA:<line>,<count>` without a checksum, in plain decimal: the
    /// common case, parsed without splitting and trimming. `None` when
    /// the value is anything else (the general path then reads it).
    fn da_fast(&mut self, value: &[u8]) -> Option<Result<(), LcovErrorKind>> {
        let comma = value.iter().position(|&b| b == b',')?;
        let line = parse_decimal(value.get(..comma)?)?;
        let line = u32::try_from(line).ok()?;
        let count = value.get(comma + 1..)?;
        let count = match count.strip_prefix(b"-") {
            Some(digits) => parse_decimal(digits)?.checked_neg()?,
            None => parse_decimal(count)?,
        };
        Some(self.add_da(line, count))
    }

    fn add_function(
        &mut self,
        name: &str,
        start: u32,
        end: u32,
        count: Option<i64>,
    ) -> Result<(), LcovErrorKind> {
        let key = (name.to_owned(), start);
        let idx = match self.by_key.get(&key) {
            Some(&i) => i,
            None => {
                self.functions.push(FunctionCoverage {
                    name: name.to_owned(),
                    demangled: name.to_owned(),
                    start_line: start,
                    end_line: end,
                    ..FunctionCoverage::default()
                });
                let i = self.functions.len() - 1;
                self.by_key.insert(key, i);
                i
            }
        };
        if let Some(f) = self.functions.get_mut(idx) {
            if f.end_line == 0 {
                f.end_line = end;
            }
            if let Some(c) = count {
                f.count = f.count.checked_add(c).ok_or(LcovErrorKind::Overflow)?;
            }
        }
        // `FNDA` names a function only by name: with several of one name,
        // it counts for the one at the lowest line, which the writer puts
        // first, so covnet's own output reads back the same.
        let line = |i: usize| self.functions.get(i).map(|f| f.start_line);
        match self.by_name.get(name) {
            Some(&j) if line(j) <= line(idx) => {}
            _ => {
                self.by_name.insert(name.to_owned(), idx);
            }
        }
        Ok(())
    }

    fn fn_(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        // FN:<start>[,<end>],<name>; names never start with a digit.
        let (start, rest) = value.split_once(',').ok_or_else(|| missing("FN", value))?;
        let start = parse_u32("FN", start)?;
        let (end, name) = match rest.split_once(',') {
            Some((end, name)) if !end.is_empty() && end.bytes().all(|b| b.is_ascii_digit()) => {
                (parse_u32("FN", end)?, name)
            }
            _ => (0, rest),
        };
        let name = function_name("FN", value, name)?;
        self.add_function(name, start, end, None)?;
        Ok(())
    }

    fn fnda(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        let (count, name) = value
            .split_once(',')
            .ok_or_else(|| missing("FNDA", value))?;
        let count = parse_i64("FNDA", count)?;
        let name = function_name("FNDA", value, name)?;
        self.pending_counts.push((name.to_owned(), count));
        Ok(())
    }

    fn fnl(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        let mut fields = value.split(',');
        let index = parse_u64("FNL", fields.next().unwrap_or(""))?;
        let start = parse_u32("FNL", fields.next().ok_or_else(|| missing("FNL", value))?)?;
        let end = match fields.next() {
            Some(e) => parse_u32("FNL", e)?,
            None => 0,
        };
        self.leaders.insert(index, (start, end));
        Ok(())
    }

    fn fna(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        let mut fields = value.splitn(3, ',');
        let index = parse_u64("FNA", fields.next().unwrap_or(""))?;
        let count = parse_i64("FNA", fields.next().ok_or_else(|| missing("FNA", value))?)?;
        let name = fields.next().ok_or_else(|| missing("FNA", value))?;
        let name = function_name("FNA", value, name)?;
        let (start, end) = *self
            .leaders
            .get(&index)
            .ok_or(LcovErrorKind::UnknownLeader(index))?;
        self.add_function(name, start, end, Some(count))?;
        Ok(())
    }

    fn brda(&mut self, value: &str) -> Result<(), LcovErrorKind> {
        let mut fields = value.splitn(4, ',');
        let line_field = fields.next().unwrap_or("");
        let block_field = fields.next().ok_or_else(|| missing("BRDA", value))?;
        let branch_field = fields.next().ok_or_else(|| missing("BRDA", value))?;
        let taken_field = fields.next().ok_or_else(|| missing("BRDA", value))?.trim();
        // lcov 2.0 put the exception marker on the line field.
        let (line_throw, line_field) = match line_field.strip_prefix('e') {
            Some(rest) => (true, rest),
            None => (false, line_field),
        };
        let line = parse_u32("BRDA", line_field)?;
        let mut throw = line_throw;
        let mut fallthrough = false;
        let mut excluded = false;
        let mut block_digits = block_field.trim();
        while let Some(c) = block_digits.chars().next() {
            match c {
                'e' => throw = true,
                'f' => fallthrough = true,
                'U' => excluded = true,
                _ => break,
            }
            block_digits = &block_digits[1..];
        }
        let block = parse_u32("BRDA", block_digits)?;
        let taken = if taken_field == "-" {
            None
        } else {
            Some(parse_i64("BRDA", taken_field)?)
        };
        if excluded {
            return Ok(());
        }
        let branch = match branch_field.trim().parse::<u32>() {
            Ok(b) => b,
            Err(_) => {
                // lcov 2.x allows a branch expression text instead of a number.
                // Numbered in order of first appearance per (line, block),
                // counted in a map (a scan of all names was quadratic).
                let key = (line, block, branch_field.to_owned());
                match self.branch_exprs.get(&key) {
                    Some(&b) => b,
                    None => {
                        let n = self.branch_expr_count.entry((line, block)).or_insert(0);
                        let b = *n;
                        *n = n.checked_add(1).ok_or(LcovErrorKind::Overflow)?;
                        self.branch_exprs.insert(key, b);
                        b
                    }
                }
            }
        };
        let key = (line, block, branch);
        let fresh = || Branch {
            block,
            branch,
            taken,
            throw,
            fallthrough,
            by_capture: Vec::new(),
        };
        let Some(b) = self.branches.get_or_add(key, fresh) else {
            return Ok(());
        };
        b.taken = add_taken(b.taken, taken).ok_or(LcovErrorKind::Overflow)?;
        b.throw |= throw;
        b.fallthrough |= fallthrough;
        Ok(())
    }

    /// Settles the counts `FNDA` gave before their `FN` and sorts the
    /// functions: everything of the record that can fail.
    fn finish(mut self, test_name: String) -> Result<Parsed, LcovErrorKind> {
        for (name, count) in std::mem::take(&mut self.pending_counts) {
            match self.by_name.get(&name).copied() {
                Some(i) => {
                    if let Some(f) = self.functions.get_mut(i) {
                        f.count = f.count.checked_add(count).ok_or(LcovErrorKind::Overflow)?;
                    }
                }
                None => {
                    // FNDA without FN: keep the function with an unknown line.
                    self.add_function(&name, 0, 0, Some(count))?;
                }
            }
        }
        let mut functions = self.functions;
        functions.sort_by(|a, b| {
            (a.start_line, a.start_column, &a.name).cmp(&(b.start_line, b.start_column, &b.name))
        });
        Ok(Parsed {
            test_name,
            source: self.source,
            da: self.da,
            branches: self.branches,
            functions,
        })
    }
}

/// Values by key for keys that come mostly in ascending order (an lcov
/// record's `DA` and `BRDA` lines): the keys in order are pushed onto a
/// sorted run, those that come out of order go to a map. Every key is in
/// one of the two, and a key in the map is below the run's last key.
#[derive(Debug)]
struct SortedRuns<K, V> {
    run: Vec<(K, V)>,
    late: BTreeMap<K, V>,
}

impl<K, V> Default for SortedRuns<K, V> {
    fn default() -> Self {
        SortedRuns {
            run: Vec::new(),
            late: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, V> SortedRuns<K, V> {
    /// `None` when `key` is new (its value is now `fresh()`), else its
    /// value, for the caller to add to.
    fn get_or_add(&mut self, key: K, fresh: impl FnOnce() -> V) -> Option<&mut V> {
        if self.run.last().is_none_or(|(last, _)| *last < key) {
            self.run.push((key, fresh()));
            return None;
        }
        if let Ok(i) = self.run.binary_search_by_key(&key, |(k, _)| *k) {
            return self.run.get_mut(i).map(|(_, v)| v);
        }
        match self.late.entry(key) {
            Entry::Vacant(v) => {
                v.insert(fresh());
                None
            }
            Entry::Occupied(o) => Some(o.into_mut()),
        }
    }

    /// Every key with its value, in key order.
    fn into_sorted(self) -> impl Iterator<Item = (K, V)> {
        sorted_union(self.run, self.late)
    }
}

/// The union of two runs sorted by key with no key in both, in key order.
fn sorted_union<K: Ord + Copy, V>(
    run: Vec<(K, V)>,
    late: BTreeMap<K, V>,
) -> impl Iterator<Item = (K, V)> {
    let mut run = run.into_iter().peekable();
    let mut late = late.into_iter().peekable();
    std::iter::from_fn(move || {
        let take_late = match (run.peek(), late.peek()) {
            (Some((a, _)), Some((b, _))) => b < a,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if take_late {
            late.next()
        } else {
            run.next()
        }
    })
}

/// Checks a function name against what an `FN:<line>,<name>` line can
/// carry: not empty, and not `<digits>,…`, which `FN` reads as an end line
/// (`FN:3,12,4,x` names `4,x`; written back without the end line it would
/// read as `x`). Such names would not read back as written.
fn function_name<'v>(
    key: &'static str,
    value: &str,
    name: &'v str,
) -> Result<&'v str, LcovErrorKind> {
    if name.is_empty() {
        return Err(missing(key, value));
    }
    if let Some((digits, _)) = name.split_once(',') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LcovErrorKind::AmbiguousName {
                key,
                name: name.to_owned(),
            });
        }
    }
    Ok(name)
}

/// Adds two branch `taken` values the way `lcov -a` does: `-` + `-` = `-`,
/// `-` + n = n. Returns `None` (outer) on overflow.
pub fn add_taken(a: Option<i64>, b: Option<i64>) -> Option<Option<i64>> {
    match (a, b) {
        (None, None) => Some(None),
        (Some(x), None) | (None, Some(x)) => Some(Some(x)),
        (Some(x), Some(y)) => x.checked_add(y).map(Some),
    }
}

/// Reads a whole tracefile into a [`Coverage`].
///
/// Each distinct `TN` becomes a capture, in order of first appearance; an
/// empty `TN` (or none) is named `default_name`. Records of the same source
/// file in the same section are added together; `by_capture` is filled for
/// every line, branch and function.
pub fn read<R: BufRead>(input: R, file: &Path, default_name: &str) -> Result<Coverage, LcovError> {
    let mut reader = Reader::new(input, file);
    let mut sections: Vec<String> = Vec::new();
    let mut cov = Coverage::default();
    // Records are folded in as they are read; only the merged coverage is
    // kept in memory.
    while let Some(rec) = reader.next_record()? {
        let idx = match sections.iter().position(|t| *t == rec.test_name) {
            Some(i) => i,
            None => {
                sections.push(rec.test_name.clone());
                sections.len() - 1
            }
        };
        let n = sections.len();
        let attributed = attribute(rec.file, idx, n);
        let merged = match cov.files.remove(&rec.source) {
            Some(prev) => crate::merge::merge_file(prev, attributed, n).map_err(|_| LcovError {
                file: file.to_owned(),
                line: reader.line_no,
                kind: LcovErrorKind::Overflow,
            })?,
            None => attributed,
        };
        cov.files.insert(rec.source, merged);
    }
    let n = sections.len();
    cov.captures = sections
        .into_iter()
        .map(|t| {
            if t.is_empty() {
                default_name.to_owned()
            } else {
                t
            }
        })
        .collect();
    if n > 1 {
        // Files last seen before a later section appeared have shorter
        // vectors; bring all to the final length.
        cov.files = std::mem::take(&mut cov.files)
            .into_iter()
            .map(|(p, f)| (p, crate::merge::align_file(f, n)))
            .collect();
    }
    // Captures that got the same name (an empty TN and the default) merge.
    Ok(crate::merge::dedup_captures(cov))
}

/// What [`fold`] did with a tracefile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Folded {
    /// The whole tracefile is in: the coverage is what [`crate::merge::merge`]
    /// of it and [`read`]'s result would be.
    All,
    /// The tracefile has more than one test section, a count overflowed on
    /// the way, or the coverage folded into was empty: it is partly folded
    /// and should be dropped; merge what [`read`] gives instead (which
    /// tells an overflow apart from a sum that comes back in range).
    Refused,
}

/// Folds a tracefile of one test section into `into` record by record, as
/// it is read: the same as `merge(into, read(..))` with each source path
/// renamed by `rename` (`None` drops the record, as a path filter would),
/// without ever holding the tracefile's coverage whole. See [`Folded`] for
/// the inputs it leaves to [`read`].
pub fn fold<R: BufRead>(
    into: &mut Coverage,
    input: R,
    file: &Path,
    default_name: &str,
    rename: impl FnMut(&str) -> Option<String>,
) -> Result<Folded, LcovError> {
    let mut reader = Reader::new(input, file);
    let records = std::iter::from_fn(move || reader.next_parsed().transpose());
    fold_parsed(into, records, default_name, rename)
}

/// [`fold`] of records read elsewhere ([`Reader::next_parsed`], say on
/// another thread while `into` is read), in the tracefile's order: an
/// error ends the fold and is returned as it comes, as [`fold`] returns
/// the reader's. Nothing is taken from `records` when `into` is empty.
pub fn fold_parsed<E>(
    into: &mut Coverage,
    records: impl IntoIterator<Item = Result<Parsed, E>>,
    default_name: &str,
    mut rename: impl FnMut(&str) -> Option<String>,
) -> Result<Folded, E> {
    if into.files.is_empty() && into.captures.is_empty() {
        return Ok(Folded::Refused);
    }
    let mut records = records.into_iter();
    let Some(first) = records.next().transpose()? else {
        return Ok(Folded::All);
    };
    let section = first.test_name.clone();
    let name = if section.is_empty() {
        default_name
    } else {
        section.as_str()
    };
    let mut fold = crate::merge::Fold::new(into, name);
    let mut next = Some(first);
    while let Some(rec) = next {
        if rec.test_name != section {
            return Ok(Folded::Refused);
        }
        if let Some(path) = rename(&rec.source) {
            if fold
                .add(path, attribute(rec.into_record().file, 0, 1))
                .is_err()
            {
                return Ok(Folded::Refused);
            }
        }
        next = records.next().transpose()?;
    }
    fold.finish();
    Ok(Folded::All)
}

/// Gives every count of `file` a `by_capture` vector of length `n` with the
/// count at position `idx`.
fn attribute(mut file: FileCoverage, idx: usize, n: usize) -> FileCoverage {
    if n > 1 {
        file.owned_by = (0..n).map(|i| i == idx).collect();
    }
    for line in file.lines.values_mut() {
        line.by_capture = vec![0; n];
        if let Some(slot) = line.by_capture.get_mut(idx) {
            *slot = line.count;
        }
        for b in &mut line.branches {
            b.by_capture = vec![None; n];
            if let Some(slot) = b.by_capture.get_mut(idx) {
                *slot = b.taken;
            }
        }
    }
    for f in &mut file.functions {
        f.by_capture = vec![0; n];
        if let Some(slot) = f.by_capture.get_mut(idx) {
            *slot = f.count;
        }
    }
    file
}

/// Which lcov dialect the writer produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LcovFormat {
    /// Readable by lcov 1.x and 2.x: `FN:<line>,<name>`, `BRDA` without
    /// prefixes.
    #[default]
    V1,
    /// lcov 2.2+: `FNL`/`FNA` function leaders with end lines, `e` prefix on
    /// exception branches.
    V2,
}

/// Options of [`write()`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Dialect to write.
    pub format: LcovFormat,
    /// Write one `TN` section per capture (for `genhtml --show-details`)
    /// instead of one section with the combined counts.
    pub per_capture: bool,
}

/// Turns a capture name into a valid lcov test name (`[A-Za-z0-9_]`).
pub fn sanitize_test_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() {
        "_".to_owned()
    } else {
        s
    }
}

/// Sanitised, unique test names for `captures`.
fn test_names(captures: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(captures.len());
    for c in captures {
        let base = sanitize_test_name(c);
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// Writes `cov` as an lcov tracefile.
///
/// With `per_capture`, each capture gets its own `TN` section holding its
/// `by_capture` counts; note that lcov and genhtml add these sections up,
/// and gcov line counts are not additive (`gcov-format.md` §9.2), so a
/// line's total there can differ from the combined count (never in whether
/// it is hit).
pub fn write<W: Write>(cov: &Coverage, mut out: W, opts: WriteOptions) -> io::Result<()> {
    let attributed = opts.per_capture && !cov.captures.is_empty();
    if attributed {
        for (idx, tn) in test_names(&cov.captures).iter().enumerate() {
            for (path, file) in &cov.files {
                write_record(&mut out, tn, path, file, Some(idx), opts.format)?;
            }
        }
    } else {
        for (path, file) in &cov.files {
            write_record(&mut out, "", path, file, None, opts.format)?;
        }
    }
    out.flush()
}

fn write_record<W: Write>(
    out: &mut W,
    tn: &str,
    path: &str,
    file: &FileCoverage,
    capture: Option<usize>,
    format: LcovFormat,
) -> io::Result<()> {
    let line_count = |l: &LineCoverage| match capture {
        Some(i) => l.by_capture.get(i).copied().unwrap_or(0),
        None => l.count,
    };
    let fn_count = |f: &FunctionCoverage| match capture {
        Some(i) => f.by_capture.get(i).copied().unwrap_or(0),
        None => f.count,
    };
    let taken = |b: &Branch| match capture {
        Some(i) => b.by_capture.get(i).copied().flatten(),
        None => b.taken,
    };
    writeln!(out, "TN:{tn}")?;
    writeln!(out, "SF:{path}")?;
    let mut fn_hit = 0u64;
    let mut fn_found = file.functions.len();
    match format {
        LcovFormat::V1 => {
            // `FNDA` names a function by name alone, so functions sharing a
            // name are written as one, at the lowest line with the summed
            // count (what lcov 1.x makes of them anyway); otherwise the
            // counts would read back attributed differently.
            let mut by_name: Vec<(&str, u32, i64)> = Vec::with_capacity(file.functions.len());
            for f in &file.functions {
                let c = fn_count(f);
                match by_name.iter_mut().find(|(n, _, _)| *n == f.name) {
                    Some(e) => {
                        e.1 = e.1.min(f.start_line);
                        e.2 = e.2.saturating_add(c);
                    }
                    None => by_name.push((&f.name, f.start_line, c)),
                }
            }
            for (name, line, _) in &by_name {
                writeln!(out, "FN:{line},{name}")?;
            }
            for (name, _, c) in &by_name {
                fn_hit += u64::from(*c > 0);
                writeln!(out, "FNDA:{c},{name}")?;
            }
            fn_found = by_name.len();
        }
        LcovFormat::V2 => {
            for (i, f) in file.functions.iter().enumerate() {
                let c = fn_count(f);
                fn_hit += u64::from(c > 0);
                if f.end_line >= f.start_line && f.end_line != 0 {
                    writeln!(out, "FNL:{i},{},{}", f.start_line, f.end_line)?;
                } else {
                    writeln!(out, "FNL:{i},{}", f.start_line)?;
                }
                writeln!(out, "FNA:{i},{c},{}", f.name)?;
            }
        }
    }
    writeln!(out, "FNF:{fn_found}")?;
    writeln!(out, "FNH:{fn_hit}")?;
    let (mut br_found, mut br_hit) = (0u64, 0u64);
    for (line, l) in &file.lines {
        for b in &l.branches {
            let t = taken(b);
            br_found += 1;
            br_hit += u64::from(t.is_some_and(|t| t > 0));
            let prefix = if format == LcovFormat::V2 && b.throw {
                "e"
            } else {
                ""
            };
            match t {
                Some(t) => writeln!(out, "BRDA:{line},{prefix}{},{},{t}", b.block, b.branch)?,
                None => writeln!(out, "BRDA:{line},{prefix}{},{},-", b.block, b.branch)?,
            }
        }
    }
    writeln!(out, "BRF:{br_found}")?;
    writeln!(out, "BRH:{br_hit}")?;
    let mut hit = 0u64;
    for (line, l) in &file.lines {
        let c = line_count(l);
        hit += u64::from(c > 0);
        writeln!(out, "DA:{line},{c}")?;
    }
    writeln!(out, "LF:{}", file.lines.len())?;
    writeln!(out, "LH:{hit}")?;
    writeln!(out, "end_of_record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(s: &str) -> Result<Coverage, LcovError> {
        read(s.as_bytes(), Path::new("t.info"), "t")
    }

    /// `merge(into, read(b))` with `b`'s paths renamed as `fold` renames
    /// them (what `covnet report` did before folding).
    fn merged(into: &Coverage, b: &str, rename: fn(&str) -> Option<String>) -> Coverage {
        let mut one = read(b.as_bytes(), Path::new("b.info"), "b").expect("b reads");
        let files = std::mem::take(&mut one.files);
        for (path, file) in files {
            if let Some(new) = rename(&path) {
                let merged = match one.files.remove(&new) {
                    Some(prev) => crate::merge::merge_file(prev, file, one.captures.len())
                        .expect("no overflow"),
                    None => file,
                };
                one.files.insert(new, merged);
            }
        }
        crate::merge::merge(into.clone(), one).expect("merges")
    }

    fn folded(into: &Coverage, b: &str, rename: fn(&str) -> Option<String>) -> (Folded, Coverage) {
        let mut acc = into.clone();
        let f = fold(&mut acc, b.as_bytes(), Path::new("b.info"), "b", rename).expect("b reads");
        (f, acc)
    }

    const FA: &str = "SF:/a.c\nFN:1,f\nFNDA:1,f\nBRDA:2,0,0,-\nBRDA:2,0,1,-\nBRDA:3,0,0,1\n\
                      DA:1,1\nDA:2,0\nDA:3,5\nend_of_record\nSF:/only_a.c\nDA:4,4\nend_of_record\n";
    const FB: &str = "SF:/a.c\nFN:1,f\nFNDA:2,f\nFN:9,g\nFNDA:0,g\nBRDA:2,0,0,3\nBRDA:2,0,1,-\n\
                      BRDA:3,0,0,-\nBRDA:3,1,0,2\nDA:1,2\nDA:2,3\nDA:9,0\nend_of_record\n\
                      SF:/b.c\nDA:1,1\nDA:0,3\nend_of_record\n\
                      SF:/a.c\nFN:9,g\nFNDA:4,g\nDA:9,2\nDA:5,1\nBRDA:2,0,0,1\nend_of_record\n";

    #[test]
    fn folding_equals_merging_the_whole_tracefile() {
        let same = |p: &str| Some(p.to_owned());
        // Into one capture, two interleaved ones (the new capture lands
        // after them, or on one of them by name), an unnamed section and
        // a capture of the same name as the only one.
        let intos = [
            read_str(FA).expect("a"),
            read(
                format!("TN:p\n{FA}TN:q\n{FB}").as_bytes(),
                Path::new("a.info"),
                "x",
            )
            .expect("a"),
        ];
        for into in &intos {
            for b in [
                FB.to_owned(),
                format!("TN:q\n{FB}"),
                format!("TN:p\n{FB}"),
                format!("TN:t\n{FB}"),
                format!("TN:t\n{FA}TN:t\n{FB}"),
                String::new(),
            ] {
                let (f, acc) = folded(into, &b, same);
                assert_eq!(f, Folded::All, "{b}");
                assert_eq!(
                    acc,
                    merged(into, &b, same),
                    "into {:?}, b {b}",
                    into.captures
                );
            }
        }
        // Renamed: two files become one, one is dropped.
        let rename = |p: &str| match p {
            "/b.c" => Some("/a.c".to_owned()),
            "/only_a.c" => None,
            p => Some(p.to_owned()),
        };
        let (f, acc) = folded(&intos[0], FB, rename);
        assert_eq!(f, Folded::All);
        assert_eq!(acc, merged(&intos[0], FB, rename));
        let drop_all = |_: &str| None;
        let (f, acc) = folded(&intos[1], FB, drop_all);
        assert_eq!(f, Folded::All);
        assert_eq!(acc, merged(&intos[1], FB, drop_all));
        assert_eq!(acc.captures, ["p", "q", "b"]);
    }

    #[test]
    fn folding_refuses_sections_overflow_and_an_empty_coverage() {
        let same = |p: &str| Some(p.to_owned());
        let into = read_str(FA).expect("a");
        let two = format!("TN:p\n{FA}TN:q\n{FB}");
        assert_eq!(folded(&into, &two, same).0, Folded::Refused);
        // A part overflows where the merge of the summed parts would not:
        // the merge tells which it is.
        let big = format!(
            "SF:/a.c\nDA:3,{}\nend_of_record\nSF:/a.c\nDA:3,-9\nend_of_record\n",
            i64::MAX
        );
        assert_eq!(folded(&into, &big, same).0, Folded::Refused);
        assert_eq!(
            merged(&into, &big, same).files["/a.c"].lines[&3].count,
            i64::MAX - 4
        );
        assert_eq!(folded(&Coverage::default(), FB, same).0, Folded::Refused);
        // Errors of the tracefile are the reader's, with its line.
        let mut acc = into.clone();
        let err = fold(
            &mut acc,
            "SF:/a.c\nDA:x\n".as_bytes(),
            Path::new("b.info"),
            "b",
            same,
        )
        .expect_err("syntax");
        assert_eq!((err.file.as_path(), err.line), (Path::new("b.info"), 2));
    }

    #[test]
    fn folding_records_read_elsewhere_equals_folding_the_tracefile() {
        let same = |p: &str| Some(p.to_owned());
        let into = read_str(FA).expect("a");
        let mut reader = Reader::new(FB.as_bytes(), "b.info");
        let mut records = Vec::new();
        while let Some(rec) = reader.next_parsed().expect("b reads") {
            records.push(Ok::<_, String>(rec));
        }
        assert_eq!(records.len(), 3);
        let mut acc = into.clone();
        let f = fold_parsed(&mut acc, records, "b", same).expect("no error");
        assert_eq!(f, Folded::All);
        assert_eq!((f, acc), folded(&into, FB, same));
        // Parsed records build what the reader's records are.
        let mut parsed = Reader::new(FB.as_bytes(), "b.info");
        let mut whole = Reader::new(FB.as_bytes(), "b.info");
        while let Some(rec) = whole.next_record().expect("b reads") {
            let p = parsed.next_parsed().expect("b reads").expect("as many");
            assert_eq!(p.test_name(), "");
            assert_eq!(p.into_record(), rec);
        }
        assert!(parsed.next_parsed().expect("end").is_none());
        // An error ends the fold as it comes; an empty coverage takes
        // nothing from the records.
        let mut reader = Reader::new(FB.as_bytes(), "b.info");
        let first = reader.next_parsed().expect("reads").expect("a record");
        let mut acc = into.clone();
        let err = fold_parsed(
            &mut acc,
            [Ok(first), Err("broken"), Err("not this")],
            "b",
            same,
        );
        assert_eq!(err, Err("broken"));
        let mut taken = 0;
        let records = std::iter::from_fn(|| {
            taken += 1;
            Some(Err::<Parsed, _>("read"))
        });
        let f = fold_parsed(&mut Coverage::default(), records, "b", same);
        assert_eq!(f, Ok(Folded::Refused));
        assert_eq!(taken, 0);
    }

    /// Fuzzing found it (fuzz/regressions/lcov/fnda-empty-name): `FNDA`
    /// took an empty name, which the writer's `FN:<line>,<name>` cannot
    /// carry, so covnet rejected its own output; names like `12,x` (same
    /// class: `FN` reads `12` as an end line) misread. Both are errors now,
    /// as an empty `FN` name already was.
    /// Fuzzing found it (fuzz/regressions/lcov/same-name-two-lines): with
    /// two `FN` of one name, `FNDA` counted for the first read, the writer
    /// sorts by line, so covnet's output read back with the count moved.
    #[test]
    fn fnda_of_a_repeated_name_counts_for_its_lowest_line() {
        let text = "SF:a.c\nFN:9,f\nFNDA:3,f\nFN:3,f\nend_of_record\n";
        let cov = read_str(text).unwrap();
        let counts: Vec<(u32, i64)> = cov.files["a.c"]
            .functions
            .iter()
            .map(|f| (f.start_line, f.count))
            .collect();
        assert_eq!(counts, vec![(3, 3), (9, 0)]);
        let mut out = Vec::new();
        write(&cov, &mut out, WriteOptions::default()).unwrap();
        let back = read(out.as_slice(), Path::new("t.info"), "t").unwrap();
        assert_eq!(back.files["a.c"].functions[0].count, 3);
    }

    /// Fuzzing found it (fuzz/regressions/lcov/same-name-two-records): two
    /// records of one file gave `f` at line 9 count 3 and at line 3 count
    /// 0; V1 cannot say which `FNDA` is whose, so it writes them as one.
    #[test]
    fn v1_writes_functions_sharing_a_name_as_one() {
        let text = "SF:a.c\nFN:9,f\nFNDA:3,f\nend_of_record\nSF:a.c\nFN:3,f\nend_of_record\n";
        let cov = read_str(text).unwrap();
        assert_eq!(cov.files["a.c"].functions.len(), 2);
        let mut out = Vec::new();
        write(&cov, &mut out, WriteOptions::default()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("FN:3,f\nFNDA:3,f\nFNF:1\nFNH:1\n"), "{out}");
        let back = read_str(&out).unwrap();
        let mut again = Vec::new();
        write(&back, &mut again, WriteOptions::default()).unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), out);
    }

    /// `DA` lines are kept in a sorted run plus a map of the ones that
    /// came out of order: every order and repetition reads the same, and
    /// an overflow is reported at the line that caused it.
    #[test]
    fn da_lines_in_any_order_add_up() {
        let text = "SF:a.c\nDA:5,1\nDA:9,2\nDA:3,4\nDA:9,8\nDA:3,16\nDA:7,32\nDA:12,-64\n\
                    DA:1,128\nDA: 7 ,256\nBRDA:2,0,0,1\nend_of_record\n";
        let cov = read_str(text).unwrap();
        let got: Vec<(u32, i64, usize)> = cov.files["a.c"]
            .lines
            .iter()
            .map(|(&l, c)| (l, c.count, c.branches.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 128, 0),
                (2, 0, 1),
                (3, 20, 0),
                (5, 1, 0),
                (7, 288, 0),
                (9, 10, 0),
                (12, -64, 0)
            ]
        );
        for text in [
            "SF:a.c\nDA:2,1\nDA:1,9223372036854775807\nDA:1,1\nend_of_record\n",
            "SF:a.c\nDA:1,9223372036854775807\nDA:2,1\nDA:1,1\nend_of_record\n",
        ] {
            let err = read_str(text).unwrap_err();
            assert_eq!(err.line, 4, "{text}");
            assert!(matches!(err.kind, LcovErrorKind::Overflow), "{text}");
        }
    }

    #[test]
    fn brda_lines_in_any_order_add_up_and_group_by_line() {
        // In order, out of order below the last, repeated (in the run and
        // among the late ones), on lines with and without a DA.
        let text = "SF:a.c\nDA:4,1\nBRDA:4,0,0,1\nBRDA:4,0,1,-\nBRDA:8,1,0,2\nBRDA:4,0,1,3\n\
                    BRDA:6,0,0,-\nBRDA:2,0,0,5\nBRDA:6,0,0,-\nBRDA:4,e0,0,4\nBRDA:2,0,0,1\n\
                    BRDA:8,0,0,0\nDA:6,0\nend_of_record\n";
        let cov = read_str(text).unwrap_or_else(|e| panic!("{e}"));
        type Row = (u32, i64, Vec<(u32, u32, Option<i64>)>, usize);
        let got: Vec<Row> = cov.files["a.c"]
            .lines
            .iter()
            .map(|(&l, c)| {
                let b = c.branches.iter().map(|b| (b.block, b.branch, b.taken));
                (l, c.count, b.collect(), c.branches.capacity())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, 0, vec![(0, 0, Some(6))], 1),
                (4, 1, vec![(0, 0, Some(5)), (0, 1, Some(3))], 2),
                (6, 0, vec![(0, 0, None)], 1),
                (8, 0, vec![(0, 0, Some(0)), (1, 0, Some(2))], 2),
            ]
        );
        assert!(
            cov.files["a.c"].lines[&4].branches[0].throw,
            "e on a repeat"
        );
    }

    #[test]
    fn branch_expressions_are_numbered_per_line_and_block() {
        let text = "SF:a.c\nBRDA:3,0,(a) == True,1\nBRDA:3,0,(a) == False,2\n\
                    BRDA:3,1,(b) == True,4\nBRDA:3,0,(a) == True,5\nend_of_record\n";
        let cov = read_str(text).unwrap();
        let got: Vec<(u32, u32, Option<i64>)> = cov.files["a.c"].lines[&3]
            .branches
            .iter()
            .map(|b| (b.block, b.branch, b.taken))
            .collect();
        assert_eq!(got, vec![(0, 0, Some(6)), (0, 1, Some(2)), (1, 0, Some(4))]);
    }

    #[test]
    fn fnda_and_fna_names_must_survive_an_fn_line() {
        let err = read_str("SF:a.c\nFNDA:3,\nend_of_record\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(matches!(
            err.kind,
            LcovErrorKind::MissingField { key: "FNDA", .. }
        ));
        let err = read_str("SF:a.c\nFNDA:3,12,x\nend_of_record\n").unwrap_err();
        assert!(
            matches!(err.kind, LcovErrorKind::AmbiguousName { key: "FNDA", .. }),
            "{err}"
        );
        let err = read_str("SF:a.c\nFNL:0,1,2\nFNA:0,1,\nend_of_record\n").unwrap_err();
        assert!(matches!(
            err.kind,
            LcovErrorKind::MissingField { key: "FNA", .. }
        ));
        let err = read_str("SF:a.c\nFN:3,12,4,x\nend_of_record\n").unwrap_err();
        assert!(
            matches!(err.kind, LcovErrorKind::AmbiguousName { key: "FN", .. }),
            "{err}"
        );
        let cov = read_str("SF:a.c\nFNDA:3,x12,y\nend_of_record\n").unwrap();
        assert_eq!(cov.files["a.c"].functions[0].name, "x12,y");
    }

    const SAMPLE: &str = "\
# a comment
TN:
SF:/src/a.c
FN:3,main
FN:10,15,helper
FNDA:2,main
FNDA:0,helper
FNF:2
FNH:1
BRDA:4,0,0,2
BRDA:4,0,1,-
BRDA:4,e0,2,1
BRDA:5,U0,0,7
BRF:3
BRH:2
DA:3,2
DA:4,2,abcdefg
DA:4,1
DA:11,-1
LF:3
LH:2
end_of_record
";

    #[test]
    fn reads_every_record_kind() {
        let cov = read_str(SAMPLE).expect("valid tracefile");
        assert_eq!(cov.captures, vec!["t".to_owned()]);
        let f = cov.files.get("/src/a.c").expect("file present");
        assert_eq!(f.lines.len(), 3);
        assert_eq!(f.lines[&4].count, 3, "duplicate DA lines add up");
        assert_eq!(f.lines[&11].count, -1, "negative counts are kept");
        let br = &f.lines[&4].branches;
        assert_eq!(br.len(), 3, "U branch dropped");
        assert_eq!(br[1].taken, None);
        assert!(br[2].throw);
        assert!(
            !f.lines.contains_key(&5),
            "line 5 only had an excluded branch"
        );
        assert_eq!(f.functions.len(), 2);
        assert_eq!(f.functions[0].name, "main");
        assert_eq!(f.functions[0].count, 2);
        assert_eq!(f.functions[1].end_line, 15);
        let s = cov.summary();
        assert_eq!((s.lines_found, s.lines_hit), (3, 2));
        assert_eq!((s.functions_found, s.functions_hit), (2, 1));
        assert_eq!((s.branches_found, s.branches_hit), (3, 2));
        assert_eq!(f.lines[&4].by_capture, vec![3]);
    }

    #[test]
    fn reads_lcov_2_2_leaders_and_ver_and_mcdc() {
        let text = "TN:t1\nSF:/x.c\nVER:abc\nFNL:0,4,9\nFNA:0,3,_ZN1AC1Ev\nFNA:0,1,_ZN1AC2Ev\n\
                    MCDC:5,2,t,1,0,a\nMCF:2\nMCH:1\nBRDA:5,0,0,1\nBRDA:5,0,0,2\nDA:5,3\n\
                    end_of_record\n";
        let cov = read_str(text).expect("valid");
        let f = &cov.files["/x.c"];
        assert_eq!(f.functions.len(), 2);
        assert!(f
            .functions
            .iter()
            .all(|g| g.start_line == 4 && g.end_line == 9));
        assert_eq!(f.lines[&5].branches.len(), 1);
        assert_eq!(
            f.lines[&5].branches[0].taken,
            Some(3),
            "duplicate BRDA add up"
        );
    }

    #[test]
    fn several_test_names_become_captures() {
        let text = "TN:one\nSF:/a.c\nDA:1,1\nDA:2,0\nend_of_record\n\
                    SF:/c.c\nFN:1,g\nFNDA:5,g\nBRDA:1,0,0,2\nDA:1,5\nend_of_record\n\
                    TN:two\nSF:/a.c\nDA:1,4\nDA:2,2\nBRDA:2,0,0,-\nend_of_record\n\
                    SF:/b.c\nDA:7,1\nend_of_record\n";
        let cov = read_str(text).expect("valid");
        assert_eq!(cov.captures, vec!["one".to_owned(), "two".to_owned()]);
        let a = &cov.files["/a.c"];
        assert_eq!(a.lines[&1].count, 5);
        assert_eq!(a.lines[&1].by_capture, vec![1, 4]);
        assert_eq!(a.lines[&2].by_capture, vec![0, 2]);
        assert_eq!(a.lines[&2].branches[0].by_capture, vec![None, None]);
        assert_eq!(cov.files["/b.c"].lines[&7].by_capture, vec![0, 1]);
        let c = &cov.files["/c.c"];
        assert_eq!(
            c.lines[&1].by_capture,
            vec![5, 0],
            "padded after section two"
        );
        assert_eq!(c.lines[&1].branches[0].by_capture, vec![Some(2), None]);
        assert_eq!(c.functions[0].by_capture, vec![5, 0]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, u64, &str)] = &[
            ("SF:/a\nDA:x,1\nend_of_record\n", 2, "not a number"),
            ("DA:1,1\n", 1, "outside"),
            ("SF:/a\nSF:/b\n", 2, "before end_of_record"),
            ("SF:/a\nDA:1,1\n", 2, "missing end_of_record"),
            ("SF:/a\nDA:1\nend_of_record\n", 2, "missing field"),
            ("SF:/a\ngarbage line\n", 2, "not a tracefile line"),
            (
                "SF:/a\nFNA:3,1,f\nend_of_record\n",
                2,
                "unknown function leader",
            ),
            ("SF:/a\nBRDA:1,0,0\nend_of_record\n", 2, "missing field"),
            ("end_of_record\n", 1, "outside"),
            ("SF:/a\nLF:abc\nend_of_record\n", 2, "not a number"),
        ];
        for (text, line, what) in cases {
            let err = read_str(text).expect_err(text);
            assert_eq!(err.line, *line, "{text:?}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with("t.info:"), "{msg}");
            assert!(msg.contains(what), "{text:?}: {msg}");
        }
        let err = read(&b"SF:/a\nDA:1,\xff\n"[..], Path::new("b.info"), "b").expect_err("bad utf8");
        assert!(matches!(err.kind, LcovErrorKind::InvalidUtf8));
    }

    #[test]
    fn unknown_future_keys_are_skipped() {
        let cov = read_str("SF:/a\nXYZ:1,2\nDA:1,1\nend_of_record\n").expect("valid");
        assert_eq!(cov.files["/a"].lines.len(), 1);
    }

    #[test]
    fn write_v1_round_trips() {
        let cov = read_str(SAMPLE).expect("valid");
        let mut out = Vec::new();
        write(&cov, &mut out, WriteOptions::default()).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("FN:10,helper\n"), "{text}");
        assert!(text.contains("BRDA:4,0,2,1\n"), "no e prefix in V1: {text}");
        assert!(text.contains("LF:3\nLH:2\nend_of_record\n"), "{text}");
        assert!(text.contains("BRF:3\nBRH:2\n"), "{text}");
        let back = read_str(&text).expect("re-read");
        assert_eq!(back.summary(), cov.summary());
        let (a, b) = (&cov.files["/src/a.c"], &back.files["/src/a.c"]);
        for (l, lc) in &a.lines {
            assert_eq!(b.lines[l].count, lc.count);
        }
    }

    #[test]
    fn write_v2_uses_leaders_and_prefixes() {
        let cov = read_str(SAMPLE).expect("valid");
        let mut out = Vec::new();
        let opts = WriteOptions {
            format: LcovFormat::V2,
            per_capture: false,
        };
        write(&cov, &mut out, opts).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("FNL:1,10,15\nFNA:1,0,helper\n"), "{text}");
        assert!(text.contains("BRDA:4,e0,2,1\n"), "{text}");
        let back = read_str(&text).expect("re-read");
        assert_eq!(back.summary(), cov.summary());
        assert!(back.files["/src/a.c"].lines[&4].branches[2].throw);
    }

    #[test]
    fn per_capture_sections_round_trip() {
        let text = "TN:one\nSF:/a.c\nFN:1,f\nFNDA:1,f\nDA:1,1\nDA:2,0\nend_of_record\n\
                    TN:two\nSF:/a.c\nFN:1,f\nFNDA:2,f\nDA:1,4\nDA:2,2\nend_of_record\n";
        let mut cov = read_str(text).expect("valid");
        cov.captures = vec!["machine-1".into(), "machine 2".into()];
        let mut out = Vec::new();
        let opts = WriteOptions {
            format: LcovFormat::V1,
            per_capture: true,
        };
        write(&cov, &mut out, opts).expect("write");
        let written = String::from_utf8(out).expect("utf8");
        assert!(written.contains("TN:machine_1\n"), "{written}");
        assert!(written.contains("TN:machine_2\n"), "{written}");
        let back = read_str(&written).expect("re-read");
        assert_eq!(back.captures, vec!["machine_1", "machine_2"]);
        assert_eq!(back.files["/a.c"].lines[&2].by_capture, vec![0, 2]);
        assert_eq!(back.files["/a.c"].functions[0].by_capture, vec![1, 2]);
    }

    #[test]
    fn test_names_are_sanitised_and_unique() {
        let names = test_names(&["a-b".into(), "a_b".into(), "".into()]);
        assert_eq!(names, vec!["a_b", "a_b_2", "_"]);
    }
}
