//! Source paths relative to a common root, and a directory tree with
//! per-directory totals (combined and per capture).

use std::collections::BTreeMap;

use covnet_merger::model::{Coverage, FileCoverage, Summary};
use rayon::prelude::*;

/// The files of a [`Coverage`] arranged under their common root.
#[derive(Debug)]
pub struct Tree<'a> {
    /// Longest directory prefix shared by all source paths, without a
    /// trailing `/` (`/` itself for paths that share only the root, empty
    /// when the paths share nothing or are relative with no common
    /// directory).
    pub root: String,
    /// Every file, in the model's (path) order.
    pub files: Vec<FileEntry<'a>>,
    /// Every directory that holds a file, parents before children, siblings
    /// by name. The first entry is the root itself (path `""`).
    pub dirs: Vec<DirEntry>,
    /// Totals over all files, per capture and over each capture's own
    /// code.
    pub totals: Totals,
}

/// Totals over every file, each capture's share of them, and each
/// capture's totals over its own code: what the index pages and the
/// summary table show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Totals over all files.
    pub total: Summary,
    /// Each capture's share of the whole, indexed like
    /// [`Coverage::captures`].
    pub per_capture: Vec<Summary>,
    /// Each capture's totals over its own code only (the files it had,
    /// see [`FileCoverage::owned_by`]), indexed like
    /// [`Coverage::captures`].
    pub own: Vec<Summary>,
}

impl Totals {
    /// The totals of `cov`, in one pass over the model (files side by
    /// side).
    pub fn of(cov: &Coverage) -> Totals {
        let ncap = cov.captures.len();
        let empty = || Totals {
            total: Summary::default(),
            per_capture: vec![Summary::default(); ncap],
            own: vec![Summary::default(); ncap],
        };
        cov.files
            .par_iter()
            .fold(empty, |mut t, (_, f)| {
                let (sum, seen, _) = summaries(f, ncap);
                t.total.add(&sum);
                for (i, ((s, o), seen)) in t
                    .per_capture
                    .iter_mut()
                    .zip(t.own.iter_mut())
                    .zip(&seen)
                    .enumerate()
                {
                    s.add(seen);
                    if f.owned_by_capture(i) {
                        o.add(seen);
                    }
                }
                t
            })
            .reduce(empty, |mut a, b| {
                a.total.add(&b.total);
                for (x, y) in a.per_capture.iter_mut().zip(&b.per_capture) {
                    x.add(y);
                }
                for (x, y) in a.own.iter_mut().zip(&b.own) {
                    x.add(y);
                }
                a
            })
    }
}

/// One source file in a [`Tree`].
#[derive(Debug)]
pub struct FileEntry<'a> {
    /// The path as the model names it.
    pub path: &'a str,
    /// The path relative to [`Tree::root`].
    pub rel: String,
    /// Index of its directory in [`Tree::dirs`].
    pub dir: usize,
    /// Its counts.
    pub coverage: &'a FileCoverage,
    /// Its totals.
    pub summary: Summary,
    /// Its totals per capture.
    pub by_capture: Vec<Summary>,
    /// Its totals per capture where the capture had the file (its own
    /// code), zero where it did not.
    pub own: Vec<Summary>,
    /// Per capture, the lines that it alone hit (all zero with fewer than
    /// two captures).
    pub unique: Vec<u64>,
}

impl FileEntry<'_> {
    /// The file name (last component of [`FileEntry::rel`]).
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }
}

/// One directory in a [`Tree`], with totals over everything below it.
#[derive(Debug, Default)]
pub struct DirEntry {
    /// Path relative to [`Tree::root`] (`""` for the root).
    pub path: String,
    /// Number of components in `path`.
    pub depth: usize,
    /// Totals of all files below.
    pub summary: Summary,
    /// Totals of all files below, per capture.
    pub by_capture: Vec<Summary>,
    /// Number of files below (recursively).
    pub files: usize,
}

