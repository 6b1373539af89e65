//! Captures: finding `.gcda` files, pairing them with their `.gcno`, and
//! solving every object across all captures in parallel.
//!
//! A *capture* is a directory tree of `.gcda` files as pulled from one
//! machine or run. With `GCOV_PREFIX` the files sit under their full build
//! path (`capture/home/u/build/obj/x.gcda`); with `GCOV_PREFIX_STRIP` or a
//! plain copy, under a shorter relative path (`capture/obj/x.gcda`); with
//! `-fprofile-dir`, under GCC's `#`-mangled name (`capture/#home#u#build#obj#x.gcda`).
//! The `.gcno` files stay in the build tree.
//!
//! [`plan`] pairs each `.gcda` with a `.gcno` as [`NotesSearch`] says: the
//! `.gcda`'s build path (its path below the capture root, made absolute, or
//! the unmangled name) is put through the `--path-map`; then, in order,
//! 1. that path itself on this host (`/abs/build/x.gcno`: a program runs in
//!    the guest at its host path, and gcc left the notes there), when
//!    [`NotesSearch::host_paths`] is on;
//! 2. each build tree in turn: the matching `.gcno` if the path lands in
//!    the tree, otherwise the longest trailing part of the path that names
//!    a `.gcno` relative to the tree.
//!
//! Every `.gcno` of the build trees without a `.gcda` is kept as a never-run
//! object (all counts zero); notes found at host paths count only where a
//! `.gcda` names them (they belong to programs that ran).
//!
//! [`run`] then solves each object once over all its captures in a rayon
//! task (files are read inside the task), rewrites source paths, and folds
//! and reduces the per-object coverages with [`crate::merge::merge`]: a pure
//! map-reduce, no shared state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::merge::merge;
use crate::model::Coverage;
use crate::object::{object_coverage, Capture};
use crate::paths::{PathMap, SourceRewrite};
use crate::Version;

/// Where the `.gcno` of a `.gcda` is looked for, in order (see the module
/// documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotesSearch {
    /// First the `.gcda`'s own (mapped) build path on this host.
    pub host_paths: bool,
    /// Then these build trees, in order. Their `.gcno` files without data
    /// are never-run objects.
    pub trees: Vec<PathBuf>,
}

impl NotesSearch {
    /// One build tree only, as `--build DIR` alone used to mean.
    pub fn tree(build: &Path) -> NotesSearch {
        NotesSearch {
            host_paths: false,
            trees: vec![build.to_owned()],
        }
    }

    /// Host paths first, then `trees`: what `covnet run` and `covnet merge`
    /// do.
    pub fn host_then(trees: Vec<PathBuf>) -> NotesSearch {
        NotesSearch {
            host_paths: true,
            trees,
        }
    }
}

/// The `.gcda` files of one capture that found no `.gcno`, summed up for
/// one message instead of one line per file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpaired {
    /// The capture.
    pub capture: String,
    /// How many of its `.gcda` files found no `.gcno`.
    pub count: usize,
    /// The first few of them (at most [`Unpaired::EXAMPLES`]), with the
    /// notes path each one named.
    pub examples: Vec<(PathBuf, PathBuf)>,
}

impl Unpaired {
    /// How many example paths a summary keeps.
    pub const EXAMPLES: usize = 3;
}

/// One input directory of `.gcda` files and the name its counts go under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureDir {
    /// Capture name (machine, run, test).
    pub name: String,
    /// Root of the `.gcda` tree.
    pub root: PathBuf,
}

/// A problem with one input; the others can still be merged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Reading a directory or file failed.
    #[error("failed to read {}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A `.gcda` whose `.gcno` is neither at its host path nor in a build
    /// tree.
    #[error("no .gcno for {} in capture {capture:?} (looked for {}{})",
        data.display(), expected.display(), trees_text(trees))]
    NoNotes {
        /// The orphaned data file.
        data: PathBuf,
        /// Name of its capture.
        capture: String,
        /// The notes path derived from its build path (after `--path-map`).
        expected: PathBuf,
        /// The build trees searched, in order.
        trees: Vec<PathBuf>,
    },
    /// Solving an object failed (bad, truncated or mismatched files).
    #[error("failed to read coverage of object {}", notes.display())]
    Object {
        /// The object's notes file.
        notes: PathBuf,
        /// The reader's or solver's error, naming the bad file and offset.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Merging overflowed.
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}

