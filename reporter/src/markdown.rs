//! A short Markdown summary for a pull-request comment: totals, threshold
//! results, per-machine totals and the least covered files.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::Coverage;

use crate::summary::{metrics, Thresholds};
use crate::tree::Tree;
use crate::{Error, Percent, RunInfo};

/// How many of the least covered files the summary lists.
pub const WORST_FILES: usize = 10;

/// Writes the Markdown summary of `cov` to `out`; `thresholds` adds a
/// pass/fail line per threshold that is set.
pub fn write(
    cov: &Coverage,
    info: &RunInfo,
    thresholds: &Thresholds,
    out: &mut impl Write,
) -> io::Result<()> {
    let tree = Tree::new(cov);
    let mut md = String::new();
    let _ = writeln!(md, "### Coverage: {}\n", escape(&info.title));
    let _ = writeln!(md, "| | Hit | Total | Coverage |");
    let _ = writeln!(md, "|:--|--:|--:|--:|");
    for (name, p) in metrics(&tree.totals.total) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{}** |",
            capitalise(name),
            p.hit,
            p.found,
            p
        );
    }
    md.push('\n');
    if !thresholds.is_empty() {
        let [l, f, b] = metrics(&tree.totals.total);
        for (req, (name, p)) in [
            (thresholds.lines, l),
            (thresholds.functions, f),
            (thresholds.branches, b),
        ] {
            let Some(req) = req else { continue };
            let verdict = if p.meets(req) {
                "✅ met"
            } else {
                "❌ **not met**"
            };
            let _ = writeln!(md, "- {name}: {p} against a minimum of {req}% — {verdict}");
        }
        md.push('\n');
    }
    if cov.captures.len() > 1 {
        let _ = writeln!(
            md,
            "**Per machine** (line counts need not add up: gcov line counts are not additive)\n"
        );
        let _ = writeln!(md, "| Machine | Lines | Functions | Branches |");
        let _ = writeln!(md, "|:--|--:|--:|--:|");
        for (name, s) in cov.captures.iter().zip(&tree.totals.per_capture) {
            let [l, f, b] = metrics(s).map(|(_, p)| p);
            let _ = writeln!(md, "| {} | {l} | {f} | {b} |", escape(name));
        }
        md.push('\n');
    }
    let mut worst: Vec<_> = tree
        .files
        .iter()
        .filter(|f| f.summary.lines_found > 0 && f.summary.lines_hit < f.summary.lines_found)
        .collect();
    worst.sort_by(|a, b| {
        let ra = Percent::new(a.summary.lines_hit, a.summary.lines_found).tenths();
        let rb = Percent::new(b.summary.lines_hit, b.summary.lines_found).tenths();
        ra.cmp(&rb)
            .then(b.summary.lines_found.cmp(&a.summary.lines_found))
            .then(a.rel.cmp(&b.rel))
    });
    if !worst.is_empty() {
        let shown = worst.len().min(WORST_FILES);
        let _ = writeln!(
            md,
            "<details><summary>Least covered files ({shown} of {} not fully covered)</summary>\n",
            worst.len()
        );
        let _ = writeln!(md, "| File | Lines | Functions | Branches |");
        let _ = writeln!(md, "|:--|--:|--:|--:|");
        for f in worst.into_iter().take(WORST_FILES) {
            let [l, fu, b] = metrics(&f.summary).map(|(_, p)| p);
            let _ = writeln!(
                md,
                "| {} | {l} ({}/{}) | {fu} | {b} |",
                escape(&f.rel),
                l.hit,
                l.found
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    for note in &info.notes {
        let _ = writeln!(
            md,
            "> :warning: **Incomplete coverage:** {}\n",
            escape(note)
        );
    }
    let inputs: Vec<String> = info.inputs.iter().map(|i| escape(i)).collect();
    let _ = writeln!(
        md,
        "<sub>covnet {} · {} · {} files · inputs: {}</sub>",
        env!("CARGO_PKG_VERSION"),
        info.date(),
        cov.files.len(),
        inputs.join(", ")
    );
    out.write_all(md.as_bytes())
}

/// Writes the Markdown summary to the file `path`.
pub fn write_path(
    cov: &Coverage,
    info: &RunInfo,
    thresholds: &Thresholds,
    path: &Path,
) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, info, thresholds, w))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Escapes text so Markdown (GitHub's) shows it literally inside a table
/// cell: punctuation with a meaning is backslash-escaped, `<`/`>`/`&`
/// become entities, and line breaks become spaces.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markdown() {
        assert_eq!(escape("a|b_c*<d>"), r"a\|b\_c\*&lt;d&gt;");
        assert_eq!(escape("x\ny"), "x y");
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;
    use crate::sample;

    #[test]
    fn lists_totals_thresholds_machines_and_worst_files() {
        let cov = sample::coverage();
        let info = RunInfo {
            title: "PR #1".into(),
            timestamp: 0,
            inputs: vec!["a.info".into()],
            notes: vec![],
            blind_spots: vec![],
        };
        let t = Thresholds {
            lines: Some(60.0),
            functions: None,
            branches: Some(90.0),
        };
        let mut out = Vec::new();
        write(&cov, &info, &t, &mut out).unwrap();
        let md = String::from_utf8(out).unwrap();
        assert!(md.starts_with("### Coverage: PR \\#1\n"), "{md}");
        assert!(md.contains("| Lines | 7 | 11 | **63.6%** |"), "{md}");
        assert!(md.contains("| Branches | 3 | 5 | **60.0%** |"), "{md}");
        assert!(md.contains("- lines: 63.6% against a minimum of 60% — ✅ met"));
        assert!(md.contains("- branches: 60.0% against a minimum of 90% — ❌ **not met**"));
        assert!(md.contains("| web | 54.5% | 66.6% | 60.0% |"), "{md}");
        let worst = md.find("| include/util.h | 0.0% (0/2)").unwrap();
        let odd = md
            .find(r#"| src/net/&lt;odd &amp; "name"&gt;.cc | 66.6% (2/3)"#)
            .unwrap();
        assert!(worst < odd);
    }
}
