//! Differential coverage: the current coverage against a baseline and the
//! change between them, in lcov 2.x's twelve categories (`genhtml
//! --baseline-file … --diff-file …`).
//!
//! Every line, branch and function of the current and the baseline
//! coverage falls into one [`Category`], following line numbers across the
//! unified diff ([`udiff`]): new code is UNC/GNC, unchanged code
//! UBC/LBC/GBC/CBC (in both), UIC/GIC (code only now), EUB/ECB (code only
//! before), and removed code DUB/DCB. The rules are genhtml's (lcov 2.x,
//! `FileCoverageInfo::_categorize*`), including that only files of the
//! current coverage are categorised and that a function whose body changed
//! counts as new code. [`compare`] is pure; [`git::diff`] runs `git diff`
//! for the CLI.

pub mod git;
pub mod html;
pub mod output;
pub mod udiff;

use std::collections::BTreeMap;
use std::path::Path;

use covnet_merger::model::{Branch, Coverage, FileCoverage, FunctionCoverage};
use rayon::prelude::*;
use serde::Serialize;

use udiff::{FileChanges, LineChange, UnifiedDiff};

/// lcov 2.x's differential categories, in genhtml's priority order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// Uncovered New Code (+ => 0).
    Unc,
    /// Lost Baseline Coverage (1 => 0).
    Lbc,
    /// Uncovered Included Code (# => 0).
    Uic,
    /// Uncovered Baseline Code (0 => 0).
    Ubc,
    /// Gained Baseline Coverage (0 => 1).
    Gbc,
    /// Gained Included Coverage (# => 1).
    Gic,
    /// Gained New Coverage (+ => 1).
    Gnc,
    /// Covered Baseline Code (1 => 1).
    Cbc,
    /// Excluded Uncovered Baseline (0 => #).
    Eub,
    /// Excluded Covered Baseline (1 => #).
    Ecb,
    /// Deleted Uncovered Baseline (0 => -).
    Dub,
    /// Deleted Covered Baseline (1 => -).
    Dcb,
}

/// All categories in genhtml's order.
pub const ALL: [Category; 12] = [
    Category::Unc,
    Category::Lbc,
    Category::Uic,
    Category::Ubc,
    Category::Gbc,
    Category::Gic,
    Category::Gnc,
    Category::Cbc,
    Category::Eub,
    Category::Ecb,
    Category::Dub,
    Category::Dcb,
];

impl Category {
    /// The three-letter code (`UNC`).
    pub fn code(self) -> &'static str {
        [
            "UNC", "LBC", "UIC", "UBC", "GBC", "GIC", "GNC", "CBC", "EUB", "ECB", "DUB", "DCB",
        ][self as usize]
    }

    /// genhtml's description (`Uncovered New Code (+ => 0)`).
    pub fn describe(self) -> &'static str {
        [
            "Uncovered New Code (+ => 0)",
            "Lost Baseline Coverage (1 => 0)",
            "Uncovered Included Code (# => 0)",
            "Uncovered Baseline Code (0 => 0)",
            "Gained Baseline Coverage (0 => 1)",
            "Gained Included Coverage (# => 1)",
            "Gained New Coverage (+ => 1)",
            "Covered Baseline Code (1 => 1)",
            "Excluded Uncovered Baseline (0 => #)",
            "Excluded Covered Baseline (1 => #)",
            "Deleted Uncovered Baseline (0 => -)",
            "Deleted Covered Baseline (1 => -)",
        ][self as usize]
    }

    /// The category is code of the current version (not EUB/ECB/DUB/DCB).
    pub fn is_current(self) -> bool {
        self <= Category::Cbc
    }

    /// The category is covered in the current version.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            Category::Gbc | Category::Gic | Category::Gnc | Category::Cbc
        )
    }
}

fn both(base: i64, curr: i64) -> Category {
    match (base > 0, curr > 0) {
        (false, false) => Category::Ubc,
        (false, true) => Category::Gbc,
        (true, false) => Category::Lbc,
        (true, true) => Category::Cbc,
    }
}

fn pick(count: i64, miss: Category, hit: Category) -> Category {
    if count > 0 {
        hit
    } else {
        miss
    }
}

