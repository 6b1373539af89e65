//! The HTML site: `index.html` (totals, machines, directory tree, files),
//! one annotated page per source file under `files/`, and two static
//! assets (`covnet.css`, `covnet.js`). Offline: no CDN, no framework.
//!
//! Templates (askama, in `reporter/templates/`) use only `if` and `for`;
//! their structs borrow the model and the [`Tree`]. Pages are rendered in
//! parallel and written by one thread, a few at a time in flight (never
//! the whole site in memory).

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use covnet_merger::model::{Coverage, FunctionCoverage, LineCoverage, Summary};
use rayon::prelude::*;

use crate::diff::{self, Differential, FileDelta};
use crate::output::{create_dir, write_file};
use crate::tree::{DirEntry, FileEntry, Tree};
use crate::{Error, Percent, RunInfo};

const CSS: &str = include_str!("../assets/covnet.css");
const JS: &str = include_str!("../assets/covnet.js");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What [`write_site`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// Number of source-file pages.
    pub pages: usize,
    /// Source files that were not found on disk (their pages list only the
    /// instrumented lines).
    pub missing_sources: Vec<String>,
    /// The totals of the coverage, as the index sums them (for
    /// [`crate::summary::write_table_with`]).
    pub totals: crate::tree::Totals,
}

/// Writes the HTML site for `cov` into `dir` (created if needed).
pub fn write_site(cov: &Coverage, info: &RunInfo, dir: &Path) -> Result<Site, Error> {
    write_site_with(cov, info, dir, None)
}

/// [`write_site`] with the differential coverage `delta`, when there is
/// one: every file page shows each line's category (lcov 2.x's TLA
/// column), the file's category table per machine and an "only changed
/// code" filter, and the site gets the differential page
/// ([`diff::html::PAGE`]), linked from every page.
pub fn write_site_with(
    cov: &Coverage,
    info: &RunInfo,
    dir: &Path,
    delta: Option<&Differential>,
) -> Result<Site, Error> {
    let tree = Tree::new(cov);
    let files_dir = dir.join("files");
    create_dir(&files_dir)?;
    write_file(&dir.join("covnet.css"), |w| w.write_all(CSS.as_bytes()))?;
    write_file(&dir.join("covnet.js"), |w| w.write_all(JS.as_bytes()))?;
    let names = page_names(&tree.files);
    let date = info.date();
    let root = root_label(&tree.root);
    let ncap = cov.captures.len();

    // Pages are rendered side by side but created and written by one
    // thread, so that the renderers never wait on each other in the
    // kernel (file creation in one directory takes its lock). The channel
    // bounds the rendered pages held in memory. Whether it lowers system
    // time is not settled: single runs did (0.2 s against 0.8-1.2 s for
    // 2,000 pages), the bench of bench/RESULTS.md did not.
    let (pages, rendered) = std::sync::mpsc::sync_channel::<(PathBuf, String)>(PAGES_IN_FLIGHT);
    let (found, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), Error> {
            // Each page is one write from its rendered string (no
            // buffer in between to copy it through).
            for (path, html) in rendered {
                std::fs::write(&path, html.as_bytes())
                    .map_err(|source| Error::Write { path, source })?;
            }
            Ok(())
        });
        let found = render_pages(&tree, &names, cov, info, &date, delta, &files_dir, pages);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (found, written)
    });
    // A failed write closes the channel: its error is the one to report.
    written?;
    let found = found?;

    let mut unique = vec![0; ncap];
    for f in &tree.files {
        for (u, n) in unique.iter_mut().zip(&f.unique) {
            *u += n;
        }
    }
    let index = IndexPage {
        head: Head {
            version: VERSION,
            page_title: "Coverage report",
            info,
            date: &date,
            assets: "",
            root,
            captures: &cov.captures,
            stats: Stats::new(&tree.totals.total, &tree.totals.per_capture),
            machines: machine_rows(
                &cov.captures,
                &tree.totals.per_capture,
                &tree.totals.own,
                &unique,
            ),
            unique_toggle: false,
            diff: delta.is_some(),
        },
        dirs: tree
            .dirs
            .iter()
            .enumerate()
            .map(|(i, d)| DirRow::new(d, tree.dirs.get(i + 1)))
            .collect(),
        files: tree
            .files
            .iter()
            .zip(&names)
            .map(|(f, name)| FileRow {
                entry: f,
                dir: tree.dirs.get(f.dir).map_or("", |d| d.path.as_str()),
                href: format!("files/{name}"),
                stats: Stats::new(&f.summary, &f.by_capture),
            })
            .collect(),
        blind: blind_rows(&info.blind_spots),
    };
    write_file(&dir.join("index.html"), |w| index.write_into(w))?;
    if let Some(d) = delta {
        let pages = tree
            .files
            .iter()
            .zip(&names)
            .map(|(f, name)| (f.path, format!("files/{name}")))
            .collect();
        diff::html::write_page(d, cov, &info.title, dir, &pages)?;
    }

    Ok(Site {
        totals: tree.totals.clone(),
        pages: tree.files.len(),
        missing_sources: tree
            .files
            .iter()
            .zip(found)
            .filter(|(_, found)| !found)
            .map(|(f, _)| f.path.to_owned())
            .collect(),
    })
}

