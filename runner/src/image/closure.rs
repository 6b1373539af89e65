//! The runtime closure of programs: what must be in a guest image for them
//! to run. For an ELF program that is its `PT_INTERP` interpreter and every
//! `DT_NEEDED` library, found the way the dynamic loader finds them
//! (`DT_RPATH`, `DT_RUNPATH` with `$ORIGIN`, `/etc/ld.so.conf` directories,
//! then the default directories), recursively; for a `#!` script it is the
//! interpreter's closure. Files are read with the `object` crate; `ldd` is
//! never run.
//!
//! Paths are returned as the loader names them (for example
//! `/lib/x86_64-linux-gnu/libc.so.6`, a symlink on most hosts); the image
//! builder reproduces every symlink on the way to the real file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::Endianness;

/// Library directories searched after `DT_RUNPATH`, before the defaults
/// (the host's `/etc/ld.so.conf`), and the loader's default directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPaths {
    /// Directories from `ld.so.conf` (and its includes), in order.
    pub conf_dirs: Vec<PathBuf>,
    /// The loader's built-in directories.
    pub default_dirs: Vec<PathBuf>,
}

/// The x86-64 Debian loader's built-in library directories.
pub const DEFAULT_LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
];

/// Directories searched for the program named by `#!/usr/bin/env <name>`.
const ENV_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How deep `#!` interpreters and symlinks may nest.
const MAX_NESTING: usize = 8;

