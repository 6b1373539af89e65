//! Coverage that already exists, read back: lcov tracefiles, covnet JSON
//! reports, covnet coverage JSON, gcovr JSON and capture directories of
//! `.gcda` files, merged into one [`Coverage`]. `covnet report` reads its
//! inputs this way, and a differential report (`covnet report` or `covnet
//! run`) its baseline.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::thread::{Scope, ScopedJoinHandle};

use covnet_merger::capture::{CaptureDir, NotesSearch};
use covnet_merger::lcov::{Folded, LcovError, Parsed};
use covnet_merger::model::Coverage;
use covnet_merger::paths::SourceRewrite;
use covnet_merger::pipeline::{self, GatherError, Notice, Request};

use super::settings::Resolved;

/// Why inputs could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A path given as a tracefile is a directory that was not taken as a
    /// capture directory.
    #[error("failed to read {}: it is a directory, not a tracefile", path.display())]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be opened.
    #[error("failed to open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("failed to read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid lcov tracefile.
    #[error("failed to read tracefile {}", path.display())]
    Lcov {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: covnet_merger::lcov::LcovError,
    },
    /// The file is a covnet JSON report or gcovr JSON that does not read.
    #[error("failed to read {}", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: covnet_reporter::Error,
    },
    /// The file is covnet coverage JSON that does not read.
    #[error("failed to read covnet coverage JSON {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: covnet_merger::json::JsonError,
    },
    /// A path map or filter made two files one inconsistently.
    #[error("failed to rewrite the paths of {}", path.display())]
    Rewrite {
        /// The input.
        path: PathBuf,
        /// The conflict.
        #[source]
        source: covnet_merger::merge::MergeError,
    },
    /// The input does not merge with the inputs before it.
    #[error("failed to merge {}", path.display())]
    Merge {
        /// The input.
        path: PathBuf,
        /// The conflict.
        #[source]
        source: covnet_merger::merge::MergeError,
    },
    /// The capture directories could not be gathered.
    #[error(transparent)]
    Gather(#[from] GatherError),
    /// Shard bundles could not be merged.
    #[error(transparent)]
    Bundles(Box<crate::suite::bundle::BundleError>),
}

/// What [`load`] read.
#[derive(Debug)]
pub struct Loaded {
    /// Every input, merged in order.
    pub coverage: Coverage,
    /// Some capture files were left out (with `keep_going`).
    pub skipped: bool,
    /// The capture directories' notices (unpaired files, …), to be told.
    pub notices: Vec<Notice>,
    /// Where the notes of capture directories were searched.
    pub search: NotesSearch,
    /// What the coverage lacks: shards or specs of a suite that are
    /// missing or failed (for the report's notes).
    pub notes: Vec<String>,
}

