//! What the merger's notices and errors, and the exclusion markers, mean
//! to the user: [`Diagnostic`]s with the flag that fixes them. `covnet
//! run` sends them as events; `covnet merge` and `covnet report` print
//! them. One wording for all three commands.

use covnet_merger::capture::{NotesSearch, Unpaired};
use covnet_merger::exclude::{self, MarkerEvent, Rules};
use covnet_merger::model::Coverage;
use covnet_merger::pipeline::{GatherError, Notice};

use crate::diag::Diagnostic;

/// Which command is talking: the fix for unpaired files differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `covnet run` (the spec's `[coverage]` table can fix it).
    Run,
    /// `covnet merge` and `covnet report`.
    Standalone,
}

impl Flavor {
    fn fix_unpaired(self) -> &'static str {
        match self {
            Flavor::Run => "add the build tree with `--build DIR` (repeatable) or `[coverage] build = [\"DIR\", ...]` in the spec; if the .gcda paths differ from the build paths, map them with `--path-map GUEST=HOST` or `[coverage] path_map`",
            Flavor::Standalone => "name the build tree with `--build DIR` (repeatable); if the .gcda paths differ from the build paths, map them with `--path-map GUEST=HOST`",
        }
    }
}

fn unpaired_text(unpaired: &[Unpaired], search: &NotesSearch, flavor: Flavor) -> String {
    let mut text = String::new();
    for u in unpaired {
        text.push_str(&format!("  {u}\n"));
    }
    text.push_str(&format!(
        "  covnet looked {search}\n  (hint: {})",
        flavor.fix_unpaired()
    ));
    text
}

/// The notices of a gather that kept going: one summary for all unpaired
/// files (with where covnet looked and the fix), then each other notice.
pub fn notice_diagnostics(
    notices: &[Notice],
    search: &NotesSearch,
    flavor: Flavor,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let unpaired: Vec<Unpaired> = notices
        .iter()
        .filter_map(|n| match n {
            Notice::Unpaired(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    if !unpaired.is_empty() {
        let n: usize = unpaired.iter().map(|u| u.count).sum();
        out.push(Diagnostic::warning(format!(
            "coverage incomplete: {n} .gcda file(s) left out, their notes (.gcno) not found:\n{}",
            unpaired_text(&unpaired, search, flavor)
        )));
    }
    for notice in notices {
        match notice {
            Notice::Unpaired(_) => {}
            Notice::UntestedVersion(_) => out.push(Diagnostic::notice(notice.to_string())),
            _ => out.push(Diagnostic::warning(notice.to_string())),
        }
    }
    out
}

/// How a stopped gather ends a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherEnd {
    /// Nothing could be paired, or nothing is left: there is no report,
    /// but the inputs were read (exit 2).
    NothingToReport,
    /// An input or a tree could not be read (exit 1).
    Failed,
}

/// Why a gather stopped, with the fix, and how it ends the command.
pub fn gather_error_diagnostic(e: &GatherError, flavor: Flavor) -> (Diagnostic, GatherEnd) {
    match e {
        GatherError::NothingPaired {
            found,
            unpaired,
            search,
        } => (
            Diagnostic::error(format!(
                "none of the {found} .gcda file(s) found its .gcno, so there is no coverage to report:\n{}",
                unpaired_text(unpaired, search, flavor)
            )),
            GatherEnd::NothingToReport,
        ),
        GatherError::Unpaired { unpaired, search } => {
            let n: usize = unpaired.iter().map(|u| u.count).sum();
            (
                Diagnostic::error(format!(
                    "{n} .gcda file(s) found no .gcno:\n{}\n  (hint: --keep-going merges the rest)",
                    unpaired_text(unpaired, search, flavor)
                )),
                GatherEnd::Failed,
            )
        }
        GatherError::Unreadable(errors) => {
            let mut text = format!("failed to read {} input(s):", errors.len());
            for e in errors {
                text.push_str(&format!("\n  - {}", chain(e)));
            }
            text.push_str("\n  (hint: a stamp or checksum mismatch means the program was rebuilt after the run; re-run it or remove the stale .gcda files; --keep-going merges the rest)");
            (Diagnostic::error(text), GatherEnd::Failed)
        }
        GatherError::Empty { why } => (
            Diagnostic::error(format!("no coverage to report: {why}\n  (hint: check that the programs were built with --coverage, ran, and that --include/--exclude keep some files)")),
            GatherEnd::NothingToReport,
        ),
        GatherError::Llvm(inner) => {
            let hint = match inner {
                covnet_merger::llvm::InputError::Invalid(i) => i.kind.hint(),
                _ => None,
            }
            .unwrap_or("[coverage] objects names the clang-instrumented programs and libraries");
            (
                Diagnostic::error(format!("{}\n  (hint: {hint})", chain(e))),
                GatherEnd::Failed,
            )
        }
        other => (
            Diagnostic::error(format!(
                "{}\n  (hint: --build names directories holding the .gcno files)",
                chain(other)
            )),
            GatherEnd::Failed,
        ),
    }
}

/// Applies `rules` to `cov`, reading the sources from disk, and gives the
/// marker warnings (and one for all sources that could not be read).
pub fn apply_markers(cov: &mut Coverage, rules: &Rules) -> Vec<Diagnostic> {
    let report = exclude::apply_markers(cov, rules, exclude::read_source);
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for e in &report.events {
        match e {
            MarkerEvent::Unreadable { file, .. } => unreadable.push(file.as_str()),
            other => out.push(Diagnostic::warning(other.to_string())),
        }
    }
    if let Some(first) = unreadable.first() {
        out.push(Diagnostic::warning(format!(
            "{} of {} source files could not be read (first: {first}); their exclusion markers were not applied\n  (hint: run where the source paths resolve, or pass --no-markers)",
            unreadable.len(),
            cov.files.len()
        )));
    }
    out
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
