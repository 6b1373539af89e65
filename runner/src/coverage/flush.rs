//! Flushing services that were not linked with `covnet_flush.c`: covnet's
//! preloaded shim (`collector/flush/covnet_gcov_shim.c`) and what it needs.
//!
//! A service writes its gcov counts only when it exits, so a phase or
//! subtest capture taken while it runs would show it at 0%. With coverage
//! on, covnet
//! 1. reads each machine program's ELF symbol table ([`inspect`]) for
//!    libgcov's `__gcov_dump_one` and `__gcov_root` and the counter arrays
//!    `__gcov<kind>.<function>` (all hidden, so only the symbol table has
//!    them), and writes their offsets from the load base into a table
//!    ([`FlushTable`]);
//! 2. compiles the shim once with the host's C compiler into the cache
//!    ([`build_shim`], keyed by the source's hash);
//! 3. puts both into every machine at fixed guest paths ([`SHIM_GUEST_PATH`],
//!    [`TABLE_GUEST_PATH`]) and preloads the shim into services
//!    ([`SERVICE_PRELOAD_ENV`]).
//!
//! In a service whose program is in the table, the shim starts the sigwait
//! thread of `covnet_flush.c`: SIGUSR2 then dumps the counts, zeroes them
//! and acknowledges, so `collect_coverage()` and per-subtest captures hold
//! what the service did in that phase. A program that cannot be flushed
//! (static, stripped) is known before the run; [`why_not_flushed`] says why
//! for the report's notes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use covnet_collector::{FLUSH_C_SOURCE, SHIM_C_SOURCE};
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol, ObjectSymbolTable};
use sha2::{Digest, Sha256};

/// Guest directory of the shim and its table.
pub const GUEST_DIR: &str = "/covnet/flush";
/// Guest path of the compiled shim.
pub const SHIM_GUEST_PATH: &str = "/covnet/flush/covnet_gcov_shim.so";
/// Guest path of the table of flushable programs (the shim's default).
pub const TABLE_GUEST_PATH: &str = "/covnet/flush/programs.tab";
/// Machine variable naming the library that service scripts add to
/// `LD_PRELOAD` (set only when coverage is on). The guest's service scripts
/// define it, so it lives with them (the image does not depend on coverage).
pub use crate::image::initramfs::SERVICE_PRELOAD_ENV;
/// The signal that makes a flushing service dump (a `kill` signal name).
pub const FLUSH_SIGNAL: &str = "USR2";

/// Where a flushable program's libgcov parts are, as offsets from its load
/// base (link-time addresses: the base is 0 for a non-PIE program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcovSymbols {
    /// `__gcov_dump_one(struct gcov_root *)`.
    pub dump_one: u64,
    /// The program's `struct gcov_root __gcov_root`.
    pub root: u64,
    /// The counter arrays to zero after a dump, `(offset, length)`, merged
    /// where they touch.
    pub counters: Vec<(u64, u64)>,
}

/// What covnet can do about a program's gcov data while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushability {
    /// The shim can flush it.
    Shim(GcovSymbols),
    /// It links `covnet_flush.c` and flushes itself.
    SelfFlushing,
    /// It has no gcov instrumentation: nothing to flush.
    NotInstrumented,
    /// It is instrumented but cannot be flushed while it runs; why.
    Impossible(String),
}

/// Reads a program's ELF headers and symbol table.
pub fn inspect(path: &Path) -> std::io::Result<Flushability> {
    let data = std::fs::read(path)?;
    Ok(inspect_bytes(&data))
}

/// [`inspect`] on the program's bytes.
pub fn inspect_bytes(data: &[u8]) -> Flushability {
    let contains = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    // libgcov's exit code reads this variable: every instrumented program
    // has the string, stripped or not.
    let instrumented = contains(b"GCOV_PREFIX_STRIP\0");
    if contains(b"/.covnet-flush-%ld") {
        return Flushability::SelfFlushing;
    }
    if !instrumented {
        return Flushability::NotInstrumented;
    }
    let Ok(file) = ElfFile64::<Endianness>::parse(data) else {
        return Flushability::Impossible("it is not a 64-bit ELF program".to_owned());
    };
    let endian = file.endian();
    let dynamic = file
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == elf::PT_INTERP);
    if !dynamic || file.elf_header().e_type(endian) == elf::ET_REL {
        return Flushability::Impossible(
            "it is statically linked, so the flush shim cannot be preloaded into it \
             (link collector/flush/covnet_flush.c into it instead)"
                .to_owned(),
        );
    }
    let Some(table) = file.symbol_table() else {
        return Flushability::Impossible(
            "its symbol table is stripped, so libgcov's hidden functions cannot be found \
             (keep the symbols, or link collector/flush/covnet_flush.c into it)"
                .to_owned(),
        );
    };
    let (mut dump_one, mut root) = (None, None);
    let mut counters = Vec::new();
    for s in table.symbols() {
        let Ok(name) = s.name() else { continue };
        match name {
            "__gcov_dump_one" if s.address() != 0 => dump_one = Some(s.address()),
            "__gcov_root" if s.address() != 0 => root = Some(s.address()),
            _ if is_counter_array(name) && s.size() > 0 && s.address() != 0 => {
                counters.push((s.address(), s.size()));
            }
            _ => {}
        }
    }
    let (Some(dump_one), Some(root)) = (dump_one, root) else {
        return Flushability::Impossible(
            "its symbol table has no `__gcov_dump_one` and `__gcov_root` \
             (a libgcov older than GCC 5?)"
                .to_owned(),
        );
    };
    Flushability::Shim(GcovSymbols {
        dump_one,
        root,
        counters: merge_ranges(counters),
    })
}