/// Rendered pages the writer thread may be behind by.
const PAGES_IN_FLIGHT: usize = 8;

/// Renders every file page (in parallel) and sends it, with its path, to
/// the writer; says which sources were found.
#[allow(clippy::too_many_arguments)]
fn render_pages(
    tree: &Tree<'_>,
    names: &[String],
    cov: &Coverage,
    info: &RunInfo,
    date: &str,
    delta: Option<&Differential>,
    files_dir: &Path,
    pages: std::sync::mpsc::SyncSender<(PathBuf, String)>,
) -> Result<Vec<bool>, Error> {
    let root = root_label(&tree.root);
    let ncap = cov.captures.len();
    tree.files
        .par_iter()
        .zip(names.par_iter())
        .map_with(pages, |pages, (f, name)| {
            let source = std::fs::read(f.path).ok();
            let text = source.as_deref().map(String::from_utf8_lossy);
            let file_delta = delta.and_then(|d| d.files.get(f.path));
            let page = FilePage {
                head: Head {
                    version: VERSION,
                    page_title: &f.rel,
                    info,
                    date,
                    assets: "../",
                    root,
                    captures: &cov.captures,
                    stats: Stats::new(&f.summary, &f.by_capture),
                    machines: machine_rows(&cov.captures, &f.by_capture, &f.own, &f.unique),
                    unique_toggle: true,
                    diff: delta.is_some(),
                },
                categories: file_delta.map(|d| diff::html::file_table(d, &cov.captures)),
                multi: ncap > 1,
                functions: f
                    .coverage
                    .functions
                    .iter()
                    .map(|fun| FnRow::new(fun, &cov.captures))
                    .collect(),
                has_excluded: !f.coverage.excluded_lines.is_empty()
                    || !f.coverage.excluded_branch_lines.is_empty(),
                source_found: text.is_some(),
                path: f.path,
                body: SourceBody {
                    file: f.coverage,
                    text: text.as_deref(),
                    captures: &cov.captures,
                    tla: delta.map(|_| file_delta),
                },
            };
            let path = files_dir.join(name);
            let mut html = String::with_capacity(text.as_deref().map_or(0, str::len) * 5 + 8192);
            page.render_into(&mut html).map_err(|e| Error::Write {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            // A closed channel means the writer failed; its error wins.
            let _ = pages.send((path, html));
            Ok(text.is_some())
        })
        .collect()
}

fn root_label(root: &str) -> &str {
    if root.is_empty() {
        "."
    } else {
        root
    }
}

/// Safe, unique page file names: the relative path with every character
/// outside `[A-Za-z0-9._-]` replaced, cut to a sane length, plus a hash of
/// the full path (and a counter should two hashes collide).
pub fn page_names(files: &[FileEntry<'_>]) -> Vec<String> {
    let mut used = HashSet::new();
    files
        .iter()
        .map(|f| {
            let mut stem: String = f
                .rel
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
                    '/' => '_',
                    _ => '-',
                })
                .collect();
            if stem.len() > 120 {
                // Keep the end (the file name), on a char boundary (ASCII).
                stem = stem.split_off(stem.len() - 120);
            }
            let stem = stem.trim_start_matches('.');
            let hash = fnv1a(f.path.as_bytes());
            let mut name = format!("{stem}.{:08x}.html", hash as u32);
            let mut n = 1;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{stem}.{:08x}-{n}.html", hash as u32);
            }
            name
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The capture that alone hit `line`, if exactly one did.
fn only_capture(line: &LineCoverage) -> Option<usize> {
    let mut hits = line
        .by_capture
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, _)| i);
    let first = hits.next()?;
    hits.next().is_none().then_some(first)
}

/// Totals of a scope (report, directory, file) with the data attributes
/// the machine filter reads.
struct Stats {
    lines: Percent,
    functions: Percent,
    branches: Percent,
    /// `lh,lf,fh,ff,bh,bf` of the combined counts.
    data_s: String,
    /// The same per capture, separated by `|`.
    data_c: String,
}

impl Stats {
    fn new(s: &Summary, by_capture: &[Summary]) -> Stats {
        let enc = |s: &Summary| {
            format!(
                "{},{},{},{},{},{}",
                s.lines_hit,
                s.lines_found,
                s.functions_hit,
                s.functions_found,
                s.branches_hit,
                s.branches_found
            )
        };
        Stats {
            lines: Percent::new(s.lines_hit, s.lines_found),
            functions: Percent::new(s.functions_hit, s.functions_found),
            branches: Percent::new(s.branches_hit, s.branches_found),
            data_s: enc(s),
            data_c: by_capture.iter().map(enc).collect::<Vec<_>>().join("|"),
        }
    }
}

struct MachineRow<'a> {
    name: &'a str,
    /// Over the machine's own code (the files it had).
    own_lines: Percent,
    own_functions: Percent,
    own_branches: Percent,
    /// Over every machine's code: the share of the whole.
    lines: Percent,
    functions: Percent,
    branches: Percent,
    unique_lines: u64,
}