/// Reads and merges `inputs`: shard bundles (directories with a
/// manifest: merged as [`crate::suite::bundle::merge`] does, refusing
/// bundles of different builds), other directories as capture directories
/// (one per machine, named after the directory; each `.gcda` pairs with
/// the `.gcno` at its build path on this host, else in `settings.build`),
/// files as tracefiles told apart by content. `rewrite` maps and filters the source
/// paths of all of them (tracefiles keep theirs as written, without a
/// base).
pub fn load(
    inputs: &[PathBuf],
    settings: &Resolved,
    rewrite: &SourceRewrite,
    keep_going: bool,
) -> Result<Loaded, InputError> {
    let (dirs, files): (Vec<&PathBuf>, Vec<&PathBuf>) = inputs.iter().partition(|p| p.is_dir());
    let (bundles, dirs): (Vec<&PathBuf>, Vec<&PathBuf>) = dirs
        .into_iter()
        .partition(|d| crate::suite::bundle::is_bundle(d));
    let search = NotesSearch::host_then(settings.build.clone());
    let request = Request {
        captures: capture_dirs(&dirs),
        search: search.clone(),
        map: settings.map.clone(),
        rewrite: rewrite.clone(),
        keep_going,
        attribute: true,
    };
    let mut loaded = Loaded {
        coverage: Coverage::default(),
        skipped: false,
        notices: Vec::new(),
        search,
        notes: Vec::new(),
    };
    let mut cov: Option<Coverage> = None;
    if !bundles.is_empty() {
        let paths: Vec<PathBuf> = bundles.into_iter().cloned().collect();
        let merged = crate::suite::bundle::merge(&paths, true)
            .map_err(|e| InputError::Bundles(Box::new(e)))?;
        loaded.notes = merged.notes;
        let retrace = SourceRewrite {
            base: None,
            ..rewrite.clone()
        };
        cov = Some(
            retrace
                .apply(merged.coverage)
                .map_err(|source| InputError::Rewrite {
                    path: paths[0].clone(),
                    source,
                })?,
        );
    }
    if !request.captures.is_empty() {
        let g = pipeline::gather(&request)?;
        loaded.skipped = g.skipped_inputs();
        loaded.notices = g.notices;
        cov = Some(match cov {
            None => g.coverage,
            Some(acc) => covnet_merger::merge::merge(acc, g.coverage).map_err(|source| {
                InputError::Merge {
                    path: request.captures[0].root.clone(),
                    source,
                }
            })?,
        });
    }
    let retrace = SourceRewrite {
        base: None,
        ..rewrite.clone()
    };
    if cov.is_none() && files.len() > 1 {
        if let Some(folded) = fold_files(&files, &retrace)? {
            loaded.coverage = folded;
            return Ok(loaded);
        }
    }
    // Parse the files side by side (a few at a time), then merge in input
    // order.
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut read: Vec<Result<Coverage, InputError>> = Vec::with_capacity(files.len());
    for chunk in files.chunks(width) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|input| scope.spawn(move || read_file(input)))
                .collect();
            for (h, input) in handles.into_iter().zip(chunk) {
                read.push(h.join().unwrap_or_else(|_| Err(panicked(input))));
            }
        });
    }
    for (input, one) in files.iter().zip(read) {
        let one = retrace.apply(one?).map_err(|source| InputError::Rewrite {
            path: input.to_path_buf(),
            source,
        })?;
        cov = Some(match cov {
            None => one,
            Some(acc) => {
                covnet_merger::merge::merge(acc, one).map_err(|source| InputError::Merge {
                    path: input.to_path_buf(),
                    source,
                })?
            }
        });
    }
    loaded.coverage = cov.unwrap_or_default();
    Ok(loaded)
}

/// Reads `files` in order, folding each lcov tracefile after the first
/// into the coverage of those before it as it is read
/// ([`covnet_merger::lcov::fold_parsed`]): one model in memory instead of
/// one per file and their merge. Each file after the first is parsed on
/// a thread of its own while the one before it is read or folded
/// ([`read_ahead`]), its records waiting in their compact form
/// ([`Parsed`]); they are folded, and their errors reported, in file
/// order, as reading one file after the other would. `None` when a
/// tracefile does not fold ([`Folded::Refused`]): the caller then reads
/// and merges them whole, and reports what that finds.
fn fold_files(files: &[&PathBuf], retrace: &SourceRewrite) -> Result<Option<Coverage>, InputError> {
    let rewritten = |input: &Path, one: Coverage| {
        retrace.apply(one).map_err(|source| InputError::Rewrite {
            path: input.to_path_buf(),
            source,
        })
    };
    std::thread::scope(|scope| {
        let mut cov: Option<Coverage> = None;
        let mut ahead: Option<Ahead> = None;
        for (i, input) in files.iter().enumerate() {
            let this = ahead.take();
            ahead = files.get(i + 1).map(|next| read_ahead(scope, next));
            let Some(mut acc) = cov.take() else {
                cov = Some(rewritten(input, read_file(input)?)?);
                continue;
            };
            let Some(this) = this else {
                // Every file after the first was given a reader above.
                return Ok(None);
            };
            let json = match this.kind.recv() {
                Ok(kind) => kind?,
                Err(_) => return Err(panicked(input)),
            };
            if json {
                let one = rewritten(input, read_file(input)?)?;
                acc =
                    covnet_merger::merge::merge(acc, one).map_err(|source| InputError::Merge {
                        path: input.to_path_buf(),
                        source,
                    })?;
            } else {
                let records = this.records.iter().map(|r| {
                    r.map_err(|source| InputError::Lcov {
                        path: input.to_path_buf(),
                        source,
                    })
                });
                let folded =
                    covnet_merger::lcov::fold_parsed(&mut acc, records, &stem(input), |path| {
                        retrace.rewrite_one(path)
                    })?;
                if folded != Folded::All {
                    return Ok(None);
                }
                // The stream ended: at the end of the file, or cut short by
                // a reader that died.
                if this.reader.join().is_err() {
                    return Err(panicked(input));
                }
            }
            cov = Some(acc);
        }
        Ok(cov)
    })
}

