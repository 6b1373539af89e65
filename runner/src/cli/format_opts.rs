//! The report formats `covnet report` and `covnet run` write on request
//! (SonarQube, Coveralls, gcovr JSON, CSV): their flags, how they sit on
//! top of the spec's `[coverage]` fields, and the warning for Coveralls
//! files left out.

use std::path::{Path, PathBuf};

use covnet_reporter::outputs::{Outputs, Written};
use covnet_runner::spec::ReportFormats;

/// `--sonarqube`, `--coveralls`, `--gcovr-json`, `--csv`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct FormatOpts {
    /// Write SonarQube generic test coverage XML (sonar.coverageReportPaths).
    #[arg(long, value_name = "FILE")]
    pub sonarqube: Option<PathBuf>,
    /// Write a Coveralls JSON job (source digests, per-line counts); file
    /// names relative to the current directory (the repository's root).
    #[arg(long, value_name = "FILE")]
    pub coveralls: Option<PathBuf>,
    /// Write gcovr's JSON format (gcovr --json-add-tracefile reads it).
    #[arg(long, value_name = "FILE")]
    pub gcovr_json: Option<PathBuf>,
    /// Write per-file totals as CSV (gcovr's --csv columns).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

impl FormatOpts {
    /// Whether any format was asked for.
    pub fn any(&self) -> bool {
        self.over(&ReportFormats::default()) != ReportFormats::default()
    }

    /// `spec` with every format given here in its place.
    pub fn over(&self, spec: &ReportFormats) -> ReportFormats {
        let pick = |cli: &Option<PathBuf>, spec: &Option<PathBuf>| cli.clone().or(spec.clone());
        ReportFormats {
            sonarqube: pick(&self.sonarqube, &spec.sonarqube),
            coveralls: pick(&self.coveralls, &spec.coveralls),
            gcovr_json: pick(&self.gcovr_json, &spec.gcovr_json),
            csv: pick(&self.csv, &spec.csv),
        }
    }
}

/// Puts `formats` into `outputs`, relative paths under `dir`; Coveralls
/// names are made relative to the current directory.
pub fn add(outputs: &mut Outputs, formats: &ReportFormats, dir: &Path) {
    let at = |p: &Option<PathBuf>| p.as_ref().map(|p| dir.join(p));
    outputs.sonarqube = at(&formats.sonarqube);
    outputs.coveralls = at(&formats.coveralls);
    outputs.gcovr_json = at(&formats.gcovr_json);
    outputs.csv = at(&formats.csv);
    outputs.source_root = std::env::current_dir().ok();
}

/// Warns about the files the Coveralls document left out.
pub fn warn(written: &Written) {
    if let Some((first, why)) = written.coveralls_missing.first() {
        eprintln!(
            "warning: the Coveralls JSON leaves out {} source file(s) it could not read or match (first: {first}: {why})\n  (hint: run covnet where the source paths resolve, or rewrite them with --path-map)",
            written.coveralls_missing.len()
        );
    }
}