fn machine_rows<'a>(
    captures: &'a [String],
    totals: &[Summary],
    own: &[Summary],
    unique: &[u64],
) -> Vec<MachineRow<'a>> {
    captures
        .iter()
        .zip(totals.iter().zip(own))
        .zip(unique)
        .map(|((name, (s, o)), &u)| MachineRow {
            name,
            own_lines: Percent::new(o.lines_hit, o.lines_found),
            own_functions: Percent::new(o.functions_hit, o.functions_found),
            own_branches: Percent::new(o.branches_hit, o.branches_found),
            lines: Percent::new(s.lines_hit, s.lines_found),
            functions: Percent::new(s.functions_hit, s.functions_found),
            branches: Percent::new(s.branches_hit, s.branches_found),
            unique_lines: u,
        })
        .collect()
}

/// What every page's header, cards and machine table show.
struct Head<'a> {
    version: &'static str,
    page_title: &'a str,
    info: &'a RunInfo,
    date: &'a str,
    /// Relative path from the page to the site's root (`""` or `"../"`).
    assets: &'static str,
    root: &'a str,
    captures: &'a [String],
    stats: Stats,
    machines: Vec<MachineRow<'a>>,
    unique_toggle: bool,
    /// The site has a differential page.
    diff: bool,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    head: Head<'a>,
    dirs: Vec<DirRow<'a>>,
    files: Vec<FileRow<'a>>,
    blind: Vec<BlindRow<'a>>,
}

/// One machine's blind spots on the index page.
struct BlindRow<'a> {
    machine: &'a str,
    /// Its not-instrumented totals, in words.
    summary: String,
    binaries: Vec<BlindBinaryRow<'a>>,
}

struct BlindBinaryRow<'a> {
    path: &'a str,
    /// Where its debug information came from, in words.
    debug: String,
    missing: bool,
    covered_files: usize,
    files: &'a [covnet_merger::blindspots::BlindFile],
}