/// `__gcov<kind>.<function>`: GCC's name for a function's counters of one
/// kind (`__gcov_.<function>` is the function's description, not counters).
fn is_counter_array(name: &str) -> bool {
    name.strip_prefix("__gcov").is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && matches!(rest.as_bytes().get(digits), Some(b'.' | b'$' | b'_'))
    })
}

/// Sorts ranges and merges those that overlap or touch.
fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (at, len) in ranges {
        if let Some(last) = out.last_mut() {
            let end = last.0 + last.1;
            if at <= end {
                last.1 = last.1.max(at + len - last.0);
                continue;
            }
        }
        out.push((at, len));
    }
    out
}

/// The programs of a network and what covnet can do about each.
#[derive(Debug, Clone, Default)]
pub struct FlushTable {
    /// Per guest path (the canonical host path, where images put programs).
    pub programs: BTreeMap<PathBuf, (u64, Flushability)>,
}

impl FlushTable {
    /// Inspects every program (symlinks resolved, as `/proc/self/exe`
    /// shows them); unreadable ones are left out (the image build names
    /// them).
    pub fn of_programs<'a>(programs: impl IntoIterator<Item = &'a Path>) -> FlushTable {
        let mut t = FlushTable::default();
        for p in programs {
            let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            if t.programs.contains_key(&real) {
                continue;
            }
            let Ok(size) = std::fs::metadata(&real).map(|m| m.len()) else {
                continue;
            };
            if let Ok(f) = inspect(&real) {
                t.programs.insert(real, (size, f));
            }
        }
        t
    }

    /// Whether any program needs the shim.
    pub fn needs_shim(&self) -> bool {
        self.programs
            .values()
            .any(|(_, f)| matches!(f, Flushability::Shim(_)))
    }

    /// The shim's table file (format in `covnet_gcov_shim.c`).
    pub fn render(&self) -> String {
        let mut s = String::from("# covnet flush table (collector/flush/covnet_gcov_shim.c)\n");
        for (path, (size, f)) in &self.programs {
            let Flushability::Shim(g) = f else { continue };
            let Some(path) = path.to_str().filter(|p| !p.contains('\n')) else {
                continue;
            };
            let _ = writeln!(
                s,
                "program {size} {:x} {:x} {} {path}",
                g.dump_one,
                g.root,
                g.counters.len()
            );
            for (at, len) in &g.counters {
                let _ = writeln!(s, "{at:x} {len:x}");
            }
        }
        s
    }
}

/// Why the shim could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShimError {
    /// The compiler could not be started.
    #[error("cannot run the C compiler `{compiler}` to build covnet's flush shim\n  (hint: install gcc with `bash scripts/setup.sh`, or set CC)")]
    NoCompiler {
        /// The command.
        compiler: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The compiler failed.
    #[error("`{compiler}` failed to build covnet's flush shim: {stderr}")]
    Compile {
        /// The command.
        compiler: String,
        /// What it printed.
        stderr: String,
    },
    /// The cache could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The default shim cache: next to the image cache, `.../covnet/flush`.
pub fn default_cache_dir() -> PathBuf {
    let images = crate::image::initramfs::default_cache_dir();
    images
        .parent()
        .map(|p| p.join("flush"))
        .unwrap_or_else(|| images.join("flush"))
}

/// Compiles the shim with `$CC` (default `cc`) into `cache`, unless a build
/// of the same sources and compiler is already there; returns its path.
pub fn build_shim(cache: &Path) -> Result<PathBuf, ShimError> {
    let compiler = std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".to_owned());
    let mut h = Sha256::new();
    for part in [compiler.as_str(), SHIM_C_SOURCE, FLUSH_C_SOURCE] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = cache.join(format!("covnet_gcov_shim-{hex}.so"));
    if out.is_file() {
        return Ok(out);
    }
    let write = |path: &Path, source| ShimError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(cache).map_err(|e| write(cache, e))?;
    // A private build directory, so concurrent runs never share one.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let work = cache.join(format!(".shim-build-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| write(&work, e))?;
    let result = compile(&compiler, &work, &out);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| out)
}

