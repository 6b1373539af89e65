//! Cobertura XML (`coverage-04.dtd`), as Jenkins, GitLab and other CI
//! systems read it: packages are directories, classes are source files,
//! methods are functions.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::{Coverage, FileCoverage, FunctionCoverage, Summary};

use crate::tree::{DirEntry, Tree};
use crate::{Error, RunInfo};

/// The DOCTYPE line every written document carries.
pub const DOCTYPE: &str =
    r#"<!DOCTYPE coverage SYSTEM "http://cobertura.sourceforge.net/xml/coverage-04.dtd">"#;

/// Writes the Cobertura XML document for `cov` to `out`.
pub fn write(cov: &Coverage, info: &RunInfo, out: &mut impl Write) -> io::Result<()> {
    let tree = Tree::new(cov);
    let t = &tree.totals.total;
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(out, "{DOCTYPE}")?;
    writeln!(
        out,
        r#"<coverage line-rate="{}" branch-rate="{}" lines-covered="{}" lines-valid="{}" branches-covered="{}" branches-valid="{}" complexity="0" version="covnet {}" timestamp="{}">"#,
        rate(t.lines_hit, t.lines_found),
        rate(t.branches_hit, t.branches_found),
        t.lines_hit,
        t.lines_found,
        t.branches_hit,
        t.branches_found,
        env!("CARGO_PKG_VERSION"),
        info.timestamp
    )?;
    writeln!(out, "<sources>")?;
    let root = if tree.root.is_empty() {
        "."
    } else {
        &tree.root
    };
    writeln!(out, "<source>{}</source>", escape(root))?;
    writeln!(out, "</sources>")?;
    writeln!(out, "<packages>")?;
    let mut by_dir: Vec<Vec<&crate::tree::FileEntry<'_>>> = vec![Vec::new(); tree.dirs.len()];
    for f in &tree.files {
        if let Some(v) = by_dir.get_mut(f.dir) {
            v.push(f);
        }
    }
    for (dir, files) in tree.dirs.iter().zip(by_dir) {
        if files.is_empty() {
            continue;
        }
        let mut own = Summary::default();
        for f in &files {
            own.add(&f.summary);
        }
        writeln!(
            out,
            r#"<package name="{}" line-rate="{}" branch-rate="{}" complexity="0">"#,
            escape(&package_name(dir)),
            rate(own.lines_hit, own.lines_found),
            rate(own.branches_hit, own.branches_found)
        )?;
        writeln!(out, "<classes>")?;
        for f in files {
            let s = &f.summary;
            writeln!(
                out,
                r#"<class name="{}" filename="{}" line-rate="{}" branch-rate="{}" complexity="0">"#,
                escape(f.name()),
                escape(&f.rel),
                rate(s.lines_hit, s.lines_found),
                rate(s.branches_hit, s.branches_found)
            )?;
            writeln!(out, "<methods>")?;
            for fun in &f.coverage.functions {
                write_method(out, f.coverage, fun)?;
            }
            writeln!(out, "</methods>")?;
            writeln!(out, "<lines>")?;
            write_lines(out, f.coverage, ..)?;
            writeln!(out, "</lines>")?;
            writeln!(out, "</class>")?;
        }
        writeln!(out, "</classes>")?;
        writeln!(out, "</package>")?;
    }
    writeln!(out, "</packages>")?;
    writeln!(out, "</coverage>")
}

/// Writes the Cobertura XML document for `cov` to the file `path`.
pub fn write_path(cov: &Coverage, info: &RunInfo, path: &Path) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, info, w))
}

fn package_name(dir: &DirEntry) -> String {
    if dir.path.is_empty() {
        ".".to_owned()
    } else {
        dir.path.replace('/', ".")
    }
}

fn write_method(
    out: &mut impl Write,
    file: &FileCoverage,
    fun: &FunctionCoverage,
) -> io::Result<()> {
    let end = fun.end_line.max(fun.start_line);
    let range = fun.start_line..=end;
    let mut s = Summary::default();
    for l in file.lines.range(range.clone()).map(|(_, l)| l) {
        s.lines_found += 1;
        s.lines_hit += u64::from(l.count > 0);
        s.branches_found += l.branches.len() as u64;
        s.branches_hit += l
            .branches
            .iter()
            .filter(|b| b.taken.is_some_and(|t| t > 0))
            .count() as u64;
    }
    writeln!(
        out,
        r#"<method name="{}" signature="" line-rate="{}" branch-rate="{}" complexity="0">"#,
        escape(&fun.demangled),
        rate(s.lines_hit, s.lines_found),
        rate(s.branches_hit, s.branches_found)
    )?;
    writeln!(out, "<lines>")?;
    write_lines(out, file, range)?;
    writeln!(out, "</lines>")?;
    writeln!(out, "</method>")
}

fn write_lines(
    out: &mut impl Write,
    file: &FileCoverage,
    range: impl std::ops::RangeBounds<u32>,
) -> io::Result<()> {
    for (no, l) in file.lines.range(range) {
        if l.branches.is_empty() {
            writeln!(
                out,
                r#"<line number="{no}" hits="{}" branch="false"/>"#,
                l.count
            )?;
            continue;
        }
        let total = l.branches.len() as u64;
        let taken = l
            .branches
            .iter()
            .filter(|b| b.taken.is_some_and(|t| t > 0))
            .count() as u64;
        writeln!(
            out,
            r#"<line number="{no}" hits="{}" branch="true" condition-coverage="{}% ({taken}/{total})">"#,
            l.count,
            taken * 100 / total
        )?;
        writeln!(out, "<conditions>")?;
        // One condition per branching block on the line.
        let mut blocks: Vec<u32> = l.branches.iter().map(|b| b.block).collect();
        blocks.dedup();
        for (i, block) in blocks.into_iter().enumerate() {
            let group = l.branches.iter().filter(|b| b.block == block);
            let n = group.clone().count() as u64;
            let t = group.filter(|b| b.taken.is_some_and(|t| t > 0)).count() as u64;
            writeln!(
                out,
                r#"<condition number="{i}" type="jump" coverage="{}%"/>"#,
                t * 100 / n.max(1)
            )?;
        }
        writeln!(out, "</conditions>")?;
        writeln!(out, "</line>")?;
    }
    Ok(())
}

/// `hit / found` with up to four decimals (`1` when nothing was found:
/// nothing to cover counts as fully covered, as Cobertura readers expect).
fn rate(hit: u64, found: u64) -> String {
    if found == 0 {
        return "1".to_owned();
    }
    let r = format!("{:.4}", hit as f64 / found as f64);
    let r = r.trim_end_matches('0').trim_end_matches('.');
    if r.is_empty() {
        "0".to_owned()
    } else {
        r.to_owned()
    }
}

/// Escapes text for XML attribute values and character data. Characters
/// XML 1.0 cannot carry at all (most C0 controls) become U+FFFD.
pub fn escape(s: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || (c as u32) < 0x20;
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_escaping() {
        assert_eq!(rate(1, 3), "0.3333");
        assert_eq!(rate(1, 2), "0.5");
        assert_eq!(rate(0, 2), "0");
        assert_eq!(rate(2, 2), "1");
        assert_eq!(rate(0, 0), "1");
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\u{1}\ty"), "x\u{fffd}&#9;y");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }
}