/// A tracefile being parsed on a thread of its own ([`read_ahead`]).
struct Ahead<'s> {
    /// First: whether the file is JSON (then nothing follows: it is read
    /// whole), or why it could not be opened.
    kind: Receiver<Result<bool, InputError>>,
    /// Then its records in order, up to the end or the first error.
    records: Receiver<Result<Parsed, LcovError>>,
    /// The thread.
    reader: ScopedJoinHandle<'s, ()>,
}

/// Starts parsing `input` on a thread of `scope`. The thread stops at the
/// end of the file, at its first error, or as soon as its receivers are
/// dropped (the fold it was for ended early).
fn read_ahead<'s>(scope: &'s Scope<'s, '_>, input: &'s Path) -> Ahead<'s> {
    let (kind_tx, kind) = channel();
    let (records_tx, records) = channel();
    let reader = scope.spawn(move || {
        let file = match open_input(input) {
            Ok((json, file)) => {
                if kind_tx.send(Ok(json)).is_err() || json {
                    return;
                }
                file
            }
            Err(e) => {
                let _ = kind_tx.send(Err(e));
                return;
            }
        };
        let mut reader = covnet_merger::lcov::Reader::new(file, input);
        while let Some(rec) = reader.next_parsed().transpose() {
            let failed = rec.is_err();
            if records_tx.send(rec).is_err() || failed {
                return;
            }
        }
    });
    Ahead {
        kind,
        records,
        reader,
    }
}

/// The error for a reader thread that ended without a word (it panicked).
fn panicked(input: &Path) -> InputError {
    InputError::Io {
        path: input.to_path_buf(),
        source: std::io::Error::other("the reader thread panicked"),
    }
}

/// Opens `path` once: whether its first byte after white space is `{` (a
/// JSON document; anything else is read as lcov), and the file, read
/// from its start again.
fn open_input(path: &Path) -> Result<(bool, BufReader<File>), InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let json = first_byte(&mut reader).map_err(io)? == Some(b'{');
    reader.rewind().map_err(io)?;
    Ok((json, reader))
}

/// The first byte of `reader` that is not white space, `None` at the end.
fn first_byte(reader: &mut impl Read) -> std::io::Result<Option<u8>> {
    let mut head = [0u8; 1];
    loop {
        if reader.read(&mut head)? == 0 {
            return Ok(None);
        }
        if !head[0].is_ascii_whitespace() {
            return Ok(Some(head[0]));
        }
    }
}

/// Capture directories named after their last component (the whole path
/// where two would share a name).
pub fn capture_dirs(dirs: &[&PathBuf]) -> Vec<CaptureDir> {
    let mut captures: Vec<CaptureDir> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let base = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let name = if captures.iter().any(|c| c.name == base) {
            dir.display().to_string()
        } else {
            base
        };
        captures.push(CaptureDir {
            name,
            root: dir.to_path_buf(),
        });
    }
    captures
}

