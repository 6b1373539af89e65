//! The differential page of the HTML site (`diff.html`): the legend, the
//! category tables per machine, directory and file, and every file's
//! source with each line's category, filterable to the changed code.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use covnet_merger::model::Coverage;

use super::output::directories;
use super::{Category, Counts, Differential, FileDelta, ALL};
use crate::cobertura::escape;
use crate::output::{create_dir, write_file};
use crate::tree::{common_root, relative};
use crate::Error;

/// Name of the page inside the site directory.
pub const PAGE: &str = "diff.html";

const CSS: &str = "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}\
pre{margin:0}.src td{text-align:left;border:none;padding:0 6px;font-family:monospace;white-space:pre}\
.tlaUNC,.tlaLBC,.tlaUIC{background:#ffb3b3}.tlaUBC{background:#ffe0e0}.tlaGBC,.tlaGIC,.tlaGNC{background:#b3ffb3}.tlaCBC{background:#e0ffe0}\
.tlaEUB,.tlaECB,.tlaDUB,.tlaDCB{background:#e0e0ff}body.changed tr.same,body.changed div.same{display:none}";

fn row(name: &str, c: &Counts, md: &mut String) {
    let _ = write!(md, "<tr><td>{}</td>", escape(name));
    for k in ALL {
        let i = k as usize;
        let _ = write!(
            md,
            "<td class=\"tla{}\">{}/{}/{}</td>",
            k.code(),
            c.lines[i],
            c.functions[i],
            c.branches[i]
        );
    }
    md.push_str("</tr>\n");
}

fn header(first: &str, md: &mut String) {
    let _ = write!(md, "<table><tr><th>{first}</th>");
    for k in ALL {
        let _ = write!(md, "<th title=\"{}\">{}</th>", k.describe(), k.code());
    }
    md.push_str("</tr>\n");
}

/// A line shows under "only changed code": new code, or code whose
/// coverage changed.
pub(crate) fn changed(c: Category) -> bool {
    !matches!(c, Category::Cbc | Category::Ubc)
}

/// The category table of one file's page: the file's counts, then each
/// machine's (cells: lines/functions/branches), as HTML.
pub(crate) fn file_table(d: &FileDelta, captures: &[String]) -> String {
    let mut h = String::new();
    header("", &mut h);
    row("this file", &d.counts, &mut h);
    if captures.len() > 1 {
        for (n, c) in captures.iter().zip(&d.by_capture) {
            row(n, c, &mut h);
        }
    }
    h.push_str("</table>");
    h
}

/// Writes `diff.html` into the site directory `dir`: the tables list
/// every file (linked to its page in `pages`, by path), the sources only
/// those the diff changed or with LBC lines (read from their paths; a
/// missing source lists only the categories).
pub fn write_page(
    diff: &Differential,
    cov: &Coverage,
    title: &str,
    dir: &Path,
    pages: &HashMap<&str, String>,
) -> Result<(), Error> {
    create_dir(dir)?;
    let root = common_root(diff.files.keys().map(String::as_str));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t} — differential coverage</title><style>{CSS}</style></head><body>\n<h1>{t}: differential coverage</h1>\n\
         <p><label><input type=\"checkbox\" id=\"only\" onchange=\"document.body.classList.toggle('changed',this.checked)\"> only changed code</label> · <a href=\"index.html\">full report</a></p>\n",
        t = escape(title)
    );
    h.push_str("<h2>Legend</h2><table>");
    for k in ALL {
        let _ = write!(
            h,
            "<tr><td class=\"tla{0}\">{0}</td><td>{1}</td></tr>",
            k.code(),
            k.describe()
        );
    }
    h.push_str("</table><p>Cells: lines/functions/branches.</p>\n<h2>Total and per machine</h2>\n");
    header("Machine", &mut h);
    row("total", &diff.total, &mut h);
    for (n, c) in cov.captures.iter().zip(&diff.by_capture) {
        row(n, c, &mut h);
    }
    h.push_str("</table>\n<h2>Directories</h2>\n");
    header("Directory", &mut h);
    for (d, c) in directories(diff, &root) {
        row(&d, &c, &mut h);
    }
    h.push_str("</table>\n<h2>Files</h2>\n");
    header("File", &mut h);
    for (p, d) in &diff.files {
        let interesting = d.changed || d.lines.values().any(|&c| changed(c)) || !d.gone.is_empty();
        let _ = write!(
            h,
            "<tr class=\"{}\">",
            if interesting { "chg" } else { "same" }
        );
        let mut one = String::new();
        row(relative(p, &root), &d.counts, &mut one);
        let one = one.trim_start_matches("<tr>");
        match pages.get(p.as_str()) {
            // Link the name (escaped already) to the file's page.
            Some(href) => {
                let name = escape(relative(p, &root)).to_string();
                h.push_str(&one.replacen(
                    &format!("<td>{name}</td>"),
                    &format!("<td><a href=\"{}\">{name}</a></td>", escape(href)),
                    1,
                ));
            }
            None => h.push_str(one),
        }
    }
    h.push_str("</table>\n<h2>Sources</h2>\n");
    for (p, d) in &diff.files {
        // Only files the change touched or that lost coverage are listed
        // (a page the size of the change, not of the project).
        let interesting = d.changed || d.counts.lost_lines() > 0;
        if !interesting {
            continue;
        }
        let _ = write!(
            h,
            "<div class=\"{}\"><h3 id=\"{}\">{}</h3><table class=\"src\">",
            if interesting { "chg" } else { "same" },
            escape(relative(p, &root)),
            escape(relative(p, &root))
        );
        let text = std::fs::read_to_string(p).unwrap_or_default();
        if text.is_empty() {
            for (n, c) in &d.lines {
                let cls = if changed(*c) { "chg" } else { "same" };
                let _ = write!(
                    h,
                    "<tr class=\"{cls} tla{0}\"><td>{n}</td><td>{0}</td><td></td></tr>",
                    c.code()
                );
            }
        }
        for (i, src) in text.lines().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            match d.lines.get(&n) {
                Some(c) => {
                    let cls = if changed(*c) { "chg" } else { "same" };
                    let _ = write!(h, "<tr class=\"{cls} tla{0}\" data-tla=\"{0}\"><td>{n}</td><td>{0}</td><td>{1}</td></tr>", c.code(), escape(src));
                }
                None => {
                    let _ = write!(
                        h,
                        "<tr class=\"same\"><td>{n}</td><td></td><td>{}</td></tr>",
                        escape(src)
                    );
                }
            }
        }
        h.push_str("</table></div>\n");
    }
    h.push_str("</body></html>\n");
    write_file(&dir.join(PAGE), |w| w.write_all(h.as_bytes()))
}
