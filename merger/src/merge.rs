//! Merging coverages the way `lcov -a` adds tracefiles.
//!
//! [`merge`] is a pure fold: files are united, line (`DA`) and function
//! (`FNDA`) counts are summed, branch `taken` values are summed with
//! `-` + `-` = `-` and `-` + n = n, functions are matched by name and start
//! line, and branches by (block, branch). Captures are matched by name: the
//! result lists the first operand's captures, then the second operand's new
//! ones, and every `by_capture` vector is re-aligned to that list.
//!
//! The counts are commutative and associative, so `merge` serves as the
//! reduce step of a rayon `fold`/`reduce`; the *order* of capture names
//! follows the operands, which rayon's (order-preserving) reduce keeps equal
//! to the input order.
//!
//! This is *not* how captures of the same object combine: gcov line counts
//! are not additive (`gcov-format.md` §9.2). Those go through the object
//! solver with summed arc counters; this merge is for tracefiles, distinct
//! objects, and per-object results.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use crate::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};

/// What overflowed while merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeErrorKind {
    /// A line count overflowed `i64`.
    #[error("line {0}: count overflow")]
    LineOverflow(u32),
    /// A branch count overflowed `i64`.
    #[error("line {0}: branch count overflow")]
    BranchOverflow(u32),
    /// A function count overflowed `i64`.
    #[error("function at line {0}: count overflow")]
    FunctionOverflow(u32),
}

/// A merge failure, naming the source file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to merge counts of {file}: {kind}")]
pub struct MergeError {
    /// The source file whose counts overflowed.
    pub file: String,
    /// What overflowed.
    #[source]
    pub kind: MergeErrorKind,
}

/// A count that can be added and has a per-capture "nothing" value.
trait Count: Copy {
    const ZERO: Self;
    fn add(self, other: Self) -> Option<Self>;
}

impl Count for i64 {
    const ZERO: Self = 0;
    fn add(self, other: Self) -> Option<Self> {
        self.checked_add(other)
    }
}

impl Count for Option<i64> {
    const ZERO: Self = None;
    fn add(self, other: Self) -> Option<Self> {
        crate::lcov::add_taken(self, other)
    }
}

/// Merges two coverages (`lcov -a` semantics); see the module docs.
pub fn merge(mut a: Coverage, b: Coverage) -> Result<Coverage, MergeError> {
    if a.files.is_empty() && a.captures.is_empty() {
        return Ok(b);
    }
    let mut names = a.captures.clone();
    let map_b = unite_names(&mut names, &b.captures);
    let n = names.len();
    let remap_a = n != a.captures.len();
    let remap_b = a.captures != b.captures;
    let map_a: Vec<usize> = (0..a.captures.len()).collect();
    a.captures = names;
    // Both file maps are sorted by path: pair them up in one walk, then
    // merge the pairs side by side (each file is independent).
    let mut pairs: Vec<(String, Option<FileCoverage>, Option<FileCoverage>)> =
        Vec::with_capacity(a.files.len().max(b.files.len()));
    let mut fa = std::mem::take(&mut a.files).into_iter().peekable();
    let mut fb = b.files.into_iter().peekable();
    loop {
        let order = match (fa.peek(), fb.peek()) {
            (Some((x, _)), Some((y, _))) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        let pair = match order {
            std::cmp::Ordering::Less => fa.next().map(|(p, f)| (p, Some(f), None)),
            std::cmp::Ordering::Greater => fb.next().map(|(p, f)| (p, None, Some(f))),
            std::cmp::Ordering::Equal => fa
                .next()
                .zip(fb.next())
                .map(|((p, x), (_, y))| (p, Some(x), Some(y))),
        };
        pairs.extend(pair);
    }
    let merged: Vec<Result<(String, FileCoverage), MergeError>> = pairs
        .into_par_iter()
        .map(|(path, x, y)| {
            let map_a = remap_a.then_some(map_a.as_slice());
            let map_b = remap_b.then_some(map_b.as_slice());
            let file = match (x, y) {
                (Some(x), Some(y)) => {
                    merge_mapped(x, map_a, y, map_b, n).map_err(|kind| MergeError {
                        file: path.clone(),
                        kind,
                    })?
                }
                (Some(f), None) => match map_a {
                    Some(m) => remap_file(f, m, n),
                    None => f,
                },
                (None, Some(f)) => match map_b {
                    Some(m) => remap_file(f, m, n),
                    None => f,
                },
                (None, None) => FileCoverage::default(),
            };
            Ok((path, file))
        })
        .collect();
    // Sorted by path: the map is built in one go. The first error in path
    // order is the one reported, as a sequential merge would.
    a.files = merged.into_iter().collect::<Result<_, _>>()?;
    Ok(a)
}

/// [`merge`] of `into` and a coverage of one capture, `capture`, given
/// file by file: the files of the second operand need not exist all at
/// once (a tracefile can be folded in as it is read). Give every file of
/// the second operand to [`Fold::add`], each attributed to its capture
/// alone (`by_capture` vectors of length 1), possibly a file in several
/// parts (their counts add up, as parts of one file merged first would),
/// then [`Fold::finish`].
///
/// The result is `merge(into, b)`, `b` holding the sum of the parts
/// under the name `capture`, as long as no part fails: unlike a merge of
/// the summed parts, a part can overflow where its sum with the parts
/// after it would not (counts can be negative). After an error `into` is
/// partly folded and should be dropped.
pub(crate) struct Fold<'c> {
    into: &'c mut Coverage,
    /// `into`'s captures before the fold, as indices among the `n`
    /// (`0..n_a`: the united list keeps `into`'s order first).
    map_a: Vec<usize>,
    /// Capture count after it.
    n: usize,
    /// `into`'s vectors must grow from `n_a` to `n` captures.
    remap_a: bool,
    /// The added capture's index among the `n`.
    map_b: [usize; 1],
    /// Its counts are not already at index 0 of one capture.
    remap_b: bool,
    /// Files that already follow the `n` captures (added to at least once).
    done: HashSet<String>,
}