fn blind_rows(machines: &[covnet_merger::blindspots::MachineBlindSpots]) -> Vec<BlindRow<'_>> {
    use covnet_merger::blindspots::DebugSource;
    machines
        .iter()
        .map(|m| BlindRow {
            machine: &m.machine,
            summary: crate::blindspots::totals_line(&m.blind.totals()),
            binaries: m
                .blind
                .binaries
                .iter()
                .map(|b| BlindBinaryRow {
                    path: &b.path,
                    debug: match &b.debug {
                        DebugSource::Embedded => "embedded".to_owned(),
                        DebugSource::Separate(f) => format!("from {f}"),
                        DebugSource::Missing => "no debug information".to_owned(),
                    },
                    missing: b.debug == DebugSource::Missing,
                    covered_files: b.covered_files,
                    files: &b.files,
                })
                .collect(),
        })
        .collect()
}

struct DirRow<'a> {
    entry: &'a DirEntry,
    /// Some directory below this one is listed (the row can fold).
    has_subdirs: bool,
    name: String,
    indent: usize,
    stats: Stats,
}

impl<'a> DirRow<'a> {
    fn new(entry: &'a DirEntry, next: Option<&DirEntry>) -> DirRow<'a> {
        DirRow {
            entry,
            has_subdirs: next.is_some_and(|n| n.depth > entry.depth),
            name: if entry.path.is_empty() {
                "(all files)".to_owned()
            } else {
                format!("{}/", entry.path.rsplit('/').next().unwrap_or(&entry.path))
            },
            indent: 10 + 18 * entry.depth,
            stats: Stats::new(&entry.summary, &entry.by_capture),
        }
    }
}

struct FileRow<'a> {
    entry: &'a FileEntry<'a>,
    dir: &'a str,
    href: String,
    stats: Stats,
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePage<'a> {
    head: Head<'a>,
    /// The file's category table (differential coverage), as HTML.
    categories: Option<String>,
    /// More than one capture: per-machine columns and data.
    multi: bool,
    functions: Vec<FnRow<'a>>,
    /// Some line or branch of the file is excluded (legend entry).
    has_excluded: bool,
    source_found: bool,
    path: &'a str,
    body: SourceBody<'a>,
}

struct FnRow<'a> {
    fun: &'a FunctionCoverage,
    data_c: String,
    per_machine: String,
}

impl<'a> FnRow<'a> {
    fn new(fun: &'a FunctionCoverage, captures: &[String]) -> FnRow<'a> {
        let mut per_machine = String::new();
        for (i, (name, n)) in captures.iter().zip(&fun.by_capture).enumerate() {
            let sep = if i == 0 { "" } else { " · " };
            let _ = write!(per_machine, "{sep}{name} {n}");
        }
        FnRow {
            fun,
            data_c: join(&fun.by_capture),
            per_machine,
        }
    }
}

/// The `<tbody>` rows of a file page, streamed straight into the writer:
/// every source line when the text is known (plus instrumented lines past
/// its end), else only the instrumented lines. Escapes all text itself.
struct SourceBody<'a> {
    file: &'a covnet_merger::model::FileCoverage,
    text: Option<&'a str>,
    captures: &'a [String],
    /// With differential coverage: the column of categories, and this
    /// file's (`None`: the file has none, every cell is empty).
    tla: Option<Option<&'a FileDelta>>,
}

impl askama::filters::HtmlSafe for SourceBody<'_> {}

impl fmt::Display for SourceBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rows go into one buffer (plain pushes, no formatting machinery),
        // written out in one piece: the page's biggest part. The buffer is
        // the rendering thread's own, kept from page to page.
        thread_local! {
            static ROWS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        ROWS.with_borrow_mut(|out| {
            out.clear();
            out.reserve(self.text.map_or(0, str::len) * 4 + 4096);
            self.render(out);
            f.write_str(out)
        })
    }
}

