//! The report formats `covnet report` and `covnet run` write on request
//! (SonarQube, Coveralls, gcovr JSON, CSV): their flags, how they sit on
//! top of the spec's `[coverage]` fields, and the warning for Coveralls
//! files left out.

use std::path::PathBuf;

use covnet_reporter::outputs::Written;
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

/// Warns about source files the Coveralls JSON left out.
pub fn warn(written: &Written) {
    if let Some(text) = covnet_runner::coverage::coveralls_warning(written) {
        eprintln!("warning: {text}");
    }
}
