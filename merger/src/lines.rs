//! Line, branch and function counts exactly as `gcov` computes them
//! (`add_line_counts`, `accumulate_line_info` with the Hawick–James circuit
//! search, group functions; gcov-format.md §7–§8).
//!
//! [`LineTables::build`] attaches blocks to lines once per object (this does
//! not depend on counts); [`LineTables::eval`] then evaluates one line entry
//! for any solution, so one object can be evaluated for the combined counters
//! and for each capture.

use std::collections::{BTreeMap, HashSet};

use crate::gcno::NotesFunction;
use crate::graph::{Counts, FunctionGraph};

/// A block of a function: (index into [`LineTables::functions`], block).
pub type BlockRef = (u32, u32);

/// What gcov's `line_info` gathers for one line, minus the counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Every (block) occurrence of the line; each adds the block count to
    /// the provisional count and decides `unexecuted_block`.
    pub contributions: Vec<BlockRef>,
    /// Blocks whose location ends on this line (gcov's `line->blocks`).
    pub blocks: Vec<BlockRef>,
}

/// A non-artificial function of the object, as the line tables see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionMeta {
    /// Index into the notes' functions.
    pub notes_index: usize,
    /// Source id of the declaration.
    pub src: usize,
    /// Shares (file, start line) with another function.
    pub is_group: bool,
    /// Listed in gcov's function table (has counters, or no data at all).
    pub listed: bool,
    /// Start line.
    pub start_line: u32,
    /// Start column.
    pub start_column: u32,
    /// End line.
    pub end_line: u32,
}

/// Lines of one object: per-source tables and per-group-function tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineTables {
    /// Non-artificial functions in notes order.
    pub functions: Vec<FunctionMeta>,
    /// Line table per source id.
    pub file_lines: Vec<BTreeMap<u32, Slot>>,
    /// Private line table per function (non-empty for group functions only).
    pub group_lines: Vec<BTreeMap<u32, Slot>>,
}

/// One branch as gcov's JSON lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchEval {
    /// Times the arc was taken.
    pub count: i64,
    /// Count of the block the arc leaves.
    pub src_count: i64,
    /// Exception arc.
    pub throw: bool,
    /// Fallthrough arc.
    pub fallthrough: bool,
    /// Index of the branching block among the entry's branching blocks.
    pub group: u32,
}

/// One evaluated line entry (one gcov JSON `lines` element).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryEval {
    /// gcov's line count.
    pub count: i64,
    /// Some non-exceptional block on the line has count 0.
    pub unexecuted_block: bool,
    /// Branches in gcov's order.
    pub branches: Vec<BranchEval>,
}

