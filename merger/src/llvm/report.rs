//! Functions, lines and branches of LLVM coverage, as `llvm-cov export`
//! computes them, turned into covnet's [`Coverage`] model.
//!
//! For every function mapping of the binaries, in the order given:
//! the profile's counters of the same name and structural hash are used (a
//! function the profile does not know counts zero; one it knows only with
//! other hashes is left out, a *hash mismatch*); a dummy record (one zero
//! region) of a function the profile saw run is left out; every region's
//! counter expression is evaluated (a function whose counters are missing is
//! left out); a function with the same files and name as an earlier one is
//! left out. Each source file's lines then come from the segments of all
//! regions in it ([`super::segments`]); its branches from the branch regions
//! of the functions' own code (file id 0) plus those in macro expansions,
//! placed on the line of the outermost expansion (as llvm-cov's lcov
//! output); its functions are those whose first file it is.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::covmap::{Counter, Expression, FunctionMapping, Region, RegionKind};
use super::error::LlvmErrorKind;
use super::profraw::{Lookup, Profile};
use super::segments::{build_segments, line_counts, CountedRegion};
use crate::demangle::demangle;
use crate::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};

/// A region with its evaluated counts.
#[derive(Clone, Copy, Debug)]
struct Counted<'m> {
    region: &'m Region,
    count: u64,
    false_count: u64,
}

/// A function loaded against a profile.
#[derive(Debug)]
struct Loaded<'m> {
    name: String,
    mapping: &'m FunctionMapping,
    /// Non-branch regions.
    regions: Vec<Counted<'m>>,
    /// Branch regions.
    branches: Vec<Counted<'m>>,
}

impl Loaded<'_> {
    fn count(&self) -> u64 {
        self.regions.first().map_or(0, |r| r.count)
    }

    /// The file id of the function's own code: the first one no expansion
    /// expands.
    fn main_file_id(&self) -> Option<u32> {
        let mut expanded = vec![false; self.mapping.filenames.len()];
        for r in &self.regions {
            if r.region.kind == RegionKind::Expansion {
                if let Some(e) = expanded.get_mut(r.region.expanded_file_id as usize) {
                    *e = true;
                }
            }
        }
        expanded.iter().position(|e| !e).map(|i| i as u32)
    }
}

/// Functions llvm-cov would leave out, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Functions the profiles know only with another structural hash (a
    /// different build).
    pub hash_mismatch: BTreeSet<String>,
    /// Functions whose mapping refers to counters the profile lacks.
    pub unevaluable: BTreeSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Busy,
    Done(i64),
}

/// Why a counter could not be evaluated.
enum EvalError {
    /// A counter index beyond the profile's counters: llvm-cov drops the
    /// function.
    Missing,
    /// A corrupt mapping.
    Corrupt(LlvmErrorKind),
}

struct Evaluator<'a> {
    exprs: &'a [Expression],
    counts: Option<&'a [u64]>,
    memo: Vec<State>,
    offset: u64,
}

