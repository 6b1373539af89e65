//! A function's flow graph and its solution, exactly as `gcov` does it
//! (`solve_flow_graph`, `find_exception_blocks`; gcov-format.md §6).
//!
//! [`FunctionGraph::build`] derives everything that does not depend on
//! counts (successor order, call/throw/nonlocal/unconditional arcs,
//! exceptional blocks) once; [`FunctionGraph::solve`] then turns any counter
//! vector (one capture's, or the sum of several) into arc and block counts.

use crate::error::ErrorKind;
use crate::gcno::NotesFunction;

/// One arc with gcov's derived properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arc {
    /// Source block.
    pub src: u32,
    /// Destination block.
    pub dst: u32,
    /// Index of this arc's counter, `None` for spanning-tree arcs.
    pub counter: Option<u32>,
    /// Fake arc.
    pub fake: bool,
    /// Falls through to the next block.
    pub fallthrough: bool,
    /// Leads to an exception handler (other exit of a call site).
    pub throw: bool,
    /// Fake arc from a call that may not return (gcov's "call").
    pub call_non_return: bool,
    /// Fake arc from ENTRY to a setjmp/landing-pad block.
    pub nonlocal_return: bool,
    /// The only non-fake exit of its block.
    pub unconditional: bool,
}

/// One block with its arcs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Successor arcs (indices into [`FunctionGraph::arcs`]), sorted by
    /// destination, stable: gcov's branch order.
    pub succ: Vec<u32>,
    /// Successor arcs in file order (the order counters are assigned).
    pub succ_file_order: Vec<u32>,
    /// Predecessor arcs in file order.
    pub pred: Vec<u32>,
    /// Only reachable through exception arcs (computed when the function
    /// has a catch).
    pub exceptional: bool,
    /// Holds a call that may not return.
    pub call_site: bool,
    /// Target of a nonlocal return.
    pub nonlocal_return: bool,
}

/// The count-independent part of a function's flow graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionGraph {
    /// Offset of the function's notes record, for errors.
    pub offset: u64,
    /// Blocks; 0 is ENTRY, 1 is EXIT.
    pub blocks: Vec<Block>,
    /// Arcs in file order.
    pub arcs: Vec<Arc>,
    /// Number of counters (non-tree arcs).
    pub counters: usize,
    /// Some call site has an exception arc.
    pub has_catch: bool,
}

/// Arc and block counts of one solved function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Count per arc, indexed like [`FunctionGraph::arcs`].
    pub arcs: Vec<i64>,
    /// Count per block.
    pub blocks: Vec<i64>,
}

impl FunctionGraph {
    /// Builds the graph of a notes function.
    pub fn build(f: &NotesFunction<'_>) -> Result<Self, ErrorKind> {
        if f.blocks < 2 {
            return Err(ErrorKind::TooFewBlocks {
                offset: f.offset,
                blocks: f.blocks,
            });
        }
        let n = f.blocks as usize;
        let mut blocks = vec![Block::default(); n];
        let mut arcs = Vec::with_capacity(f.arcs.len());
        for a in &f.arcs {
            let (src, dst) = (a.src as usize, a.dst as usize);
            if src >= n || dst >= n {
                return Err(ErrorKind::BadBlock {
                    offset: f.offset,
                    block: a.src.max(a.dst),
                    blocks: f.blocks,
                });
            }
            let idx = arcs.len() as u32;
            let fake = a.fake();
            arcs.push(Arc {
                src: a.src,
                dst: a.dst,
                counter: None,
                fake,
                fallthrough: a.fallthrough(),
                throw: false,
                call_non_return: fake && src != 0,
                nonlocal_return: fake && src == 0,
                unconditional: false,
            });
            if let Some(b) = blocks.get_mut(src) {
                b.succ_file_order.push(idx);
                if fake && src != 0 {
                    b.call_site = true;
                }
            }
            if let Some(b) = blocks.get_mut(dst) {
                b.pred.push(idx);
                if fake && src == 0 {
                    b.nonlocal_return = true;
                }
            }
        }
        let mut has_catch = false;
        let mut counters = 0u32;
        for b in &mut blocks {
            let succ = &b.succ_file_order;
            if b.call_site {
                for &i in succ {
                    if let Some(a) = arcs.get_mut(i as usize) {
                        if !a.fake && !a.fallthrough {
                            a.throw = true;
                            has_catch = true;
                        }
                    }
                }
            }
            for &i in succ {
                if let Some(a) = arcs.get_mut(i as usize) {
                    if !f.arcs.get(i as usize).is_some_and(|x| x.on_tree()) {
                        a.counter = Some(counters);
                        counters += 1;
                    }
                }
            }
            let non_fake: Vec<u32> = succ
                .iter()
                .copied()
                .filter(|&i| arcs.get(i as usize).is_some_and(|a| !a.fake))
                .collect();
            if let [only] = non_fake[..] {
                if let Some(a) = arcs.get_mut(only as usize) {
                    a.unconditional = true;
                }
            }
            let mut sorted = succ.clone();
            sorted.sort_by_key(|&i| arcs.get(i as usize).map_or(0, |a| a.dst));
            b.succ = sorted;
        }
        let mut g = FunctionGraph {
            offset: f.offset,
            blocks,
            arcs,
            counters: counters as usize,
            has_catch,
        };
        if has_catch {
            g.find_exception_blocks();
        }
        Ok(g)
    }