impl<'c> Fold<'c> {
    /// Starts folding a coverage of the one capture named `capture` into
    /// `into`, which must hold a capture or a file (for an empty `into`
    /// [`merge`] returns the other operand whole).
    pub(crate) fn new(into: &'c mut Coverage, capture: &str) -> Self {
        let n_a = into.captures.len();
        let map_b = unite_names(&mut into.captures, &[capture.to_owned()]);
        let j = map_b.first().copied().unwrap_or(0);
        let n = into.captures.len();
        Fold {
            map_a: (0..n_a).collect(),
            n,
            remap_a: n != n_a,
            map_b: [j],
            remap_b: !(n_a == 1 && j == 0),
            done: HashSet::new(),
            into,
        }
    }

    /// Adds one file (or part of one) of the second operand.
    pub(crate) fn add(&mut self, path: String, file: FileCoverage) -> Result<(), MergeError> {
        let n = self.n;
        let map_b = self.remap_b.then_some(&self.map_b[..]);
        let merged = match self.into.files.remove(&path) {
            Some(prev) => {
                let map_a = (self.remap_a && !self.done.contains(&path)).then_some(&self.map_a[..]);
                merge_mapped(prev, map_a, file, map_b, n).map_err(|kind| MergeError {
                    file: path.clone(),
                    kind,
                })?
            }
            None => match map_b {
                Some(m) => remap_file(file, m, n),
                None => file,
            },
        };
        if self.remap_a {
            self.done.insert(path.clone());
        }
        self.into.files.insert(path, merged);
        Ok(())
    }

    /// Brings the files of `into` that got nothing to the new list of
    /// captures.
    pub(crate) fn finish(self) {
        if !self.remap_a {
            return;
        }
        for (path, file) in &mut self.into.files {
            if !self.done.contains(path) {
                *file = remap_file(std::mem::take(file), &self.map_a, self.n);
            }
        }
    }
}

/// Merges two files whose `by_capture` vectors both follow the same list of
/// `n` captures (empty vectors count as all zero).
pub fn merge_file(
    a: FileCoverage,
    b: FileCoverage,
    n: usize,
) -> Result<FileCoverage, MergeErrorKind> {
    merge_mapped(a, None, b, None, n)
}

