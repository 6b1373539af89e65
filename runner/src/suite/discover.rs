//! A suite from the command line: spec files, directories (every spec
//! below them) and glob patterns, each spec named by a stable id — its
//! path relative to the suite's common directory, without `.toml` (a
//! `spec.toml` is named after its directory). Ids name each spec's
//! output directory and prefix its machines' captures (`<id>/<machine>`),
//! and partitions slice the suite by them, so they must not depend on the
//! host or the order of the arguments.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;

/// One spec of a suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteSpec {
    /// Stable name: path relative to the suite root, `/`-separated,
    /// without `.toml`.
    pub id: String,
    /// The spec file.
    pub path: PathBuf,
}

/// Specs sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suite {
    /// The specs.
    pub specs: Vec<SuiteSpec>,
}

/// Why the arguments do not make a suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// A path is neither a file, a directory nor a pattern that matches.
    #[error("{}: no such spec file or directory, and no spec matches it as a pattern", path.display())]
    NotFound {
        /// The argument.
        path: PathBuf,
    },
    /// A directory or pattern holds no spec.
    #[error("{}: holds no spec (a .toml file with a [machines] table)", path.display())]
    Empty {
        /// The argument.
        path: PathBuf,
    },
    /// A glob pattern does not parse.
    #[error("{pattern}: not a valid glob pattern: {why}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        why: String,
    },
    /// A directory could not be listed.
    #[error("failed to list {}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Two specs got the same id.
    #[error("two specs are both named `{id}`: {} and {}", first.display(), second.display())]
    SameId {
        /// The id.
        id: String,
        /// One spec.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// Directories never searched for specs: outputs, builds and VCS data.
const SKIP_DIRS: [&str; 4] = ["covnet-out", "target", "node_modules", "bench"];

/// Expands `args` (spec files, directories, glob patterns) into a suite.
/// A file is a spec whatever its name; below a directory, or matched by a
/// pattern, a spec is a `.toml` file with a `[machines]` table (other
/// TOML, such as `Cargo.toml`, is not a spec). A spec named twice counts
/// once.
pub fn discover(args: &[PathBuf]) -> Result<Suite, SuiteError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for arg in args {
        let before = paths.len();
        if arg.is_file() {
            paths.push(arg.clone());
            continue;
        }
        if arg.is_dir() {
            walk(arg, &mut |p| {
                if is_spec(p) {
                    paths.push(p.to_path_buf());
                }
            })?;
        } else {
            let text = arg.to_string_lossy();
            if !text.contains(['*', '?', '[']) {
                return Err(SuiteError::NotFound { path: arg.clone() });
            }
            let glob = GlobBuilder::new(&text)
                .literal_separator(true)
                .build()
                .map_err(|e| SuiteError::Glob {
                    pattern: text.clone().into_owned(),
                    why: e.kind().to_string(),
                })?
                .compile_matcher();
            let base = glob_base(arg);
            if base.is_dir() {
                walk(&base, &mut |p| {
                    if glob.is_match(p) && is_spec(p) {
                        paths.push(p.to_path_buf());
                    }
                })?;
            }
        }
        if paths.len() == before {
            return Err(SuiteError::Empty { path: arg.clone() });
        }
    }
    let absolute: Vec<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let unique: Vec<PathBuf> = absolute
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect();
    let root = common_dir(&unique);
    let mut specs: Vec<SuiteSpec> = unique
        .into_iter()
        .map(|path| SuiteSpec {
            id: id_of(&path, &root),
            path,
        })
        .collect();
    specs.sort_by(|a, b| a.id.cmp(&b.id));
    for w in specs.windows(2) {
        if w[0].id == w[1].id {
            return Err(SuiteError::SameId {
                id: w[0].id.clone(),
                first: w[0].path.clone(),
                second: w[1].path.clone(),
            });
        }
    }
    Ok(Suite { specs })
}

impl Suite {
    /// The specs' ids, in suite order.
    pub fn ids(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.id.as_str()).collect()
    }
}