/// Reads one tracefile, choosing the reader by content: `{` starts a JSON
/// document (a covnet report, covnet coverage or gcovr JSON), anything
/// else is lcov (its `TN` sections are captures, an empty one named after
/// the file).
pub fn read_file(path: &Path) -> Result<Coverage, InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(InputError::Directory {
            path: path.to_path_buf(),
        });
    }
    let (json, mut reader) = open_input(path)?;
    if json {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map_err(io)?;
        let start = all
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(all.len());
        let bytes = all.get(start..).unwrap_or_default();
        let report = |source| InputError::Report {
            path: path.to_path_buf(),
            source,
        };
        let marker = format!("\"{}\"", covnet_reporter::json::FORMAT);
        let head = bytes.get(..256).unwrap_or(bytes);
        if covnet_reporter::gcovr_json::looks_like(head) {
            let mut cov = covnet_reporter::gcovr_json::read_slice(bytes, path).map_err(report)?;
            cov.captures.push(stem(path));
            covnet_merger::merge::attribute_single(&mut cov);
            return Ok(cov);
        }
        if head.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return Ok(covnet_reporter::json::read_slice(bytes, path)
                .map_err(report)?
                .0);
        }
        return covnet_merger::json::from_slice(bytes).map_err(|source| InputError::Json {
            path: path.to_path_buf(),
            source,
        });
    }
    covnet_merger::lcov::read(reader, path, &stem(path)).map_err(|source| InputError::Lcov {
        path: path.to_path_buf(),
        source,
    })
}

