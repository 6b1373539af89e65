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
    normalize(&joined)
}

fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&p) if p != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    if absolute {
        format!("/{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
