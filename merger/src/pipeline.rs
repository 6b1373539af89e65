//! From capture directories to coverage, once for every caller: pairing
//! (see [`crate::capture`]), solving, and one verdict on what was left out.
//!
//! `covnet run`, `covnet merge` and `covnet report` all come through
//! [`gather`], so they pair, warn, keep going and fail alike. Nothing here
//! prints: what went wrong comes back as [`Notice`]s (kept going) or a
//! [`GatherError`] (stopped), and the caller renders them with its own
//! hints.
//!
//! Never a success on nothing: when the captures held `.gcda` files and not
//! one of them found its `.gcno`, or when the result has no source file at
//! all, [`gather`] fails ([`GatherError::NothingPaired`],
//! [`GatherError::Empty`]) whether or not it may keep going.

use std::fmt;
use std::path::PathBuf;

use crate::capture::{self, CaptureDir, CaptureError, NotesSearch, Unpaired};
use crate::model::Coverage;
use crate::paths::{PathMap, SourceRewrite};
use crate::Version;

/// What to gather.
#[derive(Clone, Debug)]
pub struct Request {
    /// Capture directories (one per machine, phase or run).
    pub captures: Vec<CaptureDir>,
    /// Where their `.gcno` files are.
    pub search: NotesSearch,
    /// Build-path rewriting of the `.gcda` paths before pairing.
    pub map: PathMap,
    /// Source-path rewriting and filtering of the result.
    pub rewrite: SourceRewrite,
    /// Leave out what cannot be paired or read and go on with the rest
    /// (each left-out input becomes a [`Notice`]); otherwise the first
    /// such problem fails the whole request.
    pub keep_going: bool,
    /// Keep per-capture counts. Without, the captures are pooled into one
    /// (same combined counts, one solve per object).
    pub attribute: bool,
}

/// Something the caller should tell the user; coverage was still gathered.
#[derive(Debug)]
#[non_exhaustive]
pub enum Notice {
    /// A capture's `.gcda` files that found no `.gcno` (left out).
    Unpaired(Unpaired),
    /// A 0-byte `.gcda` (a program killed while writing): counted as not
    /// executed.
    EmptyData(PathBuf),
    /// An input that could not be read or solved (left out).
    Skipped(CaptureError),
    /// Notes of a GCC version that no real-compiler test covers.
    UntestedVersion(Version),
}

impl Notice {
    /// Whether the notice means an input was left out (the CLI's exit code
    /// 2, "inputs skipped").
    pub fn skipped_input(&self) -> bool {
        matches!(self, Notice::Unpaired(_) | Notice::Skipped(_))
    }
}

/// The result of [`gather`].
#[derive(Debug, Default)]
pub struct Gathered {
    /// The coverage of everything that could be paired and solved.
    pub coverage: Coverage,
    /// What was left out or is worth knowing, in a stable order.
    pub notices: Vec<Notice>,
    /// The `.gcno` files the captures were paired with, sorted: the build
    /// this coverage is of (see [`crate::bytes::peek_stamp`]).
    pub notes: Vec<std::path::PathBuf>,
}

impl Gathered {
    /// Whether any input was left out.
    pub fn skipped_inputs(&self) -> bool {
        self.notices.iter().any(Notice::skipped_input)
    }
}

/// Why [`gather`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatherError {
    /// A build tree could not be read.
    #[error(transparent)]
    Tree(CaptureError),
    /// `.gcda` files found no `.gcno` (without keep-going).
    #[error("{} .gcda file(s) found no .gcno", count(.unpaired))]
    Unpaired {
        /// Per capture.
        unpaired: Vec<Unpaired>,
        /// Where the notes were looked for.
        search: NotesSearch,
    },
    /// The captures held `.gcda` files and none found its `.gcno`.
    #[error("none of the {found} .gcda file(s) found its .gcno: the report would be empty")]
    NothingPaired {
        /// How many `.gcda` files there were.
        found: usize,
        /// Per capture.
        unpaired: Vec<Unpaired>,
        /// Where the notes were looked for.
        search: NotesSearch,
    },
    /// Inputs could not be read or solved (without keep-going).
    #[error("failed to read {} input(s)", .0.len())]
    Unreadable(Vec<CaptureError>),
    /// An LLVM binary (or, without keep-going, a raw profile) could not
    /// be read.
    #[error("failed to read LLVM coverage")]
    Llvm(#[source] crate::llvm::InputError),
    /// Nothing at all: no `.gcda`, no `.gcno`, or everything filtered out.
    #[error("no source file has coverage: {why}")]
    Empty {
        /// Which of the cases it was, for the user.
        why: String,
    },
}

