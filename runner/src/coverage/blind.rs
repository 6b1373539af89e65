//! Blind spots of a run: for each machine, the ELF files covnet installs
//! on it (its programs with their shared-library closure, and the spec's
//! host files that are ELF), read for debug information and compared with
//! what that machine's captures cover ([`covnet_merger::blindspots`]).
//! covnet's own guest tools (busybox, the flush shim) are not counted.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use covnet_merger::blindspots::{self, MachineBlindSpots};
use covnet_merger::dwarf::{self, BinaryDebug, DebugSearch};
use covnet_merger::model::Coverage;
use covnet_merger::paths::SourceRewrite;

use crate::coverage::MachineCapture;
use crate::diag::Diagnostic;
use crate::image::closure::{self, ClosureError, SearchPaths};
use crate::spec::{FileSource, Machine, Spec};

/// The ELF files installed on `machine`: its programs and their closure
/// (as the image builders compute it), then its host files that are ELF.
pub fn machine_elf_files(
    machine: &Machine,
    search: &SearchPaths,
) -> Result<Vec<PathBuf>, ClosureError> {
    let mut files = closure::closure(&machine.programs, search)?;
    for f in &machine.files {
        if let FileSource::Host(p) = &f.source {
            files.push(p.clone());
        }
    }
    Ok(distinct_elf_files(files))
}

/// The ELF files among `paths`, each real file once (the first name it is
/// given: the loader names the interpreter both `/lib64/...` and
/// `/lib/x86_64-linux-gnu/...`).
pub fn distinct_elf_files(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeSet::new();
    paths
        .into_iter()
        .filter(|p| is_elf(p))
        .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .collect()
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// Each machine's blind spots in `cov`, the coverage merged from
/// `captures` and renamed by `rewrite`, plus warnings for the ELF files
/// that could not be read (left out of the blind spots, named).
pub fn blind_spots(
    spec: &Spec,
    cov: &Coverage,
    captures: &[MachineCapture],
    rewrite: &SourceRewrite,
    search: &SearchPaths,
    debug: &DebugSearch,
) -> (Vec<MachineBlindSpots>, Vec<Diagnostic>) {
    let mut read: BTreeMap<PathBuf, Option<BinaryDebug>> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for m in &spec.machines {
        let files = match machine_elf_files(m, search) {
            Ok(f) => f,
            Err(e) => {
                warnings.push(Diagnostic::warning(format!(
                    "{}: blind spots not computed: {e}",
                    m.name
                )));
                continue;
            }
        };
        let mut binaries = Vec::new();
        for path in files {
            let entry =
                read.entry(path.clone())
                    .or_insert_with(|| match dwarf::read_path(&path, debug) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            let mut text = format!("{e}: {}", e.kind);
                            if let Some(hint) = e.kind.hint() {
                                text.push_str(&format!("\n  (hint: {hint})"));
                            }
                            warnings.push(Diagnostic::warning(text));
                            None
                        }
                    });
            if let Some(b) = entry {
                binaries.push(b.clone());
            }
        }
        let covered = blindspots::covered_files(cov, |_, capture| {
            captures
                .iter()
                .any(|c| c.name == capture && c.machine == m.name)
        });
        out.push(MachineBlindSpots {
            machine: m.name.clone(),
            blind: blindspots::blind_spots(&binaries, &covered, |p| rewrite.rewrite_one(p)),
        });
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_real_elf_file_once_under_its_first_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not ELF").expect("write");
        let sh = PathBuf::from("/bin/sh");
        let link = dir.path().join("sh-link");
        std::os::unix::fs::symlink(std::fs::canonicalize(&sh).expect("/bin/sh"), &link)
            .expect("symlink");
        let got = distinct_elf_files(vec![
            sh.clone(),
            text,
            link,
            dir.path().join("absent"),
            sh.clone(),
        ]);
        assert_eq!(got, [sh]);
    }
}
