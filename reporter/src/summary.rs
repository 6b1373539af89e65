//! The terminal summary table and the `--fail-under-*` thresholds.

use std::fmt;
use std::io::{self, Write};

use covnet_merger::model::{Coverage, Summary};

use crate::tree::Totals;
use crate::{Percent, RunInfo};

/// Writes the summary table: totals of lines, functions and branches and,
/// when the coverage has several captures, one row group per capture.
pub fn write_table(cov: &Coverage, info: &RunInfo, out: &mut impl Write) -> io::Result<()> {
    write_table_with(cov, info, &Totals::of(cov), out)
}

/// [`write_table`] with `cov`'s totals already summed (the HTML site sums
/// them for its index: [`crate::html::Site::totals`]).
pub fn write_table_with(
    cov: &Coverage,
    info: &RunInfo,
    totals: &Totals,
    out: &mut impl Write,
) -> io::Result<()> {
    let Totals {
        total,
        per_capture: per,
        own,
    } = totals;
    writeln!(
        out,
        "{} ({} files, {})",
        info.title,
        cov.files.len(),
        info.date()
    )?;
    writeln!(
        out,
        "  {:<10} {:>12} {:>12} {:>9}",
        "", "hit", "total", "coverage"
    )?;
    for (name, p) in metrics(total) {
        writeln!(out, "  {name:<10} {:>12} {:>12} {:>9}", p.hit, p.found, p)?;
    }
    if cov.captures.len() > 1 {
        // Each machine's share of the whole (`per`), and of its own code
        // (`own`).
        let width = cov
            .captures
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(0)
            .max(7);
        writeln!(
            out,
            "  per machine, of its own code (the files of the objects it ran); all: its lines of every machine's code (line counts need not add up: gcov's are not additive)"
        )?;
        writeln!(
            out,
            "  {:<width$} {:>16} {:>16} {:>16} {:>8}",
            "machine", "lines", "functions", "branches", "all"
        )?;
        for (name, (s, o)) in cov.captures.iter().zip(per.iter().zip(own)) {
            let [l, f, b] = metrics(o).map(|(_, p)| p);
            let all = Percent::new(s.lines_hit, s.lines_found);
            writeln!(
                out,
                "  {name:<width$} {l:>16} {f:>16} {b:>16} {:>8}",
                all.to_string()
            )?;
        }
    }
    crate::blindspots::write_summary(&info.blind_spots, out)
}

/// The three ratios of a summary, named for display.
pub fn metrics(s: &Summary) -> [(&'static str, Percent); 3] {
    [
        ("lines", Percent::new(s.lines_hit, s.lines_found)),
        (
            "functions",
            Percent::new(s.functions_hit, s.functions_found),
        ),
        ("branches", Percent::new(s.branches_hit, s.branches_found)),
    ]
}

/// Minimum coverage percentages (`--fail-under-lines/-functions/-branches`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Required line coverage, in percent.
    pub lines: Option<f64>,
    /// Required function coverage, in percent.
    pub functions: Option<f64>,
    /// Required branch coverage, in percent.
    pub branches: Option<f64>,
}

/// One threshold that the coverage does not meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shortfall {
    /// `lines`, `functions` or `branches`.
    pub metric: &'static str,
    /// The required percentage.
    pub required: f64,
    /// What was measured.
    pub actual: Percent,
}

impl Shortfall {
    /// How many more items must be hit to meet the threshold.
    pub fn missing(&self) -> u64 {
        let need = (self.required / 100.0 * self.actual.found as f64).ceil();
        // `need` is within 0..=found because `required` is at most 100.
        (need as u64).saturating_sub(self.actual.hit)
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} coverage {} ({} of {}) is below the required {}%: {} more {} must be hit",
            self.metric.trim_end_matches('s'),
            self.actual,
            self.actual.hit,
            self.actual.found,
            self.required,
            self.missing(),
            self.metric
        )
    }
}

impl Thresholds {
    /// Whether no threshold is set.
    pub fn is_empty(&self) -> bool {
        self.lines.is_none() && self.functions.is_none() && self.branches.is_none()
    }