/// [`merge_file`] of `a` and `b` re-indexed by `map_a` and `map_b` (as
/// [`remap_file`] does; `None` leaves an operand as it is). Lines are
/// merged in one ordered walk of both maps, each line re-indexed as it
/// passes (two captures in, one vector out), instead of re-indexing both
/// files first and looking every line of `b` up in `a`.
fn merge_mapped(
    mut a: FileCoverage,
    map_a: Option<&[usize]>,
    mut b: FileCoverage,
    map_b: Option<&[usize]>,
    n: usize,
) -> Result<FileCoverage, MergeErrorKind> {
    // The walk adds `b`'s counts straight into `a`'s vectors: a map of
    // `b` sending two captures to one index (merged names) must add them
    // saturating first, as `remap_vec` does: such a `b` is re-indexed whole.
    let mut map_b = map_b;
    if let Some(m) = map_b.filter(|m| !injective(m)) {
        b = remap_file(b, m, n);
        map_b = None;
    }
    for (file, map) in [(&mut a, map_a), (&mut b, map_b)] {
        if let Some(m) = map {
            file.owned_by = remap_owned(file, m, n);
            for f in &mut file.functions {
                f.by_capture = remap_vec(std::mem::take(&mut f.by_capture), m, n);
            }
        }
    }
    // Empty means every capture (see `owned_by_capture`), so the union
    // of any list with an empty one is every capture.
    let owned: Vec<bool> = (0..n)
        .map(|i| a.owned_by_capture(i) || b.owned_by_capture(i))
        .collect();
    merge_lines(&mut a.lines, map_a, std::mem::take(&mut b.lines), map_b, n)?;
    if !b.functions.is_empty() {
        let mut index: HashMap<(String, u32), usize> = a
            .functions
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.name.clone(), f.start_line), i))
            .collect();
        for f in b.functions {
            match index.get(&(f.name.clone(), f.start_line)).copied() {
                Some(i) => {
                    if let Some(prev) = a.functions.get_mut(i) {
                        merge_function(prev, f, n)?;
                    }
                }
                None => {
                    index.insert((f.name.clone(), f.start_line), a.functions.len());
                    a.functions.push(f);
                }
            }
        }
        a.functions.sort_by(|x, y| {
            (x.start_line, x.start_column, &x.name).cmp(&(y.start_line, y.start_column, &y.name))
        });
    }
    a.owned_by = crate::model::normalize_owned(owned);
    a.excluded_lines.extend(b.excluded_lines);
    a.excluded_branch_lines.extend(b.excluded_branch_lines);
    Ok(a)
}

/// No two captures of `map` go to one index.
fn injective(map: &[usize]) -> bool {
    map.iter()
        .enumerate()
        .all(|(i, j)| !map.get(..i).unwrap_or_default().contains(j))
}

/// Merges the lines of `b` into those of `a` in one walk of both (maps
/// are sorted): `a`'s lines are re-indexed by `map_a` in place, `b`'s by
/// `map_b`; lines `a` lacks are inserted after the walk. `map_b` sends
/// no two captures to one index.
fn merge_lines(
    a: &mut BTreeMap<u32, LineCoverage>,
    map_a: Option<&[usize]>,
    b: BTreeMap<u32, LineCoverage>,
    map_b: Option<&[usize]>,
    n: usize,
) -> Result<(), MergeErrorKind> {
    let mut lb = b.into_iter().peekable();
    let mut new: Vec<(u32, LineCoverage)> = Vec::new();
    for (&no, la) in a.iter_mut() {
        while let Some((nb, l)) = lb.next_if(|(nb, _)| *nb < no) {
            new.push((nb, remap_line(l, map_b, n)));
        }
        remap_line_in_place(la, map_a, n);
        if let Some((_, l)) = lb.next_if(|(nb, _)| *nb == no) {
            merge_pair(la, l, map_b, n, no)?;
        }
    }
    new.extend(lb.map(|(nb, l)| (nb, remap_line(l, map_b, n))));
    a.extend(new);
    Ok(())
}

/// `line` re-indexed by `map` (as [`remap_file`] does to each line).
fn remap_line(mut line: LineCoverage, map: Option<&[usize]>, n: usize) -> LineCoverage {
    remap_line_in_place(&mut line, map, n);
    line
}

/// [`remap_line`] in place.
fn remap_line_in_place(line: &mut LineCoverage, map: Option<&[usize]>, n: usize) {
    if let Some(m) = map {
        line.by_capture = remap_vec(std::mem::take(&mut line.by_capture), m, n);
        for b in &mut line.branches {
            b.by_capture = remap_vec(std::mem::take(&mut b.by_capture), m, n);
        }
    }
}