impl LineTables {
    /// Attaches the blocks of `notes` functions to lines. `functions` are
    /// the non-artificial notes functions (index into `notes`, graph);
    /// `source_of` maps a file name to a source id below `n_sources`.
    pub fn build(
        notes: &[NotesFunction<'_>],
        functions: &[(usize, &FunctionGraph)],
        source_of: &dyn Fn(&[u8]) -> usize,
        n_sources: usize,
        no_data: bool,
    ) -> Self {
        let mut metas: Vec<FunctionMeta> = Vec::with_capacity(functions.len());
        let mut starts: BTreeMap<(usize, u32), usize> = BTreeMap::new();
        for &(ni, g) in functions {
            let Some(f) = notes.get(ni) else { continue };
            let src = source_of(f.source);
            let mut is_group = false;
            if let Some(&other) = starts.get(&(src, f.start_line)) {
                if let Some(m) = metas.get_mut(other) {
                    m.is_group = true;
                }
                is_group = true;
            } else {
                starts.insert((src, f.start_line), metas.len());
            }
            metas.push(FunctionMeta {
                notes_index: ni,
                src,
                is_group,
                listed: g.counters > 0 || no_data,
                start_line: f.start_line,
                start_column: f.start_column,
                end_line: f.end_line,
            });
        }
        let mut t = LineTables {
            file_lines: vec![BTreeMap::new(); n_sources],
            group_lines: vec![BTreeMap::new(); metas.len()],
            functions: Vec::new(),
        };
        for (fi, m) in metas.iter().enumerate() {
            let Some(f) = notes.get(m.notes_index) else {
                continue;
            };
            // Locations grouped by block, in file order.
            let mut by_block: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (li, loc) in f.locations.iter().enumerate() {
                by_block.entry(loc.block).or_default().push(li);
            }
            let n = f.blocks;
            for (&b, locs) in &by_block {
                let mut last: Option<(bool, usize, u32)> = None;
                for &li in locs {
                    let Some(loc) = f.locations.get(li) else {
                        continue;
                    };
                    let src = source_of(loc.file);
                    let mut lines = loc.lines.clone();
                    lines.sort_unstable();
                    for &ln in &lines {
                        let group =
                            m.is_group && m.src == src && m.start_line <= ln && ln <= m.end_line;
                        let key = if group {
                            (true, fi, ln)
                        } else {
                            (false, src, ln)
                        };
                        if let Some(slot) = t.slot(key) {
                            slot.contributions.push((fi as u32, b));
                        }
                        last = Some(key);
                    }
                    if b != 0 && b + 1 != n {
                        if let Some(slot) = last.and_then(|k| t.slot(k)) {
                            slot.blocks.push((fi as u32, b));
                        }
                    }
                }
            }
        }
        t.functions = metas;
        t
    }

    fn slot(&mut self, (group, table, ln): (bool, usize, u32)) -> Option<&mut Slot> {
        let tables = if group {
            &mut self.group_lines
        } else {
            &mut self.file_lines
        };
        Some(tables.get_mut(table)?.entry(ln).or_default())
    }

    /// Evaluates one slot for a solution: `graphs` and `counts` are
    /// indexed like [`LineTables::functions`].
    pub fn eval(slot: &Slot, graphs: &[&FunctionGraph], counts: &[Counts]) -> EntryEval {
        let block_count = |(f, b): BlockRef| -> i64 {
            counts
                .get(f as usize)
                .and_then(|c| c.blocks.get(b as usize))
                .copied()
                .unwrap_or(0)
        };
        let mut out = EntryEval::default();
        for &r in &slot.contributions {
            let c = block_count(r);
            out.count = out.count.wrapping_add(c);
            let exceptional = graphs
                .get(r.0 as usize)
                .and_then(|g| g.blocks.get(r.1 as usize))
                .is_some_and(|b| b.exceptional);
            if !exceptional && c == 0 {
                out.unexecuted_block = true;
            }
        }
        if !slot.blocks.is_empty() {
            let members = Members::new(&slot.blocks);
            let mut count = 0i64;
            for &(f, b) in &slot.blocks {
                let (Some(g), Some(c)) = (graphs.get(f as usize), counts.get(f as usize)) else {
                    continue;
                };
                let Some(blk) = g.blocks.get(b as usize) else {
                    continue;
                };
                for &a in &blk.pred {
                    let Some(arc) = g.arcs.get(a as usize) else {
                        continue;
                    };
                    if !members.contains((f, arc.src)) {
                        count = count.wrapping_add(c.arcs.get(a as usize).copied().unwrap_or(0));
                    }
                }
            }
            count = count.wrapping_add(cycles(slot, &members, graphs, counts));
            out.count = count;
        }
        let mut group = 0u32;
        for &(f, b) in &slot.blocks {
            let (Some(g), Some(c)) = (graphs.get(f as usize), counts.get(f as usize)) else {
                continue;
            };
            let Some(blk) = g.blocks.get(b as usize) else {
                continue;
            };
            let src_count = c.blocks.get(b as usize).copied().unwrap_or(0);
            let mut any = false;
            for &a in &blk.succ {
                let Some(arc) = g.arcs.get(a as usize) else {
                    continue;
                };
                if arc.call_non_return || arc.unconditional {
                    continue;
                }
                any = true;
                out.branches.push(BranchEval {
                    count: c.arcs.get(a as usize).copied().unwrap_or(0),
                    src_count,
                    throw: arc.throw,
                    fallthrough: arc.fallthrough,
                    group,
                });
            }
            if any {
                group += 1;
            }
        }
        out
    }
}

/// Membership in a line's block list: linear for short lists (the common
/// case), hashed for long ones (huge one-line functions).
enum Members<'a> {
    Few(&'a [BlockRef]),
    Many(HashSet<BlockRef>),
}

impl<'a> Members<'a> {
    fn new(blocks: &'a [BlockRef]) -> Self {
        if blocks.len() <= 16 {
            Members::Few(blocks)
        } else {
            Members::Many(blocks.iter().copied().collect())
        }
    }