impl<'a> Tree<'a> {
    /// Arranges `cov`'s files under their common root and sums per-file,
    /// per-directory and per-capture totals.
    pub fn new(cov: &'a Coverage) -> Tree<'a> {
        let root = common_root(cov.files.keys().map(String::as_str));
        let ncap = cov.captures.len();
        let mut files: Vec<FileEntry<'a>> = cov
            .files
            .par_iter()
            .map(|(path, fc)| {
                let (summary, by_capture, unique) = summaries(fc, ncap);
                let own = by_capture
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        if fc.owned_by_capture(i) {
                            *s
                        } else {
                            Summary::default()
                        }
                    })
                    .collect();
                FileEntry {
                    path,
                    rel: relative(path, &root).to_owned(),
                    dir: 0,
                    coverage: fc,
                    summary,
                    by_capture,
                    own,
                    unique,
                }
            })
            .collect();

        // Directory keys as component vectors sort parents first, siblings
        // by name.
        let mut dir_map: BTreeMap<Vec<&str>, DirEntry> = BTreeMap::new();
        dir_map.insert(Vec::new(), DirEntry::new(String::new(), ncap));
        for f in &files {
            let comps: Vec<&str> = f.rel.split('/').collect();
            let parents = comps.len().saturating_sub(1);
            for depth in 1..=parents {
                let key: Vec<&str> = comps.iter().take(depth).copied().collect();
                dir_map
                    .entry(key)
                    .or_insert_with_key(|k| DirEntry::new(k.join("/"), ncap));
            }
        }
        let index: BTreeMap<Vec<&str>, usize> = dir_map
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut dirs: Vec<DirEntry> = dir_map.into_values().collect();
        let mut totals = Totals {
            total: Summary::default(),
            per_capture: vec![Summary::default(); ncap],
            own: vec![Summary::default(); ncap],
        };
        let mut file_dirs = Vec::with_capacity(files.len());
        for f in &files {
            totals.total.add(&f.summary);
            for (t, s) in totals.per_capture.iter_mut().zip(&f.by_capture) {
                t.add(s);
            }
            for (t, s) in totals.own.iter_mut().zip(&f.own) {
                t.add(s);
            }
            let comps: Vec<&str> = f.rel.split('/').collect();
            let parents = comps.len().saturating_sub(1);
            let mut dir_of = 0;
            for depth in 0..=parents {
                let key: Vec<&str> = comps.iter().take(depth).copied().collect();
                let Some(&i) = index.get(&key) else { continue };
                let Some(d) = dirs.get_mut(i) else { continue };
                d.summary.add(&f.summary);
                d.files += 1;
                for (t, s) in d.by_capture.iter_mut().zip(&f.by_capture) {
                    t.add(s);
                }
                if depth == parents {
                    dir_of = i;
                }
            }
            file_dirs.push(dir_of);
        }
        for (f, d) in files.iter_mut().zip(file_dirs) {
            f.dir = d;
        }
        Tree {
            root,
            files,
            dirs,
            totals,
        }
    }
}

impl DirEntry {
    fn new(path: String, ncap: usize) -> DirEntry {
        let depth = if path.is_empty() {
            0
        } else {
            path.split('/').count()
        };
        DirEntry {
            path,
            depth,
            by_capture: vec![Summary::default(); ncap],
            ..DirEntry::default()
        }
    }
}