/// Adds line `no` of `b`, re-indexed by `map_b`, to the (re-indexed) line
/// `a`: what [`merge_line`] makes of the two, with `b`'s counts added
/// straight into `a`'s vector (`map_b` is injective: each index gets at
/// most one value of `b`, as it would in `b`'s own re-indexed vector).
fn merge_pair(
    a: &mut LineCoverage,
    mut b: LineCoverage,
    map_b: Option<&[usize]>,
    n: usize,
    no: u32,
) -> Result<(), MergeErrorKind> {
    if let Some(mb) = map_b {
        let counts = std::mem::take(&mut b.by_capture);
        a.by_capture.resize(n, 0);
        for (i, y) in counts.into_iter().enumerate() {
            if let Some(slot) = mb.get(i).and_then(|&j| a.by_capture.get_mut(j)) {
                *slot = slot.add(y).ok_or(MergeErrorKind::LineOverflow(no))?;
            }
        }
        for br in &mut b.branches {
            br.by_capture = remap_vec(std::mem::take(&mut br.by_capture), mb, n);
        }
        // `b`'s counts are in: its vector is empty, `merge_line` adds no more.
    }
    merge_line(a, b, n, no)
}

fn add_vec<T: Count>(a: &mut Vec<T>, b: Vec<T>, n: usize) -> Option<()> {
    if n == 0 {
        a.clear();
        return Some(());
    }
    a.resize(n, T::ZERO);
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.add(y)?;
    }
    Some(())
}

fn merge_line(
    a: &mut LineCoverage,
    b: LineCoverage,
    n: usize,
    line_no: u32,
) -> Result<(), MergeErrorKind> {
    a.count = a
        .count
        .checked_add(b.count)
        .ok_or(MergeErrorKind::LineOverflow(line_no))?;
    add_vec(&mut a.by_capture, b.by_capture, n).ok_or(MergeErrorKind::LineOverflow(line_no))?;
    // Conservative: some block on the line never ran in one of the inputs.
    a.unexecuted_block |= b.unexecuted_block;
    if !b.branches.is_empty() {
        for br in b.branches {
            match a
                .branches
                .iter_mut()
                .find(|x| x.block == br.block && x.branch == br.branch)
            {
                Some(prev) => {
                    merge_branch(prev, br, n).ok_or(MergeErrorKind::BranchOverflow(line_no))?
                }
                None => a.branches.push(br),
            }
        }
        a.branches.sort_by_key(|x| (x.block, x.branch));
    }
    Ok(())
}

fn merge_branch(a: &mut Branch, b: Branch, n: usize) -> Option<()> {
    a.taken = crate::lcov::add_taken(a.taken, b.taken)?;
    a.throw |= b.throw;
    a.fallthrough |= b.fallthrough;
    add_vec(&mut a.by_capture, b.by_capture, n)
}

fn merge_function(
    a: &mut FunctionCoverage,
    b: FunctionCoverage,
    n: usize,
) -> Result<(), MergeErrorKind> {
    let err = MergeErrorKind::FunctionOverflow(a.start_line);
    a.count = a.count.checked_add(b.count).ok_or(err)?;
    add_vec(&mut a.by_capture, b.by_capture, n).ok_or(err)?;
    if a.demangled == a.name || (b.demangled != b.name && b.demangled < a.demangled) {
        a.demangled = b.demangled;
    }
    for (x, y) in [
        (&mut a.start_column, b.start_column),
        (&mut a.end_line, b.end_line),
        (&mut a.end_column, b.end_column),
    ] {
        if *x == 0 || (y != 0 && y < *x) {
            *x = y;
        }
    }
    // Block counts of separate inputs cannot be united exactly; the larger
    // one is a lower bound of the union.
    a.blocks = a.blocks.max(b.blocks);
    a.blocks_executed = a.blocks_executed.max(b.blocks_executed);
    Ok(())
}