/// Compiles the shim in `work` and renames it to `out`.
fn compile(compiler: &str, work: &Path, out: &Path) -> Result<(), ShimError> {
    let write = |path: &Path, source| ShimError::Write {
        path: path.to_owned(),
        source,
    };
    for (name, text) in [
        ("covnet_gcov_shim.c", SHIM_C_SOURCE),
        ("covnet_flush.c", FLUSH_C_SOURCE),
    ] {
        let p = work.join(name);
        std::fs::write(&p, text).map_err(|e| write(&p, e))?;
    }
    let built = work.join("shim.so");
    let mut words = compiler.split_whitespace();
    let program = words.next().unwrap_or("cc");
    let o = Command::new(program)
        .args(words)
        .args(["-O2", "-shared", "-fPIC", "-pthread", "-o"])
        .arg(&built)
        .arg("covnet_gcov_shim.c")
        .current_dir(work)
        .output()
        .map_err(|source| ShimError::NoCompiler {
            compiler: compiler.to_owned(),
            source,
        })?;
    if !o.status.success() {
        return Err(ShimError::Compile {
            compiler: compiler.to_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        });
    }
    std::fs::rename(&built, out).map_err(|e| write(out, e))
}

/// A file to put in every machine: guest path, contents, mode.
pub type GuestFile = (String, Vec<u8>, u32);

/// What a network needs so that its services can be flushed: the files for
/// every machine and the variables for their `machine.env`. Nothing when no
/// program needs the shim; an error when one does and the shim cannot be
/// built.
pub fn prepare(table: &FlushTable, cache: &Path) -> Result<Preparation, ShimError> {
    if !table.needs_shim() {
        return Ok(Preparation::default());
    }
    let shim = build_shim(cache)?;
    let bytes = std::fs::read(&shim).map_err(|source| ShimError::Write {
        path: shim.clone(),
        source,
    })?;
    Ok(Preparation {
        files: vec![
            (SHIM_GUEST_PATH.to_owned(), bytes, 0o755),
            (
                TABLE_GUEST_PATH.to_owned(),
                table.render().into_bytes(),
                0o644,
            ),
        ],
        env: vec![(SERVICE_PRELOAD_ENV.to_owned(), SHIM_GUEST_PATH.to_owned())],
    })
}

/// [`prepare`] for every program of `spec`'s machines, with the shim in
/// [`default_cache_dir`].
pub fn prepare_spec(spec: &crate::spec::Spec) -> Result<Preparation, ShimError> {
    let programs = spec
        .machines
        .iter()
        .flat_map(|m| m.programs.iter().map(PathBuf::as_path));
    prepare(&FlushTable::of_programs(programs), &default_cache_dir())
}

/// The output of [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct Preparation {
    /// Files for every machine.
    pub files: Vec<GuestFile>,
    /// Variables for every machine's `machine.env`.
    pub env: Vec<(String, String)>,
}

/// Why a service running `program` (its `/proc/<pid>/exe` in the guest,
/// which is the host path of the machine's programs) did not acknowledge a
/// flush; `None` when it has no gcov data to flush.
pub fn why_not_flushed(program: &str) -> Option<String> {
    if program.is_empty() {
        return Some("its program could not be identified".to_owned());
    }
    match inspect(Path::new(program)) {
        Ok(Flushability::NotInstrumented) => None,
        Ok(Flushability::Impossible(why)) => Some(format!("`{program}`: {why}")),
        Ok(Flushability::SelfFlushing) => Some(format!(
            "`{program}` links covnet_flush.c but its flush thread did not start"
        )),
        Ok(Flushability::Shim(_)) => Some(format!(
            "covnet's flush shim did not start in `{program}` (does the service \
             replace LD_PRELOAD, or run the program under another path?)"
        )),
        Err(e) => Some(format!(
            "its program `{program}` cannot be inspected on the host: {e}"
        )),
    }
}

/// The services of a signal flush that did not flush, with why (services
/// without gcov data left out).
pub fn unflushed(report: &covnet_collector::FlushReport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report
        .unflushable
        .iter()
        .filter_map(|(s, exe)| why_not_flushed(exe).map(|why| (s.clone(), why)))
        .collect();
    for s in &report.survivors {
        out.push((
            s.clone(),
            "it did not acknowledge the flush signal in time".to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_arrays_are_named_by_kind_and_function() {
        assert!(is_counter_array("__gcov0.main"));
        assert!(is_counter_array("__gcov12.foo.part.0"));
        assert!(!is_counter_array("__gcov_.main"));
        assert!(!is_counter_array("__gcov_root"));
        assert!(!is_counter_array("__gcov0"));
    }

    #[test]
    fn touching_ranges_merge_and_gaps_stay() {
        assert_eq!(
            merge_ranges(vec![(32, 8), (16, 16), (48, 8), (8, 4)]),
            vec![(8, 4), (16, 24), (48, 8)]
        );
    }

    #[test]
    fn uninstrumented_and_foreign_files() {
        assert_eq!(
            inspect_bytes(b"\x7fELF nothing here"),
            Flushability::NotInstrumented
        );
        assert!(matches!(
            inspect_bytes(b"not elf but GCOV_PREFIX_STRIP\0"),
            Flushability::Impossible(_)
        ));
    }
}
