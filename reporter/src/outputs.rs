//! Every report of one coverage at once: the one place that knows which
//! outputs exist, so `covnet run` (all of them, in its output directory)
//! and `covnet report` (those asked for) write them alike.

use std::path::{Path, PathBuf};

use covnet_merger::lcov::{self, LcovFormat, WriteOptions};
use covnet_merger::model::Coverage;

use crate::diff::{self, Differential};
use crate::output::{create_dir, write_file};
use crate::summary::Thresholds;
use crate::{
    cobertura, coveralls, csv, gcovr_json, html, json, markdown, sonarqube, Error, RunInfo,
};

/// Which reports to write, and where; `None` leaves one out.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// HTML site directory (its `index.html` is the entry).
    pub html: Option<PathBuf>,
    /// Combined lcov tracefile.
    pub lcov: Option<PathBuf>,
    /// lcov tracefile with one `TN` section per capture.
    pub lcov_per_capture: Option<PathBuf>,
    /// Cobertura XML.
    pub cobertura: Option<PathBuf>,
    /// JSON report (reads back into the model).
    pub json: Option<PathBuf>,
    /// Markdown summary.
    pub markdown: Option<PathBuf>,
    /// SonarQube generic test coverage XML.
    pub sonarqube: Option<PathBuf>,
    /// Coveralls JSON job document (needs the sources on disk).
    pub coveralls: Option<PathBuf>,
    /// gcovr JSON (`gcovr --json`'s format).
    pub gcovr_json: Option<PathBuf>,
    /// Per-file CSV (gcovr's `--csv` columns).
    pub csv: Option<PathBuf>,
    /// Directory Coveralls file names are relative to (the repository);
    /// `None`: the common root of the sources.
    pub source_root: Option<PathBuf>,
    /// lcov dialect of the tracefiles.
    pub lcov_format: LcovFormat,
    /// Thresholds the Markdown summary shows.
    pub thresholds: Thresholds,
}

impl Outputs {
    /// `covnet run`'s outputs in `dir`: `report/` (HTML), `coverage.info`,
    /// `coverage-per-machine.info`, `cobertura.xml` and `coverage.json`.
    pub fn run_layout(dir: &Path, lcov_format: LcovFormat) -> Outputs {
        Outputs {
            html: Some(dir.join("report")),
            lcov: Some(dir.join("coverage.info")),
            lcov_per_capture: Some(dir.join("coverage-per-machine.info")),
            cobertura: Some(dir.join("cobertura.xml")),
            json: Some(dir.join("coverage.json")),
            markdown: None,
            sonarqube: None,
            coveralls: None,
            gcovr_json: None,
            csv: None,
            source_root: None,
            lcov_format,
            thresholds: Thresholds::default(),
        }
    }
}

/// What [`write_all`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The HTML site, when asked for.
    pub html: Option<html::Site>,
    /// Files the Coveralls document left out (source missing or not
    /// matching), with the reason.
    pub coveralls_missing: Vec<(String, String)>,
}

/// Writes every report `outputs` asks for (creating parent directories).
pub fn write_all(cov: &Coverage, info: &RunInfo, outputs: &Outputs) -> Result<Written, Error> {
    write_all_with(cov, info, outputs, None)
}

/// [`write_all`] with the differential coverage `delta`, when there is
/// one: the JSON gets its `differential` section, the Markdown becomes the
/// merge-request summary of the change, and the HTML site shows each
/// line's category on the file pages and gets the differential page
/// ([`diff::html::PAGE`]).
pub fn write_all_with(
    cov: &Coverage,
    info: &RunInfo,
    outputs: &Outputs,
    delta: Option<&Differential>,
) -> Result<Written, Error> {
    let parent = |p: &Path| -> Result<(), Error> {
        match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => create_dir(d),
            _ => Ok(()),
        }
    };
    for (path, per_capture) in [(&outputs.lcov, false), (&outputs.lcov_per_capture, true)] {
        if let Some(path) = path {
            parent(path)?;
            let options = WriteOptions {
                format: outputs.lcov_format,
                per_capture,
            };
            write_file(path, |w| lcov::write(cov, w, options))?;
        }
    }
    if let Some(path) = &outputs.cobertura {
        parent(path)?;
        cobertura::write_path(cov, info, path)?;
    }
    if let Some(path) = &outputs.json {
        parent(path)?;
        match delta {
            None => json::write_path(cov, info, path)?,
            Some(d) => {
                let root = crate::tree::common_root(d.files.keys().map(String::as_str));
                let dirs = diff::output::directories(d, &root);
                let section = diff::output::to_json(d, &cov.captures, &dirs);
                write_file(path, |w| json::write_with(cov, info, Some(&section), w))?;
            }
        }
    }
    if let Some(path) = &outputs.markdown {
        parent(path)?;
        match delta {
            None => markdown::write_path(cov, info, &outputs.thresholds, path)?,
            Some(d) => {
                write_file(path, |w| {
                    diff::output::write_markdown(d, cov, &info.title, w)
                })?;
            }
        }
    }
    if let Some(path) = &outputs.sonarqube {
        parent(path)?;
        sonarqube::write_path(cov, path)?;
    }
    let mut coveralls_missing = Vec::new();
    if let Some(path) = &outputs.coveralls {
        parent(path)?;
        let root = match &outputs.source_root {
            Some(r) => r.clone(),
            None => PathBuf::from(crate::tree::Tree::new(cov).root),
        };
        coveralls_missing = coveralls::write_path(cov, info, &root, path)?.missing;
    }
    if let Some(path) = &outputs.gcovr_json {
        parent(path)?;
        gcovr_json::write_path(cov, path)?;
    }
    if let Some(path) = &outputs.csv {
        parent(path)?;
        csv::write_path(cov, path)?;
    }
    let html = match &outputs.html {
        Some(dir) => Some(html::write_site_with(cov, info, dir, delta)?),
        None => None,
    };
    Ok(Written {
        html,
        coveralls_missing,
    })
}
