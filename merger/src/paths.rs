//! Path mapping (`--path-map FROM=TO`) and source filters
//! (`--include GLOB`, `--exclude GLOB`).
//!
//! A [`PathMap`] rewrites path prefixes, on whole components: with
//! `/build=/home/me/src`, `/build/a.c` becomes `/home/me/src/a.c` but
//! `/buildx/a.c` is left alone. The longest matching `FROM` wins. The same
//! map applies to source paths in the coverage and to the build paths that
//! `.gcda` files carry inside a capture directory.
//!
//! A [`SourceFilter`] keeps a source file when it matches some `--include`
//! glob (or there is none) and no `--exclude` glob. Globs match the whole
//! (mapped) path, and `*` also matches `/`, as in lcov's patterns.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::model::{Coverage, FileCoverage};

/// A bad `--path-map` or glob argument.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A path map argument without `=` or with an empty side.
    #[error("path map {0:?} is not FROM=TO with both sides non-empty")]
    BadMap(String),
    /// A glob that globset rejects.
    #[error("invalid glob {glob:?}")]
    BadGlob {
        /// The glob as given.
        glob: String,
        /// Why it is invalid.
        #[source]
        source: globset::Error,
    },
}

/// Prefix rewrites applied to paths, longest `FROM` first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMap {
    rules: Vec<(String, String)>,
}

impl PathMap {
    /// Builds a map from `FROM=TO` arguments.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, PathError> {
        let mut rules = Vec::with_capacity(args.len());
        for arg in args {
            let arg = arg.as_ref();
            match arg.split_once('=') {
                Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                    rules.push((trim_slash(from).to_owned(), trim_slash(to).to_owned()));
                }
                _ => return Err(PathError::BadMap(arg.to_owned())),
            }
        }
        // Longest FROM first, so that the most specific rule wins.
        rules.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(PathMap { rules })
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rewrites `path` with the first (longest) rule whose `FROM` is a
    /// prefix of it on a component boundary; `None` when no rule applies.
    pub fn apply(&self, path: &str) -> Option<String> {
        for (from, to) in &self.rules {
            if let Some(rest) = path.strip_prefix(from.as_str()) {
                if rest.is_empty() {
                    return Some(to.clone());
                }
                if rest.starts_with('/') || from.ends_with('/') {
                    return Some(format!("{to}{rest}"));
                }
            }
        }
        None
    }

    /// Like [`PathMap::apply`], returning the path unchanged when no rule
    /// applies.
    pub fn map(&self, path: &str) -> String {
        self.apply(path).unwrap_or_else(|| path.to_owned())
    }

    /// Applies the map to a filesystem path (non-UTF-8 paths are left alone).
    pub fn map_path(&self, path: &Path) -> PathBuf {
        match path.to_str().and_then(|p| self.apply(p)) {
            Some(p) => PathBuf::from(p),
            None => path.to_owned(),
        }
    }
}

/// `"/a/"` → `"/a"`, but `"/"` stays.
fn trim_slash(s: &str) -> &str {
    if s.len() > 1 {
        s.strip_suffix('/').unwrap_or(s)
    } else {
        s
    }
}

/// Include/exclude globs on source paths.
#[derive(Clone, Debug)]
pub struct SourceFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn glob_set<S: AsRef<str>>(globs: &[S]) -> Result<Option<GlobSet>, PathError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let g = g.as_ref();
        b.add(Glob::new(g).map_err(|source| PathError::BadGlob {
            glob: g.to_owned(),
            source,
        })?);
    }
    b.build().map(Some).map_err(|source| PathError::BadGlob {
        glob: globs
            .iter()
            .map(|g| g.as_ref())
            .collect::<Vec<_>>()
            .join(" "),
        source,
    })
}

impl SourceFilter {
    /// Builds a filter; empty `include` means "everything".
    pub fn new<S: AsRef<str>>(include: &[S], exclude: &[S]) -> Result<Self, PathError> {
        Ok(SourceFilter {
            include: glob_set(include)?,
            exclude: glob_set(exclude)?,
        })
    }

    /// A filter that keeps every file.
    pub fn all() -> Self {
        SourceFilter {
            include: None,
            exclude: None,
        }
    }

    /// Whether the source file `path` is kept.
    pub fn keeps(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(path))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(path))
    }
}

/// How source paths of a coverage are rewritten and filtered.
#[derive(Clone, Debug)]
pub struct SourceRewrite {
    /// Prefix rewrites.
    pub map: PathMap,
    /// Include/exclude globs, applied after mapping.
    pub filter: SourceFilter,
    /// Directory that relative source paths are resolved against (after
    /// mapping); `None` leaves them relative.
    pub base: Option<PathBuf>,
}