/// How many lines, functions and branches fall into each category
/// (indexed by `Category as usize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines per category.
    pub lines: [u64; 12],
    /// Functions per category.
    pub functions: [u64; 12],
    /// Branches per category.
    pub branches: [u64; 12],
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        for i in 0..12 {
            self.lines[i] += other.lines[i];
            self.functions[i] += other.functions[i];
            self.branches[i] += other.branches[i];
        }
    }

    /// Lines of new code (UNC + GNC) and those covered (GNC).
    pub fn new_lines(&self) -> (u64, u64) {
        let gnc = self.lines[Category::Gnc as usize];
        (self.lines[Category::Unc as usize] + gnc, gnc)
    }

    /// Lines whose coverage was lost (LBC).
    pub fn lost_lines(&self) -> u64 {
        self.lines[Category::Lbc as usize]
    }

    /// Nothing was categorised.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// The categories of one current file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileDelta {
    /// Category of each instrumented line of the current version.
    pub lines: BTreeMap<u32, Category>,
    /// Baseline lines that are no code now (EUB/ECB, DUB/DCB), by their
    /// line in the baseline version.
    pub gone: BTreeMap<u32, Category>,
    /// Categories of the branches on each line (current line numbers;
    /// removed lines' branches are only counted).
    pub branches: BTreeMap<u32, Vec<Category>>,
    /// Category of each function, by name.
    pub functions: Vec<(String, Category)>,
    /// The file changed in the diff.
    pub changed: bool,
    /// Totals of this file.
    pub counts: Counts,
    /// Totals of this file per capture of the current coverage.
    pub by_capture: Vec<Counts>,
}

/// The differential coverage of a whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Differential {
    /// Current file path → its categories.
    pub files: BTreeMap<String, FileDelta>,
    /// Totals.
    pub total: Counts,
    /// Totals per capture of the current coverage (indexed like
    /// [`Coverage::captures`]).
    pub by_capture: Vec<Counts>,
    /// Diff paths that match no file of the current or baseline coverage.
    pub unmatched_diff_paths: Vec<String>,
}

/// Which count to read: the combined one, one capture's, or none (a
/// capture the baseline did not have: nothing ran there).
#[derive(Clone, Copy)]
enum Pick {
    All,
    Capture(usize),
    Zero,
}

impl Pick {
    fn line(self, c: &covnet_merger::model::LineCoverage) -> i64 {
        match self {
            Pick::All => c.count,
            Pick::Capture(i) => c.by_capture.get(i).copied().unwrap_or(0),
            Pick::Zero => 0,
        }
    }
    fn branch(self, b: &Branch) -> i64 {
        match self {
            Pick::All => b.taken.unwrap_or(0),
            Pick::Capture(i) => b.by_capture.get(i).copied().flatten().unwrap_or(0),
            Pick::Zero => 0,
        }
    }
    fn function(self, f: &FunctionCoverage) -> i64 {
        match self {
            Pick::All => f.count,
            Pick::Capture(i) => f.by_capture.get(i).copied().unwrap_or(0),
            Pick::Zero => 0,
        }
    }
}

/// Lexically normalised `root/path` (no file system access).
fn resolve(root: &Path, path: &str) -> String {
    covnet_merger::paths::normalize(&root.join(path).to_string_lossy())
}