    /// Marks blocks not reachable from ENTRY through arcs that are neither
    /// fake nor exception arcs.
    fn find_exception_blocks(&mut self) {
        for b in &mut self.blocks {
            b.exceptional = true;
        }
        let mut stack = vec![0usize];
        if let Some(b) = self.blocks.get_mut(0) {
            b.exceptional = false;
        }
        while let Some(v) = stack.pop() {
            let succ = self
                .blocks
                .get(v)
                .map(|b| b.succ.clone())
                .unwrap_or_default();
            for i in succ {
                let Some(a) = self.arcs.get(i as usize) else {
                    continue;
                };
                if a.fake || a.throw {
                    continue;
                }
                let d = a.dst as usize;
                if let Some(db) = self.blocks.get_mut(d) {
                    if db.exceptional {
                        db.exceptional = false;
                        stack.push(d);
                    }
                }
            }
        }
    }

    /// Solves the graph for `counters` (one per non-tree arc, in gcov's
    /// order: blocks ascending, arcs in file order).
    pub fn solve(&self, counters: &[i64]) -> Result<Counts, ErrorKind> {
        let n = self.blocks.len();
        let mut arc_count = vec![0i64; self.arcs.len()];
        let mut arc_valid = vec![false; self.arcs.len()];
        let mut count = vec![0i64; n];
        let mut valid = vec![false; n];
        let mut num_succ: Vec<i64> = self.blocks.iter().map(|b| b.succ.len() as i64).collect();
        let mut num_pred: Vec<i64> = self.blocks.iter().map(|b| b.pred.len() as i64).collect();
        // ENTRY's count cannot come from its (absent) predecessors, nor
        // EXIT's from its successors.
        if let Some(x) = num_pred.get_mut(0) {
            *x = i64::from(u32::MAX);
        }
        if let Some(x) = num_succ.get_mut(1) {
            *x = i64::from(u32::MAX);
        }
        for (i, a) in self.arcs.iter().enumerate() {
            if let Some(c) = a.counter {
                if let (Some(ac), Some(v)) = (arc_count.get_mut(i), arc_valid.get_mut(i)) {
                    *ac = counters.get(c as usize).copied().unwrap_or(0);
                    *v = true;
                }
                dec(&mut num_succ, a.src);
                dec(&mut num_pred, a.dst);
            }
        }
        let mut in_invalid = vec![true; n];
        let mut in_valid = vec![false; n];
        // gcov chains blocks by prepending: the last block is on top.
        let mut invalid: Vec<usize> = (0..n).collect();
        let mut valid_stack: Vec<usize> = Vec::new();
        let sum = |list: &[u32], arc_count: &[i64]| {
            list.iter().fold(0i64, |t, &i| {
                t.wrapping_add(arc_count.get(i as usize).copied().unwrap_or(0))
            })
        };
        while !invalid.is_empty() || !valid_stack.is_empty() {
            while let Some(b) = invalid.pop() {
                set(&mut in_invalid, b, false);
                let Some(blk) = self.blocks.get(b) else {
                    continue;
                };
                let total = if get(&num_succ, b) == 0 {
                    sum(&blk.succ, &arc_count)
                } else if get(&num_pred, b) == 0 {
                    sum(&blk.pred, &arc_count)
                } else {
                    continue;
                };
                set(&mut count, b, total);
                set(&mut valid, b, true);
                set(&mut in_valid, b, true);
                valid_stack.push(b);
            }
            while let Some(b) = valid_stack.pop() {
                set(&mut in_valid, b, false);
                let Some(blk) = self.blocks.get(b) else {
                    continue;
                };
                if get(&num_succ, b) == 1 {
                    let mut total = get(&count, b);
                    let mut inv = None;
                    for &i in &blk.succ {
                        total = total.wrapping_sub(get(&arc_count, i as usize));
                        if !arc_valid.get(i as usize).copied().unwrap_or(true) {
                            inv = Some(i as usize);
                        }
                    }
                    let Some(i) = inv else {
                        return Err(self.unsolvable(b));
                    };
                    set(&mut arc_valid, i, true);
                    set(&mut arc_count, i, total);
                    let dst = self.arcs.get(i).map_or(0, |a| a.dst);
                    dec(&mut num_succ, b as u32);
                    dec(&mut num_pred, dst);
                    let d = dst as usize;
                    if get(&valid, d) {
                        if get(&num_pred, d) == 1 && !get(&in_valid, d) {
                            set(&mut in_valid, d, true);
                            valid_stack.push(d);
                        }
                    } else if get(&num_pred, d) == 0 && !get(&in_invalid, d) {
                        set(&mut in_invalid, d, true);
                        invalid.push(d);
                    }
                }
                if get(&num_pred, b) == 1 {
                    let mut total = get(&count, b);
                    let mut inv = None;
                    for &i in &blk.pred {
                        total = total.wrapping_sub(get(&arc_count, i as usize));
                        if !arc_valid.get(i as usize).copied().unwrap_or(true) {
                            inv = Some(i as usize);
                        }
                    }
                    let Some(i) = inv else {
                        return Err(self.unsolvable(b));
                    };
                    set(&mut arc_valid, i, true);
                    set(&mut arc_count, i, total);
                    let src = self.arcs.get(i).map_or(0, |a| a.src);
                    dec(&mut num_pred, b as u32);
                    dec(&mut num_succ, src);
                    let s = src as usize;
                    if get(&valid, s) {
                        if get(&num_succ, s) == 1 && !get(&in_valid, s) {
                            set(&mut in_valid, s, true);
                            valid_stack.push(s);
                        }
                    } else if get(&num_succ, s) == 0 && !get(&in_invalid, s) {
                        set(&mut in_invalid, s, true);
                        invalid.push(s);
                    }
                }
            }
        }
        if let Some(b) = valid.iter().position(|v| !v) {
            return Err(self.unsolvable(b));
        }
        Ok(Counts {
            arcs: arc_count,
            blocks: count,
        })
    }