impl SourceRewrite {
    /// No mapping, no filtering, no resolving.
    pub fn identity() -> Self {
        SourceRewrite {
            map: PathMap::default(),
            filter: SourceFilter::all(),
            base: None,
        }
    }

    /// The final name of a source path, `None` when the filter drops it.
    pub fn rewrite_one(&self, path: &str) -> Option<String> {
        let mut p = self.map.map(path);
        if let Some(base) = &self.base {
            if !p.starts_with('/') {
                p = base.join(&p).to_string_lossy().into_owned();
            }
        }
        self.filter.keeps(&p).then_some(p)
    }

    /// Renames and filters the files of `cov`; files that end up with the
    /// same name are merged.
    pub fn apply(&self, mut cov: Coverage) -> Result<Coverage, crate::merge::MergeError> {
        let n = cov.captures.len();
        let files = std::mem::take(&mut cov.files);
        for (path, file) in files {
            let Some(new) = self.rewrite_one(&path) else {
                continue;
            };
            let merged: FileCoverage = match cov.files.remove(&new) {
                Some(prev) => crate::merge::merge_file(prev, file, n).map_err(|kind| {
                    crate::merge::MergeError {
                        file: new.clone(),
                        kind,
                    }
                })?,
                None => file,
            };
            cov.files.insert(new, merged);
        }
        Ok(cov)
    }
}

/// Lexically normalises a `/`-separated path: drops empty and `.`
/// components and resolves `..` against the component before it (never
/// above the root of an absolute path). Symlinks are not consulted.
pub fn normalize(path: &str) -> String {
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
    use crate::model::LineCoverage;

    #[test]
    fn map_on_component_boundaries_longest_first() {
        let m = PathMap::parse(&["/build=/src", "/build/sub/=/other", "/x=/y/"]).expect("valid");
        assert_eq!(m.map("/build/a.c"), "/src/a.c");
        assert_eq!(m.map("/build/sub/a.c"), "/other/a.c");
        assert_eq!(m.map("/buildx/a.c"), "/buildx/a.c");
        assert_eq!(m.map("/build"), "/src");
        assert_eq!(m.map("/x/z"), "/y/z");
        assert_eq!(m.apply("/none"), None);
        assert_eq!(
            m.map_path(Path::new("/build/q.gcda")),
            PathBuf::from("/src/q.gcda")
        );
    }

    #[test]
    fn bad_maps_and_globs_are_errors() {
        for bad in ["nofrom", "=to", "from="] {
            let err = PathMap::parse(&[bad]).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        let err = SourceFilter::new(&["a[b"], &[]).expect_err("bad glob");
        assert!(err.to_string().contains("a[b"), "{err}");
    }

    #[test]
    fn include_and_exclude() {
        let f = SourceFilter::new(&["/src/*"], &["*/test/*", "*.h"]).expect("valid");
        assert!(f.keeps("/src/a.c"));
        assert!(f.keeps("/src/deep/a.c"), "* crosses /");
        assert!(!f.keeps("/src/test/a.c"));
        assert!(!f.keeps("/src/a.h"));
        assert!(!f.keeps("/usr/include/stdio.c"));
        assert!(SourceFilter::all().keeps("/anything"));
    }

    #[test]
    fn rewrite_merges_colliding_files() {
        let mut cov = Coverage::default();
        for (p, c) in [
            ("/b1/a.c", 1),
            ("/b2/a.c", 2),
            ("rel.c", 3),
            ("/usr/x.h", 4),
        ] {
            let mut f = FileCoverage::default();
            f.lines.insert(
                1,
                LineCoverage {
                    count: c,
                    ..Default::default()
                },
            );
            cov.files.insert(p.into(), f);
        }
        let rw = SourceRewrite {
            map: PathMap::parse(&["/b1=/src", "/b2=/src"]).expect("valid"),
            filter: SourceFilter::new::<&str>(&[], &["/usr/*"]).expect("valid"),
            base: Some(PathBuf::from("/base")),
        };
        let out = rw.apply(cov).expect("no overflow");
        let names: Vec<&str> = out.files.keys().map(|s| s.as_str()).collect();
        assert_eq!(names, vec!["/base/rel.c", "/src/a.c"]);
        assert_eq!(out.files["/src/a.c"].lines[&1].count, 3);
    }
}