/// An input's capture name: its file name without the extension.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "input".to_owned(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use covnet_reporter::RunInfo;

    /// What `load` gave before it folded: every file read whole, then
    /// merged in order.
    fn read_and_merge(paths: &[PathBuf]) -> Result<Coverage, String> {
        let mut acc = Coverage::default();
        for p in paths {
            let one = read_file(p).map_err(|e| chain(&e))?;
            acc = covnet_merger::merge::merge(acc, one).map_err(|source| {
                chain(&InputError::Merge {
                    path: p.clone(),
                    source,
                })
            })?;
        }
        Ok(acc)
    }

    /// An error and its causes, as the CLI prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            out = format!("{out}: {c}");
            cause = c.source();
        }
        out
    }

    #[test]
    fn loading_folds_tracefiles_into_what_merging_them_gives() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = write(
            "web.info",
            "TN:\nSF:/s/a.c\nFN:1,main\nFNDA:2,main\nDA:1,2\nDA:2,0\nBRDA:2,0,0,1\nBRDA:2,0,1,-\nend_of_record\n",
        );
        let b = write(
            "client.info",
            "SF:/s/b.c\nDA:3,1\nend_of_record\nSF:/s/a.c\nDA:2,5\nBRDA:2,0,1,4\nend_of_record\n",
        );
        // Two sections: not folded, merged whole.
        let two = write(
            "two.info",
            "TN:p\nSF:/s/a.c\nDA:1,1\nend_of_record\nTN:q\nSF:/s/c.c\nDA:1,1\nend_of_record\n",
        );
        // Parts that overflow alone and not summed: merged whole.
        let parts = write(
            "parts.info",
            &format!(
                "SF:/s/a.c\nDA:1,{}\nend_of_record\nSF:/s/a.c\nDA:1,-5\nend_of_record\n",
                i64::MAX - 2
            ),
        );
        let over = write(
            "over.info",
            &format!("SF:/s/a.c\nDA:1,{}\nend_of_record\n", i64::MAX),
        );
        // Errors come in file order, though later files are read ahead.
        let bad = write(
            "bad.info",
            "SF:/s/a.c\nDA:1,1\nend_of_record\nSF:/s/b.c\nDA:x\n",
        );
        let missing = dir.path().join("missing.info");
        let json = dir.path().join("r.json");
        let cov = read_file(&b).unwrap();
        covnet_reporter::json::write_path(&cov, &RunInfo::now("t", vec![]), &json).unwrap();
        let settings =
            super::super::settings::resolve(&crate::spec::CoverageSettings::default()).unwrap();
        let rewrite = SourceRewrite::identity();
        for inputs in [
            vec![a.clone(), b.clone()],
            vec![b.clone(), a.clone(), b.clone()],
            vec![a.clone(), json.clone(), b.clone()],
            vec![a.clone(), two.clone(), b.clone()],
            vec![a.clone(), parts.clone()],
            vec![a.clone(), over.clone(), over.clone()],
            vec![a.clone(), bad.clone(), missing.clone()],
            vec![a.clone(), missing.clone(), bad.clone()],
            vec![bad.clone(), missing.clone()],
            vec![missing.clone(), bad.clone()],
            vec![a.clone(), b.clone(), bad.clone()],
        ] {
            let want = read_and_merge(&inputs);
            let got = load(&inputs, &settings, &rewrite, false)
                .map(|l| l.coverage)
                .map_err(|e| chain(&e));
            assert_eq!(got, want, "{inputs:?}");
        }
        let err = load(&[a.clone(), over.clone(), over], &settings, &rewrite, false).unwrap_err();
        assert!(matches!(&err, InputError::Merge { .. }), "{err}");
        let err = load(&[a.clone(), bad.clone()], &settings, &rewrite, false).unwrap_err();
        assert!(
            matches!(&err, InputError::Lcov { path, source } if path == &bad && source.line == 5),
            "{err}"
        );
        let err = load(&[a, missing.clone(), bad], &settings, &rewrite, false).unwrap_err();
        assert!(
            matches!(&err, InputError::Open { path, .. } if path == &missing),
            "{err}"
        );
    }

    /// The first byte is peeked and the file read again from its start:
    /// leading blank lines still count in an lcov error's line number
    /// (read alone, and folded as a later input), and a JSON document may
    /// start after white space.
    #[test]
    fn inputs_are_read_from_their_first_byte_after_the_peek() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.info");
        std::fs::write(&good, "SF:/s/a.c\nDA:1,1\nend_of_record\n").unwrap();
        let bad = dir.path().join("bad.info");
        std::fs::write(&bad, "\n\n  \nSF:/s/a.c\nDA:x\n").unwrap();
        let at_line_5 = |err: &InputError| matches!(err, InputError::Lcov { path, source } if path == &bad && source.line == 5);
        let err = read_file(&bad).unwrap_err();
        assert!(at_line_5(&err), "{err}");
        let settings =
            super::super::settings::resolve(&crate::spec::CoverageSettings::default()).unwrap();
        let err = load(
            &[good.clone(), bad.clone()],
            &settings,
            &SourceRewrite::identity(),
            false,
        )
        .unwrap_err();
        assert!(at_line_5(&err), "{err}");
        let cov = read_file(&good).unwrap();
        let json = dir.path().join("r.json");
        covnet_reporter::json::write_path(&cov, &RunInfo::now("t", vec![]), &json).unwrap();
        let text = std::fs::read(&json).unwrap();
        std::fs::write(&json, [b"\n \t\n".as_slice(), &text].concat()).unwrap();
        assert_eq!(read_file(&json).unwrap(), cov);
    }

    #[test]
    fn reads_lcov_json_and_gcovr_json_and_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("web.info");
        std::fs::write(
            &info,
            "TN:\nSF:/s/a.c\nFN:1,main\nFNDA:2,main\nDA:1,2\nDA:2,0\nend_of_record\n",
        )
        .unwrap();
        let cov = read_file(&info).unwrap();
        assert_eq!(cov.captures, ["web"]);
        assert_eq!(cov.summary().lines_hit, 1);
        let report = dir.path().join("r.json");
        covnet_reporter::json::write_path(&cov, &RunInfo::now("t", vec![]), &report).unwrap();
        assert_eq!(read_file(&report).unwrap(), cov);
        // gcovr JSON is told apart by its version key, named after the file.
        let gcovr = dir.path().join("web.gcovr");
        covnet_reporter::gcovr_json::write_path(&cov, &gcovr).unwrap();
        assert_eq!(read_file(&gcovr).unwrap(), cov);
        assert!(matches!(
            read_file(dir.path()),
            Err(InputError::Directory { .. })
        ));
        let bad = dir.path().join("bad.info");
        std::fs::write(&bad, "SF:/x.c\nDA:zz\n").unwrap();
        let err = read_file(&bad).unwrap_err();
        assert!(
            matches!(&err, InputError::Lcov { path, .. } if path == &bad),
            "{err}"
        );
    }
}
