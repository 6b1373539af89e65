//! One object's coverage: a `.gcno` and the `.gcda` files that captures
//! hold for it, checked against each other, summed and solved like `gcov`
//! on the output of `gcov-tool merge` (gcov-format.md §9.2).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::demangle::demangle;
use crate::error::{Error, ErrorKind};
use crate::gcda::Data;
use crate::gcno::Notes;
use crate::graph::{Counts, FunctionGraph};
use crate::lines::{EntryEval, LineTables, Slot};
use crate::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};

/// One `.gcda` of one capture.
#[derive(Clone, Copy, Debug)]
pub struct Capture<'a> {
    /// Index of the capture in [`Coverage::captures`].
    pub index: usize,
    /// Path of the data file, for error messages.
    pub path: &'a Path,
    /// Contents of the data file.
    pub bytes: &'a [u8],
}

/// Computes the coverage of one object from its notes and the data files
/// of any number of captures.
///
/// The raw arc counters of all `captures` are summed (overflow is an
/// error) and solved once, which gives what `gcov` prints for the
/// `gcov-tool merge` of the captures. With `n_captures > 1`, every line,
/// branch and function also gets a `by_capture` vector of length
/// `n_captures`, each capture solved on its own (capture indices without a
/// data file count zero). With no captures at all, every instrumented line
/// is present with count 0. Source files are keyed by absolute, normalised
/// paths: the notes' names resolved against the compiler's working
/// directory (GCC 9 on; for GCC 8 against the notes file's directory).
/// [`Coverage::captures`] is left empty for the caller to name.
pub fn object_coverage(
    notes_path: &Path,
    notes: &[u8],
    captures: &[Capture<'_>],
    n_captures: usize,
) -> Result<Coverage, Error> {
    let parsed = Notes::parse(notes).map_err(|k| Error::new(notes_path, k))?;
    let by_ident: HashMap<u32, usize> = parsed
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| (f.ident, i))
        .collect();
    let expected: Vec<usize> = parsed.functions.iter().map(|f| f.counters()).collect();
    let zero_counters = || -> Vec<Vec<i64>> { expected.iter().map(|&n| vec![0i64; n]).collect() };

    let mut combined = zero_counters();
    let mut per_capture: BTreeMap<usize, Vec<Vec<i64>>> = BTreeMap::new();
    let mut first: Option<(&Path, u32)> = None;
    for cap in captures {
        let err = |k| Error::new(cap.path, k).against(notes_path);
        if cap.index >= n_captures {
            return Err(err(ErrorKind::CaptureIndex {
                index: cap.index,
                n_captures,
            }));
        }
        let data = Data::parse(cap.bytes).map_err(|k| Error::new(cap.path, k))?;
        if data.version != parsed.version {
            return Err(err(ErrorKind::VersionMismatch {
                notes: parsed.version,
                data: data.version,
            }));
        }
        if data.stamp != parsed.stamp {
            return Err(err(ErrorKind::StampMismatch {
                notes: parsed.stamp,
                data: data.stamp,
            }));
        }
        if let Some(sum) = data.checksum {
            match first {
                Some((p, c)) if c != sum => {
                    return Err(Error::new(
                        cap.path,
                        ErrorKind::ChecksumMismatch {
                            first: c,
                            found: sum,
                        },
                    )
                    .against(p));
                }
                None => first = Some((cap.path, sum)),
                _ => {}
            }
        }
        let mine = per_capture.entry(cap.index).or_insert_with(zero_counters);
        for df in &data.functions {
            let Some(&ni) = by_ident.get(&df.ident) else {
                return Err(err(ErrorKind::UnknownFunction {
                    offset: df.offset,
                    ident: df.ident,
                }));
            };
            let Some(nf) = parsed.functions.get(ni) else {
                continue;
            };
            let named = |e: Error| e.in_function(demangle(&nf.name_lossy()));
            if df.lineno_checksum != nf.lineno_checksum || df.cfg_checksum != nf.cfg_checksum {
                return Err(named(err(ErrorKind::FunctionMismatch {
                    offset: df.offset,
                    ident: df.ident,
                    notes_lineno: nf.lineno_checksum,
                    notes_cfg: nf.cfg_checksum,
                    data_lineno: df.lineno_checksum,
                    data_cfg: df.cfg_checksum,
                })));
            }
            let Some(arcs) = &df.arcs else { continue };
            let want = expected.get(ni).copied().unwrap_or(0);
            if arcs.len != want as u64 {
                return Err(named(err(ErrorKind::CounterCount {
                    offset: arcs.offset,
                    expected: want as u64,
                    found: arcs.len,
                })));
            }
            let (Some(sum), Some(own)) = (combined.get_mut(ni), mine.get_mut(ni)) else {
                continue;
            };
            for (i, ((s, o), v)) in sum
                .iter_mut()
                .zip(own.iter_mut())
                .zip(arcs.iter())
                .enumerate()
            {
                let overflow = || {
                    named(err(ErrorKind::CounterOverflow {
                        offset: arcs.offset,
                        index: i as u64,
                    }))
                };
                *s = s.checked_add(v).ok_or_else(overflow)?;
                *o = o.checked_add(v).ok_or_else(overflow)?;
            }
        }
    }

    // Graphs of the functions gcov keeps (artificial ones are dropped).
    let mut graphs: Vec<(usize, FunctionGraph)> = Vec::new();
    for (ni, f) in parsed.functions.iter().enumerate() {
        if f.artificial {
            continue;
        }
        let g = FunctionGraph::build(f)
            .map_err(|k| Error::new(notes_path, k).in_function(demangle(&f.name_lossy())))?;
        graphs.push((ni, g));
    }

    // Source names, interned by their canonical absolute path.
    let notes_dir = notes_path.parent();
    let mut names: Vec<String> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut raw_ids: HashMap<&[u8], usize> = HashMap::new();
    for (ni, _) in &graphs {
        let Some(f) = parsed.functions.get(*ni) else {
            continue;
        };
        for raw in std::iter::once(f.source).chain(f.locations.iter().map(|l| l.file)) {
            if raw_ids.contains_key(raw) {
                continue;
            }
            let name = source_path(parsed.cwd, notes_dir, raw);
            let next = names.len();
            let id = *ids.entry(name.clone()).or_insert(next);
            if id == next {
                names.push(name);
            }
            raw_ids.insert(raw, id);
        }
    }
    let source_of = |raw: &[u8]| raw_ids.get(raw).copied().unwrap_or(0);
    let refs: Vec<(usize, &FunctionGraph)> = graphs.iter().map(|(i, g)| (*i, g)).collect();
    let tables = LineTables::build(
        &parsed.functions,
        &refs,
        &source_of,
        names.len(),
        captures.is_empty(),
    );
    let graph_refs: Vec<&FunctionGraph> = graphs.iter().map(|(_, g)| g).collect();

    let solve_all = |counters: &[Vec<i64>]| -> Result<Vec<Counts>, Error> {
        graphs
            .iter()
            .map(|(ni, g)| {
                if g.counters == 0 {
                    return Ok(Counts {
                        arcs: vec![0; g.arcs.len()],
                        blocks: vec![0; g.blocks.len()],
                    });
                }
                let c = counters.get(*ni).map(|v| &v[..]).unwrap_or(&[]);
                g.solve(c).map_err(|k| {
                    let name = parsed
                        .functions
                        .get(*ni)
                        .map(|f| demangle(&f.name_lossy()))
                        .unwrap_or_default();
                    Error::new(notes_path, k).in_function(name)
                })
            })
            .collect()
    };
    let combined_counts = solve_all(&combined)?;
    // Per-capture solutions; `None` for capture indices without data.
    let mut capture_counts: Vec<Option<Vec<Counts>>> = Vec::new();
    if n_captures > 1 {
        for i in 0..n_captures {
            capture_counts.push(match per_capture.get(&i) {
                Some(c) => Some(solve_all(c)?),
                None => None,
            });
        }
    }

    let mut cov = Coverage::default();
    for (src, name) in names.iter().enumerate() {
        let mut file = FileCoverage::default();
        // Group functions of this file, in gcov's JSON order.
        let mut groups: Vec<usize> = (0..tables.functions.len())
            .filter(|&fi| {
                tables
                    .functions
                    .get(fi)
                    .is_some_and(|m| m.is_group && m.listed && m.src == src)
            })
            .collect();
        groups.sort_by_key(|&fi| {
            tables
                .functions
                .get(fi)
                .map_or((0, 0, fi), |m| (m.start_line, m.start_column, fi))
        });
        let mut line_numbers: BTreeSet<u32> = BTreeSet::new();
        if let Some(t) = tables.file_lines.get(src) {
            line_numbers.extend(t.keys());
        }
        for &fi in &groups {
            if let Some(t) = tables.group_lines.get(fi) {
                line_numbers.extend(t.keys());
            }
        }
        for ln in line_numbers {
            let mut slots: Vec<&Slot> = groups
                .iter()
                .filter_map(|&fi| tables.group_lines.get(fi).and_then(|t| t.get(&ln)))
                .collect();
            if let Some(s) = tables.file_lines.get(src).and_then(|t| t.get(&ln)) {
                slots.push(s);
            }
            if slots.is_empty() {
                continue;
            }
            let eval = |counts: &[Counts]| -> Vec<EntryEval> {
                slots
                    .iter()
                    .map(|s| LineTables::eval(s, &graph_refs, counts))
                    .collect()
            };
            let total = eval(&combined_counts);
            let mut line = LineCoverage {
                count: total.iter().fold(0i64, |a, e| a.wrapping_add(e.count)),
                unexecuted_block: total.iter().any(|e| e.unexecuted_block),
                branches: branches(&total),
                ..Default::default()
            };
            if n_captures > 1 {
                for c in &capture_counts {
                    match c {
                        Some(c) => {
                            let e = eval(c);
                            line.by_capture
                                .push(e.iter().fold(0i64, |a, e| a.wrapping_add(e.count)));
                            for (b, cb) in line.branches.iter_mut().zip(branches(&e)) {
                                b.by_capture.push(cb.taken);
                            }
                        }
                        None => {
                            line.by_capture.push(0);
                            for b in &mut line.branches {
                                b.by_capture.push(None);
                            }
                        }
                    }
                }
            }
            file.lines.insert(ln, line);
        }
        for (fi, m) in tables.functions.iter().enumerate() {
            if !m.listed || m.src != src {
                continue;
            }
            let (Some(f), Some(g)) = (parsed.functions.get(m.notes_index), graph_refs.get(fi))
            else {
                continue;
            };
            let entry = |c: &[Counts]| {
                c.get(fi)
                    .and_then(|c| c.blocks.first())
                    .copied()
                    .unwrap_or(0)
            };
            let n = g.blocks.len();
            let executed = combined_counts.get(fi).map_or(0, |c| {
                c.blocks
                    .iter()
                    .enumerate()
                    .filter(|&(ix, &b)| ix != 0 && ix + 1 != n && b != 0)
                    .count()
            });
            let name = f.name_lossy();
            file.functions.push(FunctionCoverage {
                demangled: demangle(&name),
                name,
                start_line: f.start_line,
                start_column: f.start_column,
                end_line: f.end_line,
                end_column: f.end_column,
                count: entry(&combined_counts),
                blocks: n.saturating_sub(2) as u32,
                blocks_executed: executed as u32,
                by_capture: if n_captures > 1 {
                    capture_counts
                        .iter()
                        .map(|c| c.as_deref().map_or(0, entry))
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        file.functions.sort_by(|a, b| {
            (a.start_line, a.start_column, &a.name).cmp(&(b.start_line, b.start_column, &b.name))
        });
        if !file.lines.is_empty() || !file.functions.is_empty() {
            if n_captures > 1 {
                file.owned_by = crate::model::normalize_owned(
                    (0..n_captures)
                        .map(|i| per_capture.contains_key(&i))
                        .collect(),
                );
            }
            cov.files.insert(name.clone(), file);
        }
    }
    Ok(cov)
}

/// Model branches of a line's entries: one `block` per branching block,
/// numbered across the entries in order.
fn branches(entries: &[EntryEval]) -> Vec<Branch> {
    let mut out = Vec::new();
    let mut base = 0u32;
    for e in entries {
        let mut groups = 0u32;
        let mut index = 0u32;
        let mut current = None;
        for b in &e.branches {
            if current != Some(b.group) {
                current = Some(b.group);
                index = 0;
            }
            groups = groups.max(b.group + 1);
            out.push(Branch {
                block: base + b.group,
                branch: index,
                taken: (b.src_count != 0).then_some(b.count),
                throw: b.throw,
                fallthrough: b.fallthrough,
                by_capture: Vec::new(),
            });
            index += 1;
        }
        base += groups;
    }
    out
}

/// Resolves a source name of the notes against the compiler's working
/// directory (or `fallback`) and normalises it: `.` components are elided
/// and `..` removes the previous component (lexically, unlike gcov, which
/// consults the file system).
pub fn source_path(cwd: Option<&[u8]>, fallback: Option<&Path>, raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    let joined = if name.starts_with('/') {
        name.into_owned()
    } else {
        let base = match cwd {
            Some(c) if !c.is_empty() => String::from_utf8_lossy(c).into_owned(),
            _ => fallback
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if base.is_empty() {
            name.into_owned()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), name)
        }
    };
    crate::paths::normalize(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::Endian;
    use crate::testutil::{classify_data, classify_notes, Builder, Gcc};

    const ALL: [(Gcc, Endian); 6] = [
        (Gcc::V12, Endian::Little),
        (Gcc::V12, Endian::Big),
        (Gcc::V11, Endian::Little),
        (Gcc::V11, Endian::Big),
        (Gcc::V8, Endian::Little),
        (Gcc::V8, Endian::Big),
    ];

    fn cov(notes: &[u8], data: &[&[u8]]) -> Result<Coverage, Error> {
        let caps: Vec<Capture<'_>> = data
            .iter()
            .enumerate()
            .map(|(index, bytes)| Capture {
                index,
                path: Path::new("x.gcda"),
                bytes,
            })
            .collect();
        object_coverage(Path::new("/obj/x.gcno"), notes, &caps, data.len())
    }

    fn kind(r: Result<Coverage, Error>) -> ErrorKind {
        match r {
            Err(e) => e.kind,
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    fn counts(c: &Coverage, file: &str) -> Vec<(u32, i64)> {
        c.files[file]
            .lines
            .iter()
            .map(|(&l, x)| (l, x.count))
            .collect()
    }

    /// §7.5 in every layout and byte order.
    #[test]
    fn worked_example_if_else_all_layouts() {
        for (gcc, endian) in ALL {
            let notes = classify_notes(gcc, endian);
            let data = classify_data(gcc, endian, &[3, 1]);
            let c = cov(&notes, &[&data]).unwrap();
            let file = if gcc == Gcc::V8 {
                "/obj/ifelse.c"
            } else {
                "/src/ifelse.c"
            };
            assert_eq!(
                counts(&c, file),
                vec![(4, 3), (7, 3), (8, 1), (10, 2), (11, 3)],
                "{gcc:?}"
            );
            let l7 = &c.files[file].lines[&7];
            let br: Vec<(Option<i64>, bool)> = l7
                .branches
                .iter()
                .map(|b| (b.taken, b.fallthrough))
                .collect();
            assert_eq!(br, vec![(Some(1), true), (Some(2), false)]);
            let f = &c.files[file].functions[0];
            assert_eq!((f.count, f.blocks, f.blocks_executed), (3, 5, 5));
            assert_eq!((f.start_line, f.end_line), (4, 12));
            // Never run: every line present with 0.
            let z = cov(&notes, &[]).unwrap();
            assert!(z.files[file]
                .lines
                .values()
                .all(|l| l.count == 0 && l.unexecuted_block));
            assert_eq!(z.files[file].lines.len(), 5);
        }
    }

    /// §7.6: a loop on one line counts entries plus cycles, not block sums.
    #[test]
    fn worked_example_loop_on_one_line() {
        let mut b = Builder::notes_header(Gcc::V12, Endian::Little, 1);
        b.function(1, "sum", "loop.c", (1, 6))
            .blocks(7)
            .arcs(0, &[(2, 0)])
            .arcs(2, &[(4, 1)])
            .arcs(3, &[(4, 0)])
            .arcs(4, &[(3, 1), (5, 5)])
            .arcs(5, &[(6, 1)])
            .arcs(6, &[(1, 1)])
            .lines(2, "loop.c", &[1, 3, 4])
            .lines(3, "loop.c", &[4])
            .lines(4, "loop.c", &[4])
            .lines(5, "loop.c", &[5])
            .lines(6, "loop.c", &[5]);
        let notes = b.bytes();
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 1, 0);
        d.data_function(1, Ok(&[2, 5])).word(0);
        let c = cov(&notes, &[&d.bytes()]).unwrap();
        assert_eq!(
            counts(&c, "/src/loop.c"),
            vec![(1, 2), (3, 2), (4, 7), (5, 2)]
        );
        let br: Vec<(Option<i64>, bool)> = c.files["/src/loop.c"].lines[&4]
            .branches
            .iter()
            .map(|b| (b.taken, b.fallthrough))
            .collect();
        assert_eq!(br, vec![(Some(5), false), (Some(2), true)]);
    }

    /// §7.7: a call with a catch handler: the call arc is no branch, the
    /// handler arc is a throw branch.
    #[test]
    fn worked_example_call_with_catch() {
        let mut b = Builder::notes_header(Gcc::V12, Endian::Little, 1);
        b.function(1, "_Z1fv", "t.cc", (1, 9))
            .blocks(6)
            .arcs(0, &[(2, 4)])
            .arcs(2, &[(4, 0), (3, 4), (1, 3)])
            .arcs(3, &[(5, 5)])
            .arcs(4, &[(5, 1)])
            .arcs(5, &[(1, 1)])
            .lines(2, "t.cc", &[3])
            .lines(3, "t.cc", &[4])
            .lines(4, "t.cc", &[6])
            .lines(5, "t.cc", &[8]);
        let notes = b.bytes();
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 1, 0);
        d.data_function(1, Ok(&[7, 1, 6])).word(0);
        let c = cov(&notes, &[&d.bytes()]).unwrap();
        let f = &c.files["/src/t.cc"];
        let br: Vec<(Option<i64>, bool, bool)> = f.lines[&3]
            .branches
            .iter()
            .map(|b| (b.taken, b.throw, b.fallthrough))
            .collect();
        assert_eq!(br, vec![(Some(6), false, true), (Some(1), true, false)]);
        assert_eq!(f.functions[0].demangled, "f()");
        assert_eq!(f.lines[&6].count, 1);
    }

    /// §9.2: a loop on one line is not additive across captures.
    #[test]
    fn non_additive_loop_across_captures() {
        let mut b = Builder::notes_header(Gcc::V12, Endian::Little, 1);
        b.function(1, "one", "one.c", (1, 1))
            .blocks(7)
            .arcs(0, &[(2, 1)])
            .arcs(2, &[(3, 4), (4, 0)])
            .arcs(3, &[(4, 4), (5, 1)])
            .arcs(4, &[(3, 0), (6, 1)])
            .arcs(5, &[(1, 1)])
            .arcs(6, &[(1, 1)]);
        for blk in 2..7 {
            b.lines(blk, "one.c", &[1]);
        }
        let notes = b.bytes();
        let data = |c: &[i64]| {
            let mut d = Builder::data_header(Gcc::V12, Endian::Little, 1, 0);
            d.data_function(1, Ok(c)).word(0);
            d.bytes()
        };
        let (a, bb) = (data(&[1, 0, 3, 2]), data(&[0, 1, 1, 2]));
        let c = cov(&notes, &[&a, &bb]).unwrap();
        let line = &c.files["/src/one.c"].lines[&1];
        assert_eq!(line.by_capture, vec![3, 2]);
        assert_eq!(line.count, 6);
        assert_eq!(c.files["/src/one.c"].functions[0].by_capture, vec![1, 1]);
    }

    #[test]
    fn negative_length_counters_are_zero() {
        for (gcc, endian) in ALL {
            let notes = classify_notes(gcc, endian);
            let mut d = Builder::data_header(gcc, endian, 0xabcd, 0);
            d.data_function(7, Err(2)).word(0);
            let c = cov(&notes, &[&d.bytes()]).unwrap();
            let file = c.files.values().next().unwrap();
            assert!(file.lines.values().all(|l| l.count == 0));
        }
    }

    #[test]
    fn unknown_records_are_skipped() {
        let mut b = Builder::notes_header(Gcc::V12, Endian::Little, 0xabcd);
        b.begin(0x0147_0000).word(1).word(2).end();
        let header = Builder::notes_header(Gcc::V12, Endian::Little, 0xabcd)
            .bytes()
            .len();
        b.buf
            .extend_from_slice(&classify_notes(Gcc::V12, Endian::Little)[header..]);
        b.begin(0x0149_0000).word(5).end();
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.begin(0xa300_0000).word(1).end();
        d.data_function(7, Ok(&[3, 1]));
        d.begin(0x01a3_0000)
            .counter(9)
            .counter(9)
            .counter(9)
            .end()
            .word(0);
        let c = cov(&b.bytes(), &[&d.bytes()]).unwrap();
        assert_eq!(c.files["/src/ifelse.c"].lines[&11].count, 3);
    }

    /// Every prefix of a valid file is rejected or read, never a panic.
    #[test]
    fn truncation_at_every_offset() {
        for (gcc, endian) in ALL {
            let notes = classify_notes(gcc, endian);
            let data = classify_data(gcc, endian, &[3, 1]);
            for n in 0..notes.len() {
                let r = cov(&notes[..n], &[&data]);
                if n < notes.len() {
                    // A cut at a record boundary leaves a valid, shorter
                    // notes file, which the data then does not match.
                    if let Err(e) = &r {
                        assert!(
                            e.path == Path::new("/obj/x.gcno") || e.path == Path::new("x.gcda")
                        );
                    }
                }
            }
            for n in 0..data.len() {
                let _ = cov(&notes, &[&data[..n]]);
            }
            // Corrupting each byte in turn must not panic either.
            for i in 0..notes.len() {
                let mut bad = notes.clone();
                bad[i] ^= 0xff;
                let _ = cov(&bad, &[&data]);
            }
            for i in 0..data.len() {
                let mut bad = data.clone();
                bad[i] ^= 0x80;
                let _ = cov(&notes, &[&bad]);
            }
        }
        let notes = classify_notes(Gcc::V12, Endian::Little);
        assert!(matches!(
            kind(cov(&notes[..6], &[])),
            ErrorKind::Truncated {
                offset: 4,
                needed: 4,
                available: 2
            }
        ));
    }

    /// Random multi-byte corruption (deterministic LCG) of notes and data
    /// in every layout: errors, never panics.
    #[test]
    fn random_corruption_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize
        };
        for (gcc, endian) in ALL {
            let notes = classify_notes(gcc, endian);
            let data = classify_data(gcc, endian, &[3, 1]);
            for _ in 0..500 {
                let (mut n, mut d) = (notes.clone(), data.clone());
                for _ in 0..1 + next() % 4 {
                    let i = next() % n.len();
                    n[i] = next() as u8;
                    let j = next() % d.len();
                    d[j] = next() as u8;
                }
                let cut = next() % (d.len() + 1);
                let _ = cov(&n, &[&d[..cut], &data]);
                let _ = cov(&notes, &[&d, &d]);
            }
        }
    }

    fn v12() -> Builder {
        Builder::notes_header(Gcc::V12, Endian::Little, 0xabcd)
    }

    fn simple(b: &mut Builder) -> &mut Builder {
        b.function(7, "f", "a.c", (1, 3))
            .blocks(3)
            .arcs(0, &[(2, 0)])
            .arcs(2, &[(1, 1)])
            .lines(2, "a.c", &[2])
    }

    #[test]
    fn error_bad_magic_and_version() {
        let d = classify_data(Gcc::V12, Endian::Little, &[3, 1]);
        assert!(matches!(
            kind(cov(&d, &[])),
            ErrorKind::BadMagic {
                expected: crate::error::FileKind::Notes,
                ..
            }
        ));
        let mut n = classify_notes(Gcc::V12, Endian::Little);
        n[4..8].copy_from_slice(&u32::from_be_bytes(*b"408*").to_le_bytes());
        let k = kind(cov(&n, &[]));
        assert!(matches!(k, ErrorKind::UnsupportedVersion { .. }));
        assert!(k.to_string().contains("gcc 4.8"), "{k}");
    }

    #[test]
    fn error_record_overrun_too_short_and_size_mismatch() {
        let mut b = v12();
        b.word(crate::bytes::TAG_BLOCKS).word(100).word(3);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::RecordOverrun { length: 100, .. }
        ));
        let mut b = v12();
        b.begin(crate::bytes::TAG_FUNCTION).word(1).word(2).end();
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::RecordTooShort { .. }
        ));
        let mut b = v12();
        simple(&mut b)
            .begin(crate::bytes::TAG_BLOCKS)
            .word(3)
            .word(9)
            .end();
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::DuplicateBlocks { .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3))
            .begin(crate::bytes::TAG_BLOCKS)
            .word(3)
            .word(9)
            .end();
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::RecordSizeMismatch { unread: 4, .. }
        ));
    }

    #[test]
    fn error_structure_of_notes() {
        let mut b = v12();
        b.blocks(3);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::OutsideFunction { .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3)).blocks(1_000_000);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::TooManyBlocks { .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3)).blocks(1);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::TooFewBlocks { blocks: 1, .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3))
            .blocks(3)
            .arcs(0, &[(5, 0)]);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::BadBlock { block: 5, .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3))
            .blocks(3)
            .arcs(2, &[(0, 0)]);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::BadArc { src: 2, dst: 0, .. }
        ));
        let mut b = v12();
        simple(&mut b).arcs(2, &[(1, 1)]);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::DuplicateArcs { block: 2, .. }
        ));
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3)).blocks(3);
        b.begin(crate::bytes::TAG_LINES).word(2).word(5).end();
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::LineWithoutFile { line: 5, .. }
        ));
        let mut b = v12();
        simple(&mut b);
        simple(&mut b);
        assert!(matches!(
            kind(cov(&b.bytes(), &[])),
            ErrorKind::DuplicateIdent { ident: 7, .. }
        ));
    }

    #[test]
    fn error_unsolvable() {
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3))
            .blocks(4)
            .arcs(0, &[(2, 1), (3, 1)])
            .arcs(2, &[(1, 1)])
            .arcs(3, &[(1, 1)]);
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.data_function(7, Err(0)).word(0);
        // No counters at all: not solved (like gcov), so not an error...
        assert!(cov(&b.bytes(), &[&d.bytes()]).is_ok());
        // ...but a graph with counters that cannot reach every block is.
        let mut b = v12();
        b.function(7, "f", "a.c", (1, 3))
            .blocks(5)
            .arcs(0, &[(2, 0), (3, 1)])
            .arcs(2, &[(1, 1)])
            .arcs(3, &[(4, 1)])
            .arcs(4, &[(3, 1), (1, 1)]);
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.data_function(7, Ok(&[1])).word(0);
        assert!(matches!(
            kind(cov(&b.bytes(), &[&d.bytes()])),
            ErrorKind::Unsolvable { .. }
        ));
    }

    #[test]
    fn error_data_against_notes() {
        let notes = classify_notes(Gcc::V12, Endian::Little);
        let ok = classify_data(Gcc::V12, Endian::Little, &[3, 1]);
        let d11 = classify_data(Gcc::V11, Endian::Little, &[3, 1]);
        let e = cov(&notes, &[&d11]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::VersionMismatch { .. }));
        assert!(e.kind.to_string().contains("gcc 11.3") && e.kind.to_string().contains("gcc 12.2"));
        assert_eq!(e.against.as_deref(), Some(Path::new("/obj/x.gcno")));
        let mut other = ok.clone();
        other[8] ^= 1;
        assert!(matches!(
            kind(cov(&notes, &[&other])),
            ErrorKind::StampMismatch { .. }
        ));
        let mut sum = ok.clone();
        sum[12] ^= 1;
        assert!(matches!(
            kind(cov(&notes, &[&ok, &sum])),
            ErrorKind::ChecksumMismatch { .. }
        ));
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.data_function(8, Ok(&[1, 1])).word(0);
        assert!(matches!(
            kind(cov(&notes, &[&d.bytes()])),
            ErrorKind::UnknownFunction { ident: 8, .. }
        ));
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.begin(crate::bytes::TAG_FUNCTION)
            .word(7)
            .word(1)
            .word(2)
            .end()
            .word(0);
        let e = cov(&notes, &[&d.bytes()]).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::FunctionMismatch { ident: 7, .. }
        ));
        assert_eq!(e.function.as_deref(), Some("classify"));
        let d = classify_data(Gcc::V12, Endian::Little, &[3, 1, 1]);
        assert!(matches!(
            kind(cov(&notes, &[&d])),
            ErrorKind::CounterCount {
                expected: 2,
                found: 3,
                ..
            }
        ));
        let big = classify_data(Gcc::V12, Endian::Little, &[i64::MAX, 1]);
        assert!(matches!(
            kind(cov(&notes, &[&big, &ok])),
            ErrorKind::CounterOverflow { index: 0, .. }
        ));
        let caps = [Capture {
            index: 3,
            path: Path::new("c.gcda"),
            bytes: &ok,
        }];
        let e = object_coverage(Path::new("x.gcno"), &notes, &caps, 2).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::CaptureIndex {
                index: 3,
                n_captures: 2
            }
        ));
    }

    #[test]
    fn error_data_records() {
        let notes = classify_notes(Gcc::V12, Endian::Little);
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.begin(crate::bytes::TAG_FUNCTION)
            .word(7)
            .word(1)
            .end()
            .word(0);
        assert!(matches!(
            kind(cov(&notes, &[&d.bytes()])),
            ErrorKind::BadFunctionLength { length: 8, .. }
        ));
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.data_function(7, Ok(&[1, 1]))
            .begin(crate::bytes::TAG_COUNTER_ARCS)
            .counter(1)
            .counter(1)
            .end();
        assert!(matches!(
            kind(cov(&notes, &[&d.bytes()])),
            ErrorKind::DuplicateCounters { .. }
        ));
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.begin(crate::bytes::TAG_COUNTER_ARCS).counter(1).end();
        assert!(matches!(
            kind(cov(&notes, &[&d.bytes()])),
            ErrorKind::OutsideFunction { .. }
        ));
        let mut d = Builder::data_header(Gcc::V12, Endian::Little, 0xabcd, 0);
        d.data_function(7, Ok(&[1, 1])).word(0);
        let mut bytes = d.bytes();
        bytes.truncate(bytes.len() - 6);
        let e = cov(&notes, &[&bytes]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::RecordOverrun { .. }));
        assert_eq!(e.path, Path::new("x.gcda"));
    }

    #[test]
    fn error_display_names_files() {
        let notes = classify_notes(Gcc::V12, Endian::Little);
        let mut other = classify_data(Gcc::V12, Endian::Little, &[3, 1]);
        other[8] ^= 1;
        let e = cov(&notes, &[&other]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("x.gcda") && text.contains("/obj/x.gcno"),
            "{text}"
        );
        let source = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(source.contains("stamp mismatch"), "{source}");
        assert!(e.kind.hint().is_some_and(|h| h.contains("recompiled")));
    }

    #[test]
    fn source_paths() {
        assert_eq!(source_path(Some(b"/tmp/gx"), None, b"a.c"), "/tmp/gx/a.c");
        assert_eq!(
            source_path(Some(b"/tmp/gx/g11"), None, b"../a.c"),
            "/tmp/gx/a.c"
        );
        assert_eq!(source_path(Some(b"/w"), None, b"/x/./y//../z.h"), "/x/z.h");
        assert_eq!(
            source_path(None, Some(Path::new("/o")), b"s/a.c"),
            "/o/s/a.c"
        );
        assert_eq!(source_path(None, None, b"../a.c"), "../a.c");
        assert_eq!(source_path(Some(b"/"), None, b"../../a.c"), "/a.c");
    }
}
