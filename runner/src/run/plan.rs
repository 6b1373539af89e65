//! Planning a run: the spec, its test script, the output directory and
//! the coverage settings, all checked before anything boots.

use std::path::{Path, PathBuf};

use crate::coverage::settings::{self, SettingsError};
use crate::machine::vm::accel::AccelRequest;
use crate::script::ScriptOptions;
use crate::spec::{Backend, CoverageSettings, Script, Spec, SpecError};

/// What to run, as `covnet run`'s options give it.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The spec file (TOML) with machines and a `[test]` table.
    pub spec: PathBuf,
    /// Output directory (default: `covnet-out/<test name>`).
    pub out: Option<PathBuf>,
    /// Go on with the next statement after a failed subtest.
    pub keep_going: bool,
    /// Run every machine with this backend, overriding the spec.
    pub backend: Option<Backend>,
    /// Accelerator for every machine, overriding the spec.
    pub accel: Option<AccelRequest>,
    /// Keep the run directory (sockets, console logs) for inspection.
    pub keep_run_dir: bool,
    /// Capture every VLAN's traffic into the failure bundle.
    pub pcap: bool,
    /// Boot every VM cold (no snapshot restored or saved).
    pub cold_boot: bool,
    /// Collect coverage from every machine and write the reports.
    pub coverage: bool,
    /// Also keep what each subtest covered as a capture of its own.
    pub coverage_per_subtest: bool,
    /// The host cores this run may count on when it sizes its VMs' share
    /// (see [`crate::machine::vm::acpi_for_network`]): a suite running
    /// several specs at once gives each its part. `None`: all of them.
    pub cores: Option<usize>,
}