    fn unsolvable(&self, block: usize) -> ErrorKind {
        ErrorKind::Unsolvable {
            offset: self.offset,
            block: block as u32,
        }
    }
}

fn get<T: Copy + Default>(v: &[T], i: usize) -> T {
    v.get(i).copied().unwrap_or_default()
}

fn set<T>(v: &mut [T], i: usize, x: T) {
    if let Some(slot) = v.get_mut(i) {
        *slot = x;
    }
}

fn dec(v: &mut [i64], i: u32) {
    if let Some(x) = v.get_mut(i as usize) {
        *x -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcno::NotesArc;

    pub(crate) fn function(blocks: u32, arcs: &[(u32, u32, u32)]) -> NotesFunction<'static> {
        NotesFunction {
            offset: 0,
            ident: 1,
            lineno_checksum: 0,
            cfg_checksum: 0,
            name: b"f",
            artificial: false,
            source: b"a.c",
            start_line: 1,
            start_column: 1,
            end_line: 1,
            end_column: 1,
            blocks,
            arcs: arcs
                .iter()
                .map(|&(src, dst, flags)| NotesArc { src, dst, flags })
                .collect(),
            locations: Vec::new(),
        }
    }

    /// §7.5: if/else called with -1, 0, 1.
    #[test]
    fn worked_example_if_else() {
        let f = function(
            7,
            &[
                (0, 2, 4),
                (2, 3, 4),
                (2, 4, 1),
                (3, 5, 5),
                (4, 5, 5),
                (5, 6, 5),
                (6, 1, 1),
            ],
        );
        let g = FunctionGraph::build(&f).unwrap();
        assert_eq!(g.counters, 2);
        let c = g.solve(&[3, 1]).unwrap();
        assert_eq!(c.blocks, vec![3, 3, 3, 1, 2, 3, 3]);
        assert_eq!(c.arcs, vec![3, 1, 2, 1, 2, 3, 3]);
    }

    /// §7.7: a call site whose other non-fallthrough exit is a throw.
    #[test]
    fn call_site_throw_and_sorting() {
        let f = function(
            5,
            &[
                (0, 2, 4),
                (2, 4, 0),
                (2, 3, 4),
                (2, 1, 3),
                (3, 1, 1),
                (4, 1, 1),
            ],
        );
        let g = FunctionGraph::build(&f).unwrap();
        let b2 = &g.blocks[2];
        let dsts: Vec<u32> = b2.succ.iter().map(|&i| g.arcs[i as usize].dst).collect();
        assert_eq!(dsts, vec![1, 3, 4]);
        assert!(g.arcs[1].throw && g.arcs[3].call_non_return && !g.arcs[2].throw);
        assert!(g.has_catch);
        assert!(g.blocks[4].exceptional && !g.blocks[3].exceptional);
        let c = g.solve(&[7, 1]).unwrap();
        // 2->4 throws once; 2->1 (call not returning) is derived.
        assert_eq!(c.blocks[2], 7);
        assert_eq!(c.blocks[4], 1);
    }

    #[test]
    fn unsolvable_is_an_error() {
        // Two tree arcs into a block with no way to derive them.
        let f = function(4, &[(0, 2, 1), (0, 3, 1), (2, 1, 1), (3, 1, 1)]);
        let g = FunctionGraph::build(&f).unwrap();
        assert!(matches!(g.solve(&[]), Err(ErrorKind::Unsolvable { .. })));
        let f = function(1, &[]);
        assert!(matches!(
            FunctionGraph::build(&f),
            Err(ErrorKind::TooFewBlocks { .. })
        ));
    }
}