/// The file of `files` that diff path `path` names: `root/path`, else the
/// only file whose path ends in `/path`.
fn find<'a>(files: &'a BTreeMap<String, FileCoverage>, root: &Path, path: &str) -> Option<&'a str> {
    let full = resolve(root, path);
    if let Some((k, _)) = files.get_key_value(&full) {
        return Some(k);
    }
    let tail = format!("/{}", path.trim_start_matches("./"));
    let mut hits = files.keys().filter(|k| k.ends_with(&tail));
    match (hits.next(), hits.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// Categorises `current` against `baseline` across `diff`, whose relative
/// paths are taken from `root` (a path that matches nothing there matches
/// the one coverage file ending in it). Files of the current coverage that
/// the diff does not name are unchanged.
pub fn compare(
    current: &Coverage,
    baseline: &Coverage,
    diff: &UnifiedDiff,
    root: &Path,
) -> Differential {
    // current path → (changes, baseline path)
    let mut changes: BTreeMap<&str, (&FileChanges, Option<&str>)> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for (new, fc) in &diff.files {
        let Some(cur) = find(&current.files, root, new) else {
            let old = fc.old_path.as_deref().unwrap_or(new);
            if find(&baseline.files, root, old).is_none() {
                unmatched.push(new.clone());
            }
            continue;
        };
        let base = match &fc.old_path {
            Some(old) => find(&baseline.files, root, old),
            None => None,
        };
        changes.insert(cur, (fc, base));
    }
    // A machine is compared with the baseline's capture of the same name;
    // when the baseline names none of the current machines (one merged
    // tracefile, say), every machine is compared with the whole baseline,
    // and a machine the baseline lacks ran nothing there.
    let any_named = current
        .captures
        .iter()
        .any(|n| baseline.captures.contains(n));
    let base_index: Vec<Pick> = current
        .captures
        .iter()
        .map(
            |name| match baseline.captures.iter().position(|b| b == name) {
                Some(i) => Pick::Capture(i),
                None if any_named => Pick::Zero,
                None => Pick::All,
            },
        )
        .collect();
    let unchanged = FileChanges::default();
    let mut out = Differential {
        by_capture: vec![Counts::default(); current.captures.len()],
        unmatched_diff_paths: unmatched,
        ..Differential::default()
    };
    let deltas: Vec<(&String, FileDelta)> = current
        .files
        .par_iter()
        .map(|(path, cur)| {
            let (fc, base) = match changes.get(path.as_str()) {
                Some((fc, base)) => (*fc, base.and_then(|b| baseline.files.get(b))),
                None => (&unchanged, baseline.files.get(path)),
            };
            let empty = FileCoverage::default();
            let base = base.unwrap_or(&empty);
            let mut delta = categorize(cur, base, fc, Pick::All, Pick::All, true);
            delta.changed = !std::ptr::eq(fc, &unchanged);
            delta.by_capture = base_index
                .iter()
                .enumerate()
                .map(|(i, &b)| categorize(cur, base, fc, Pick::Capture(i), b, false).counts)
                .collect();
            (path, delta)
        })
        .collect();
    for (path, delta) in deltas {
        out.total.add(&delta.counts);
        for (acc, c) in out.by_capture.iter_mut().zip(&delta.by_capture) {
            acc.add(c);
        }
        out.files.insert(path.clone(), delta);
    }
    out
}

/// genhtml's `_categorizeLineCov`, `_categorizeBranchCov` and
/// `_categorizeFunctionCov` for one file; `record` keeps each line's,
/// branch's and function's category, else only the counts.
fn categorize(
    cur: &FileCoverage,
    base: &FileCoverage,
    fc: &FileChanges,
    pc: Pick,
    pb: Pick,
    record: bool,
) -> FileDelta {
    let mut d = FileDelta::default();
    let mut counts = Counts::default();
    // Lines and branches of the current version.
    for (&n, lc) in &cur.lines {
        let old = match fc.new_line(n) {
            LineChange::Equal(o) => Some(o),
            _ => None,
        };
        let c = pc.line(lc);
        let bl = old.and_then(|o| base.lines.get(&o));
        let cat = match (old, bl) {
            (None, _) => pick(c, Category::Unc, Category::Gnc),
            (Some(_), Some(b)) => both(pb.line(b), c),
            (Some(_), None) => pick(c, Category::Uic, Category::Gic),
        };
        if record {
            d.lines.insert(n, cat);
        }
        counts.lines[cat as usize] += 1;
        let mut cats = Vec::new();
        match (old, bl) {
            (None, _) => {
                for b in &lc.branches {
                    cats.push(pick(pc.branch(b), Category::Unc, Category::Gnc));
                }
            }
            (Some(_), bl) => {
                let bb: &[Branch] = bl.map_or(&[], |b| &b.branches);
                for b in &lc.branches {
                    let cat = match same_branch(bb, &lc.branches, b) {
                        Some(base_b) => both(pb.branch(base_b), pc.branch(b)),
                        None => pick(pc.branch(b), Category::Uic, Category::Gic),
                    };
                    cats.push(cat);
                }
                for b in bb {
                    if same_branch(&lc.branches, bb, b).is_none() {
                        cats.push(pick(pb.branch(b), Category::Dub, Category::Dcb));
                    }
                }
            }
        }
        for &c in &cats {
            counts.branches[c as usize] += 1;
        }
        if record && !cats.is_empty() {
            d.branches.insert(n, cats);
        }
    }
    // Baseline lines that are no code now.
    for (&o, bl) in &base.lines {
        let (cat, dead) = match fc.old_line(o) {
            LineChange::Equal(n) if cur.lines.contains_key(&n) => continue,
            LineChange::Equal(_) => (pick(pb.line(bl), Category::Eub, Category::Ecb), false),
            _ => (pick(pb.line(bl), Category::Dub, Category::Dcb), true),
        };
        if record {
            d.gone.insert(o, cat);
        }
        counts.lines[cat as usize] += 1;
        // Branches of a line that is gone (genhtml: DUB/DCB on both a
        // removed line and an unchanged line without data now).
        let _ = dead;
        for b in &bl.branches {
            counts.branches[pick(pb.branch(b), Category::Dub, Category::Dcb) as usize] += 1;
        }
    }
    // Functions, matched by start line (and name).
    for f in &cur.functions {
        let c = pc.function(f);
        let cat = match fc.new_line(f.start_line) {
            LineChange::Equal(o) => match base
                .functions
                .iter()
                .find(|b| b.start_line == o && b.name == f.name)
            {
                Some(b) => {
                    let cat = both(pb.function(b), c);
                    if body_changed(cur, base, fc, f, b) {
                        match cat {
                            Category::Ubc => Category::Unc,
                            Category::Gbc | Category::Cbc => Category::Gnc,
                            other => other,
                        }
                    } else {
                        cat
                    }
                }
                None => pick(c, Category::Uic, Category::Gic),
            },
            _ => pick(c, Category::Unc, Category::Gnc),
        };
        counts.functions[cat as usize] += 1;
        if record {
            d.functions.push((f.name.clone(), cat));
        }
    }
    for b in &base.functions {
        let cat = match fc.old_line(b.start_line) {
            LineChange::Equal(n) => {
                if cur
                    .functions
                    .iter()
                    .any(|f| f.start_line == n && f.name == b.name)
                {
                    continue;
                }
                pick(pb.function(b), Category::Eub, Category::Ecb)
            }
            _ => pick(pb.function(b), Category::Dub, Category::Dcb),
        };
        counts.functions[cat as usize] += 1;
        if record {
            d.functions.push((b.name.clone(), cat));
        }
    }
    d.counts = counts;
    d
}

/// The branch of `other` in the same block at the same position within
/// that block as `b` is in `own` (genhtml matches branch blocks by their
/// number and the branches of a block by order).
fn same_branch<'a>(other: &'a [Branch], own: &[Branch], b: &Branch) -> Option<&'a Branch> {
    let pos = own
        .iter()
        .filter(|x| x.block == b.block)
        .position(|x| std::ptr::eq(x, b))?;
    other.iter().filter(|x| x.block == b.block).nth(pos)
}

