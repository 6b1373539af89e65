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

/// The debug information of the ELF files installed on each machine of a
/// spec, each file read once. It depends only on the spec and the host's
/// files, not on what the test ran, so a run reads it while its test runs
/// ([`read_installed_in_background`]): a large library's DWARF (glibc's
/// separate debug file takes about 0.12 s) is then not read after the
/// test, where the user waits.
#[derive(Debug, Default)]
pub struct Installed {
    /// Per machine, in spec order: its name and its files (indices into
    /// `read`), or `None` when its files could not be listed.
    machines: Vec<(String, Option<Vec<usize>>)>,
    read: Vec<BinaryDebug>,
    warnings: Vec<Diagnostic>,
}

impl Installed {
    /// Warnings for machines whose files could not be listed and for ELF
    /// files that could not be read (left out of the blind spots, named).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

/// Reads the debug information of every ELF file installed on the spec's
/// machines (see [`machine_elf_files`]).
pub fn read_installed(spec: &Spec, search: &SearchPaths, debug: &DebugSearch) -> Installed {
    let mut index: BTreeMap<PathBuf, Option<usize>> = BTreeMap::new();
    let mut installed = Installed::default();
    for m in &spec.machines {
        let files = match machine_elf_files(m, search) {
            Ok(f) => f,
            Err(e) => {
                installed.warnings.push(Diagnostic::warning(format!(
                    "{}: blind spots not computed: {e}",
                    m.name
                )));
                installed.machines.push((m.name.clone(), None));
                continue;
            }
        };
        let mut mine = Vec::new();
        for path in files {
            let at = *index.entry(path.clone()).or_insert_with(|| {
                match dwarf::read_path(&path, debug) {
                    Ok(b) => {
                        installed.read.push(b);
                        Some(installed.read.len() - 1)
                    }
                    Err(e) => {
                        let mut text = format!("{e}: {}", e.kind);
                        if let Some(hint) = e.kind.hint() {
                            text.push_str(&format!("\n  (hint: {hint})"));
                        }
                        installed.warnings.push(Diagnostic::warning(text));
                        None
                    }
                }
            });
            mine.extend(at);
        }
        installed.machines.push((m.name.clone(), Some(mine)));
    }
    installed
}

/// [`read_installed`] on a thread of its own at the lowest CPU priority,
/// so that it takes the cores only when the machines leave them idle.
pub fn read_installed_in_background(
    spec: Spec,
    search: SearchPaths,
    debug: DebugSearch,
) -> InstalledReading {
    // Kept for reading here when no thread can be had (a rare failure,
    // not worth losing the blind spots over).
    let here = (spec.clone(), search.clone(), debug.clone());
    let spawned = std::thread::Builder::new()
        .name("blind-spots".into())
        .spawn(move || {
            lowest_priority();
            read_installed(&spec, &search, &debug)
        });
    match spawned {
        Ok(thread) => InstalledReading::Thread(thread),
        Err(_) => InstalledReading::Done(read_installed(&here.0, &here.1, &here.2)),
    }
}

/// A [`read_installed`] under way ([`read_installed_in_background`]).
pub enum InstalledReading {
    /// The reading thread.
    Thread(std::thread::JoinHandle<Installed>),
    /// Read already (no thread could be started).
    Done(Installed),
}

impl InstalledReading {
    /// The files read, once the thread is done. A panic on the thread goes
    /// on here, as if the reading had been done on this one.
    pub fn wait(self) -> Installed {
        match self {
            InstalledReading::Thread(thread) => thread
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            InstalledReading::Done(installed) => installed,
        }
    }
}

/// Lowers the calling thread's CPU priority to nice 19 (on Linux a
/// thread's own, set by its thread id); failing that, it keeps its own.
fn lowest_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// Each machine's blind spots in `cov`, the coverage merged from
/// `captures` and renamed by `rewrite`, from the files `installed` read.
pub fn blind_spots(
    installed: &Installed,
    cov: &Coverage,
    captures: &[MachineCapture],
    rewrite: &SourceRewrite,
) -> Vec<MachineBlindSpots> {
    let mut out = Vec::new();
    for (machine, files) in &installed.machines {
        let Some(files) = files else { continue };
        let covered = blindspots::covered_files(cov, |_, capture| {
            captures
                .iter()
                .any(|c| c.name == capture && c.machine == *machine)
        });
        out.push(MachineBlindSpots {
            machine: machine.clone(),
            blind: blindspots::blind_spots(
                files.iter().map(|&i| &installed.read[i]),
                &covered,
                |p| rewrite.rewrite_one(p),
            ),
        });
    }
    out
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

    #[test]
    fn the_background_reading_reads_what_a_direct_one_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        // An ELF file cut short: its machine gets a warning, not a panic.
        let damaged = dir.path().join("damaged");
        let bytes = std::fs::read("/usr/bin/env").expect("/usr/bin/env");
        std::fs::write(&damaged, &bytes[..200]).expect("write");
        std::fs::set_permissions(
            &damaged,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let spec_path = dir.path().join("spec.toml");
        let text = format!(
            "[machines.a]\nprograms = [\"/bin/sh\"]\n\n[machines.b]\nprograms = [\"/bin/sh\", \"/usr/bin/env\"]\n\n[machines.c]\nprograms = [\"{}\"]\n",
            damaged.display()
        );
        let spec = Spec::from_str(&text, &spec_path).expect("spec");
        let direct = read_installed(&spec, &SearchPaths::host(), &DebugSearch::default());
        let background =
            read_installed_in_background(spec, SearchPaths::host(), DebugSearch::default()).wait();
        assert_eq!(background.machines, direct.machines);
        assert_eq!(background.read, direct.read);
        assert_eq!(background.warnings, direct.warnings);
        assert_eq!(direct.warnings.len(), 1, "{:?}", direct.warnings);
        assert!(
            direct.warnings[0].to_string().contains("damaged"),
            "{:?}",
            direct.warnings
        );
        // Each file read once: b's files include a's (the same shell and
        // C library), and env adds its own.
        let a = direct.machines[0].1.as_ref().expect("a's files");
        let b = direct.machines[1].1.as_ref().expect("b's files");
        assert!(a.iter().all(|i| b.contains(i)), "{a:?} within {b:?}");
        assert!(b.len() > a.len(), "{a:?} {b:?}");
    }
}