/// In one pass over `file`: its totals ([`FileCoverage::summary`]), its
/// totals per capture ([`capture_summary`] of each of `ncap`) and the
/// lines each capture alone hit ([`FileEntry::unique`]).
pub(crate) fn summaries(file: &FileCoverage, ncap: usize) -> (Summary, Vec<Summary>, Vec<u64>) {
    let mut s = Summary::default();
    let mut by = vec![Summary::default(); ncap];
    let mut unique = vec![0u64; ncap];
    let nlines = file.lines.len() as u64;
    let nfuns = file.functions.len() as u64;
    let mut branches = 0u64;
    for line in file.lines.values() {
        s.lines_hit += u64::from(line.count > 0);
        let mut hit_by = None;
        let mut hits = 0usize;
        for (i, (c, &n)) in by.iter_mut().zip(&line.by_capture).enumerate() {
            if n > 0 {
                c.lines_hit += 1;
                hits += 1;
                hit_by = Some(i);
            }
        }
        if ncap > 1 && hits == 1 {
            if let Some(u) = hit_by.and_then(|i| unique.get_mut(i)) {
                *u += 1;
            }
        }
        for b in &line.branches {
            branches += 1;
            s.branches_hit += u64::from(b.taken.is_some_and(|t| t > 0));
            for (c, t) in by.iter_mut().zip(&b.by_capture) {
                c.branches_hit += u64::from(t.is_some_and(|t| t > 0));
            }
        }
    }
    for f in &file.functions {
        s.functions_hit += u64::from(f.count > 0);
        for (c, &n) in by.iter_mut().zip(&f.by_capture) {
            c.functions_hit += u64::from(n > 0);
        }
    }
    for t in std::iter::once(&mut s).chain(by.iter_mut()) {
        t.lines_found = nlines;
        t.functions_found = nfuns;
        t.branches_found = branches;
    }
    (s, by, unique)
}

/// Totals of `file` as capture `capture` saw it: every instrumented line,
/// branch and function is *found*; it is *hit* when that capture's own
/// count is positive. Missing per-capture data counts as not hit.
pub fn capture_summary(file: &FileCoverage, capture: usize) -> Summary {
    let mut s = Summary::default();
    for line in file.lines.values() {
        s.lines_found += 1;
        s.lines_hit += u64::from(line.by_capture.get(capture).is_some_and(|&c| c > 0));
        for b in &line.branches {
            s.branches_found += 1;
            s.branches_hit += u64::from(
                b.by_capture
                    .get(capture)
                    .is_some_and(|t| t.is_some_and(|t| t > 0)),
            );
        }
    }
    for f in &file.functions {
        s.functions_found += 1;
        s.functions_hit += u64::from(f.by_capture.get(capture).is_some_and(|&c| c > 0));
    }
    s
}