impl SearchPaths {
    /// The host's search paths: `/etc/ld.so.conf` (missing is fine) plus
    /// [`DEFAULT_LIBRARY_DIRS`].
    pub fn host() -> SearchPaths {
        let mut conf_dirs = Vec::new();
        read_ld_so_conf(Path::new("/etc/ld.so.conf"), &mut conf_dirs, 0);
        SearchPaths {
            conf_dirs,
            default_dirs: DEFAULT_LIBRARY_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// Appends the directories listed in an `ld.so.conf`-style file, following
/// `include` lines (with a `*` wildcard in the file name). Unreadable files
/// are skipped, as the loader's cache builder does.
fn read_ld_so_conf(path: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > MAX_NESTING {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let base = path.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("hwcap ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("include") {
            if !rest.starts_with(char::is_whitespace) {
                continue;
            }
            for pattern in rest.split_whitespace() {
                for file in expand_glob(&base.join(pattern)) {
                    read_ld_so_conf(&file, out, depth + 1);
                }
            }
        } else {
            let dir = PathBuf::from(line);
            if dir.is_absolute() && !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
}

/// Expands a path whose file name may contain one `*`; sorted.
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![pattern.to_path_buf()];
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// A program whose closure cannot be computed.
#[derive(Debug, thiserror::Error)]
#[error("failed to find what {} needs to run: {kind}", path.display())]
pub struct ClosureError {
    /// The file being examined (a program, interpreter or library).
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub kind: ClosureErrorKind,
}

/// Why a closure cannot be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClosureErrorKind {
    /// The file cannot be read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// Neither an ELF file nor a `#!` script.
    #[error("it is neither an ELF file nor a #! script")]
    NotExecutable,
    /// A malformed ELF file.
    #[error("malformed ELF")]
    Elf(#[source] ElfError),
    /// A `DT_NEEDED` library found nowhere on the search path.
    #[error("library {library} not found (searched {searched})")]
    LibraryNotFound {
        /// The `DT_NEEDED` name.
        library: String,
        /// The directories searched, `:`-separated.
        searched: String,
    },
    /// The program named after `#!/usr/bin/env` is not on the host `PATH`.
    #[error("`{name}` (from `#!/usr/bin/env {name}`) not found in {}", ENV_PATH.join(":"))]
    EnvProgramNotFound {
        /// The name.
        name: String,
    },
    /// `#!` interpreters nest too deeply.
    #[error("#! interpreters nest more than {MAX_NESTING} deep")]
    TooDeep,
}

fn err(path: &Path, kind: ClosureErrorKind) -> ClosureError {
    ClosureError {
        path: path.to_path_buf(),
        kind,
    }
}

/// A malformed ELF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Rejected by the `object` parser.
    #[error(transparent)]
    Object(#[from] object::Error),
    /// A structural problem found while reading the dynamic section.
    #[error("{0}")]
    Malformed(&'static str),
}

/// What one ELF file asks of the loader.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ElfDeps {
    /// `PT_INTERP`.
    pub interpreter: Option<PathBuf>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` entries, unexpanded.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries, unexpanded.
    pub runpath: Vec<String>,
    /// `(EI_CLASS, e_machine)`, to reject libraries of another architecture.
    pub arch: (u8, u16),
}

/// Reads the loader-relevant parts of ELF bytes; `Ok(None)` when `data` is
/// not ELF.
pub fn elf_deps(data: &[u8]) -> Result<Option<ElfDeps>, ElfError> {
    if data.get(..4) != Some(&elf::ELFMAG[..]) {
        return Ok(None);
    }
    match data.get(4) {
        Some(&c) if c == elf::ELFCLASS64.0 => {
            elf_deps_of::<elf::FileHeader64<Endianness>>(data).map(Some)
        }
        Some(&c) if c == elf::ELFCLASS32.0 => {
            elf_deps_of::<elf::FileHeader32<Endianness>>(data).map(Some)
        }
        _ => Err(ElfError::Malformed("unsupported ELF class")),
    }
}

fn elf_deps_of<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<ElfDeps, ElfError> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    let phdrs = header.program_headers(endian, data)?;
    let mut deps = ElfDeps {
        arch: (header.e_ident().class.0, header.e_machine(endian).0),
        ..ElfDeps::default()
    };
    let mut dynamic = None;
    for ph in phdrs {
        if let Some(interp) = ph.interpreter(endian, data)? {
            deps.interpreter = Some(PathBuf::from(String::from_utf8_lossy(interp).into_owned()));
        }
        if let Some(d) = ph.dynamic(endian, data)? {
            dynamic = Some(d);
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(deps);
    };
    // The string table is given by address; map it through PT_LOAD.
    let mut strtab_addr = None;
    let mut strtab_size = None;
    for d in dynamic {
        let tag = d.tag(endian);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_STRTAB {
            strtab_addr = Some(d.val(endian));
        } else if tag == elf::DT_STRSZ {
            strtab_size = Some(d.val(endian));
        }
    }
    let (Some(addr), Some(size)) = (strtab_addr, strtab_size) else {
        return Ok(deps);
    };
    let strtab = phdrs
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .find_map(|ph| ph.data_range(endian, data, addr, size).ok().flatten())
        .ok_or(ElfError::Malformed(
            "ELF DT_STRTAB outside any PT_LOAD segment",
        ))?;
    let string = |off: u64| -> Result<String, ElfError> {
        let off = usize::try_from(off).map_err(|_| ElfError::Malformed("bad string offset"))?;
        let bytes = strtab.get(off..).ok_or(ElfError::Malformed(
            "ELF dynamic string offset out of range",
        ))?;
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(ElfError::Malformed("unterminated ELF dynamic string"))?;
        Ok(String::from_utf8_lossy(bytes.get(..end).unwrap_or(&[])).into_owned())
    };
    for d in dynamic {
        let tag = d.tag(endian);
        if tag == elf::DT_NULL {
            break;
        } else if tag == elf::DT_NEEDED {
            deps.needed.push(string(d.val(endian))?);
        } else if tag == elf::DT_RPATH {
            deps.rpath
                .extend(string(d.val(endian))?.split(':').map(str::to_owned));
        } else if tag == elf::DT_RUNPATH {
            deps.runpath
                .extend(string(d.val(endian))?.split(':').map(str::to_owned));
        }
    }
    Ok(deps)
}

/// Expands `$ORIGIN`/`${ORIGIN}` (the directory of the object) and
/// `$LIB`/`${LIB}` in a search-path entry.
fn expand_origin(entry: &str, origin: &Path) -> PathBuf {
    let origin = origin.to_string_lossy();
    let expanded = entry
        .replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin)
        .replace("${LIB}", "lib/x86_64-linux-gnu")
        .replace("$LIB", "lib/x86_64-linux-gnu");
    PathBuf::from(expanded)
}

/// Computes the closure of `programs`: each program itself, then the files
/// it needs, deduplicated, in discovery order.
pub fn closure(programs: &[PathBuf], search: &SearchPaths) -> Result<Vec<PathBuf>, ClosureError> {
    let mut walker = Walker {
        search,
        out: Vec::new(),
        seen: BTreeSet::new(),
    };
    for p in programs {
        walker.program(p, 0)?;
    }
    Ok(walker.out)
}

struct Walker<'a> {
    search: &'a SearchPaths,
    out: Vec<PathBuf>,
    /// Canonical paths already examined.
    seen: BTreeSet<PathBuf>,
}

impl Walker<'_> {
    /// Records `path`; returns false when its real file was seen before.
    fn record(&mut self, path: &Path) -> Result<bool, ClosureError> {
        let real = std::fs::canonicalize(path).map_err(|e| err(path, ClosureErrorKind::Read(e)))?;
        if !self.out.iter().any(|p| p == path) {
            self.out.push(path.to_path_buf());
        }
        Ok(self.seen.insert(real))
    }

    fn program(&mut self, path: &Path, depth: usize) -> Result<(), ClosureError> {
        if depth > MAX_NESTING {
            return Err(err(path, ClosureErrorKind::TooDeep));
        }
        if !self.record(path)? {
            return Ok(());
        }
        let data = std::fs::read(path).map_err(|e| err(path, ClosureErrorKind::Read(e)))?;
        if data.starts_with(b"#!") {
            let line = data.get(2..).unwrap_or(&[]);
            let line = line.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_whitespace();
            let Some(interp) = words.next() else {
                return Err(err(path, ClosureErrorKind::NotExecutable));
            };
            let interp = PathBuf::from(interp);
            self.program(&interp, depth + 1)?;
            if interp.file_name().is_some_and(|n| n == "env") {
                if let Some(name) = words.find(|w| !w.starts_with('-')) {
                    let found = ENV_PATH
                        .iter()
                        .map(|d| Path::new(d).join(name))
                        .find(|p| p.is_file())
                        .ok_or_else(|| {
                            err(
                                path,
                                ClosureErrorKind::EnvProgramNotFound {
                                    name: name.to_owned(),
                                },
                            )
                        })?;
                    self.program(&found, depth + 1)?;
                }
            }
            return Ok(());
        }
        let deps = elf_deps(&data)
            .map_err(|e| err(path, ClosureErrorKind::Elf(e)))?
            .ok_or_else(|| err(path, ClosureErrorKind::NotExecutable))?;
        if let Some(interp) = &deps.interpreter {
            // The loader itself is static: nothing to follow from it.
            self.record(interp)?;
        }
        self.libraries(path, &deps, &[])
    }

    /// Resolves and follows the `DT_NEEDED` of the object at `path`.
    /// `inherited_rpath` carries the `DT_RPATH` of the objects that loaded
    /// it (used only by objects without `DT_RUNPATH`, as the loader does).
    fn libraries(
        &mut self,
        path: &Path,
        deps: &ElfDeps,
        inherited_rpath: &[PathBuf],
    ) -> Result<(), ClosureError> {
        let origin = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| path.parent().unwrap_or(Path::new("/")).to_path_buf());
        let mut rpath: Vec<PathBuf> = Vec::new();
        if deps.runpath.is_empty() {
            rpath.extend(
                deps.rpath
                    .iter()
                    .filter(|e| !e.is_empty())
                    .map(|e| expand_origin(e, &origin)),
            );
            rpath.extend(inherited_rpath.iter().cloned());
        }
        let runpath: Vec<PathBuf> = deps
            .runpath
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| expand_origin(e, &origin))
            .collect();
        let dirs: Vec<&Path> = rpath
            .iter()
            .chain(runpath.iter())
            .chain(self.search.conf_dirs.iter())
            .chain(self.search.default_dirs.iter())
            .map(PathBuf::as_path)
            .collect();

        for name in &deps.needed {
            let (lib, lib_deps) = if name.contains('/') {
                let p = PathBuf::from(name);
                let d = std::fs::read(&p).map_err(|e| err(&p, ClosureErrorKind::Read(e)))?;
                let ld = elf_deps(&d)
                    .map_err(|e| err(&p, ClosureErrorKind::Elf(e)))?
                    .ok_or_else(|| err(&p, ClosureErrorKind::NotExecutable))?;
                (p, ld)
            } else {
                self.find_library(name, &dirs, deps.arch).ok_or_else(|| {
                    err(
                        path,
                        ClosureErrorKind::LibraryNotFound {
                            library: name.clone(),
                            searched: dirs
                                .iter()
                                .map(|d| d.to_string_lossy())
                                .collect::<Vec<_>>()
                                .join(":"),
                        },
                    )
                })?
            };
            if self.record(&lib)? {
                self.libraries(&lib, &lib_deps, &rpath)?;
            }
        }
        Ok(())
    }

    /// The first `dir/name` that is an ELF file of the same architecture.
    fn find_library(
        &self,
        name: &str,
        dirs: &[&Path],
        arch: (u8, u16),
    ) -> Option<(PathBuf, ElfDeps)> {
        for dir in dirs {
            let candidate = dir.join(name);
            let Ok(data) = std::fs::read(&candidate) else {
                continue;
            };
            if let Ok(Some(deps)) = elf_deps(&data) {
                if deps.arch == arch {
                    return Some((candidate, deps));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn curl_closure_matches_its_needs() {
        let curl = PathBuf::from("/usr/bin/curl");
        assert!(
            curl.exists(),
            "/usr/bin/curl is required (bash scripts/setup.sh)"
        );
        let paths = closure(std::slice::from_ref(&curl), &SearchPaths::host()).unwrap();
        assert_eq!(paths[0], curl);
        let n = names(&paths);
        for lib in [
            "ld-linux-x86-64.so.2",
            "libcurl.so.4",
            "libc.so.6",
            "libz.so.1",
            "libssl.so.3",
            "libcrypto.so.3",
            "libnghttp2.so.14",
        ] {
            assert!(n.iter().any(|x| x == lib), "{lib} missing from {n:?}");
        }
        // Each library once, each path exists.
        let unique: BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len());
        assert!(paths.iter().all(|p| p.exists()));
        // Every DT_NEEDED of every object is present by name.
        for p in &paths {
            let data = std::fs::read(p).unwrap();
            let deps = elf_deps(&data).unwrap().unwrap();
            for needed in deps.needed {
                assert!(n.contains(&needed), "{needed} of {} missing", p.display());
            }
        }
        assert!(paths.len() > 20, "curl has many libraries: {n:?}");
    }

    #[test]
    fn static_busybox_is_alone() {
        let bb = PathBuf::from("/bin/busybox");
        let data = std::fs::read(&bb).expect("/bin/busybox (busybox-static) is required");
        let deps = elf_deps(&data).unwrap().unwrap();
        assert_eq!(deps.interpreter, None);
        assert!(deps.needed.is_empty());
        assert_eq!(
            closure(std::slice::from_ref(&bb), &SearchPaths::host()).unwrap(),
            [bb]
        );
    }

    #[test]
    fn scripts_bring_their_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "#!/bin/bash -e\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env_script = dir.path().join("e.sh");
        std::fs::write(&env_script, "#!/usr/bin/env bash\necho hi\n").unwrap();
        let paths = closure(&[script.clone(), env_script.clone()], &SearchPaths::host()).unwrap();
        assert_eq!(paths[0], script);
        assert_eq!(paths[1], PathBuf::from("/bin/bash"));
        let n = names(&paths);
        assert!(n.contains(&"libc.so.6".to_string()), "{n:?}");
        assert!(n.contains(&"env".to_string()), "{n:?}");
        assert!(paths.contains(&env_script));
    }

    #[test]
    fn missing_and_non_executable_files_are_named() {
        let e = closure(&[PathBuf::from("/nonexistent/prog")], &SearchPaths::host()).unwrap_err();
        assert_eq!(e.path, PathBuf::from("/nonexistent/prog"));
        assert!(matches!(e.kind, ClosureErrorKind::Read(_)));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, "plain text").unwrap();
        let e = closure(std::slice::from_ref(&f), &SearchPaths::host()).unwrap_err();
        assert!(matches!(e.kind, ClosureErrorKind::NotExecutable));
        assert!(e.to_string().contains("data"));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"\x7fELF\x02\x01\x01\0garbage").unwrap();
        let e = closure(&[bad], &SearchPaths::host()).unwrap_err();
        assert!(matches!(e.kind, ClosureErrorKind::Elf(_)), "{e}");
    }

    #[test]
    fn unresolvable_library_is_reported() {
        let search = SearchPaths {
            conf_dirs: vec![],
            default_dirs: vec![PathBuf::from("/nonexistent")],
        };
        let e = closure(&[PathBuf::from("/usr/bin/curl")], &search).unwrap_err();
        match e.kind {
            ClosureErrorKind::LibraryNotFound { library, searched } => {
                assert_eq!(library, "libcurl.so.4");
                assert!(searched.contains("/nonexistent"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runpath_with_origin_is_searched() {
        // Copy libz next to a private "lib" dir and point a copy of a
        // program's needs at it through $ORIGIN, using a search path that
        // contains nothing else but the loader's own directory.
        let deps = ElfDeps {
            needed: vec!["libz.so.1".into()],
            runpath: vec!["$ORIGIN/../lib".into()],
            arch: (elf::ELFCLASS64.0, elf::EM_X86_64.0),
            ..ElfDeps::default()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        let host_libz = closure(&[PathBuf::from("/usr/bin/curl")], &SearchPaths::host())
            .unwrap()
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == "libz.so.1"))
            .unwrap();
        std::fs::copy(&host_libz, dir.path().join("lib/libz.so.1")).unwrap();
        let prog = dir.path().join("bin/prog");
        std::fs::write(&prog, "").unwrap();
        let search = SearchPaths {
            conf_dirs: vec![],
            default_dirs: DEFAULT_LIBRARY_DIRS.iter().map(PathBuf::from).collect(),
        };
        let mut w = Walker {
            search: &search,
            out: vec![],
            seen: BTreeSet::new(),
        };
        w.libraries(&prog, &deps, &[]).unwrap();
        let real_dir = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(w.out[0], real_dir.join("bin/../lib/libz.so.1"));
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("b.conf"), "/opt/b\n").unwrap();
        std::fs::write(d.join("a.conf"), "# comment\n/opt/a # trailing\n").unwrap();
        std::fs::write(d.join("skip.txt"), "/opt/skip\n").unwrap();
        let main = dir.path().join("ld.so.conf");
        std::fs::write(
            &main,
            "/opt/first\ninclude conf.d/*.conf\nrelative/ignored\n",
        )
        .unwrap();
        let mut out = vec![];
        read_ld_so_conf(&main, &mut out, 0);
        assert_eq!(out, ["/opt/first", "/opt/a", "/opt/b"].map(PathBuf::from));
    }

    #[test]
    fn origin_expansion() {
        let o = Path::new("/opt/x/bin");
        assert_eq!(
            expand_origin("$ORIGIN/../lib", o),
            PathBuf::from("/opt/x/bin/../lib")
        );
        assert_eq!(
            expand_origin("${ORIGIN}/l", o),
            PathBuf::from("/opt/x/bin/l")
        );
        assert_eq!(
            expand_origin("/usr/$LIB", o),
            PathBuf::from("/usr/lib/x86_64-linux-gnu")
        );
    }
}