    /// The thresholds `summary` does not meet (empty when all are met; a
    /// metric with nothing found meets any threshold).
    pub fn check(&self, summary: &Summary) -> Vec<Shortfall> {
        let [l, f, b] = metrics(summary);
        [(self.lines, l), (self.functions, f), (self.branches, b)]
            .into_iter()
            .filter_map(|(req, (metric, actual))| {
                let required = req?;
                (!actual.meets(required)).then_some(Shortfall {
                    metric,
                    required,
                    actual,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use covnet_merger::model::{FileCoverage, LineCoverage};

    fn cov() -> Coverage {
        let mut cov = Coverage {
            captures: vec!["web".into(), "db".into()],
            ..Default::default()
        };
        let mut f = FileCoverage::default();
        for (n, c, by) in [
            (1, 4, [4, 0]),
            (2, 0, [0, 0]),
            (3, 1, [0, 1]),
            (4, 0, [0, 0]),
        ] {
            f.lines.insert(
                n,
                LineCoverage {
                    count: c,
                    by_capture: by.to_vec(),
                    ..Default::default()
                },
            );
        }
        cov.files.insert("/s/a.c".into(), f);
        cov
    }

    #[test]
    fn table_lists_totals_and_machines() {
        let info = RunInfo {
            title: "t".into(),
            timestamp: 0,
            inputs: vec![],
            notes: vec![],
            blind_spots: vec![],
        };
        let mut out = Vec::new();
        write_table(&cov(), &info, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "t (1 files, 1970-01-01 00:00:00 UTC)");
        let words: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(words, ["lines", "2", "4", "50.0%"]);
        assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>()[3], "n/a");
        let web: Vec<&str> = lines[7].split_whitespace().collect();
        // Own code (every file here: no ownership known), then the share of
        // the whole.
        assert_eq!(web, ["web", "25.0%", "n/a", "n/a", "25.0%"]);
        assert!(lines[8].starts_with("  db "));
        // A file only `db` had: web's own code is the rest.
        let mut owned = cov();
        let mut other = owned.files.values().next().unwrap().clone();
        other.owned_by = vec![false, true];
        for l in other.lines.values_mut() {
            l.by_capture[0] = 0;
        }
        owned.files.insert("/src/only_db.c".into(), other);
        let mut out = Vec::new();
        write_table(&owned, &info, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let web: Vec<&str> = text.lines().nth(7).unwrap().split_whitespace().collect();
        assert_eq!(web, ["web", "25.0%", "n/a", "n/a", "12.5%"]);
    }

    #[test]
    fn the_site_sums_the_totals_the_table_sums() {
        let mut owned = cov();
        let mut other = owned.files.values().next().unwrap().clone();
        other.owned_by = vec![false, true];
        owned.files.insert("/src/only_db.c".into(), other);
        let t = Totals::of(&owned);
        assert_eq!(t.total.lines_found, 8);
        assert_eq!(t.per_capture[0].lines_hit, 2);
        assert_eq!(t.own[0].lines_hit, 1);
        assert_eq!(t.own[1].lines_hit, 2);
        let dir = tempfile::tempdir().unwrap();
        let info = RunInfo::now("t", vec![]);
        let site = crate::html::write_site(&owned, &info, dir.path()).unwrap();
        assert_eq!(site.totals, t);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_table(&owned, &info, &mut a).unwrap();
        write_table_with(&owned, &info, &site.totals, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn thresholds_name_the_shortfall() {
        let s = cov().summary();
        let t = Thresholds {
            lines: Some(80.0),
            functions: Some(90.0),
            branches: None,
        };
        let short = t.check(&s);
        assert_eq!(
            short.len(),
            1,
            "functions: nothing found meets any threshold"
        );
        assert_eq!(short[0].missing(), 2);
        assert_eq!(
            short[0].to_string(),
            "line coverage 50.0% (2 of 4) is below the required 80%: 2 more lines must be hit"
        );
        assert!(Thresholds {
            lines: Some(50.0),
            ..Default::default()
        }
        .check(&s)
        .is_empty());
        assert!(Thresholds::default().is_empty());
    }
}