fn trees_text(trees: &[PathBuf]) -> String {
    if trees.is_empty() {
        return String::new();
    }
    let list: Vec<String> = trees.iter().map(|t| t.display().to_string()).collect();
    format!(" and its trailing parts under {}", list.join(", "))
}

impl CaptureError {
    /// The input file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            CaptureError::Io { path, .. } => path,
            CaptureError::NoNotes { data, .. } => data,
            CaptureError::Object { notes, .. } => notes,
            CaptureError::Merge(e) => Path::new(&e.file),
        }
    }
}

/// One `.gcda` of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// Index of its capture in [`Plan::captures`].
    pub capture: usize,
    /// Where it is.
    pub path: PathBuf,
}

/// One object: its notes file and its data file in each capture that ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInputs {
    /// The `.gcno`.
    pub notes: PathBuf,
    /// Its `.gcda` files (none: never run).
    pub data: Vec<DataFile>,
}

/// The result of pairing: what to solve, and what could not be paired.
#[derive(Debug)]
pub struct Plan {
    /// Capture names, indexed by [`DataFile::capture`].
    pub captures: Vec<String>,
    /// Objects, sorted by notes path.
    pub objects: Vec<ObjectInputs>,
    /// `.gcda` files without a `.gcno`, unreadable directories.
    pub problems: Vec<CaptureError>,
    /// Empty (0-byte) `.gcda` files, left out: a program that was killed
    /// while writing leaves one, and its counts are lost. Treated as "not
    /// executed" in that capture; callers warn about each.
    pub empty: Vec<PathBuf>,
    /// How many `.gcda` files the captures hold (paired or not, empty
    /// ones included).
    pub data_found: usize,
    /// Where the notes were looked for.
    pub search: NotesSearch,
}

impl Plan {
    /// How many `.gcda` files were paired with a `.gcno`.
    pub fn data_paired(&self) -> usize {
        self.objects.iter().map(|o| o.data.len()).sum()
    }

    /// The unpaired `.gcda` files of [`Plan::problems`], one summary per
    /// capture, in capture order.
    pub fn unpaired(&self) -> Vec<Unpaired> {
        let mut out: Vec<Unpaired> = Vec::new();
        for p in &self.problems {
            let CaptureError::NoNotes {
                data,
                capture,
                expected,
                ..
            } = p
            else {
                continue;
            };
            let at = match out.iter().position(|u| u.capture == *capture) {
                Some(i) => i,
                None => {
                    out.push(Unpaired {
                        capture: capture.clone(),
                        count: 0,
                        examples: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            if let Some(u) = out.get_mut(at) {
                u.count += 1;
                if u.examples.len() < Unpaired::EXAMPLES {
                    u.examples.push((data.clone(), expected.clone()));
                }
            }
        }
        let order = |name: &str| self.captures.iter().position(|c| c == name);
        out.sort_by_key(|u| order(&u.capture));
        out
    }

    /// The same objects with every capture's data pooled into one capture
    /// named `name`: the combined counts are identical (captures merge by
    /// summing their counters anyway), but nothing is solved or kept per
    /// capture, which saves time and memory when no attribution is asked
    /// for.
    pub fn pooled(mut self, name: &str) -> Plan {
        self.captures = vec![name.to_owned()];
        for obj in &mut self.objects {
            for d in &mut obj.data {
                d.capture = 0;
            }
        }
        self
    }
}

/// Lets [`run`] tell which input file a solver error is about, so that with
/// `keep_going` a bad `.gcda` can be dropped and the object solved again
/// from the other captures.
pub trait BadFile {
    /// The file the error names, if any.
    fn bad_file(&self) -> Option<&Path>;
}

impl BadFile for crate::error::Error {
    fn bad_file(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// Result of [`run`]: the merged coverage and every problem met.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Coverage of every object that could be solved.
    pub coverage: Coverage,
    /// Problems, sorted by path.
    pub errors: Vec<CaptureError>,
    /// GCC versions of the notes read that no real-compiler test covers
    /// (outside [`crate::bytes::TESTED_GCC_MAJORS`]), for a notice.
    pub untested_versions: BTreeSet<Version>,
}

fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>, errors: &mut Vec<CaptureError>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            errors.push(CaptureError::Io {
                path: dir.to_owned(),
                source,
            });
            return;
        }
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(source) => {
                errors.push(CaptureError::Io {
                    path: dir.to_owned(),
                    source,
                });
                continue;
            }
        };
        let path = entry.path();
        // Symlinked directories are not followed (no loops); symlinked
        // files are, through `is_file`.
        match entry.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(path),
            Ok(_) if path.extension().is_some_and(|e| e == ext) && path.is_file() => out.push(path),
            Ok(_) => {}
            Err(source) => errors.push(CaptureError::Io { path, source }),
        }
    }
    for d in subdirs {
        walk(&d, ext, out, errors);
    }
}