impl Evaluator<'_> {
    fn leaf(&self, c: Counter) -> Result<Option<i64>, EvalError> {
        Ok(match c {
            Counter::Zero => Some(0),
            Counter::Value(i) => Some(match self.counts {
                None => 0,
                Some(c) => *c.get(i as usize).ok_or(EvalError::Missing)? as i64,
            }),
            Counter::Expression(e) => match self.memo.get(e as usize) {
                Some(State::Done(v)) => Some(*v),
                Some(_) => None,
                None => {
                    return Err(EvalError::Corrupt(LlvmErrorKind::BadExpression {
                        offset: self.offset,
                        index: u64::from(e),
                        count: self.exprs.len() as u64,
                    }))
                }
            },
        })
    }

    fn eval(&mut self, c: Counter) -> Result<i64, EvalError> {
        let Counter::Expression(root) = c else {
            return self.leaf(c).map(|v| v.unwrap_or(0));
        };
        let mut stack = vec![root];
        while let Some(&top) = stack.last() {
            let i = top as usize;
            let Some(&e) = self.exprs.get(i) else {
                return Err(EvalError::Corrupt(LlvmErrorKind::BadExpression {
                    offset: self.offset,
                    index: u64::from(top),
                    count: self.exprs.len() as u64,
                }));
            };
            if let Some(State::Done(_)) = self.memo.get(i) {
                stack.pop();
                continue;
            }
            if let Some(s) = self.memo.get_mut(i) {
                *s = State::Busy;
            }
            let (l, r) = (self.leaf(e.lhs)?, self.leaf(e.rhs)?);
            if let (Some(l), Some(r)) = (l, r) {
                let v = if e.add {
                    l.wrapping_add(r)
                } else {
                    l.wrapping_sub(r)
                };
                if let Some(s) = self.memo.get_mut(i) {
                    *s = State::Done(v);
                }
                stack.pop();
                continue;
            }
            for operand in [e.lhs, e.rhs] {
                if let Counter::Expression(j) = operand {
                    match self.memo.get(j as usize) {
                        Some(State::New) => stack.push(j),
                        Some(State::Busy) => {
                            return Err(EvalError::Corrupt(LlvmErrorKind::ExpressionCycle {
                                offset: self.offset,
                                index: u64::from(j),
                            }))
                        }
                        _ => {}
                    }
                }
            }
        }
        match self.memo.get(root as usize) {
            Some(State::Done(v)) => Ok(*v),
            _ => Err(EvalError::Missing),
        }
    }
}

/// Strips the `file:` prefix of a local function's PGO name when it is
/// the function's first file, as llvm-cov does.
fn display_name(pgo: &str, first_file: Option<&String>) -> String {
    match first_file {
        Some(f) if !f.is_empty() && pgo.starts_with(f.as_str()) => {
            pgo.get(f.len() + 1..).unwrap_or_default().to_owned()
        }
        _ => pgo.to_owned(),
    }
}

/// Loads every mapping against `profile`; the error is a corrupt mapping,
/// with the index of its object in `objects`.
fn load<'m>(
    objects: &'m [Vec<FunctionMapping>],
    profile: &Profile,
    dropped: &mut Dropped,
) -> Result<Vec<Loaded<'m>>, (usize, LlvmErrorKind)> {
    let mut seen: HashSet<(&'m [String], String)> = HashSet::new();
    let mut out = Vec::new();
    for (oi, object) in objects.iter().enumerate() {
        for m in object {
            let name = display_name(&m.name, m.filenames.first());
            let counts = match profile.lookup(m.name_ref, m.func_hash) {
                Lookup::Found(c) => Some(c),
                Lookup::HashMismatch => {
                    dropped.hash_mismatch.insert(m.name.clone());
                    continue;
                }
                Lookup::Unknown => None,
            };
            let first = counts.and_then(|c| c.first()).copied().unwrap_or(0);
            if let [only] = m.regions.as_slice() {
                if only.count == Counter::Zero && first > 0 {
                    continue;
                }
            }
            let mut ev = Evaluator {
                exprs: &m.expressions,
                counts,
                memo: vec![State::New; m.expressions.len()],
                offset: m.offset,
            };
            let mut regions = Vec::new();
            let mut branches = Vec::new();
            let mut missing = false;
            for region in &m.regions {
                let pair = ev
                    .eval(region.count)
                    .and_then(|c| Ok((c, ev.eval(region.false_count)?)));
                let (count, false_count) = match pair {
                    Ok(p) => p,
                    Err(EvalError::Missing) => {
                        missing = true;
                        break;
                    }
                    Err(EvalError::Corrupt(k)) => return Err((oi, k)),
                };
                let c = Counted {
                    region,
                    count: count as u64,
                    false_count: false_count as u64,
                };
                if region.kind == RegionKind::Branch {
                    branches.push(c);
                } else {
                    regions.push(c);
                }
            }
            if missing {
                dropped.unevaluable.insert(m.name.clone());
                continue;
            }
            if !seen.insert((m.filenames.as_slice(), name.clone())) {
                continue;
            }
            out.push(Loaded {
                name,
                mapping: m,
                regions,
                branches,
            });
        }
    }
    Ok(out)
}