/// Every file below `dir`, in name order, skipping hidden and output
/// directories.
fn walk(dir: &Path, found: &mut dyn FnMut(&Path)) -> Result<(), SuiteError> {
    let err = |source| SuiteError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<(PathBuf, bool)> = std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| {
            let e = e.map_err(err)?;
            let is_dir = e.file_type().map_err(err)?.is_dir();
            Ok((e.path(), is_dir))
        })
        .collect::<Result<_, SuiteError>>()?;
    entries.sort();
    for (path, is_dir) in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.as_deref().unwrap_or("");
        if is_dir {
            if !name.starts_with('.') && !SKIP_DIRS.contains(&name) {
                walk(&path, found)?;
            }
        } else {
            found(&path);
        }
    }
    Ok(())
}

/// A `.toml` file with a `[machines]` table.
fn is_spec(path: &Path) -> bool {
    if path.extension().is_none_or(|e| e != "toml") {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.parse::<toml::Table>()
        .is_ok_and(|t| t.contains_key("machines"))
}

/// The directory part of a pattern before its first glob character.
fn glob_base(pattern: &Path) -> PathBuf {
    let mut base = PathBuf::new();
    for c in pattern.components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// `p` made absolute against the current directory, lexically normalised.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    PathBuf::from(covnet_merger::paths::normalize(&joined.to_string_lossy()))
}

/// The deepest directory holding every path (their parent for one path).
fn common_dir(paths: &[PathBuf]) -> PathBuf {
    let mut root: Option<PathBuf> = None;
    for p in paths {
        let dir = p.parent().unwrap_or(Path::new("/")).to_path_buf();
        root = Some(match root {
            None => dir,
            Some(r) => {
                let mut common = PathBuf::new();
                for (a, b) in r.components().zip(dir.components()) {
                    if a != b {
                        break;
                    }
                    common.push(a);
                }
                common
            }
        });
    }
    root.unwrap_or_default()
}

/// The id of spec `path` in a suite rooted at `root`.
fn id_of(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let named_dir = rel.file_name().is_some_and(|n| n == "spec.toml");
    let rel = if named_dir {
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            // `<root>/spec.toml`: the root directory's own name.
            _ => PathBuf::from(
                root.file_name()
                    .map_or_else(|| "spec".into(), |n| n.to_string_lossy().into_owned()),
            ),
        }
    } else {
        rel.with_extension("")
    };
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "[machines.a]\n[test]\nscript = \"start_all();\"\n";

    #[test]
    fn files_directories_and_patterns_make_one_sorted_suite() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in [
            "net/web.toml",
            "net/dns/spec.toml",
            "net/mail.toml",
            "other/ssh.toml",
        ] {
            std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
            std::fs::write(d.join(p), SPEC).unwrap();
        }
        std::fs::write(d.join("net/Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::create_dir_all(d.join("net/covnet-out/x")).unwrap();
        std::fs::write(d.join("net/covnet-out/x/old.toml"), SPEC).unwrap();

        let suite = discover(&[d.join("net")]).unwrap();
        assert_eq!(suite.ids(), ["dns", "mail", "web"]);
        assert_eq!(suite.specs[0].path, d.join("net/dns/spec.toml"));

        let suite = discover(&[
            d.join("other/ssh.toml"),
            PathBuf::from(format!("{}/net/*.toml", d.display())),
            d.join("net/web.toml"),
        ])
        .unwrap();
        assert_eq!(suite.ids(), ["net/mail", "net/web", "other/ssh"]);

        let one = discover(&[d.join("net/dns/spec.toml")]).unwrap();
        assert_eq!(one.ids(), ["dns"]);
    }

    #[test]
    fn arguments_that_name_no_spec_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            discover(&[d.join("missing.toml")]),
            Err(SuiteError::NotFound { .. })
        ));
        assert!(matches!(
            discover(&[d.to_path_buf()]),
            Err(SuiteError::Empty { .. })
        ));
        assert!(matches!(
            discover(&[PathBuf::from(format!("{}/*.toml", d.display()))]),
            Err(SuiteError::Empty { .. })
        ));
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::create_dir_all(d.join("b/a")).unwrap();
        std::fs::write(d.join("a/spec.toml"), SPEC).unwrap();
        std::fs::write(d.join("a.toml"), SPEC).unwrap();
        let e = discover(&[d.join("a/spec.toml"), d.join("a.toml")]).unwrap_err();
        assert!(
            matches!(e, SuiteError::SameId { ref id, .. } if id == "a"),
            "{e}"
        );
    }
}
