//! Per-file totals as CSV, with gcovr's `--csv` columns:
//!
//! ```text
//! filename,line_total,line_covered,line_percent,branch_total,branch_covered,branch_percent,function_total,function_covered,function_percent
//! src/a.c,10,7,0.7,4,1,0.25,2,2,1.0
//! ```
//!
//! One row per source file, in path order; `filename` is relative to the
//! files' common root (as in the HTML and Cobertura reports). As in gcovr,
//! each `*_percent` is the covered share from 0 to 1 (not a percentage,
//! despite the name), empty where the total is 0. Rows end in CRLF
//! (RFC 4180); file names holding a comma, quote or line break are quoted.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::Coverage;

use crate::tree::Tree;
use crate::Error;

/// The header row.
pub const HEADER: &str = "filename,line_total,line_covered,line_percent,branch_total,branch_covered,branch_percent,function_total,function_covered,function_percent";

/// Writes the per-file CSV of `cov` to `out`.
pub fn write(cov: &Coverage, out: &mut impl Write) -> io::Result<()> {
    let tree = Tree::new(cov);
    write!(out, "{HEADER}\r\n")?;
    for f in &tree.files {
        let s = &f.summary;
        write!(
            out,
            "{},{},{},{},{},{},{},{},{},{}\r\n",
            field(&f.rel),
            s.lines_found,
            s.lines_hit,
            ratio(s.lines_hit, s.lines_found),
            s.branches_found,
            s.branches_hit,
            ratio(s.branches_hit, s.branches_found),
            s.functions_found,
            s.functions_hit,
            ratio(s.functions_hit, s.functions_found),
        )?;
    }
    Ok(())
}

/// Writes the per-file CSV of `cov` to the file `path`.
pub fn write_path(cov: &Coverage, path: &Path) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, w))
}

/// `hit / total` from 0 to 1 with up to four decimals, empty when `total`
/// is 0.
fn ratio(hit: u64, total: u64) -> String {
    if total == 0 {
        return String::new();
    }
    let r = format!("{:.4}", hit as f64 / total as f64);
    let r = r.trim_end_matches('0');
    if r.ends_with('.') {
        format!("{r}0")
    } else {
        r.to_owned()
    }
}

/// One CSV field, quoted (RFC 4180) when it must be.
fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn rows_hold_each_files_totals() {
        let cov = sample::coverage();
        let mut out = Vec::new();
        write(&cov, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(rows[0], HEADER);
        assert_eq!(rows.len(), cov.files.len() + 1);
        assert_eq!(rows[1], "include/util.h,2,0,0.0,0,0,,0,0,");
        // The odd name is quoted (it holds a quote), its quotes doubled.
        assert!(
            rows[2]
                .starts_with("\"src/net/<odd & \"\"name\"\">.cc\",3,2,0.6667,3,2,0.6667,1,1,1.0"),
            "{}",
            rows[2]
        );
        let s = cov.files["/proj/src/server.c"].summary();
        assert_eq!(
            rows[3],
            format!(
                "src/server.c,{},{},0.8333,{},{},0.5,{},{},0.5",
                s.lines_found,
                s.lines_hit,
                s.branches_found,
                s.branches_hit,
                s.functions_found,
                s.functions_hit
            )
        );
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(0, 0), "");
        assert_eq!(ratio(1, 3), "0.3333");
        assert_eq!(ratio(2, 2), "1.0");
        assert_eq!(ratio(0, 5), "0.0");
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