/// One function of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FnData {
    name: String,
    start: (u32, u32),
    end: (u32, u32),
    count: u64,
}

/// One source file's counts for one profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FileData {
    lines: BTreeMap<u32, u64>,
    /// (line, pair, index) → taken (`None`: neither side ran).
    branches: BTreeMap<(u32, u32, u32), Option<u64>>,
    functions: Vec<FnData>,
}

fn counted(c: &Counted<'_>) -> CountedRegion {
    CountedRegion {
        start: (c.region.line_start, c.region.col_start),
        end: (c.region.line_end, c.region.col_end),
        kind: c.region.kind,
        count: c.count,
    }
}

/// Branches in the expansion of file id `file_id` of `f` and in the
/// expansions nested in it, all on line `line`.
fn nested_branches<'m>(
    f: &Loaded<'m>,
    file_id: u32,
    line: u32,
    out: &mut Vec<(u32, u32, Counted<'m>)>,
) {
    for r in &f.regions {
        if r.region.kind == RegionKind::Expansion && r.region.file_id == file_id {
            nested_branches(f, r.region.expanded_file_id, line, out);
        }
    }
    for b in &f.branches {
        if b.region.file_id == file_id {
            out.push((line, b.region.col_start, *b));
        }
    }
}

fn file_data(funcs: &[Loaded<'_>], file: &str) -> FileData {
    let mut regions = Vec::new();
    let mut branches: Vec<(u32, u32, Counted<'_>)> = Vec::new();
    let mut expansions: Vec<(usize, Counted<'_>)> = Vec::new();
    let mut data = FileData::default();
    for (fi, f) in funcs.iter().enumerate() {
        let names = &f.mapping.filenames;
        if !names.iter().any(|n| n == file) {
            continue;
        }
        let here = |id: u32| names.get(id as usize).is_some_and(|n| n == file);
        let main = f.main_file_id().filter(|&m| here(m));
        for r in &f.regions {
            if here(r.region.file_id) {
                regions.push(counted(r));
                if r.region.kind == RegionKind::Expansion && Some(r.region.file_id) == main {
                    expansions.push((fi, *r));
                }
            }
        }
        for b in &f.branches {
            if here(b.region.file_id) && b.region.file_id == b.region.expanded_file_id {
                branches.push((b.region.line_start, b.region.col_start, *b));
            }
        }
        if names.first().is_some_and(|n| n == file) {
            if let Some(first) = f.regions.first() {
                data.functions.push(FnData {
                    name: f.name.clone(),
                    start: (first.region.line_start, first.region.col_start),
                    end: (first.region.line_end, first.region.col_end),
                    count: f.count(),
                });
            }
        }
    }
    for (fi, e) in expansions {
        if let Some(f) = funcs.get(fi) {
            nested_branches(
                f,
                e.region.expanded_file_id,
                e.region.line_start,
                &mut branches,
            );
        }
    }
    branches.sort_by_key(|&(line, col, _)| (line, col));
    let mut prev_line = None;
    let (mut pair, mut index) = (0u32, 0u32);
    for (line, _, b) in branches {
        if prev_line != Some(line) {
            (pair, index) = (0, 0);
            prev_line = Some(line);
        }
        if b.region.count == Counter::Zero && b.region.false_count == Counter::Zero {
            continue; // folded: a constant condition
        }
        let ran = b.count != 0 || b.false_count != 0;
        for taken in [b.count, b.false_count] {
            data.branches
                .insert((line, pair, index), ran.then_some(taken));
            index += 1;
        }
        pair += 1;
    }
    data.lines = line_counts(&build_segments(regions)).into_iter().collect();
    data
}

fn all_files(funcs: &[Loaded<'_>]) -> BTreeSet<String> {
    funcs
        .iter()
        .flat_map(|f| f.mapping.filenames.iter().cloned())
        .collect()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The result of [`coverage`].
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Lines, branches and functions of every source file, with
    /// `by_capture` vectors as long as the number of profiles given.
    pub coverage: Coverage,
    /// Functions left out, as llvm-cov leaves them out.
    pub dropped: Dropped,
}

/// Computes the coverage of the binaries' `objects` (each one's function
/// mappings) from the profiles of each capture (counters already summed per
/// capture), as `llvm-cov export` would from the `llvm-profdata merge` of
/// all of them; each capture's counts come from its own profile alone. The
/// error names the index of the object whose mapping is corrupt.
pub fn coverage(
    objects: &[Vec<FunctionMapping>],
    captures: &[Profile],
) -> Result<Outcome, (usize, LlvmErrorKind)> {
    let mut total = Profile::default();
    for p in captures {
        total.absorb(p);
    }
    let mut dropped = Dropped::default();
    let funcs = load(objects, &total, &mut dropped)?;
    let per_capture: Vec<Vec<Loaded<'_>>> = if captures.len() > 1 {
        captures
            .iter()
            .map(|p| load(objects, p, &mut Dropped::default()))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let n = captures.len();
    let mut cov = Coverage::default();
    for file in all_files(&funcs) {
        let data = file_data(&funcs, &file);
        if data.lines.is_empty() && data.functions.is_empty() {
            continue;
        }
        let parts: Vec<FileData> = per_capture.iter().map(|f| file_data(f, &file)).collect();
        let mut fc = FileCoverage::default();
        for (&line, &count) in &data.lines {
            let by_capture = if parts.is_empty() {
                vec![to_i64(count); n]
            } else {
                parts
                    .iter()
                    .map(|p| to_i64(p.lines.get(&line).copied().unwrap_or(0)))
                    .collect()
            };
            fc.lines.insert(
                line,
                LineCoverage {
                    count: to_i64(count),
                    by_capture,
                    ..Default::default()
                },
            );
        }
        for (&(line, pair, index), &taken) in &data.branches {
            let by_capture = if parts.is_empty() {
                vec![taken.map(to_i64); n]
            } else {
                parts
                    .iter()
                    .map(|p| {
                        p.branches
                            .get(&(line, pair, index))
                            .copied()
                            .flatten()
                            .map(to_i64)
                    })
                    .collect()
            };
            let branch = Branch {
                block: pair,
                branch: index,
                taken: taken.map(to_i64),
                by_capture,
                ..Default::default()
            };
            fc.lines.entry(line).or_default().branches.push(branch);
        }
        for f in &data.functions {
            let by_capture = if parts.is_empty() {
                vec![to_i64(f.count); n]
            } else {
                parts
                    .iter()
                    .map(|p| {
                        p.functions
                            .iter()
                            .find(|g| g.name == f.name && g.start == f.start)
                            .map_or(0, |g| to_i64(g.count))
                    })
                    .collect()
            };
            fc.functions.push(FunctionCoverage {
                name: f.name.clone(),
                demangled: demangle(&f.name),
                start_line: f.start.0,
                start_column: f.start.1,
                end_line: f.end.0,
                end_column: f.end.1,
                count: to_i64(f.count),
                by_capture,
                ..Default::default()
            });
        }
        fc.functions.sort_by(|x, y| {
            (x.start_line, x.start_column, &x.name).cmp(&(y.start_line, y.start_column, &y.name))
        });
        // A capture has this file's code when its profiles hold counters of
        // a function with code in it.
        let owned: Vec<bool> = captures
            .iter()
            .map(|p| {
                funcs.iter().any(|f| {
                    f.mapping.filenames.contains(&file)
                        && matches!(
                            p.lookup(f.mapping.name_ref, f.mapping.func_hash),
                            Lookup::Found(_)
                        )
                })
            })
            .collect();
        fc.owned_by = crate::model::normalize_owned(owned);
        cov.files.insert(file, fc);
    }
    Ok(Outcome {
        coverage: cov,
        dropped,
    })
}