/// The longest directory prefix shared by all `paths` (see [`Tree::root`]).
pub fn common_root<'p>(paths: impl IntoIterator<Item = &'p str>) -> String {
    let mut common: Option<Vec<&str>> = None;
    for p in paths {
        let mut dir: Vec<&str> = p.split('/').collect();
        dir.pop(); // the file name
        common = Some(match common {
            None => dir,
            Some(c) => c
                .into_iter()
                .zip(dir)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    let common = common.unwrap_or_default();
    match common.as_slice() {
        [] => String::new(),
        [""] => "/".to_owned(),
        c => c.join("/"),
    }
}

/// `path` relative to `root` (as computed by [`common_root`]).
pub fn relative<'p>(path: &'p str, root: &str) -> &'p str {
    if root.is_empty() {
        return path;
    }
    if root == "/" {
        return path.strip_prefix('/').unwrap_or(path);
    }
    path.strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use covnet_merger::model::{Branch, FunctionCoverage, LineCoverage};

    #[test]
    fn roots() {
        assert_eq!(common_root(["/src/a/b.c", "/src/a/c/d.c"]), "/src/a");
        assert_eq!(common_root(["/src/a/b.c", "/src/c.c"]), "/src");
        assert_eq!(common_root(["/src/a/b.c"]), "/src/a");
        assert_eq!(common_root(["/a/x.c", "/b/y.c"]), "/");
        assert_eq!(common_root(["/a/x.c", "b/y.c"]), "");
        assert_eq!(common_root(["x.c", "y.c"]), "");
        assert_eq!(common_root(["lib/x.c", "lib/y.c"]), "lib");
        assert_eq!(common_root(std::iter::empty()), "");
        // A shared name prefix is not a shared directory.
        assert_eq!(common_root(["/src/ab/x.c", "/src/abc/y.c"]), "/src");
        assert_eq!(relative("/src/a/b.c", "/src"), "a/b.c");
        assert_eq!(relative("/a/x.c", "/"), "a/x.c");
        assert_eq!(relative("x.c", ""), "x.c");
    }

    fn line(count: i64, by: &[i64]) -> LineCoverage {
        LineCoverage {
            count,
            by_capture: by.to_vec(),
            ..Default::default()
        }
    }

    /// The one-pass sums equal the separate ones: the file's own summary,
    /// each capture's, and the lines only one capture hit.
    #[test]
    fn one_pass_summaries_match_the_separate_sums() {
        let mut f = FileCoverage::default();
        f.lines.insert(1, line(3, &[1, 2, 0]));
        f.lines.insert(2, line(4, &[0, 4, 0]));
        f.lines.insert(3, line(0, &[0, 0, 0]));
        f.lines.insert(4, line(5, &[0, 0])); // short vector: not hit
        let mut branchy = line(2, &[0, 0, 2]);
        branchy.branches = vec![
            Branch {
                taken: Some(2),
                by_capture: vec![None, Some(0), Some(2)],
                ..Default::default()
            },
            Branch {
                taken: None,
                by_capture: vec![None, None, None],
                ..Default::default()
            },
        ];
        f.lines.insert(5, branchy);
        f.functions = vec![FunctionCoverage {
            count: 7,
            by_capture: vec![7, 0, 0],
            ..Default::default()
        }];
        let (sum, by, unique) = summaries(&f, 3);
        assert_eq!(sum, f.summary());
        let each: Vec<Summary> = (0..3).map(|i| capture_summary(&f, i)).collect();
        assert_eq!(by, each);
        assert_eq!(unique, vec![0, 1, 1]);
        assert_eq!(summaries(&f, 1).2, vec![0], "one capture: nothing unique");
    }

    #[test]
    fn per_directory_and_capture_totals() {
        let mut cov = Coverage {
            captures: vec!["web".into(), "client".into()],
            ..Default::default()
        };
        let mut a = FileCoverage::default();
        a.lines.insert(1, line(2, &[1, 1]));
        a.lines.insert(2, line(1, &[0, 1]));
        a.lines.insert(3, line(0, &[0, 0]));
        let mut l4 = line(1, &[1, 0]);
        l4.branches = vec![
            Branch {
                taken: Some(1),
                by_capture: vec![Some(1), None],
                ..Default::default()
            },
            Branch {
                branch: 1,
                taken: Some(0),
                by_capture: vec![Some(0), None],
                ..Default::default()
            },
        ];
        a.lines.insert(4, l4);
        a.functions.push(FunctionCoverage {
            name: "f".into(),
            demangled: "f".into(),
            start_line: 1,
            count: 3,
            by_capture: vec![0, 3],
            ..Default::default()
        });
        let mut b = FileCoverage::default();
        b.lines.insert(7, line(5, &[5, 0]));
        cov.files.insert("/p/src/net/a.c".into(), a);
        cov.files.insert("/p/src/b.c".into(), b.clone());
        cov.files.insert("/p/include/b.h".into(), b);

        let tree = Tree::new(&cov);
        assert_eq!(tree.root, "/p");
        let paths: Vec<&str> = tree.dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["", "include", "src", "src/net"]);
        assert_eq!(tree.totals.total, cov.summary());
        let src = &tree.dirs[2];
        assert_eq!(src.files, 2);
        assert_eq!((src.summary.lines_hit, src.summary.lines_found), (4, 5));
        assert_eq!(src.by_capture[0].lines_hit, 3);
        assert_eq!(src.by_capture[1].lines_hit, 2);
        assert_eq!(src.by_capture[1].functions_hit, 1);
        assert_eq!(src.by_capture[0].functions_hit, 0);
        assert_eq!(src.by_capture[0].branches_hit, 1);
        assert_eq!(src.by_capture[1].branches_hit, 0);
        let a = tree.files.iter().find(|f| f.rel == "src/net/a.c").unwrap();
        assert_eq!(tree.dirs[a.dir].path, "src/net");
        assert_eq!(a.name(), "a.c");
        assert_eq!(tree.dirs[0].files, 3);
        assert_eq!(tree.totals.per_capture[0].lines_hit, 4);
    }
}