/// genhtml's test for a changed function body: a code line was added in
/// it, a line became or stopped being code, or a code line was removed.
fn body_changed(
    cur: &FileCoverage,
    base: &FileCoverage,
    fc: &FileChanges,
    f: &FunctionCoverage,
    b: &FunctionCoverage,
) -> bool {
    if f.end_line == 0 {
        return false;
    }
    for n in f.start_line..=f.end_line {
        match fc.new_line(n) {
            LineChange::Inserted => {
                if cur.lines.contains_key(&n) {
                    return true;
                }
            }
            LineChange::Equal(o) => {
                if base.lines.contains_key(&o) != cur.lines.contains_key(&n) {
                    return true;
                }
            }
            LineChange::Deleted => {}
        }
    }
    if b.end_line == 0 {
        return false;
    }
    (b.start_line..=b.end_line)
        .any(|o| fc.old_line(o) == LineChange::Deleted && base.lines.contains_key(&o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use covnet_merger::model::LineCoverage;

    fn file(lines: &[(u32, i64)]) -> FileCoverage {
        let mut f = FileCoverage::default();
        for &(n, count) in lines {
            f.lines.insert(
                n,
                LineCoverage {
                    count,
                    ..Default::default()
                },
            );
        }
        f
    }

    fn cov(lines: &[(u32, i64)]) -> Coverage {
        let mut c = Coverage::default();
        c.files.insert("/r/a.c".into(), file(lines));
        c
    }

    #[test]
    fn every_line_category_follows_the_diff() {
        // Old 3 and 4 removed, new 4 and 5 added; old 5 is new 3, and
        // from old 6 on the numbers agree again.
        let diff =
            UnifiedDiff::parse("--- a/a.c\n+++ b/a.c\n@@ -2,4 +2,4 @@\n c\n-d\n-d\n c\n+i\n+i\n")
                .unwrap();
        let base = cov(&[(1, 1), (2, 0), (3, 0), (4, 5), (5, 1), (7, 0), (8, 3)]);
        let cur = cov(&[
            (1, 0),
            (2, 0),
            (3, 1),
            (4, 2),
            (5, 0),
            (6, 2),
            (7, 4),
            (9, 1),
        ]);
        let d = compare(&cur, &base, &diff, Path::new("/r"));
        let f = &d.files["/r/a.c"];
        assert!(f.changed);
        let lines: Vec<_> = f.lines.iter().map(|(&n, c)| (n, c.code())).collect();
        assert_eq!(
            lines,
            [
                (1, "LBC"),
                (2, "UBC"),
                (3, "CBC"),
                (4, "GNC"),
                (5, "UNC"),
                (6, "GIC"),
                (7, "GBC"),
                (9, "GIC")
            ]
        );
        // Old 3 and 4 were removed; old 8 is still there but no code now.
        let gone: Vec<_> = f.gone.iter().map(|(&n, c)| (n, c.code())).collect();
        assert_eq!(gone, [(3, "DUB"), (4, "DCB"), (8, "ECB")]);
        assert_eq!(d.total.new_lines(), (2, 1));
        assert_eq!(d.total.lost_lines(), 1);
    }
}
