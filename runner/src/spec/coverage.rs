//! The spec's `[coverage]` table: everything a run's coverage needs, so a
//! spec carries its whole coverage setup. Command-line flags override it
//! field by field.
//!
//! ```toml
//! [coverage]
//! build = ["../server/build", "/src/client/out"]  # more trees with .gcno
//! objects = ["build/client-clang"]     # clang -fcoverage-mapping binaries
//! include = ["*/src/*"]
//! exclude = ["*/tests/*"]
//! path_map = ["/build/server=/home/me/server"]
//! fail_under = { lines = 80, functions = 75, branches = 50 }
//! per_subtest = true
//! lcov_format = 1
//! markers = true                       # LCOV_EXCL_* / GCOVR_EXCL_* (default on)
//! exclude_line_regex = "assert\\("
//! exclude_branch_regex = "LIKELY"
//! sonarqube = true                     # more report formats: true for the
//! coveralls = "ci/coveralls.json"      # default name in the output
//! gcovr_json = true                    # directory, or a path (relative
//! csv = false                          # to the output directory)
//! # differential coverage (lcov 2.x's categories) against a baseline:
//! baseline = ["base/coverage.json"]    # tracefiles, JSON or capture dirs
//! diff_base = "origin/main"            # or: diff = "change.diff"
//! fail_under_new_lines = 90
//! fail_on_lost_coverage = true
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use super::{SpecError, SpecErrorKind};

/// Coverage settings of a spec (`[coverage]`); all empty by default.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageSettings {
    /// Build trees holding `.gcno` files, searched after each `.gcda`'s own
    /// host path and the spec's directory (absolute, resolved against the
    /// spec's directory).
    pub build: Vec<PathBuf>,
    /// Programs and shared libraries built with clang
    /// `-fprofile-instr-generate -fcoverage-mapping`, whose coverage
    /// mappings the machines' `.profraw` files are read against (absolute,
    /// resolved against the spec's directory).
    pub objects: Vec<PathBuf>,
    /// Keep only source files matching one of these globs.
    pub include: Vec<String>,
    /// Drop source files matching one of these globs.
    pub exclude: Vec<String>,
    /// `FROM=TO` prefix rewrites of build and source paths.
    pub path_map: Vec<String>,
    /// Minimum coverage, in percent; a run below fails with exit code 3.
    pub fail_under: FailUnder,
    /// Keep what each subtest covered as a capture of its own.
    pub per_subtest: bool,
    /// lcov dialect of the tracefiles: 1 or 2.
    pub lcov_format: u8,
    /// Honour `LCOV_EXCL_*` / `GCOVR_EXCL_*` markers in the sources.
    pub markers: bool,
    /// Exclude source lines matching this regex.
    pub exclude_line_regex: Option<String>,
    /// Drop the branches of source lines matching this regex.
    pub exclude_branch_regex: Option<String>,
    /// More report formats to write.
    pub formats: ReportFormats,
    /// Differential coverage against a baseline.
    pub differential: DiffSettings,
}

/// Differential coverage settings (lcov 2.x's categories): the baseline,
/// the change from the baseline's sources to the current ones, and the
/// gates on new and lost coverage. Off while all are empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiffSettings {
    /// Baseline coverage: lcov tracefiles, covnet JSON, gcovr JSON or
    /// capture directories (absolute, resolved against the spec's
    /// directory), merged.
    pub baseline: Vec<PathBuf>,
    /// The change as a unified diff file.
    pub diff: Option<PathBuf>,
    /// The change as a git revision or range (`git diff REF`).
    pub diff_base: Option<String>,
    /// Directory the diff's paths are relative to (default: the current
    /// directory; for `diff_base`, the repository's top).
    pub diff_root: Option<PathBuf>,
    /// Minimum share of new lines covered, in percent.
    pub fail_under_new_lines: Option<f64>,
    /// Fail when a line covered in the baseline is not covered now (LBC).
    pub fail_on_lost_coverage: bool,
}

impl DiffSettings {
    /// Whether any differential input is given (a baseline or a change).
    pub fn is_on(&self) -> bool {
        !self.baseline.is_empty() || self.diff.is_some() || self.diff_base.is_some()
    }