impl fmt::Display for NotesSearch {
    /// Where the notes were looked for, in order, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut places: Vec<String> = Vec::new();
        if self.host_paths {
            places.push("at each .gcda's own build path on this host".to_owned());
        }
        for t in &self.trees {
            places.push(format!("under {}", t.display()));
        }
        if places.is_empty() {
            return f.write_str("nowhere (no build tree given)");
        }
        f.write_str(&places.join(", then "))
    }
}

impl fmt::Display for Unpaired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} .gcda file(s) found no .gcno",
            self.capture, self.count
        )?;
        for (data, notes) in &self.examples {
            write!(f, "\n    {} (no {})", data.display(), notes.display())?;
        }
        if self.count > self.examples.len() {
            write!(f, "\n    ... and {} more", self.count - self.examples.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Unpaired(u) => write!(f, "{u}"),
            Notice::EmptyData(p) => write!(
                f,
                "{} is empty (its program was killed while writing it?): counted as not executed",
                p.display()
            ),
            Notice::Skipped(e) => {
                write!(f, "skipped: {e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            Notice::UntestedVersion(v) => write!(
                f,
                "notes written by {v}: read by the same layout rules as the tested GCC majors {:?}, but no test compiles with this version",
                crate::bytes::TESTED_GCC_MAJORS
            ),
        }
    }
}

fn count(unpaired: &[Unpaired]) -> usize {
    unpaired.iter().map(|u| u.count).sum()
}

/// Pairs, solves and merges the captures of `req`.
pub fn gather(req: &Request) -> Result<Gathered, GatherError> {
    let mut plan =
        capture::plan(&req.search, &req.captures, &req.map).map_err(GatherError::Tree)?;
    let unpaired = plan.unpaired();
    let (found, paired) = (plan.data_found, plan.data_paired());
    if paired == 0 && !unpaired.is_empty() {
        return Err(GatherError::NothingPaired {
            found,
            unpaired,
            search: plan.search,
        });
    }
    if !req.keep_going && !unpaired.is_empty() {
        return Err(GatherError::Unpaired {
            unpaired,
            search: plan.search,
        });
    }
    let mut unreadable: Vec<CaptureError> = std::mem::take(&mut plan.problems)
        .into_iter()
        .filter(|p| !matches!(p, CaptureError::NoNotes { .. }))
        .collect();
    let mut notices: Vec<Notice> = unpaired.into_iter().map(Notice::Unpaired).collect();
    notices.extend(plan.empty.iter().cloned().map(Notice::EmptyData));
    let no_notes = plan.objects.is_empty();
    let notes: Vec<std::path::PathBuf> = plan
        .objects
        .iter()
        .filter(|o| !o.data.is_empty())
        .map(|o| o.notes.clone())
        .collect();
    let plan = if req.attribute {
        plan
    } else {
        plan.pooled("merged")
    };
    let outcome = capture::run_gcov(&plan, &req.rewrite, req.keep_going);
    unreadable.extend(outcome.errors);
    if !req.keep_going && !unreadable.is_empty() {
        return Err(GatherError::Unreadable(unreadable));
    }
    notices.extend(unreadable.into_iter().map(Notice::Skipped));
    notices.extend(
        outcome
            .untested_versions
            .iter()
            .copied()
            .map(Notice::UntestedVersion),
    );
    if outcome.coverage.files.is_empty() {
        let why = if found == 0 && no_notes {
            "the captures hold no .gcda file and the build trees no .gcno"
        } else if no_notes {
            "no .gcno file was found for any capture"
        } else {
            "every source file was filtered out or failed to read"
        };
        return Err(GatherError::Empty {
            why: why.to_owned(),
        });
    }
    Ok(Gathered {
        coverage: outcome.coverage,
        notices,
        notes,
    })
}