/// Why a run could not be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The spec is invalid or unreadable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The spec has no `[test]` table.
    #[error("{}: the spec has no [test] table\n  (hint: add `[test]` with `script = \"...\"` or `script_file = \"...\"`, or use `covnet vms` for interactive use)", spec.display())]
    NoTest {
        /// The spec file.
        spec: PathBuf,
    },
    /// The test script file could not be read.
    #[error("failed to read test script {}", path.display())]
    Script {
        /// The script file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The output directory could not be created.
    #[error("failed to create output directory {}", path.display())]
    Output {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The coverage settings are unusable (a bad glob, map or regex).
    #[error(transparent)]
    Coverage(#[from] SettingsError),
}

/// A run's validated inputs.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Test name: the spec's file stem (its directory's name for
    /// `spec.toml`).
    pub name: String,
    /// The spec, with the request's backend applied.
    pub spec: Spec,
    /// The test script's text.
    pub source: String,
    /// How the script runs (timeout, keep-going, its file).
    pub options: ScriptOptions,
    /// The output directory (created).
    pub out: PathBuf,
    /// The request this plan was made from.
    pub request: RunRequest,
    coverage: CoverageSettings,
}

impl RunPlan {
    /// Loads and checks everything a run needs, and creates its output
    /// directory. The coverage settings are the spec's `[coverage]`,
    /// checked even when coverage is off.
    pub fn new(request: &RunRequest) -> Result<RunPlan, PlanError> {
        RunPlan::with_coverage(request, Clone::clone)
    }

    /// As [`RunPlan::new`], with the coverage settings that `coverage`
    /// makes of the spec's `[coverage]` (e.g. the command line's options
    /// on top); the request's per-subtest flag is added.
    pub fn with_coverage(
        request: &RunRequest,
        coverage: impl FnOnce(&CoverageSettings) -> CoverageSettings,
    ) -> Result<RunPlan, PlanError> {
        let mut spec = Spec::from_path(&request.spec)?;
        if let Some(backend) = request.backend {
            spec = spec.with_backend(backend)?;
        }
        let Some(test) = spec.test.clone() else {
            return Err(PlanError::NoTest {
                spec: request.spec.clone(),
            });
        };
        let (source, file) = match &test.script {
            Script::Inline(s) => (s.clone(), None),
            Script::File(p) => (
                std::fs::read_to_string(p).map_err(|source| PlanError::Script {
                    path: p.clone(),
                    source,
                })?,
                Some(p.clone()),
            ),
        };
        let name = test_name(&request.spec);
        let out = request
            .out
            .clone()
            .unwrap_or_else(|| Path::new("covnet-out").join(&name));
        std::fs::create_dir_all(&out).map_err(|source| PlanError::Output {
            path: out.clone(),
            source,
        })?;
        let mut coverage = coverage(&spec.coverage);
        coverage.per_subtest |= request.coverage_per_subtest;
        // Fail on a bad glob or map before anything boots.
        settings::resolve(&coverage)?;
        Ok(RunPlan {
            name,
            spec,
            source,
            options: ScriptOptions {
                timeout: test.timeout,
                keep_going: request.keep_going,
                file,
                coverage: None,
                language: test.language,
            },
            out,
            request: request.clone(),
            coverage,
        })
    }

    /// The coverage settings.
    pub fn coverage(&self) -> &CoverageSettings {
        &self.coverage
    }

    /// Where script line `line` is in its file: the script file itself,
    /// or the spec when the script is inline (found by its text, which a
    /// TOML literal string keeps verbatim), as `file:line:column`.
    pub fn script_location(&self, line: usize, column: usize) -> String {
        if let Some(file) = &self.options.file {
            return format!("{}:{line}:{column}", file.display());
        }
        let spec = self.spec.path.display();
        let offset = std::fs::read_to_string(&self.spec.path)
            .ok()
            .and_then(|text| {
                // Only a unique match identifies the place.
                let mut found = text.match_indices(self.source.as_str());
                let (at, _) = found.next()?;
                if found.next().is_some() {
                    return None;
                }
                Some(text.get(..at)?.matches('\n').count())
            });
        match offset {
            Some(before) => format!("{spec}:{}:{column}", before + line),
            None => format!("{spec} (inline script line {line}, column {column})"),
        }
    }
}

/// The spec's file stem, or its directory's name for `spec.toml`
/// (`examples/httpd/spec.toml` is `httpd`).
fn test_name(spec: &Path) -> String {
    let stem = spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".to_owned());
    if stem != "spec" {
        return stem;
    }
    spec.canonicalize()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    #[test]
    fn names_output_and_script_come_from_the_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let web = dir.path().join("web");
        std::fs::create_dir(&web).expect("mkdir");
        let spec = write_spec(
            &web,
            "spec.toml",
            "[machines.a]\n[test]\nscript = \"start_all();\"\n",
        );
        let out = dir.path().join("out");
        let plan = RunPlan::new(&RunRequest {
            spec,
            out: Some(out.clone()),
            ..RunRequest::default()
        })
        .expect("plan");
        assert_eq!(plan.name, "web");
        assert_eq!(plan.source, "start_all();");
        assert!(out.is_dir());
        assert_eq!(
            plan.script_location(1, 3),
            format!("{}:3:3", plan.spec.path.display())
        );
    }

    #[test]
    fn a_spec_without_test_or_with_a_bad_glob_is_refused_before_booting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = write_spec(dir.path(), "bare.toml", "[machines.a]\n");
        let request = RunRequest {
            spec: bare,
            out: Some(dir.path().join("out")),
            ..RunRequest::default()
        };
        assert!(matches!(
            RunPlan::new(&request),
            Err(PlanError::NoTest { .. })
        ));
        let spec = write_spec(
            dir.path(),
            "t.toml",
            "[machines.a]\n[test]\nscript = \"\"\n",
        );
        let request = RunRequest { spec, ..request };
        let bad = RunPlan::with_coverage(&request, |c| {
            let mut c = c.clone();
            c.include = vec!["[".into()];
            c
        });
        assert!(matches!(bad, Err(PlanError::Coverage(_))), "{bad:?}");
        let plan = RunPlan::with_coverage(
            &RunRequest {
                coverage_per_subtest: true,
                ..request
            },
            Clone::clone,
        )
        .expect("plan");
        assert!(plan.coverage().per_subtest);
    }
}