    /// Whether a gate is set.
    pub fn has_gates(&self) -> bool {
        self.fail_under_new_lines.is_some() || self.fail_on_lost_coverage
    }
}

/// The report formats beyond `covnet run`'s usual set, each off (`None`)
/// or a path, relative to the output directory unless absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFormats {
    /// SonarQube generic coverage XML (`true`: `sonarqube.xml`).
    pub sonarqube: Option<PathBuf>,
    /// Coveralls JSON (`true`: `coveralls.json`).
    pub coveralls: Option<PathBuf>,
    /// gcovr JSON (`true`: `gcovr.json`).
    pub gcovr_json: Option<PathBuf>,
    /// Per-file CSV (`true`: `coverage.csv`).
    pub csv: Option<PathBuf>,
}

/// `true`, `false` or a path, as the format fields take them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OnOrPath {
    On(bool),
    Path(PathBuf),
}

impl OnOrPath {
    fn path(v: Option<OnOrPath>, default: &str) -> Option<PathBuf> {
        match v? {
            OnOrPath::On(true) => Some(PathBuf::from(default)),
            OnOrPath::On(false) => None,
            OnOrPath::Path(p) => Some(p),
        }
    }
}

impl Default for CoverageSettings {
    fn default() -> Self {
        CoverageSettings {
            build: Vec::new(),
            objects: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            path_map: Vec::new(),
            fail_under: FailUnder::default(),
            per_subtest: false,
            lcov_format: 1,
            markers: true,
            exclude_line_regex: None,
            exclude_branch_regex: None,
            formats: ReportFormats::default(),
            differential: DiffSettings::default(),
        }
    }
}

/// Coverage thresholds in percent (`fail_under = { lines = 80 }`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FailUnder {
    /// Lines.
    pub lines: Option<f64>,
    /// Functions.
    pub functions: Option<f64>,
    /// Branches.
    pub branches: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCoverage {
    #[serde(default)]
    build: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    objects: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    path_map: Vec<Spanned<String>>,
    fail_under: Option<RawFailUnder>,
    per_subtest: Option<bool>,
    lcov_format: Option<Spanned<i64>>,
    markers: Option<bool>,
    exclude_line_regex: Option<Spanned<String>>,
    exclude_branch_regex: Option<Spanned<String>>,
    sonarqube: Option<OnOrPath>,
    coveralls: Option<OnOrPath>,
    gcovr_json: Option<OnOrPath>,
    csv: Option<OnOrPath>,
    baseline: Option<OneOrMany>,
    diff: Option<Spanned<PathBuf>>,
    diff_base: Option<Spanned<String>>,
    diff_root: Option<Spanned<PathBuf>>,
    fail_under_new_lines: Option<Spanned<f64>>,
    fail_on_lost_coverage: Option<bool>,
}

/// One path or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailUnder {
    lines: Option<Spanned<f64>>,
    functions: Option<Spanned<f64>>,
    branches: Option<Spanned<f64>>,
}