/// Undoes GCC's `mangle_path` of a `-fprofile-dir` data file name:
/// `#home#u#x.gcda` → `/home/u/x.gcda`, `^` → `..`.
fn unmangle(name: &str) -> Option<PathBuf> {
    if !name.contains('#') {
        return None;
    }
    let mut out = PathBuf::new();
    if name.starts_with('#') {
        out.push("/");
    }
    for part in name.split('#').filter(|p| !p.is_empty()) {
        if part == "^" {
            out.push("..");
        } else {
            out.push(part);
        }
    }
    Some(out)
}

/// The build path a `.gcda` at `rel` below its capture root stands for.
fn guest_path(rel: &Path) -> PathBuf {
    if let Some(un) = rel.file_name().and_then(|n| n.to_str()).and_then(unmangle) {
        return un;
    }
    Path::new("/").join(rel)
}

/// Notes files of the build tree, keyed by path relative to it without the
/// extension.
struct BuildIndex {
    roots: Vec<PathBuf>,
    by_rel: HashMap<PathBuf, PathBuf>,
}

impl BuildIndex {
    fn new(build: &Path, errors: &mut Vec<CaptureError>) -> Result<Self, CaptureError> {
        let meta = fs::metadata(build).map_err(|source| CaptureError::Io {
            path: build.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(CaptureError::Io {
                path: build.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let mut notes = Vec::new();
        walk(build, "gcno", &mut notes, errors);
        let mut by_rel = HashMap::with_capacity(notes.len());
        for n in notes {
            if let Ok(rel) = n.strip_prefix(build) {
                by_rel.insert(rel.with_extension(""), n.clone());
            }
        }
        let mut roots = vec![build.to_owned()];
        if let Ok(abs) = std::path::absolute(build) {
            roots.push(abs);
        }
        if let Ok(canon) = fs::canonicalize(build) {
            roots.push(canon);
        }
        roots.dedup();
        Ok(BuildIndex { roots, by_rel })
    }

    /// The notes file for a (mapped) build path of a data file.
    fn find(&self, mapped: &Path) -> Option<&PathBuf> {
        let stem = mapped.with_extension("");
        for root in &self.roots {
            if let Some(hit) = stem
                .strip_prefix(root)
                .ok()
                .and_then(|rel| self.by_rel.get(rel))
            {
                return Some(hit);
            }
        }
        let parts: Vec<Component<'_>> = stem
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        (0..parts.len()).find_map(|k| {
            let suffix: PathBuf = parts.get(k..)?.iter().collect();
            self.by_rel.get(&suffix)
        })
    }
}

/// The build trees' indexes, and the notes found at host paths.
struct Search {
    host_paths: bool,
    trees: Vec<BuildIndex>,
    /// Canonical path of every tree's notes file → its path in the tree,
    /// so a notes file reached both ways is one object.
    canonical: HashMap<PathBuf, PathBuf>,
}

impl Search {
    fn new(search: &NotesSearch, errors: &mut Vec<CaptureError>) -> Result<Search, CaptureError> {
        let mut trees = Vec::with_capacity(search.trees.len());
        let mut canonical = HashMap::new();
        for t in &search.trees {
            let index = BuildIndex::new(t, errors)?;
            if search.host_paths {
                for n in index.by_rel.values() {
                    if let Ok(c) = fs::canonicalize(n) {
                        canonical.entry(c).or_insert_with(|| n.clone());
                    }
                }
            }
            trees.push(index);
        }
        Ok(Search {
            host_paths: search.host_paths,
            trees,
            canonical,
        })
    }

    /// The notes file for a (mapped) build path of a data file.
    fn find(&self, mapped: &Path) -> Option<PathBuf> {
        if self.host_paths && mapped.is_absolute() {
            let here = mapped.with_extension("gcno");
            if here.is_file() {
                let canon = fs::canonicalize(&here).unwrap_or(here);
                return Some(self.canonical.get(&canon).cloned().unwrap_or(canon));
            }
        }
        self.trees.iter().find_map(|t| t.find(mapped).cloned())
    }
}

/// Pairs the `.gcda` files of `captures` with `.gcno` files as `search`
/// says.
///
/// Captures with the same name share one index (their files add up). Fails
/// only when a build tree cannot be read; every other problem goes into
/// [`Plan::problems`].
pub fn plan(
    search: &NotesSearch,
    captures: &[CaptureDir],
    map: &PathMap,
) -> Result<Plan, CaptureError> {
    let mut problems = Vec::new();
    let mut empty = Vec::new();
    let index = Search::new(search, &mut problems)?;
    let mut names: Vec<String> = Vec::new();
    let mut objects: BTreeMap<PathBuf, Vec<DataFile>> = index
        .trees
        .iter()
        .flat_map(|t| t.by_rel.values())
        .map(|n| (n.clone(), Vec::new()))
        .collect();
    let mut data_found = 0;
    for cap in captures {
        let ci = match names.iter().position(|n| *n == cap.name) {
            Some(i) => i,
            None => {
                names.push(cap.name.clone());
                names.len() - 1
            }
        };
        let mut data = Vec::new();
        walk(&cap.root, "gcda", &mut data, &mut problems);
        data.sort();
        data_found += data.len();
        for path in data {
            if fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                empty.push(path);
                continue;
            }
            let rel = path.strip_prefix(&cap.root).unwrap_or(&path);
            let guest = guest_path(rel);
            let mapped = map.map_path(&guest);
            match index.find(&mapped) {
                Some(notes) => objects
                    .entry(notes)
                    .or_default()
                    .push(DataFile { capture: ci, path }),
                None => problems.push(CaptureError::NoNotes {
                    data: path.clone(),
                    capture: cap.name.clone(),
                    expected: mapped.with_extension("gcno"),
                    trees: search.trees.clone(),
                }),
            }
        }
    }
    Ok(Plan {
        captures: names,
        objects: objects
            .into_iter()
            .map(|(notes, data)| ObjectInputs { notes, data })
            .collect(),
        problems,
        empty,
        data_found,
        search: search.clone(),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, CaptureError> {
    fs::read(path).map_err(|source| CaptureError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Solves one object; with `keep_going`, drops a `.gcda` the solver rejects
/// and tries again with the others.
fn solve_object<F, E>(
    obj: &ObjectInputs,
    n: usize,
    keep_going: bool,
    solve: &F,
    errors: &mut Vec<CaptureError>,
    untested: &Mutex<BTreeSet<Version>>,
) -> Option<Coverage>
where
    F: Fn(&Path, &[u8], &[Capture<'_>], usize) -> Result<Coverage, E> + Sync,
    E: std::error::Error + BadFile + Send + Sync + 'static,
{
    let notes = match read_file(&obj.notes) {
        Ok(b) => b,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    // The version word is in the header just read; a bad one is the
    // solver's to report.
    if let Some(v) = crate::bytes::peek_version(&notes, crate::error::FileKind::Notes)
        .filter(|v| v.layout().is_ok() && !v.tested_with_real_compiler())
    {
        untested.lock().unwrap_or_else(|p| p.into_inner()).insert(v);
    }
    let mut data: Vec<(&DataFile, Vec<u8>)> = Vec::with_capacity(obj.data.len());
    for d in &obj.data {
        match read_file(&d.path) {
            Ok(b) => data.push((d, b)),
            Err(e) if keep_going => errors.push(e),
            Err(e) => {
                errors.push(e);
                return None;
            }
        }
    }
    loop {
        let inputs: Vec<Capture<'_>> = data
            .iter()
            .map(|(d, b)| Capture {
                index: d.capture,
                path: &d.path,
                bytes: b,
            })
            .collect();
        match solve(&obj.notes, &notes, &inputs, n) {
            Ok(cov) => return Some(cov),
            Err(e) => {
                let culprit = e
                    .bad_file()
                    .and_then(|p| data.iter().position(|(d, _)| d.path == p));
                errors.push(CaptureError::Object {
                    notes: obj.notes.clone(),
                    source: Box::new(e),
                });
                match culprit {
                    Some(i) if keep_going => {
                        data.remove(i);
                    }
                    _ => return None,
                }
            }
        }
    }
}

/// Solves every object of `plan` in parallel and merges the results.
///
/// `solve` gets one object's notes and its data files and returns that
/// object's coverage with `by_capture` vectors of length `n_captures`
/// (summed counters, solved once). Source paths go through `rewrite`.
/// Every error is collected; with `keep_going` a rejected `.gcda` is left
/// out and its object solved from the remaining captures.
pub fn run<F, E>(plan: &Plan, rewrite: &SourceRewrite, keep_going: bool, solve: F) -> Outcome
where
    F: Fn(&Path, &[u8], &[Capture<'_>], usize) -> Result<Coverage, E> + Sync,
    E: std::error::Error + BadFile + Send + Sync + 'static,
{
    let n = plan.captures.len();
    let untested = Mutex::new(BTreeSet::new());
    let base = || Coverage {
        captures: plan.captures.clone(),
        files: BTreeMap::new(),
    };
    let fold = |(acc, mut errors): (Coverage, Vec<CaptureError>), obj: &ObjectInputs| {
        let Some(mut cov) = solve_object(obj, n, keep_going, &solve, &mut errors, &untested) else {
            return (acc, errors);
        };
        cov.captures = plan.captures.clone();
        if n == 1 {
            crate::merge::attribute_single(&mut cov);
        }
        let cov = match rewrite.apply(cov) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e.into());
                return (acc, errors);
            }
        };
        join(acc, cov, errors)
    };
    let (coverage, mut errors) = plan
        .objects
        .par_iter()
        .fold(|| (base(), Vec::new()), fold)
        .reduce(
            || (base(), Vec::new()),
            |(a, mut ea), (b, eb)| {
                ea.extend(eb);
                join(a, b, ea)
            },
        );
    errors.sort_by(|a, b| a.path().cmp(b.path()));
    Outcome {
        coverage,
        errors,
        untested_versions: untested.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

/// [`run`] with covnet's exact gcov reader and solver
/// ([`object_coverage`]).
pub fn run_gcov(plan: &Plan, rewrite: &SourceRewrite, keep_going: bool) -> Outcome {
    run(plan, rewrite, keep_going, object_coverage)
}

/// Merges two partial results. Merging fails only on an `i64` overflow
/// (absurd counts); the error is reported and the partial result dropped.
fn join(a: Coverage, b: Coverage, mut errors: Vec<CaptureError>) -> (Coverage, Vec<CaptureError>) {
    let captures = a.captures.clone();
    match merge(a, b) {
        Ok(c) => (c, errors),
        Err(e) => {
            errors.push(e.into());
            let empty = Coverage {
                captures,
                files: BTreeMap::new(),
            };
            (empty, errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileCoverage, LineCoverage};

    #[derive(Debug, thiserror::Error)]
    #[error("bad data file {0}")]
    struct FakeError(PathBuf);

    impl BadFile for FakeError {
        fn bad_file(&self) -> Option<&Path> {
            Some(&self.0)
        }
    }

    /// A fake solver: line 1 of `/src/<notes stem>.c` counts the first byte
    /// of each data file; a data file starting with `!` is rejected.
    fn fake(
        notes: &Path,
        _bytes: &[u8],
        data: &[Capture<'_>],
        n: usize,
    ) -> Result<Coverage, FakeError> {
        let mut line = LineCoverage {
            by_capture: vec![0; n],
            ..Default::default()
        };
        for d in data {
            let v = *d.bytes.first().unwrap_or(&0);
            if v == b'!' {
                return Err(FakeError(d.path.to_owned()));
            }
            line.count += i64::from(v);
            if let Some(s) = line.by_capture.get_mut(d.index) {
                *s += i64::from(v);
            }
        }
        let mut file = FileCoverage::default();
        file.lines.insert(1, line);
        let mut cov = Coverage::default();
        let stem = notes.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        cov.files.insert(format!("/src/{stem}.c"), file);
        Ok(cov)
    }

    fn put(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }

    #[test]
    fn unmangles_profile_dir_names() {
        assert_eq!(
            unmangle("#home#u#b#x.gcda"),
            Some(PathBuf::from("/home/u/b/x.gcda"))
        );
        assert_eq!(unmangle("a#^#x.gcda"), Some(PathBuf::from("a/../x.gcda")));
        assert_eq!(unmangle("x.gcda"), None);
    }

    #[test]
    fn pairs_all_layouts_and_solves_in_parallel() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path();
        let build = t.join("home/u/build");
        for o in ["obj/x.gcno", "obj/y.gcno", "z.gcno", "never.gcno"] {
            put(&build.join(o), b"notes");
        }
        // Full build path (GCOV_PREFIX).
        let c1 = t.join("cap1");
        put(
            &c1.join(build.strip_prefix("/").expect("abs"))
                .join("obj/x.gcda"),
            &[1],
        );
        put(
            &c1.join(build.strip_prefix("/").expect("abs"))
                .join("z.gcda"),
            &[7],
        );
        // Relative layout (GCOV_PREFIX_STRIP).
        let c2 = t.join("cap2");
        put(&c2.join("obj/x.gcda"), &[2]);
        put(&c2.join("obj/y.gcda"), &[3]);
        // Mangled -fprofile-dir name, built elsewhere and mapped.
        let c3 = t.join("cap3");
        put(&c3.join("#guest#b#obj#x.gcda"), &[4]);
        let map = PathMap::parse(&[format!("/guest/b={}", build.display())]).expect("map");
        let caps = [
            CaptureDir {
                name: "one".into(),
                root: c1,
            },
            CaptureDir {
                name: "two".into(),
                root: c2,
            },
            CaptureDir {
                name: "three".into(),
                root: c3,
            },
        ];
        let plan = plan(&NotesSearch::tree(&build), &caps, &map).expect("plan");
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.objects.len(), 4);
        let x = plan
            .objects
            .iter()
            .find(|o| o.notes.ends_with("obj/x.gcno"))
            .expect("x");
        let mut caps_of_x: Vec<usize> = x.data.iter().map(|d| d.capture).collect();
        caps_of_x.sort();
        assert_eq!(caps_of_x, vec![0, 1, 2]);
        let out = run(&plan, &SourceRewrite::identity(), false, fake);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let cov = out.coverage;
        assert_eq!(cov.captures, vec!["one", "two", "three"]);
        assert_eq!(cov.files["/src/x.c"].lines[&1].count, 7);
        assert_eq!(cov.files["/src/x.c"].lines[&1].by_capture, vec![1, 2, 4]);
        assert_eq!(cov.files["/src/z.c"].lines[&1].by_capture, vec![7, 0, 0]);
        assert_eq!(
            cov.files["/src/never.c"].lines[&1].by_capture,
            vec![0, 0, 0]
        );
    }

    #[test]
    fn orphans_and_bad_files_are_reported_and_the_rest_merged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path();
        let build = t.join("b");
        put(&build.join("x.gcno"), b"n");
        let c1 = t.join("c1");
        put(&c1.join("x.gcda"), &[5]);
        put(&c1.join("orphan.gcda"), &[1]);
        let c2 = t.join("c2");
        put(&c2.join("x.gcda"), b"!bad");
        let caps = [
            CaptureDir {
                name: "c1".into(),
                root: c1.clone(),
            },
            CaptureDir {
                name: "c2".into(),
                root: c2.clone(),
            },
        ];
        let plan = plan(&NotesSearch::tree(&build), &caps, &PathMap::default()).expect("plan");
        assert_eq!(plan.problems.len(), 1);
        let msg = plan.problems[0].to_string();
        assert!(
            msg.contains("orphan.gcda") && msg.contains("no .gcno"),
            "{msg}"
        );
        // Without keep-going the object fails as a whole.
        let strict = run(&plan, &SourceRewrite::identity(), false, fake);
        assert_eq!(strict.errors.len(), 1);
        assert!(strict.coverage.files.is_empty());
        // With keep-going the bad capture is dropped, the other one kept.
        let lenient = run(&plan, &SourceRewrite::identity(), true, fake);
        assert_eq!(lenient.errors.len(), 1);
        let src = std::error::Error::source(&lenient.errors[0]).expect("source");
        assert!(src.to_string().contains("c2/x.gcda"), "{src}");
        assert_eq!(
            lenient.coverage.files["/src/x.c"].lines[&1].by_capture,
            vec![5, 0]
        );
    }

    /// Two programs built in two trees outside any given directory: the
    /// host paths pair them without configuration; a tree given as well is
    /// the same object, not a second one; trees are searched in order.
    #[test]
    fn host_paths_first_then_trees_in_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path();
        let (server, client) = (t.join("srv/build"), t.join("cli/out"));
        put(&server.join("s.gcno"), b"n");
        put(&server.join("never.gcno"), b"n");
        put(&client.join("obj/c.gcno"), b"n");
        let cap = t.join("cap");
        let under = |dir: &Path, rel: &str| cap.join(dir.strip_prefix("/").expect("abs")).join(rel);
        put(&under(&server, "s.gcda"), &[1]);
        put(&under(&client, "obj/c.gcda"), &[2]);
        put(&cap.join("elsewhere/ghost.gcda"), &[3]);
        let caps = [CaptureDir {
            name: "m".into(),
            root: cap.clone(),
        }];
        let host_only = plan(
            &NotesSearch::host_then(Vec::new()),
            &caps,
            &PathMap::default(),
        )
        .expect("plan");
        let notes: Vec<&Path> = host_only
            .objects
            .iter()
            .map(|o| o.notes.as_path())
            .collect();
        assert_eq!(notes.len(), 2, "only notes that data names: {notes:?}");
        assert_eq!(host_only.data_paired(), 2);
        assert_eq!(host_only.data_found, 3);
        let unpaired = host_only.unpaired();
        assert_eq!(unpaired.len(), 1);
        assert_eq!((unpaired[0].capture.as_str(), unpaired[0].count), ("m", 1));
        assert!(unpaired[0].examples[0].0.ends_with("elsewhere/ghost.gcda"));

        // The server tree given too: its never-run object appears, and
        // s.gcno is one object whichever way it was reached.
        let both = plan(
            &NotesSearch::host_then(vec![server.clone()]),
            &caps,
            &PathMap::default(),
        )
        .expect("plan");
        assert_eq!(both.objects.len(), 3, "{:?}", both.objects);
        assert_eq!(both.data_paired(), 2);

        // Relative layout (no host path): trees in order, the second one
        // has it.
        let rel = t.join("rel");
        put(&rel.join("obj/c.gcda"), &[4]);
        let caps = [CaptureDir {
            name: "r".into(),
            root: rel,
        }];
        let p = plan(
            &NotesSearch::host_then(vec![server.clone(), client.clone()]),
            &caps,
            &PathMap::default(),
        )
        .expect("plan");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let c = p
            .objects
            .iter()
            .find(|o| !o.data.is_empty())
            .expect("paired");
        assert_eq!(c.notes, client.join("obj/c.gcno"));
    }

    #[test]
    fn unreadable_build_dir_is_fatal() {
        let search = NotesSearch::tree(Path::new("/nonexistent/build"));
        let err = plan(&search, &[], &PathMap::default()).expect_err("missing dir");
        assert!(err.to_string().contains("/nonexistent/build"), "{err}");
    }
}