fn remap_vec<T: Count>(v: Vec<T>, map: &[usize], n: usize) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    if v.len() == n && map.len() == n && map.iter().enumerate().all(|(i, &j)| i == j) {
        return v;
    }
    // Few captures (the usual case): move the values within the vector's
    // own buffer (growing it in place where the allocator can) instead of
    // allocating another.
    const FEW: usize = 8;
    if v.len() <= FEW && n <= FEW {
        let mut old = [T::ZERO; FEW];
        let len = v.len();
        if let Some(dst) = old.get_mut(..len) {
            dst.copy_from_slice(&v);
        }
        let mut v = v;
        v.clear();
        // Exactly `n` (growing one by one would take room for four).
        v.reserve_exact(n);
        v.resize(n, T::ZERO);
        for (i, &x) in old.iter().take(len).enumerate() {
            if let Some(slot) = map.get(i).and_then(|&j| v.get_mut(j)) {
                *slot = slot.add(x).unwrap_or(*slot);
            }
        }
        return v;
    }
    let mut out = vec![T::ZERO; n];
    for (i, x) in v.into_iter().enumerate() {
        if let Some(slot) = map.get(i).and_then(|&j| out.get_mut(j)) {
            // Saturate: duplicates only arise from merged capture names.
            *slot = slot.add(x).unwrap_or(*slot);
        }
    }
    out
}

/// Re-indexes every `by_capture` vector of `file`: old index `i` moves to
/// `map[i]` of a list of `n` captures (values landing on the same index add).
fn remap_file(mut file: FileCoverage, map: &[usize], n: usize) -> FileCoverage {
    for line in file.lines.values_mut() {
        line.by_capture = remap_vec(std::mem::take(&mut line.by_capture), map, n);
        for b in &mut line.branches {
            b.by_capture = remap_vec(std::mem::take(&mut b.by_capture), map, n);
        }
    }
    for f in &mut file.functions {
        f.by_capture = remap_vec(std::mem::take(&mut f.by_capture), map, n);
    }
    file.owned_by = remap_owned(&file, map, n);
    file
}

/// Re-indexes a file's `owned_by` like [`remap_vec`]: old capture `i`
/// becomes `map[i]` of `n` (empty, every old capture, stays empty under the
/// identity map).
fn remap_owned(file: &FileCoverage, map: &[usize], n: usize) -> Vec<bool> {
    let identity = map.len() == n && map.iter().enumerate().all(|(i, &j)| i == j);
    if n == 0 || (file.owned_by.is_empty() && identity) {
        return Vec::new();
    }
    let mut out = vec![false; n];
    for (i, &j) in map.iter().enumerate() {
        if let Some(slot) = out.get_mut(j) {
            *slot |= file.owned_by_capture(i);
        }
    }
    crate::model::normalize_owned(out)
}

/// Drops every per-capture breakdown (and the capture names), keeping the
/// combined counts: for outputs that show no attribution, so that merging
/// many inputs costs memory per line, not per line and input.
pub fn without_attribution(mut cov: Coverage) -> Coverage {
    cov.captures.clear();
    for file in cov.files.values_mut() {
        file.owned_by = Vec::new();
        for line in file.lines.values_mut() {
            line.by_capture = Vec::new();
            for b in &mut line.branches {
                b.by_capture = Vec::new();
            }
        }
        for f in &mut file.functions {
            f.by_capture = Vec::new();
        }
    }
    cov
}

/// Fills every empty `by_capture` vector with the combined count, for a
/// coverage that has exactly one capture (or is about to get one).
pub fn attribute_single(cov: &mut Coverage) {
    for file in cov.files.values_mut() {
        for line in file.lines.values_mut() {
            if line.by_capture.is_empty() {
                line.by_capture = vec![line.count];
            }
            for b in &mut line.branches {
                if b.by_capture.is_empty() {
                    b.by_capture = vec![b.taken];
                }
            }
        }
        for f in &mut file.functions {
            if f.by_capture.is_empty() {
                f.by_capture = vec![f.count];
            }
        }
    }
}

/// Pads (or keeps) every `by_capture` vector of `file` to length `n`.
pub(crate) fn align_file(file: FileCoverage, n: usize) -> FileCoverage {
    let identity: Vec<usize> = (0..n).collect();
    remap_file(file, &identity, n)
}