impl SourceBody<'_> {
    /// Appends every row to `out`.
    fn render(&self, out: &mut String) {
        let lines = &self.file.lines;
        let mut next = 1u32; // first line number not yet written
        if let Some(l) = lines.get(&0) {
            self.row(out, 0, "", Some(l));
        }
        if let Some(text) = self.text {
            let body = text.strip_suffix('\n').unwrap_or(text);
            if !body.is_empty() || text.ends_with('\n') {
                // Lines come in order: walk the map alongside the text.
                let mut counts = lines.range(1..).peekable();
                for (i, t) in body.split('\n').enumerate() {
                    let Ok(no) = u32::try_from(i + 1) else { break };
                    let t = t.strip_suffix('\r').unwrap_or(t);
                    while counts.next_if(|(&n, _)| n < no).is_some() {}
                    let line = counts.next_if(|(&n, _)| n == no).map(|(_, l)| l);
                    self.row(out, no, t, line);
                    next = no.saturating_add(1);
                }
            }
        }
        // Past the text (or without it): instrumented and excluded lines.
        let rest: std::collections::BTreeSet<u32> = lines
            .range(next..)
            .map(|(&no, _)| no)
            .chain(self.file.excluded_lines.range(next..).copied())
            .collect();
        for no in rest {
            self.row(out, no, "", lines.get(&no));
        }
    }

    fn multi(&self) -> bool {
        self.captures.len() > 1
    }

    /// A line whose data an exclusion marker or regex dropped: no count,
    /// no hit/miss class (the machine filter leaves it alone: no `data-c`).
    fn excluded_row(&self, out: &mut String, no: u32, text: &str) {
        out.push_str(r#"<tr id="L"#);
        push_int(out, no);
        out.push_str(r#"" class="e"#);
        out.push_str(self.same(no));
        out.push_str(r#""><td>"#);
        push_int(out, no);
        out.push_str(r#"</td><td class="c"></td><td class="k" title="excluded">⊘</td><td></td>"#);
        if self.multi() {
            out.push_str("<td></td>");
        }
        self.tla_cell(out, no);
        out.push_str("<td>");
        escape(out, text);
        out.push_str("</td></tr>\n");
    }

    /// The category of line `no` (nothing without differential coverage).
    fn tla_cell(&self, out: &mut String, no: u32) {
        let Some(delta) = self.tla else {
            return;
        };
        match delta.and_then(|d| d.lines.get(&no)) {
            Some(c) => {
                out.push_str(r#"<td class="tla tla"#);
                out.push_str(c.code());
                out.push_str(r#"" title=""#);
                out.push_str(c.describe());
                out.push_str(r#"">"#);
                out.push_str(c.code());
                out.push_str("</td>");
            }
            None => out.push_str(r#"<td class="tla"></td>"#),
        }
    }

    /// ` same` for a row the "only changed code" filter hides: no category,
    /// or code whose coverage did not change (CBC, UBC).
    fn same(&self, no: u32) -> &'static str {
        match self.tla {
            Some(delta) => match delta.and_then(|d| d.lines.get(&no)) {
                Some(c) if diff::html::changed(*c) => "",
                _ => " same",
            },
            None => "",
        }
    }

    fn row(&self, out: &mut String, no: u32, text: &str, line: Option<&LineCoverage>) {
        let Some(l) = line else {
            if self.file.excluded_lines.contains(&no) {
                return self.excluded_row(out, no, text);
            }
            out.push_str(r#"<tr id="L"#);
            push_int(out, no);
            let same = self.same(no);
            if same.is_empty() {
                out.push_str(r#"">"#);
            } else {
                out.push_str(r#"" class=""#);
                out.push_str(same.trim_start());
                out.push_str(r#"">"#);
            }
            out.push_str("<td>");
            push_int(out, no);
            out.push_str("</td><td></td><td></td><td></td>");
            if self.multi() {
                out.push_str("<td></td>");
            }
            self.tla_cell(out, no);
            out.push_str("<td>");
            escape(out, text);
            out.push_str("</td></tr>\n");
            return;
        };
        let partial =
            l.unexecuted_block || l.branches.iter().any(|b| b.taken.is_none_or(|t| t <= 0));
        let (class, mark) = match (l.count > 0, partial) {
            (true, false) => ("h", "✓"),
            (true, true) => ("p", "◐"),
            (false, _) => ("m", "✗"),
        };
        let only = if self.multi() { only_capture(l) } else { None };
        let unique = if only.is_some() && class != "m" {
            " u"
        } else {
            ""
        };
        out.push_str(r#"<tr id="L"#);
        push_int(out, no);
        out.push_str(r#"" class=""#);
        out.push_str(class);
        out.push_str(unique);
        out.push_str(self.same(no));
        out.push('"');
        if self.multi() {
            out.push_str(r#" data-c=""#);
            join_counts(out, l.by_capture.iter().map(|&c| Some(c)));
            out.push('"');
        }
        if l.unexecuted_block {
            out.push_str(r#" data-u="1""#);
        }
        out.push_str("><td>");
        push_int(out, no);
        out.push_str(r#"</td><td class="c">"#);
        push_int(out, l.count);
        out.push_str(r#"</td><td class="k">"#);
        out.push_str(mark);
        out.push_str("</td><td>");
        if self.file.excluded_branch_lines.contains(&no) {
            out.push_str(r#"<span class="br e" title="branches excluded by a marker or regex">excluded</span>"#);
        }
        for b in &l.branches {
            let (class, what) = match b.taken {
                Some(t) if t > 0 => ("t", "taken"),
                Some(_) => ("n", "never taken"),
                None => ("x", "never reached"),
            };
            out.push_str(r#"<span class="br "#);
            out.push_str(class);
            out.push_str(r#"" title="block "#);
            push_int(out, b.block);
            out.push_str(" branch ");
            push_int(out, b.branch);
            out.push_str(": ");
            out.push_str(what);
            if let Some(t) = b.taken.filter(|&t| t > 0) {
                out.push(' ');
                push_int(out, t);
                out.push_str(" times");
            }
            out.push_str(r#"" data-t=""#);
            join_counts(out, std::iter::once(b.taken));
            out.push('"');
            if self.multi() {
                out.push_str(r#" data-c=""#);
                join_counts(out, b.by_capture.iter().copied());
                out.push('"');
            }
            match b.taken {
                Some(t) if t > 0 => {
                    out.push_str(">✓");
                    push_int(out, t);
                    out.push_str("</span>");
                }
                Some(t) => {
                    out.push_str(">✗");
                    push_int(out, t);
                    out.push_str("</span>");
                }
                None => out.push_str(">–</span>"),
            }
        }
        out.push_str("</td>");
        if self.multi() {
            out.push_str(r#"<td class="w">"#);
            if let Some(i) = only {
                out.push_str("only ");
                escape(out, self.captures.get(i).map_or("?", String::as_str));
            } else {
                let hit = || {
                    self.captures
                        .iter()
                        .zip(&l.by_capture)
                        .filter(|(_, &c)| c > 0)
                        .map(|(n, _)| n)
                };
                if hit().count() == self.captures.len() {
                    out.push_str("all");
                } else {
                    for (i, name) in hit().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        escape(out, name);
                    }
                }
            }
            out.push_str("</td>");
        }
        self.tla_cell(out, no);
        out.push_str("<td>");
        escape(out, text);
        out.push_str("</td></tr>\n");
    }
}

/// Appends `v` in decimal (what `{v}` writes, without the formatting
/// machinery).
fn push_int(out: &mut String, v: impl Into<i64>) {
    let v: i64 = v.into();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            // `n % 10` is a digit: the cast cannot truncate.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &d in buf.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// Writes counts separated by commas, `-` for a branch block that never ran.
fn join_counts(out: &mut String, values: impl Iterator<Item = Option<i64>>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Some(v) => push_int(out, v),
            None => out.push('-'),
        }
    }
}

/// HTML-escapes `s` (text and attribute values), in the entity forms
/// askama uses, writing unescaped runs in one piece.
fn escape(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'<' => "&#60;",
            b'>' => "&#62;",
            b'&' => "&#38;",
            b'"' => "&#34;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices are on char boundaries.
        out.push_str(s.get(start..i).unwrap_or_default());
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

fn join(values: &[i64]) -> String {
    let mut s = String::with_capacity(values.len() * 3);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v}");
    }
    s
}

#[cfg(test)]
mod tests;
