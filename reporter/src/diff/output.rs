//! The differential report's outputs: genhtml-style terminal counts, the
//! JSON section, the merge-request Markdown and the gates.

use std::fmt::Write as _;
use std::io::{self, Write};

use covnet_merger::model::Coverage;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{Category, Counts, Differential, ALL};
use crate::tree::{common_root, relative};
use crate::Percent;

/// Reads one kind of counts.
type Kind = fn(&Counts) -> &[u64; 12];

const KINDS: [(&str, Kind); 3] = [
    ("lines", |c| &c.lines),
    ("functions", |c| &c.functions),
    ("branches", |c| &c.branches),
];

/// Writes the counts per category as genhtml 2.x prints them after its
/// `Overall coverage rate` (`       UNC....: 3`, categories that are 0
/// left out), for the total and then for each capture.
pub fn write_terminal(
    diff: &Differential,
    captures: &[String],
    out: &mut impl Write,
) -> io::Result<()> {
    writeln!(out, "Differential coverage (lcov 2.x categories):")?;
    writeln!(out, "  source files: {}", diff.files.len())?;
    write_block(&diff.total, "  ", out)?;
    for (name, c) in captures.iter().zip(&diff.by_capture) {
        writeln!(out, "  machine {name}:")?;
        write_block(c, "    ", out)?;
    }
    Ok(())
}

fn write_block(c: &Counts, indent: &str, out: &mut impl Write) -> io::Result<()> {
    for (name, get) in KINDS {
        let v = get(c);
        let found: u64 = ALL
            .iter()
            .filter(|k| k.is_current())
            .map(|&k| v[k as usize])
            .sum();
        let hit: u64 = ALL
            .iter()
            .filter(|k| k.is_hit())
            .map(|&k| v[k as usize])
            .sum();
        let fill = ".".repeat(12 - name.len());
        writeln!(
            out,
            "{indent}{name}{fill}: {} ({hit} of {found} {name})",
            Percent::new(hit, found)
        )?;
        for k in ALL {
            let n = v[k as usize];
            if n > 0 {
                writeln!(out, "{indent}     {}....: {n}", k.code())?;
            }
        }
    }
    Ok(())
}

/// Counts of one kind by category code.
struct ByCode<'a>(&'a [u64; 12]);

impl Serialize for ByCode<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(12))?;
        for k in ALL {
            m.serialize_entry(k.code(), &self.0[k as usize])?;
        }
        m.end()
    }
}

/// Lines, functions and branches by category.
#[derive(Serialize)]
struct CountsJson<'a> {
    lines: ByCode<'a>,
    functions: ByCode<'a>,
    branches: ByCode<'a>,
}

fn counts_json(c: &Counts) -> CountsJson<'_> {
    CountsJson {
        lines: ByCode(&c.lines),
        functions: ByCode(&c.functions),
        branches: ByCode(&c.branches),
    }
}

/// Line number → category code.
struct LineMap<'a>(&'a std::collections::BTreeMap<u32, Category>);

impl Serialize for LineMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (n, c) in self.0 {
            m.serialize_entry(n, c.code())?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    counts: CountsJson<'a>,
}

#[derive(Serialize)]
struct FunctionJson<'a> {
    name: &'a str,
    category: &'static str,
}

#[derive(Serialize)]
struct FileJson<'a> {
    path: &'a str,
    relative: &'a str,
    changed: bool,
    counts: CountsJson<'a>,
    captures: Vec<Named<'a>>,
    lines: LineMap<'a>,
    baseline_lines: LineMap<'a>,
    functions: Vec<FunctionJson<'a>>,
}

#[derive(Serialize)]
struct CategoryJson {
    code: &'static str,
    meaning: &'static str,
}

#[derive(Serialize)]
struct DirJson<'a> {
    path: String,
    counts: CountsJson<'a>,
}

/// The `differential` section of the JSON report (see [`to_json`]).
#[derive(Serialize)]
pub struct Section<'a> {
    categories: Vec<CategoryJson>,
    totals: CountsJson<'a>,
    captures: Vec<Named<'a>>,
    directories: Vec<DirJson<'a>>,
    files: Vec<FileJson<'a>>,
    unmatched_diff_paths: &'a [String],
}

fn named<'a>(captures: &'a [String], counts: &'a [Counts]) -> Vec<Named<'a>> {
    captures
        .iter()
        .zip(counts)
        .map(|(n, c)| Named {
            name: n,
            counts: counts_json(c),
        })
        .collect()
}

/// The `differential` section of the JSON report: counts per category in
/// total, per capture, per directory and per file, and each file's line
/// categories (`lines`: current line numbers; `baseline_lines`: baseline
/// lines that are no code now) and function categories.
pub fn to_json<'a>(
    diff: &'a Differential,
    captures: &'a [String],
    dirs: &'a [(String, Counts)],
) -> Section<'a> {
    let root = common_root(diff.files.keys().map(String::as_str));
    Section {
        categories: ALL
            .iter()
            .map(|k| CategoryJson {
                code: k.code(),
                meaning: k.describe(),
            })
            .collect(),
        totals: counts_json(&diff.total),
        captures: named(captures, &diff.by_capture),
        directories: dirs
            .iter()
            .map(|(d, c)| DirJson {
                path: d.clone(),
                counts: counts_json(c),
            })
            .collect(),
        files: diff
            .files
            .iter()
            .map(|(path, d)| FileJson {
                path,
                relative: relative(path, &root),
                changed: d.changed,
                counts: counts_json(&d.counts),
                captures: named(captures, &d.by_capture),
                lines: LineMap(&d.lines),
                baseline_lines: LineMap(&d.gone),
                functions: d
                    .functions
                    .iter()
                    .map(|(n, c)| FunctionJson {
                        name: n,
                        category: c.code(),
                    })
                    .collect(),
            })
            .collect(),
        unmatched_diff_paths: &diff.unmatched_diff_paths,
    }
}