/// Adds each of `new` to `names` unless it is there already; gives each
/// one's index in `names`.
fn unite_names(names: &mut Vec<String>, new: &[String]) -> Vec<usize> {
    new.iter()
        .map(|c| match names.iter().position(|x| x == c) {
            Some(i) => i,
            None => {
                names.push(c.clone());
                names.len() - 1
            }
        })
        .collect()
}

/// Unites captures that carry the same name (their per-capture counts add).
pub fn dedup_captures(mut cov: Coverage) -> Coverage {
    let mut names: Vec<String> = Vec::new();
    let map = unite_names(&mut names, &cov.captures);
    if names.len() == cov.captures.len() {
        return cov;
    }
    let n = names.len();
    cov.files = std::mem::take(&mut cov.files)
        .into_iter()
        .map(|(p, f)| (p, remap_file(f, &map, n)))
        .collect();
    cov.captures = names;
    cov
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn info(text: &str, name: &str) -> Coverage {
        crate::lcov::read(text.as_bytes(), Path::new("t.info"), name).expect("valid tracefile")
    }

    const A: &str = "SF:/a.c\nFN:1,f\nFNDA:1,f\nBRDA:2,0,0,-\nBRDA:2,0,1,-\nBRDA:3,0,0,1\n\
                     DA:1,1\nDA:2,0\nDA:3,5\nend_of_record\n";
    const B: &str = "SF:/a.c\nFN:1,f\nFNDA:2,f\nFN:9,g\nFNDA:0,g\nBRDA:2,0,0,3\nBRDA:2,0,1,-\n\
                     BRDA:3,0,0,-\nDA:1,2\nDA:2,3\nDA:9,0\nend_of_record\n\
                     SF:/b.c\nDA:1,1\nend_of_record\n";

    #[test]
    fn stripped_inputs_merge_to_the_same_combined_counts() {
        let full = merge(info(A, "a"), info(B, "b")).expect("merge");
        let lean = merge(
            without_attribution(info(A, "a")),
            without_attribution(info(B, "b")),
        )
        .expect("merge");
        assert!(lean.captures.is_empty());
        assert_eq!(without_attribution(full.clone()), lean);
        let line = &lean.files["/a.c"].lines[&2];
        assert_eq!((line.count, line.by_capture.len()), (3, 0));
        assert_eq!(full.summary(), lean.summary());
    }

    #[test]
    fn lcov_add_semantics() {
        let m = merge(info(A, "a"), info(B, "b")).expect("merge");
        assert_eq!(m.captures, vec!["a", "b"]);
        let f = &m.files["/a.c"];
        assert_eq!(f.lines[&1].count, 3);
        assert_eq!(f.lines[&1].by_capture, vec![1, 2]);
        assert_eq!(f.lines[&2].count, 3);
        assert_eq!(f.lines[&9].by_capture, vec![0, 0]);
        let br = &f.lines[&2].branches;
        assert_eq!(br[0].taken, Some(3), "- + 3 = 3");
        assert_eq!(br[1].taken, None, "- + - = -");
        assert_eq!(br[0].by_capture, vec![None, Some(3)]);
        assert_eq!(f.lines[&3].branches[0].taken, Some(1));
        assert_eq!(f.functions.len(), 2);
        assert_eq!(f.functions[0].count, 3);
        assert_eq!(f.functions[0].by_capture, vec![1, 2]);
        assert_eq!(m.files["/b.c"].lines[&1].by_capture, vec![0, 1]);
    }

    fn normalized(mut c: Coverage) -> Coverage {
        // Put captures in name order so that operand order does not matter.
        let mut order: Vec<usize> = (0..c.captures.len()).collect();
        order.sort_by(|&x, &y| c.captures[x].cmp(&c.captures[y]));
        let mut map = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            map[old] = new;
        }
        let n = order.len();
        c.files = c
            .files
            .into_iter()
            .map(|(p, f)| (p, remap_file(f, &map, n)))
            .collect();
        c.captures.sort();
        c
    }

    #[test]
    fn commutative_and_associative() {
        let c = "TN:z\nSF:/a.c\nDA:3,1\nBRDA:3,0,0,0\nend_of_record\nTN:a\nSF:/c.c\nDA:1,1\nend_of_record\n";
        let (a, b, c) = (info(A, "a"), info(B, "b"), info(c, "c"));
        let ab = merge(a.clone(), b.clone()).expect("ab");
        let ba = merge(b.clone(), a.clone()).expect("ba");
        assert_eq!(normalized(ab.clone()), normalized(ba));
        let ab_c = merge(ab, c.clone()).expect("ab_c");
        let bc = merge(b, c).expect("bc");
        let a_bc = merge(a, bc).expect("a_bc");
        assert_eq!(ab_c, a_bc);
        assert_eq!(ab_c.captures, vec!["a", "b", "z"], "name 'a' matched");
    }

    #[test]
    fn same_captures_fast_path_and_identity() {
        let a = info(A, "x");
        let m = merge(Coverage::default(), a.clone()).expect("identity");
        assert_eq!(m, a);
        let m = merge(a.clone(), a.clone()).expect("self");
        assert_eq!(m.captures, vec!["x"]);
        assert_eq!(m.files["/a.c"].lines[&3].count, 10);
        assert_eq!(m.files["/a.c"].lines[&3].by_capture, vec![10]);
    }

    #[test]
    fn works_as_rayon_reduce() {
        use rayon::prelude::*;
        let inputs: Vec<Coverage> = (0..20)
            .map(|i| info(if i % 2 == 0 { A } else { B }, &format!("c{i}")))
            .collect();
        let seq = inputs
            .iter()
            .cloned()
            .try_fold(Coverage::default(), merge)
            .expect("seq");
        let par = inputs
            .into_par_iter()
            .map(Ok)
            .try_reduce(Coverage::default, merge)
            .expect("par");
        assert_eq!(seq, par);
        assert_eq!(seq.files["/a.c"].lines[&1].count, 10 + 20);
    }

    #[test]
    fn overflow_is_an_error_naming_the_file() {
        let big = format!("SF:/a.c\nDA:1,{}\nend_of_record\n", i64::MAX);
        let err = merge(info(&big, "a"), info(&big, "b")).expect_err("overflow");
        assert_eq!(err.file, "/a.c");
        assert_eq!(err.kind, MergeErrorKind::LineOverflow(1));
    }

    #[test]
    fn dedup_unites_same_names() {
        let text = "TN:\nSF:/a.c\nDA:1,1\nend_of_record\nTN:x\nSF:/a.c\nDA:1,2\nend_of_record\n";
        let cov = info(text, "x");
        assert_eq!(cov.captures, vec!["x"]);
        assert_eq!(cov.files["/a.c"].lines[&1].by_capture, vec![3]);
    }

    #[test]
    fn merging_in_one_walk_equals_reindexing_first() {
        // Files with two sections (captures) each, lines and branches on
        // both sides and on one only, merged under maps that move,
        // interleave and (for `b`) unite captures: the walk must give what
        // re-indexing both files whole and merging them gives.
        let a = info(&format!("TN:p\n{A}TN:q\n{B}"), "x");
        let b = info(&format!("TN:q\n{B}TN:r\n{A}"), "y");
        let fa = &a.files["/a.c"];
        let fb = &b.files["/a.c"];
        for (map_a, map_b, n) in [
            (vec![0, 1], vec![1, 2], 3),
            (vec![2, 0], vec![1, 2], 3),
            (vec![0, 1], vec![0, 1], 2),
            (vec![0, 1], vec![1, 1], 2),
            (vec![1, 3], vec![2, 0], 4),
        ] {
            let walked = merge_mapped(fa.clone(), Some(&map_a), fb.clone(), Some(&map_b), n)
                .expect("merges");
            let first = merge_mapped(
                remap_file(fa.clone(), &map_a, n),
                None,
                remap_file(fb.clone(), &map_b, n),
                None,
                n,
            )
            .expect("merges");
            assert_eq!(walked, first, "maps {map_a:?} {map_b:?}");
            assert!(walked.lines.values().all(|l| l.by_capture.len() == n));
        }
        // An overflow on a line both have is the line's error either way.
        let big = format!("SF:/a.c\nDA:1,{}\nDA:2,1\nend_of_record\n", i64::MAX);
        let (x, y) = (info(&big, "a"), info(&big, "b"));
        let err = merge_mapped(
            x.files["/a.c"].clone(),
            Some(&[0]),
            y.files["/a.c"].clone(),
            Some(&[1]),
            2,
        )
        .expect_err("overflow");
        assert_eq!(err, MergeErrorKind::LineOverflow(1));
    }
}