impl Validator<'_> {
    pub(super) fn coverage(&self, raw: RawCoverage) -> Result<CoverageSettings, SpecError> {
        let invalid =
            |field: &'static str, why: String| SpecErrorKind::InvalidCoverage { field, why };
        let differential = self.differential(&raw)?;
        let build = raw
            .build
            .iter()
            .map(|b| self.resolve(b.get_ref()))
            .collect();
        let objects = raw
            .objects
            .iter()
            .map(|b| self.resolve(b.get_ref()))
            .collect();
        for (field, globs) in [("include", &raw.include), ("exclude", &raw.exclude)] {
            for g in globs {
                if let Err(e) =
                    covnet_merger::paths::SourceFilter::new(&[g.get_ref().as_str()], &[])
                {
                    return Err(self.err(Some(&g.span()), invalid(field, e.to_string())));
                }
            }
        }
        for m in &raw.path_map {
            if let Err(e) = covnet_merger::paths::PathMap::parse(&[m.get_ref()]) {
                return Err(self.err(Some(&m.span()), invalid("path_map", e.to_string())));
            }
        }
        let mut fail_under = FailUnder::default();
        if let Some(f) = raw.fail_under {
            for (field, value, slot) in [
                ("fail_under.lines", f.lines, &mut fail_under.lines),
                (
                    "fail_under.functions",
                    f.functions,
                    &mut fail_under.functions,
                ),
                ("fail_under.branches", f.branches, &mut fail_under.branches),
            ] {
                if let Some(v) = value {
                    let pct = *v.get_ref();
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(self.err(
                            Some(&v.span()),
                            invalid(field, format!("{pct} is not a percentage from 0 to 100")),
                        ));
                    }
                    *slot = Some(pct);
                }
            }
        }
        let lcov_format = match raw.lcov_format {
            None => 1,
            Some(v) => match *v.get_ref() {
                1 => 1,
                2 => 2,
                n => {
                    return Err(self.err(
                        Some(&v.span()),
                        invalid("lcov_format", format!("{n} is not an lcov format (1 or 2)")),
                    ))
                }
            },
        };
        for (field, re) in [
            ("exclude_line_regex", &raw.exclude_line_regex),
            ("exclude_branch_regex", &raw.exclude_branch_regex),
        ] {
            if let Some(re) = re {
                if let Err(e) = regex::Regex::new(re.get_ref()) {
                    return Err(self.err(Some(&re.span()), invalid(field, e.to_string())));
                }
            }
        }
        let strings = |v: Vec<Spanned<String>>| v.into_iter().map(Spanned::into_inner).collect();
        Ok(CoverageSettings {
            build,
            objects,
            include: strings(raw.include),
            exclude: strings(raw.exclude),
            path_map: strings(raw.path_map),
            fail_under,
            per_subtest: raw.per_subtest.unwrap_or(false),
            lcov_format,
            markers: raw.markers.unwrap_or(true),
            exclude_line_regex: raw.exclude_line_regex.map(Spanned::into_inner),
            exclude_branch_regex: raw.exclude_branch_regex.map(Spanned::into_inner),
            formats: ReportFormats {
                sonarqube: OnOrPath::path(raw.sonarqube, "sonarqube.xml"),
                coveralls: OnOrPath::path(raw.coveralls, "coveralls.json"),
                gcovr_json: OnOrPath::path(raw.gcovr_json, "gcovr.json"),
                csv: OnOrPath::path(raw.csv, "coverage.csv"),
            },
            differential,
        })
    }

    fn differential(&self, raw: &RawCoverage) -> Result<DiffSettings, SpecError> {
        let invalid =
            |field: &'static str, why: String| SpecErrorKind::InvalidCoverage { field, why };
        let baseline = match &raw.baseline {
            None => Vec::new(),
            Some(OneOrMany::One(p)) => vec![self.resolve(p)],
            Some(OneOrMany::Many(ps)) => ps.iter().map(|p| self.resolve(p)).collect(),
        };
        if let (Some(_), Some(base)) = (&raw.diff, &raw.diff_base) {
            return Err(self.err(
                Some(&base.span()),
                invalid(
                    "diff_base",
                    "give the change once: `diff` (a unified diff file) or `diff_base` (a git revision), not both".to_owned(),
                ),
            ));
        }
        let fail_under_new_lines = match &raw.fail_under_new_lines {
            None => None,
            Some(v) => {
                let pct = *v.get_ref();
                if !(0.0..=100.0).contains(&pct) {
                    return Err(self.err(
                        Some(&v.span()),
                        invalid(
                            "fail_under_new_lines",
                            format!("{pct} is not a percentage from 0 to 100"),
                        ),
                    ));
                }
                Some(pct)
            }
        };
        let settings = DiffSettings {
            baseline,
            diff: raw.diff.as_ref().map(|d| self.resolve(d.get_ref())),
            diff_base: raw.diff_base.as_ref().map(|b| b.get_ref().clone()),
            diff_root: raw.diff_root.as_ref().map(|d| self.resolve(d.get_ref())),
            fail_under_new_lines,
            fail_on_lost_coverage: raw.fail_on_lost_coverage.unwrap_or(false),
        };
        if settings.has_gates() && !settings.is_on() {
            return Err(self.err(
                None,
                invalid(
                    "fail_under_new_lines",
                    "the new-code gates need a change to judge: add `baseline` with `diff` or `diff_base`".to_owned(),
                ),
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::Spec;

    const MACHINE: &str = "[machines.a]\n";

    fn parse(table: &str) -> Result<Spec, SpecError> {
        Spec::from_str(&format!("{MACHINE}{table}"), Path::new("/p/spec/net.toml"))
    }

    #[test]
    fn full_table_parses_and_paths_resolve_against_the_spec() {
        let spec = parse(
            r#"[coverage]
build = ["../server/build", "/abs/client"]
include = ["*/src/*"]
exclude = ["*/tests/*"]
path_map = ["/b=/home/me/b"]
fail_under = { lines = 80, branches = 50.5 }
per_subtest = true
lcov_format = 2
markers = false
exclude_line_regex = "assert\\("
sonarqube = true
coveralls = "ci/coveralls.json"
csv = false
"#,
        )
        .expect("valid");
        let c = spec.coverage;
        assert_eq!(
            c.build,
            [
                PathBuf::from("/p/server/build"),
                PathBuf::from("/abs/client")
            ]
        );
        assert_eq!(c.include, ["*/src/*"]);
        assert_eq!(c.fail_under.lines, Some(80.0));
        assert_eq!(c.fail_under.functions, None);
        assert_eq!(c.fail_under.branches, Some(50.5));
        assert!(c.per_subtest && !c.markers);
        assert_eq!(c.lcov_format, 2);
        assert_eq!(c.exclude_line_regex.as_deref(), Some("assert\\("));
        assert_eq!(
            c.formats,
            ReportFormats {
                sonarqube: Some("sonarqube.xml".into()),
                coveralls: Some("ci/coveralls.json".into()),
                gcovr_json: None,
                csv: None,
            }
        );
    }

    #[test]
    fn differential_settings_parse_and_resolve() {
        let c = parse(
            "[coverage]\nbaseline = \"base/cov.json\"\ndiff = \"change.diff\"\nfail_under_new_lines = 90\nfail_on_lost_coverage = true\n",
        )
        .expect("valid")
        .coverage
        .differential;
        assert_eq!(c.baseline, [PathBuf::from("/p/spec/base/cov.json")]);
        assert_eq!(c.diff, Some(PathBuf::from("/p/spec/change.diff")));
        assert_eq!(c.fail_under_new_lines, Some(90.0));
        assert!(c.fail_on_lost_coverage && c.is_on());
        let c = parse("[coverage]\nbaseline = [\"/a.info\", \"b\"]\ndiff_base = \"HEAD~1\"\n")
            .expect("valid")
            .coverage
            .differential;
        assert_eq!(
            c.baseline,
            [PathBuf::from("/a.info"), PathBuf::from("/p/spec/b")]
        );
        assert_eq!(c.diff_base.as_deref(), Some("HEAD~1"));
        for (table, field) in [
            (
                "[coverage]\ndiff = \"d\"\ndiff_base = \"HEAD\"\n",
                "diff_base",
            ),
            (
                "[coverage]\nbaseline = \"b\"\nfail_under_new_lines = 101\n",
                "fail_under_new_lines",
            ),
            (
                "[coverage]\nfail_on_lost_coverage = true\n",
                "fail_under_new_lines",
            ),
        ] {
            let e = parse(table).expect_err(table);
            assert!(
                e.to_string().contains(&format!("[coverage] {field}")),
                "{e}"
            );
        }
    }

    #[test]
    fn absent_table_is_the_default() {
        assert_eq!(
            parse("").expect("valid").coverage,
            CoverageSettings::default()
        );
        assert!(CoverageSettings::default().markers);
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        for (table, field, line) in [
            ("[coverage]\ninclude = [\"a[b\"]\n", "include", 3),
            ("[coverage]\npath_map = [\"nofrom\"]\n", "path_map", 3),
            (
                "[coverage]\nfail_under = { lines = 101 }\n",
                "fail_under.lines",
                3,
            ),
            ("[coverage]\nlcov_format = 3\n", "lcov_format", 3),
            (
                "[coverage]\n\nexclude_line_regex = \"(\"\n",
                "exclude_line_regex",
                4,
            ),
        ] {
            let e = parse(table).expect_err(table);
            let text = e.to_string();
            assert!(text.contains(&format!("[coverage] {field}")), "{text}");
            assert_eq!(e.location.map(|l| l.line), Some(line), "{text}");
        }
        let e = parse("[coverage]\nbuid = []\n").expect_err("unknown field");
        assert!(e.to_string().contains("buid"), "{e}");
    }
}