/// Counts per directory (relative to the common root; `.` for the root),
/// each directory holding the files below it.
pub fn directories(diff: &Differential, root: &str) -> Vec<(String, Counts)> {
    let mut dirs: std::collections::BTreeMap<String, Counts> = Default::default();
    for (path, d) in &diff.files {
        let rel = relative(path, root);
        let mut dir = rel;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            dirs.entry(parent.to_owned()).or_default().add(&d.counts);
            dir = parent;
        }
        dirs.entry(".".to_owned()).or_default().add(&d.counts);
    }
    dirs.into_iter().collect()
}

/// A gate that failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Shortfall {
    /// New lines are covered below the required percentage.
    NewLines {
        /// Covered new lines.
        hit: u64,
        /// All new lines.
        found: u64,
        /// The requirement.
        required: f64,
    },
    /// Lines that were covered in the baseline are not now.
    Lost {
        /// LBC lines.
        lines: u64,
        /// Where, `path:line`, the first few.
        first: Vec<String>,
    },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::NewLines { hit, found, required } => write!(
                f,
                "new-line coverage {} ({hit} of {found} new lines) is below the required {required}%",
                Percent::new(*hit, *found)
            ),
            Shortfall::Lost { lines, first } => write!(
                f,
                "{lines} line(s) lost their baseline coverage (LBC): {}",
                first.join(", ")
            ),
        }
    }
}

/// Checks `--fail-under-new-lines` and `--fail-on-lost-coverage`.
pub fn check(diff: &Differential, new_lines: Option<f64>, lost: bool) -> Vec<Shortfall> {
    let mut out = Vec::new();
    if let Some(required) = new_lines {
        let (found, hit) = diff.total.new_lines();
        if !Percent::new(hit, found).meets(required) {
            out.push(Shortfall::NewLines {
                hit,
                found,
                required,
            });
        }
    }
    if lost && diff.total.lost_lines() > 0 {
        let first = lost_lines(diff)
            .take(5)
            .map(|(p, n)| format!("{p}:{n}"))
            .collect();
        out.push(Shortfall::Lost {
            lines: diff.total.lost_lines(),
            first,
        });
    }
    out
}

fn lost_lines(diff: &Differential) -> impl Iterator<Item = (&str, u32)> {
    diff.files.iter().flat_map(|(p, d)| {
        d.lines
            .iter()
            .filter(|(_, &c)| c == Category::Lbc)
            .map(move |(&n, _)| (p.as_str(), n))
    })
}

/// Writes the merge-request summary: new-code coverage, lost lines (and
/// which machine lost them), the files with the most uncovered new code,
/// and the category table.
pub fn write_markdown(
    diff: &Differential,
    cov: &Coverage,
    title: &str,
    out: &mut impl Write,
) -> io::Result<()> {
    let root = common_root(diff.files.keys().map(String::as_str));
    let mut md = String::new();
    let (found, hit) = diff.total.new_lines();
    let _ = writeln!(
        md,
        "### Coverage of this change: {}\n",
        crate::markdown::escape(title)
    );
    let _ = writeln!(
        md,
        "- **New code**: {} ({hit} of {found} new lines covered)",
        Percent::new(hit, found)
    );
    let _ = writeln!(
        md,
        "- **Lost coverage**: {} line(s) covered in the baseline are not now (LBC)",
        diff.total.lost_lines()
    );
    let _ = writeln!(
        md,
        "- Removed code: {} line(s) ({} covered before)\n",
        diff.total.lines[Category::Dub as usize] + diff.total.lines[Category::Dcb as usize],
        diff.total.lines[Category::Dcb as usize]
    );
    let lost: Vec<_> = lost_lines(diff).take(20).collect();
    if !lost.is_empty() {
        let _ = writeln!(md, "#### Lost lines\n");
        for (p, n) in &lost {
            let _ = writeln!(md, "- `{}:{n}`", relative(p, &root));
        }
        md.push('\n');
    }
    let mut worst: Vec<(&str, u64, u64)> = diff
        .files
        .iter()
        .map(|(p, d)| {
            (
                p.as_str(),
                d.counts.lines[Category::Unc as usize],
                d.counts.lines[Category::Lbc as usize],
            )
        })
        .filter(|&(_, u, l)| u + l > 0)
        .collect();
    worst.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(b.0)));
    if !worst.is_empty() {
        let _ = writeln!(
            md,
            "#### Worst files\n\n| File | UNC | LBC |\n|:--|--:|--:|"
        );
        for (p, u, l) in worst.iter().take(crate::markdown::WORST_FILES) {
            let _ = writeln!(md, "| `{}` | {u} | {l} |", relative(p, &root));
        }
        md.push('\n');
    }
    if cov.captures.len() > 1 {
        let _ = writeln!(
            md,
            "#### Per machine\n\n| Machine | New lines covered | LBC |\n|:--|--:|--:|"
        );
        for (n, c) in cov.captures.iter().zip(&diff.by_capture) {
            let (f, h) = c.new_lines();
            let _ = writeln!(
                md,
                "| {} | {} ({h} of {f}) | {} |",
                crate::markdown::escape(n),
                Percent::new(h, f),
                c.lost_lines()
            );
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| Category | Lines | Functions | Branches |\n|:--|--:|--:|--:|"
    );
    for k in ALL {
        let i = k as usize;
        let _ = writeln!(
            md,
            "| {} {} | {} | {} | {} |",
            k.code(),
            k.describe(),
            diff.total.lines[i],
            diff.total.functions[i],
            diff.total.branches[i]
        );
    }
    out.write_all(md.as_bytes())
}