    fn contains(&self, b: BlockRef) -> bool {
        match self {
            Members::Few(v) => v.contains(&b),
            Members::Many(s) => s.contains(&b),
        }
    }
}

/// Counts of loops lying entirely on one line: gcov's `get_cycles_count`,
/// an iterative rendering of its recursive Hawick–James `circuit` search,
/// visiting blocks and arcs in the same order so the greedy cancellation
/// gives the same total.
fn cycles(slot: &Slot, members: &Members<'_>, graphs: &[&FunctionGraph], counts: &[Counts]) -> i64 {
    // Working copies of the counts of arcs leaving the line's blocks.
    let mut cs: BTreeMap<(u32, u32), i64> = BTreeMap::new();
    for &(f, b) in &slot.blocks {
        let (Some(g), Some(c)) = (graphs.get(f as usize), counts.get(f as usize)) else {
            continue;
        };
        for &a in g.blocks.get(b as usize).map(|b| &b.succ[..]).unwrap_or(&[]) {
            cs.insert((f, a), c.arcs.get(a as usize).copied().unwrap_or(0));
        }
    }
    let mut total = 0i64;
    for &(f, start) in &slot.blocks {
        let Some(g) = graphs.get(f as usize) else {
            continue;
        };
        total = total.wrapping_add(circuit(g, f, start, members, &mut cs));
    }
    total
}

struct Frame {
    v: u32,
    next: usize,
    found: bool,
}

fn circuit(
    g: &FunctionGraph,
    f: u32,
    start: u32,
    members: &Members<'_>,
    cs: &mut BTreeMap<(u32, u32), i64>,
) -> i64 {
    let succ = |v: u32| -> &[u32] { g.blocks.get(v as usize).map(|b| &b.succ[..]).unwrap_or(&[]) };
    let dst = |a: u32| g.arcs.get(a as usize).map_or(0, |x| x.dst);
    // The three filters of gcov's circuit(): destination not before the
    // start block, positive working count, destination on this line.
    let passes = |a: u32, cs: &BTreeMap<(u32, u32), i64>| {
        let w = dst(a);
        w >= start && cs.get(&(f, a)).copied().unwrap_or(0) > 0 && members.contains((f, w))
    };
    let mut total = 0i64;
    let mut path: Vec<u32> = Vec::new();
    let mut blocked: Vec<(u32, Vec<u32>)> = vec![(start, Vec::new())];
    let mut frames = vec![Frame {
        v: start,
        next: 0,
        found: false,
    }];
    while let Some(top) = frames.last_mut() {
        let v = top.v;
        if let Some(&a) = succ(v).get(top.next) {
            top.next += 1;
            if !passes(a, cs) {
                continue;
            }
            let w = dst(a);
            path.push(a);
            if w == start {
                let m = path
                    .iter()
                    .map(|&p| cs.get(&(f, p)).copied().unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                total = total.wrapping_add(m);
                for &p in &path {
                    if let Some(x) = cs.get_mut(&(f, p)) {
                        *x = x.wrapping_sub(m);
                    }
                }
                top.found = true;
                path.pop();
            } else if !path
                .iter()
                .any(|&p| cs.get(&(f, p)).copied().unwrap_or(0) <= 0)
                && !blocked.iter().any(|(b, _)| *b == w)
            {
                blocked.push((w, Vec::new()));
                frames.push(Frame {
                    v: w,
                    next: 0,
                    found: false,
                });
            } else {
                path.pop();
            }
            continue;
        }
        // All successors of v done.
        let found = top.found;
        frames.pop();
        if found {
            unblock(v, &mut blocked);
        } else {
            for &a in succ(v) {
                if !passes(a, cs) {
                    continue;
                }
                let w = dst(a);
                if let Some((_, list)) = blocked.iter_mut().find(|(b, _)| *b == w) {
                    if !list.contains(&v) {
                        list.push(v);
                    }
                }
            }
        }
        if let Some(parent) = frames.last_mut() {
            parent.found |= found;
            path.pop();
        }
    }
    total
}

fn unblock(u: u32, blocked: &mut Vec<(u32, Vec<u32>)>) {
    let mut todo = vec![u];
    while let Some(u) = todo.pop() {
        if let Some(i) = blocked.iter().position(|(b, _)| *b == u) {
            let (_, list) = blocked.remove(i);
            todo.extend(list.into_iter().rev());
        }
    }
}
