//! The per-machine initramfs: what goes in, and a content-hash cache so an
//! unchanged machine costs a few stat calls instead of a rebuild.
//!
//! A machine's image comes in two parts ([`Image`]): the base, which QEMU
//! loads as the initramfs and which every machine of the same kernel,
//! busybox and control script shares (busybox and its applet links, the
//! modules, `/init` and covnet's scripts), and the machine's layer, a disk
//! that init unpacks when the host releases it (`guest/init.sh`): everything
//! else below, and the base's applet links that a program or file of the
//! machine takes the name of, to remove. A guest booted to the release
//! point and saved is then the same for all of them.
//!
//! Contents of the whole image (paths as in the guest):
//! - `/init` (covnet's stage-1 init, `guest/init.sh`), `/covnet/control.sh`
//!   (the control shell launcher, `guest/control.sh`);
//! - `/covnet/machine.env` (name, NICs, modules, services, exported env),
//!   `/covnet/services/NN-<name>.sh`, `/covnet/modules/NN-<name>.ko`;
//! - static busybox at its host path with a symlink per applet in `/bin`,
//!   `/sbin`, `/usr/bin` and `/usr/sbin` (unless a program takes the name);
//! - `/etc/hosts`, `/etc/passwd`, `/etc/group`; `/dev/console`; empty
//!   `/proc`, `/sys`, `/run`, `/tmp`, `/var/log`, `/root`;
//! - the machine's programs and their ELF closure at their host paths, with
//!   every host symlink on the way reproduced (`/lib64` → `usr/lib64`,
//!   soname links), and the machine's files.
//!
//! The cache key is a SHA-256 over every entry: guest path, type, mode,
//! and for host files their path, size, inode, mtime and ctime (contents
//! are streamed only when building). Images are written to a temporary
//! file and linked into place, so concurrent builders never see partial
//! images, and the first one stays.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::BufWriter;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use super::closure::{self, ClosureError, SearchPaths};
use super::cpio::{CpioError, CpioWriter};
use super::guest_files::{self, machine_env, Data, GuestFile, CONTROL_SH};
use super::kernel::Kernel;
use super::modules::{ModuleDeps, ModuleError, GUEST_MODULES};
use crate::spec::{Machine, Spec};

/// The line init prints on the serial console just before it execs the
/// control shell.
pub const INIT_DONE_MARKER: &str = "covnet-init-done";
/// The static busybox every image is built around.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// Bump when the image layout changes, to invalidate cached images.
const LAYOUT_VERSION: &str = "covnet-initramfs-2";
/// The layer's list of base entries to remove, one guest path per line.
pub const UNLINK_LIST: &str = "/covnet/unlink";
/// Directories that get busybox applet symlinks.
const APPLET_DIRS: &[&str] = &["/bin", "/sbin", "/usr/bin", "/usr/sbin"];
/// Directories init mounts a tmpfs on (before the layer is unpacked).
const TMPFS_DIRS: &[&str] = &["/run", "/tmp"];
/// Applets linked before the programs are added, so no program replaces
/// them (also in a namespace machine's root): init, the control shell and
/// `#!/bin/sh` scripts need busybox's shell, not the host's dash.
pub const RESERVED_APPLETS: &[&str] = &["sh"];
/// Serializes the writing of base images in this process (see `build`).
static BASE_WRITER: Mutex<()> = Mutex::new(());
/// Distinguishes the temporary files of one process.
static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Symlink hops allowed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;

/// The default image cache: `$XDG_CACHE_HOME/covnet/images`, else
/// `$HOME/.cache/covnet/images`, else a per-user directory in the temp dir.
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("covnet/images");
    }
    if let Some(h) = non_empty("HOME") {
        return PathBuf::from(h).join(".cache/covnet/images");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("covnet-{uid}/images"))
}

/// An image that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("failed to build the initramfs of machine `{machine}`")]
pub struct ImageError {
    /// The machine.
    pub machine: String,
    /// Why.
    #[source]
    pub kind: ImageErrorKind,
}

/// Why an image cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageErrorKind {
    /// A program's closure cannot be computed.
    #[error(transparent)]
    Closure(#[from] ClosureError),
    /// The kernel modules cannot be resolved or read.
    #[error(transparent)]
    Modules(#[from] ModuleError),
    /// A host file (program, library, file source, busybox) is missing or
    /// unreadable.
    #[error("cannot read {}", path.display())]
    Host {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Busybox has no applet table (not a busybox binary?).
    #[error("{} has no busybox applet list (install busybox-static; hint: `bash scripts/setup.sh`)", path.display())]
    NoApplets {
        /// The binary.
        path: PathBuf,
    },
    /// Two entries want one guest path in incompatible ways.
    #[error("guest path /{path} is needed both as {existing} and as {wanted}")]
    Conflict {
        /// The guest path (relative to `/`).
        path: String,
        /// What is there.
        existing: &'static str,
        /// What was wanted.
        wanted: &'static str,
    },
    /// A path with too many symlink hops.
    #[error("too many levels of symbolic links resolving {}", path.display())]
    SymlinkLoop {
        /// The path.
        path: PathBuf,
    },
    /// A path that is not valid UTF-8 (cpio names are written as text).
    #[error("path {} is not valid UTF-8", path.display())]
    NonUtf8 {
        /// The path.
        path: PathBuf,
    },
    /// The archive cannot be written.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// The cache directory or image file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A built (or cached) image, in two parts: a base that QEMU loads, the
/// same for every machine booted with the same kernel, busybox and
/// control script, and the machine's own layer, which init unpacks when
/// the host releases it. So one booted guest, saved, can be restored as
/// any machine of that base (see `machine::vm::snapshot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The base, a plain cpio (`<hash>.cpio`) in the cache directory:
    /// busybox with every applet, the kernel modules, covnet's init and
    /// guest scripts. Not compressed (2.6 MB rather than 1.4 MB): the host
    /// skips compressing each new base, and cold boots take as long as
    /// with a gzip'd one (`vm_boot_bench` `plain` against `gzip`: 1.709 s
    /// against 1.725 s, medians of seven sets of five boots).
    pub path: PathBuf,
    /// The machine's layer, a plain cpio (`<hash>.layer.cpio`) in the cache
    /// directory: every entry of the machine's image that the base lacks
    /// or has otherwise (programs, libraries, files, `/etc`,
    /// `/covnet/machine.env`, services), then [`UNLINK_LIST`]. The VM
    /// attaches it as a read-only disk, which init unpacks when released
    /// (see `machine::vm::layer_disk`).
    pub layer: PathBuf,
    /// Hex SHA-256 of the machine's inputs (the layer's file name).
    pub hash: String,
    /// True when both files were already in the cache.
    pub cached: bool,
    /// Number of entries of the machine's whole image (base and layer).
    pub entries: usize,
}

/// Builds the initramfs of one machine.
///
/// ```no_run
/// use covnet_runner::image::initramfs::ImageBuilder;
/// use covnet_runner::image::kernel::Kernel;
/// use covnet_runner::spec::Spec;
/// let spec = Spec::from_path("net.toml".as_ref())?;
/// let kernel = Kernel::host_default()?;
/// let image = ImageBuilder::new(&spec, &spec.machines[0], &kernel).build()?;
/// println!("{}", image.path.display());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageBuilder<'a> {
    spec: &'a Spec,
    machine: &'a Machine,
    kernel: &'a Kernel,
    control_script: &'a [u8],
    busybox: PathBuf,
    cache_dir: PathBuf,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>, u32)>,
    search: Option<SearchPaths>,
}

impl<'a> ImageBuilder<'a> {
    /// A builder for `machine` of `spec`, booting `kernel` (its modules go
    /// in the image), with the default control script, busybox and cache.
    pub fn new(spec: &'a Spec, machine: &'a Machine, kernel: &'a Kernel) -> Self {
        ImageBuilder {
            spec,
            machine,
            kernel,
            control_script: CONTROL_SH.as_bytes(),
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
            cache_dir: default_cache_dir(),
            env: Vec::new(),
            files: Vec::new(),
            search: None,
        }
    }

    /// Uses `script` as `/covnet/control.sh` instead of [`CONTROL_SH`].
    pub fn control_script(mut self, script: &'a [u8]) -> Self {
        self.control_script = script;
        self
    }

    /// Uses another static busybox binary.
    pub fn busybox(mut self, path: impl Into<PathBuf>) -> Self {
        self.busybox = path.into();
        self
    }

    /// Stores images in `dir` instead of [`default_cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// Exports `key=value` to init, services and the control shell (via
    /// `/covnet/machine.env`), e.g. `GCOV_PREFIX=/covnet/gcov`. `key` must
    /// be a shell identifier; others are ignored.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        if is_identifier(&key) {
            self.env.retain(|(k, _)| *k != key);
            self.env.push((key, value.into()));
        }
        self
    }

    /// Adds a file with `data` at guest `path` (absolute) with `mode`,
    /// e.g. covnet's flush shim; the machine's own files may replace it.
    pub fn file(mut self, path: impl Into<String>, mode: u32, data: Vec<u8>) -> Self {
        self.files.push((path.into(), data, mode));
        self
    }

    /// Uses `search` to resolve libraries instead of the host's.
    pub fn library_search(mut self, search: SearchPaths) -> Self {
        self.search = Some(search);
        self
    }

    /// Builds the image, or finds it in the cache.
    pub fn build(&self) -> Result<Image, ImageError> {
        self.build_inner().map_err(|kind| ImageError {
            machine: self.machine.name.clone(),
            kind,
        })
    }

    fn build_inner(&self) -> Result<Image, ImageErrorKind> {
        let (base, full) = self.plan()?;
        let hash = full.hash()?;
        let path = self.cache_dir.join(format!("{}.cpio", base.hash()?));
        let layer = self.cache_dir.join(format!("{hash}.layer.cpio"));
        let entries = full.nodes.len();
        let cached = path.is_file() && layer.is_file();
        {
            // Machines built in parallel share the base: one writes it.
            let _one = BASE_WRITER.lock().unwrap_or_else(|p| p.into_inner());
            if !path.is_file() {
                self.write_atomically(&path, |tmp| write_base(&base, tmp))?;
            }
        }
        if !layer.is_file() {
            self.write_atomically(&layer, |tmp| write_layer(&base, &full, tmp))?;
        }
        Ok(Image {
            path,
            layer,
            hash,
            cached,
            entries,
        })
    }

    /// Writes `path` through a temporary file linked into place, so that
    /// concurrent builders never see a partial file, and a file another
    /// process put there first stays (its modification time is in the
    /// snapshot keys of the VMs that boot it).
    fn write_atomically(
        &self,
        path: &Path,
        write: impl FnOnce(&Path) -> Result<(), ImageErrorKind>,
    ) -> Result<(), ImageErrorKind> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| ImageErrorKind::Write {
            path: self.cache_dir.clone(),
            source: e,
        })?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = self.cache_dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = write(&tmp).and_then(|()| {
            super::link_new(&tmp, path).map_err(|e| ImageErrorKind::Write {
                path: path.to_owned(),
                source: e,
            })
        });
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// Everything that goes in the base and in the machine's whole image,
    /// without reading file contents.
    fn plan(&self) -> Result<(Tree, Tree), ImageErrorKind> {
        let m = self.machine;
        let mut base = Tree::default();

        for d in ["dev", "proc", "sys", "run", "tmp", "root", "var/log", "etc"] {
            base.dir(Path::new("/").join(d).as_path())?;
        }
        base.set_mode("tmp", 0o1777);
        base.set_mode("root", 0o700);
        base.insert("dev/console", Node::CharDev(5, 1, 0o600))?;

        // Busybox first, with `sh` reserved for it: init, the control shell
        // and `#!/bin/sh` scripts run busybox's shell even when the host's
        // /bin/sh (dash) is part of a program's closure.
        base.host_file(&self.busybox)?;
        let applets = applets_of(&self.busybox).map_err(|e| ImageErrorKind::Host {
            path: self.busybox.clone(),
            source: e,
        })?;
        if applets.is_empty() {
            return Err(ImageErrorKind::NoApplets {
                path: self.busybox.clone(),
            });
        }
        let bb_target = utf8(&self.busybox)?.to_owned();
        let applet_dirs = APPLET_DIRS
            .iter()
            .map(|dir| base.dir(Path::new(dir)))
            .collect::<Result<Vec<String>, _>>()?;
        base.link_applets(&applet_dirs, RESERVED_APPLETS, &bb_target)?;

        // Kernel modules, renamed to their load order.
        let mods = ModuleDeps::load(&self.kernel.modules_dir)?.resolve(GUEST_MODULES)?;
        let mut module_paths = Vec::new();
        for (i, module) in mods.iter().enumerate() {
            let guest = format!("/covnet/modules/{:02}-{}.ko", i + 1, module.name);
            if module.path.extension().is_some_and(|e| e == "ko") {
                let md = host_meta(&module.path)?;
                let parent = base.dir(Path::new("/covnet/modules"))?;
                let name = join_rel(&parent, &format!("{:02}-{}.ko", i + 1, module.name));
                base.insert(
                    &name,
                    Node::File {
                        mode: 0o644,
                        content: Content::Host(module.path.clone(), HostMeta::of(&md)),
                    },
                )?;
            } else {
                base.bytes(Path::new(&guest), 0o644, module.read()?)?;
            }
            module_paths.push(guest);
        }
        for file in guest_files::covnet_scripts(self.control_script) {
            base.guest_file(&file)?;
        }
        base.dir(Path::new("/covnet/services"))?;

        // The machine's image starts from the same skeleton, busybox,
        // modules and scripts; the base then gets every applet.
        let mut t = base.clone();
        base.link_applets(&applet_dirs, &applets, &bb_target)?;
        // Before the release, init needs only the modules to load (the
        // machine's own environment comes with its layer).
        base.bytes(
            Path::new("/covnet/machine.env"),
            0o644,
            machine_env_base(&module_paths).into_bytes(),
        )?;

        // Programs and their closure: the files the loader opens, with the
        // host's symlinks on the way.
        let search = self.search.clone().unwrap_or_else(SearchPaths::host);
        let needed = closure::closure(&m.programs, &search)?;
        for p in &needed {
            t.host_file(p)?;
        }

        // The other applets, where no program took the name and no spec
        // file goes (a file may stand in for an applet: a stub `wget`).
        let mut file_targets = Vec::with_capacity(m.files.len());
        for f in &m.files {
            let target = Path::new(&f.target);
            let parent = t.dir(target.parent().unwrap_or(Path::new("/")))?;
            if let Some(n) = target.file_name() {
                file_targets.push(join_rel(&parent, &n.to_string_lossy()));
            }
        }
        // A name taken in one applet directory is taken in all: a busybox
        // link at /usr/sbin/wget would come before a program at
        // /usr/bin/wget in PATH.
        let free: Vec<&String> = applets
            .iter()
            .filter(|a| {
                !applet_dirs.iter().any(|d| {
                    let name = join_rel(d, a);
                    t.nodes.contains_key(&name) || file_targets.contains(&name)
                })
            })
            .collect();
        t.link_applets(&applet_dirs, &free, &bb_target)?;

        // Extra files of the run (covnet's flush shim), then the generated
        // files: init, services, /etc, and the machine's own files last
        // (they may replace covnet's /etc files).
        for (path, data, mode) in &self.files {
            t.bytes(Path::new(path), *mode, data.clone())?;
        }
        let generated = guest_files::generate(self.spec, m, self.control_script);
        for file in &generated.files {
            t.guest_file(file)?;
        }

        // The layer is unpacked after init has mounted a tmpfs on both
        // scratch directories, so files there land in the tmpfs. The
        // NICs boot with their slots' MACs (so that one saved guest is any
        // machine's) and take their own after the release.
        let mut env = machine_env(
            self.machine,
            &module_paths,
            &generated.service_ids,
            Some(TMPFS_DIRS),
            &self.env,
        );
        for nic in &m.nics {
            let slot = crate::machine::vm::qemu::Mac::for_slot(nic.slot);
            let _ = writeln!(
                env,
                "COVNET_NIC{}_BOOT_MAC={}",
                nic.slot,
                guest_files::sh_quote(&slot.to_string())
            );
        }
        t.bytes(Path::new("/covnet/machine.env"), 0o644, env.into_bytes())?;
        Ok((base, t))
    }
}

/// The base's `/covnet/machine.env`: what init needs before its release.
fn machine_env_base(modules: &[String]) -> String {
    format!(
        "# covnet base image (the machine's own configuration comes with its layer)\n\
         COVNET_MODULES={}\n",
        guest_files::sh_quote(&modules.join(" "))
    )
}

/// The guest paths among `paths` whose file name is a busybox applet's:
/// the guest's shell (busybox `sh`, built to prefer its applets) runs its
/// own applet for that bare name, whatever `PATH` holds, so only the full
/// path reaches the file.
pub fn named_like_applets<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    applets: &[String],
) -> Vec<&'a str> {
    paths
        .into_iter()
        .filter(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n != "busybox" && applets.iter().any(|a| a == n))
        })
        .collect()
}

/// The applet names of the busybox binary at `path` ([`busybox_applets`]),
/// read and scanned once per process and path: every VM image, every
/// namespace machine and the run's applet-name warning ask for them.
pub fn applets_of(path: &Path) -> std::io::Result<Arc<[String]>> {
    static SEEN: OnceLock<Mutex<HashMap<PathBuf, Arc<[String]>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    if let Some(applets) = crate::machine::session::lock(seen).get(path) {
        return Ok(Arc::clone(applets));
    }
    let applets: Arc<[String]> = busybox_applets(&std::fs::read(path)?).into();
    crate::machine::session::lock(seen).insert(path.to_owned(), Arc::clone(&applets));
    Ok(applets)
}

/// The applet names in a busybox binary: its packed, NUL-separated,
/// sorted name table (the same list `busybox --list` prints).
pub fn busybox_applets(binary: &[u8]) -> Vec<String> {
    const START: &[u8] = b"[\0[[\0";
    let Some(at) = binary.windows(START.len()).position(|w| w == START) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in binary.get(at..).unwrap_or(&[]).split(|&b| b == 0) {
        let valid = !name.is_empty()
            && name.len() < 64
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'[' | b'_' | b'-' | b'.'));
        if !valid {
            break;
        }
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    out
}

/// Machine variable naming the library that service scripts add to
/// `LD_PRELOAD` (set only when coverage is on, to covnet's flush shim).
pub const SERVICE_PRELOAD_ENV: &str = "COVNET_SERVICE_PRELOAD";

fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn utf8(p: &Path) -> Result<&str, ImageErrorKind> {
    p.to_str().ok_or_else(|| ImageErrorKind::NonUtf8 {
        path: p.to_path_buf(),
    })
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn host_meta(p: &Path) -> Result<std::fs::Metadata, ImageErrorKind> {
    std::fs::metadata(p).map_err(|e| ImageErrorKind::Host {
        path: p.to_path_buf(),
        source: e,
    })
}

/// What identifies a host file's version for the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostMeta {
    len: u64,
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl HostMeta {
    fn of(md: &std::fs::Metadata) -> HostMeta {
        HostMeta {
            len: md.len(),
            dev: md.dev(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Host(PathBuf, HostMeta),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File { mode: u32, content: Content },
    Symlink(String),
    CharDev(u32, u32, u32),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Dir(_) => "a directory",
            Node::File { .. } => "a file",
            Node::Symlink(_) => "a symlink",
            Node::CharDev(..) => "a device",
        }
    }
}

/// The image being planned: guest paths (relative to `/`) to nodes,
/// ordered so that parents precede children.
#[derive(Debug, Default, Clone)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn insert(&mut self, path: &str, node: Node) -> Result<(), ImageErrorKind> {
        match self.nodes.get(path) {
            None => {
                self.nodes.insert(path.to_owned(), node);
                Ok(())
            }
            Some(existing) if existing == &node => Ok(()),
            // A later file replaces an earlier one (spec files over covnet's).
            Some(Node::File { .. }) if matches!(node, Node::File { .. }) => {
                self.nodes.insert(path.to_owned(), node);
                Ok(())
            }
            Some(existing) => Err(ImageErrorKind::Conflict {
                path: path.to_owned(),
                existing: existing.kind(),
                wanted: node.kind(),
            }),
        }
    }

    /// Links each of `applets` to busybox (`target`) in each of `dirs`
    /// (real guest paths), where the tree has nothing of that name yet.
    fn link_applets(
        &mut self,
        dirs: &[String],
        applets: &[impl AsRef<str>],
        target: &str,
    ) -> Result<(), ImageErrorKind> {
        for dir in dirs {
            for a in applets {
                let name = join_rel(dir, a.as_ref());
                if !self.nodes.contains_key(&name) {
                    self.insert(&name, Node::Symlink(target.to_owned()))?;
                }
            }
        }
        Ok(())
    }

    fn set_mode(&mut self, path: &str, mode: u32) {
        if let Some(Node::Dir(m)) = self.nodes.get_mut(path) {
            *m = mode;
        }
    }

    /// A file with `bytes` at guest `path` (parents created as on the host).
    /// A generated file; a host file is streamed when the image is written.
    fn guest_file(&mut self, file: &GuestFile) -> Result<(), ImageErrorKind> {
        let target = Path::new(&file.path);
        match &file.data {
            Data::Bytes(b) => self.bytes(target, file.mode, b.clone()),
            Data::Host(src) => {
                let md = host_meta(src)?;
                let parent = self.dir(target.parent().unwrap_or(Path::new("/")))?;
                let name = target
                    .file_name()
                    .map(|n| join_rel(&parent, &n.to_string_lossy()))
                    .unwrap_or_default();
                self.insert(
                    &name,
                    Node::File {
                        mode: file.mode,
                        content: Content::Host(src.clone(), HostMeta::of(&md)),
                    },
                )
            }
        }
    }

    fn bytes(&mut self, path: &Path, mode: u32, bytes: Vec<u8>) -> Result<(), ImageErrorKind> {
        let parent = self.dir(path.parent().unwrap_or(Path::new("/")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.insert(
            &join_rel(&parent, &name),
            Node::File {
                mode,
                content: Content::Bytes(bytes),
            },
        )
    }

    /// Ensures guest directory `path` exists; returns its real path.
    fn dir(&mut self, path: &Path) -> Result<String, ImageErrorKind> {
        self.walk(path, true)
    }

    /// Adds host file `path` at the same guest path, with every symlink on
    /// the way; returns the real guest path of the file.
    fn host_file(&mut self, path: &Path) -> Result<String, ImageErrorKind> {
        let real = self.walk(path, false)?;
        let host = PathBuf::from("/").join(&real);
        let md = host_meta(&host)?;
        self.insert(
            &real,
            Node::File {
                mode: md.mode() & 0o7777,
                content: Content::Host(host, HostMeta::of(&md)),
            },
        )?;
        Ok(real)
    }

    /// Resolves `path` component by component, recording each symlink and
    /// directory met (from the tree if already there, else from the host;
    /// directories missing on the host are created). With `want_dir` the
    /// last component is a directory too; otherwise the last component's
    /// real path is returned without recording it (unless it is a symlink).
    fn walk(&mut self, path: &Path, want_dir: bool) -> Result<String, ImageErrorKind> {
        let mut todo: Vec<OsString> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push(OsString::from("..")),
                _ => {}
            }
        }
        todo.reverse(); // a stack: next component on top
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            let c = c.into_string().map_err(|_| ImageErrorKind::NonUtf8 {
                path: path.to_path_buf(),
            })?;
            if c == ".." {
                cur.pop();
                continue;
            }
            let last = todo.is_empty();
            let rel = join_rel(&cur.join("/"), &c);
            let node = match self.nodes.get(&rel) {
                Some(n) => Some(n.clone()),
                None => {
                    let host = PathBuf::from("/").join(&rel);
                    match std::fs::symlink_metadata(&host) {
                        Ok(md) if md.file_type().is_symlink() => {
                            let target =
                                std::fs::read_link(&host).map_err(|e| ImageErrorKind::Host {
                                    path: host.clone(),
                                    source: e,
                                })?;
                            let target = utf8(&target)?.to_owned();
                            let n = Node::Symlink(target);
                            self.insert(&rel, n.clone())?;
                            Some(n)
                        }
                        Ok(md) if md.is_dir() && (!last || want_dir) => {
                            let n = Node::Dir(md.mode() & 0o7777);
                            self.insert(&rel, n.clone())?;
                            Some(n)
                        }
                        Ok(_) if last && !want_dir => None,
                        Ok(md) if !md.is_dir() => {
                            return Err(ImageErrorKind::Conflict {
                                path: rel,
                                existing: "a file on the host",
                                wanted: "a directory",
                            })
                        }
                        _ if last && !want_dir => None,
                        _ => {
                            let n = Node::Dir(0o755);
                            self.insert(&rel, n.clone())?;
                            Some(n)
                        }
                    }
                }
            };
            match node {
                Some(Node::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(ImageErrorKind::SymlinkLoop {
                            path: path.to_path_buf(),
                        });
                    }
                    let t = Path::new(&target);
                    if t.is_absolute() {
                        cur.clear();
                    }
                    let mut more: Vec<OsString> = t
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(n) => Some(n.to_os_string()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    more.reverse();
                    todo.extend(more);
                }
                Some(Node::Dir(_)) => cur.push(c),
                Some(other) => {
                    if last && !want_dir {
                        return Ok(rel);
                    }
                    return Err(ImageErrorKind::Conflict {
                        path: rel,
                        existing: other.kind(),
                        wanted: "a directory",
                    });
                }
                None => return Ok(rel),
            }
        }
        Ok(cur.join("/"))
    }

    /// The cache key.
    fn hash(&self) -> Result<String, ImageErrorKind> {
        let mut h = Sha256::new();
        h.update(LAYOUT_VERSION.as_bytes());
        for (path, node) in &self.nodes {
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            match node {
                Node::Dir(m) => {
                    h.update(b"d");
                    h.update(m.to_le_bytes());
                }
                Node::Symlink(t) => {
                    h.update(b"l");
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t.as_bytes());
                }
                Node::CharDev(a, b, m) => {
                    h.update(b"c");
                    for v in [a, b, m] {
                        h.update(v.to_le_bytes());
                    }
                }
                Node::File { mode, content } => {
                    h.update(b"f");
                    h.update(mode.to_le_bytes());
                    match content {
                        Content::Bytes(b) => {
                            h.update(b"b");
                            h.update((b.len() as u64).to_le_bytes());
                            h.update(b);
                        }
                        Content::Host(p, m) => {
                            h.update(b"h");
                            let p = utf8(p)?;
                            h.update((p.len() as u64).to_le_bytes());
                            h.update(p.as_bytes());
                            for v in [m.len, m.dev, m.ino] {
                                h.update(v.to_le_bytes());
                            }
                            for v in [m.mtime.0, m.mtime.1, m.ctime.0, m.ctime.1] {
                                h.update(v.to_le_bytes());
                            }
                        }
                    }
                }
            }
        }
        let digest = h.finalize();
        let mut hex = String::with_capacity(64);
        for b in digest.iter() {
            let _ = write!(hex, "{b:02x}");
        }
        Ok(hex)
    }
}

/// Writes the base, every node of `tree`, as a plain cpio into `tmp`.
fn write_base(tree: &Tree, tmp: &Path) -> Result<(), ImageErrorKind> {
    let werr = |e: std::io::Error| ImageErrorKind::Write {
        path: tmp.to_path_buf(),
        source: e,
    };
    let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 16, create_new(tmp)?));
    write_nodes(&mut w, tree.nodes.iter())?;
    let buf = w.finish()?;
    let file = buf.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

/// Writes the layer of `full` over `base` as a plain cpio into `tmp`:
/// every node `full` has that `base` lacks or has otherwise, then
/// [`UNLINK_LIST`], the base's entries that `full` has not (busybox links
/// where a program or file took the applet's name), one path per line
/// (the archive ends on a 512-byte block: it is the guest's disk).
fn write_layer(base: &Tree, full: &Tree, tmp: &Path) -> Result<(), ImageErrorKind> {
    let werr = |e: std::io::Error| ImageErrorKind::Write {
        path: tmp.to_path_buf(),
        source: e,
    };
    let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 16, create_new(tmp)?));
    write_nodes(
        &mut w,
        full.nodes
            .iter()
            .filter(|(path, node)| base.nodes.get(*path) != Some(node)),
    )?;
    let mut unlink = String::new();
    for path in base.nodes.keys().filter(|p| !full.nodes.contains_key(*p)) {
        let _ = writeln!(unlink, "/{path}");
    }
    w.file(
        UNLINK_LIST.trim_start_matches('/'),
        0o644,
        unlink.as_bytes(),
    )?;
    let buf = w.finish()?;
    let file = buf.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

fn create_new(path: &Path) -> Result<std::fs::File, ImageErrorKind> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ImageErrorKind::Write {
            path: path.to_path_buf(),
            source: e,
        })
}

fn write_nodes<'t, W: std::io::Write>(
    w: &mut CpioWriter<W>,
    nodes: impl Iterator<Item = (&'t String, &'t Node)>,
) -> Result<(), ImageErrorKind> {
    for (path, node) in nodes {
        match node {
            Node::Dir(m) => w.dir(path, *m)?,
            Node::Symlink(t) => w.symlink(path, t)?,
            Node::CharDev(major, minor, m) => w.char_device(path, *m, *major, *minor)?,
            Node::File { mode, content } => match content {
                Content::Bytes(b) => w.file(path, *mode, b)?,
                Content::Host(host, meta) => {
                    let mut f = std::fs::File::open(host).map_err(|e| ImageErrorKind::Host {
                        path: host.clone(),
                        source: e,
                    })?;
                    w.file_from_reader(path, *mode, meta.len, &mut f)?;
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::guest_files::{sh_quote, INIT_SH};
    use std::time::{Duration, Instant};

    /// Unpacks a cpio file into (name, mode, data) entries.
    fn entries(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
        cpio_entries(&std::fs::read(path).unwrap())
    }

    /// What the guest has once init unpacked the layer over the base and
    /// removed what its unlink list names; also checks that parents come
    /// before children in both archives.
    fn applied(image: &Image) -> Vec<(String, u32, Vec<u8>)> {
        let base = entries(&image.path);
        let layer = cpio_entries(&std::fs::read(&image.layer).unwrap());
        for archive in [&base, &layer] {
            for (i, (name, _, _)) in archive.iter().enumerate() {
                if let Some((parent, _)) = name.rsplit_once('/') {
                    let p = archive.iter().position(|(n, _, _)| n == parent);
                    assert!(p.is_none_or(|p| p < i), "{parent} after {name}");
                }
            }
        }
        let mut tree: BTreeMap<String, (u32, Vec<u8>)> = base
            .into_iter()
            .map(|(n, mode, data)| (n, (mode, data)))
            .collect();
        for (n, mode, data) in layer {
            tree.insert(n, (mode, data));
        }
        let unlink = tree
            .get(UNLINK_LIST.trim_start_matches('/'))
            .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
            .expect("the layer's unlink list");
        for p in unlink.lines() {
            assert!(
                tree.remove(p.trim_start_matches('/')).is_some(),
                "{p} is not in the base"
            );
        }
        tree.into_iter()
            .map(|(n, (mode, data))| (n, mode, data))
            .collect()
    }

    /// The text of entry `name` of `entries`.
    fn text_of(entries: &[(String, u32, Vec<u8>)], name: &str) -> String {
        let (_, _, data) = entries
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        String::from_utf8(data.clone()).unwrap()
    }

    /// Splits a plain cpio archive into (name, mode, data) entries.
    fn cpio_entries(raw: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        let field = |raw: &[u8], at: usize, i: usize| {
            let s = std::str::from_utf8(&raw[at + 6 + i * 8..at + 14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap() as usize
        };
        loop {
            assert_eq!(&raw[at..at + 6], b"070701");
            let mode = field(raw, at, 1) as u32;
            let size = field(raw, at, 6);
            let namesize = field(raw, at, 11);
            let name = std::str::from_utf8(&raw[at + 110..at + 110 + namesize - 1])
                .unwrap()
                .to_owned();
            let data_at = (at + 110 + namesize + 3) & !3;
            if name == "TRAILER!!!" {
                break;
            }
            out.push((name, mode, raw[data_at..data_at + size].to_vec()));
            at = (data_at + size + 3) & !3;
        }
        out
    }

    fn spec_with(dir: &Path, text: &str) -> Spec {
        let path = dir.join("net.toml");
        std::fs::write(&path, text).unwrap();
        Spec::from_path(&path).unwrap()
    }

    #[test]
    fn programs_and_files_named_like_applets_are_found() {
        let applets: Vec<String> = ["sh", "wget", "ip", "busybox"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        assert_eq!(
            named_like_applets(
                [
                    "/usr/bin/wget",
                    "/opt/x/ip",
                    "/usr/bin/curl",
                    "/bin/busybox",
                    "/srv/wget.conf"
                ],
                &applets
            ),
            ["/usr/bin/wget", "/opt/x/ip"]
        );
    }

    #[test]
    fn image_has_everything_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        let tool = dir.path().join("tool.sh");
        std::fs::write(&tool, "#!/bin/sh\necho tool\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let spec = spec_with(
            dir.path(),
            r#"
[machines.server]
vlans = [1, 3]
programs = ["/usr/bin/curl", "tool.sh", "/usr/bin/env"]
forward = ["18080:80"]
[[machines.server.files]]
source = "index.html"
target = "/srv/www/index.html"
[[machines.server.files]]
content = "k=v"
target = "/etc/app.conf"
mode = "0600"
[[machines.server.files]]
content = "stub"
target = "/usr/bin/nc"
mode = "0755"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h '/srv/www'"
env = { GREETING = "it's me" }
[machines.client]
"#,
        );
        let kernel = Kernel::host_default().unwrap();
        let cache = dir.path().join("cache");
        let m = &spec.machines[0];
        let builder = ImageBuilder::new(&spec, m, &kernel)
            .cache_dir(&cache)
            .env("GCOV_PREFIX", "/covnet/gcov");

        let t0 = Instant::now();
        let first = builder.build().unwrap();
        let uncached = t0.elapsed();
        let t1 = Instant::now();
        let second = builder.build().unwrap();
        let cached = t1.elapsed();
        eprintln!("uncached build {uncached:?}, cached {cached:?}");
        assert!(!first.cached);
        assert!(second.cached);
        assert_eq!(first.path, second.path);
        assert!(first.path.starts_with(&cache));

        let e = applied(&first);
        let get = |n: &str| {
            e.iter()
                .find(|(name, _, _)| name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        // init, control, config
        assert_eq!(get("init").2, INIT_SH.as_bytes());
        assert_eq!(get("init").1 & 0o777, 0o755);
        assert_eq!(get("covnet/control.sh").2, CONTROL_SH.as_bytes());
        let env = String::from_utf8(get("covnet/machine.env").2.clone()).unwrap();
        for line in [
            "COVNET_NAME='server'",
            "COVNET_INDEX='1'",
            "COVNET_NICS='2'",
            "COVNET_NIC1_ADDR='192.168.3.1'",
            "COVNET_NIC1_MAC='52:54:00:03:01:01'",
            "COVNET_FWD_MAC='52:54:00:ff:01:ff'",
            "COVNET_SERVICES='01-httpd'",
            "COVNET_TMPFS='/run /tmp'",
            "export GCOV_PREFIX='/covnet/gcov'",
        ] {
            assert!(env.lines().any(|l| l == line), "{line} not in\n{env}");
        }
        assert!(env.contains("/covnet/modules/01-virtio_ring.ko "), "{env}");
        let svc = String::from_utf8(get("covnet/services/01-httpd.sh").2.clone()).unwrap();
        assert!(svc.contains("export GREETING='it'\\''s me'"), "{svc}");
        assert!(
            svc.contains("exec /bin/sh -c 'busybox httpd -f -p 80 -h '\\''/srv/www'\\'''"),
            "{svc}"
        );
        let hosts = String::from_utf8(get("etc/hosts").2.clone()).unwrap();
        assert!(
            hosts.contains("192.168.1.1\tserver\n192.168.1.2\tclient\n"),
            "{hosts}"
        );
        assert_eq!(get("srv/www/index.html").2, b"<h1>hi</h1>");
        assert_eq!(get("etc/app.conf").2, b"k=v");
        assert_eq!(get("etc/app.conf").1 & 0o7777, 0o600);
        // A file stands in for an applet (here and in every PATH directory).
        assert_eq!(get("usr/bin/nc").2, b"stub");
        assert!(!e
            .iter()
            .any(|(n, mode, _)| n.ends_with("bin/nc") && mode & 0o170000 == 0o120000));
        assert_eq!(get("dev/console").1, 0o020600);
        // Modules are real ELF objects, loaded in modules.dep order.
        assert!(get("covnet/modules/01-virtio_ring.ko")
            .2
            .starts_with(b"\x7fELF"));
        // Programs and the loader with the host's symlinks.
        let curl = get("usr/bin/curl");
        assert_eq!(curl.2, std::fs::read("/usr/bin/curl").unwrap());
        let is_link = |n: &str| get(n).1 & 0o170000 == 0o120000;
        if std::fs::symlink_metadata("/lib64")
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert!(is_link("lib64"));
            assert!(is_link("usr/lib64/ld-linux-x86-64.so.2"));
        }
        // Soname links stay links to the real file.
        let soname = Path::new("/usr/lib/x86_64-linux-gnu/libcurl.so.4");
        if std::fs::symlink_metadata(soname)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert!(is_link("usr/lib/x86_64-linux-gnu/libcurl.so.4"));
            let real = std::fs::canonicalize(soname).unwrap();
            let real = get(real.to_str().unwrap().trim_start_matches('/'));
            assert_eq!(real.1 & 0o170000, 0o100000);
        }
        let real_libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        get(real_libc.to_str().unwrap().trim_start_matches('/'));
        // Busybox applets: `sh` stays busybox's even though the script's
        // closure has the host's /bin/sh; a program keeps its own name.
        let sh = e
            .iter()
            .find(|(n, _, _)| n == "usr/bin/sh" || n == "bin/sh")
            .unwrap();
        assert_eq!(sh.2, DEFAULT_BUSYBOX.as_bytes(), "sh -> busybox");
        assert!(is_link("usr/bin/wget") || is_link("bin/wget"));
        let env_prog = e.iter().find(|(n, _, _)| n == "usr/bin/env").unwrap();
        assert_eq!(env_prog.2, std::fs::read("/usr/bin/env").unwrap());
        // ... and no busybox `env` in another PATH directory shadows it.
        for other in ["sbin/env", "usr/sbin/env", "bin/env"] {
            assert!(
                !e.iter()
                    .any(|(n, mode, _)| n == other && mode & 0o170000 == 0o120000),
                "{other} links to busybox"
            );
        }
        let tool_guest = tool.to_str().unwrap().trim_start_matches('/');
        assert_eq!(get(tool_guest).2, b"#!/bin/sh\necho tool\n");
        // The NICs' slot MACs, which init replaces with the machine's.
        assert!(
            env.contains("COVNET_NIC1_BOOT_MAC='02:00:00:00:00:01'\n"),
            "{env}"
        );

        // The base is the same for both machines and for none of this
        // machine's files; the layer holds them, and the links to remove.
        let base = entries(&first.path);
        let base_names: Vec<&str> = base.iter().map(|(n, _, _)| n.as_str()).collect();
        for own in [
            "etc/hosts",
            "usr/bin/curl",
            "srv/www/index.html",
            tool_guest,
        ] {
            assert!(!base_names.contains(&own), "{own} in the base");
        }
        assert!(base_names.contains(&"init") && base_names.contains(&"covnet/control.sh"));
        let base_env = text_of(&base, "covnet/machine.env");
        assert!(!base_env.contains("COVNET_NAME"), "{base_env}");
        assert!(
            base_env.contains("/covnet/modules/01-virtio_ring.ko "),
            "{base_env}"
        );
        assert!(base_env.contains("-virtio_blk.ko'\n"), "{base_env}");
        let layer_bytes = std::fs::read(&first.layer).unwrap();
        // Whole 512-byte blocks (a disk); curl's closure is about 19 MB.
        assert_eq!(layer_bytes.len() % 512, 0);
        assert!(layer_bytes.len() > 10 << 20, "{}", layer_bytes.len());
        let layer = cpio_entries(&layer_bytes);
        assert!(
            !layer
                .iter()
                .any(|(n, _, _)| n == "init" || n.starts_with("covnet/modules")),
            "the layer repeats the base"
        );
        let unlink = text_of(&layer, "covnet/unlink");
        assert!(unlink.lines().any(|l| l.ends_with("bin/nc")), "{unlink}");
        assert!(unlink.lines().any(|l| l.ends_with("bin/env")), "{unlink}");

        // Changing an input changes the image.
        std::fs::write(dir.path().join("index.html"), "<h1>changed</h1>").unwrap();
        let third = builder.build().unwrap();
        assert!(!third.cached);
        assert_ne!(third.hash, first.hash);
        // The other machine gets another image.
        let other = ImageBuilder::new(&spec, &spec.machines[1], &kernel)
            .cache_dir(&cache)
            .build()
            .unwrap();
        assert_ne!(other.hash, first.hash);
        assert_ne!(other.layer, first.layer);
        assert_eq!(other.path, first.path, "one base for both");
        assert_eq!(
            third.path, first.path,
            "a changed file changes the layer only"
        );
        // Same inputs rebuilt from scratch give the same bytes.
        let bytes = std::fs::read(&third.path).unwrap();
        let layer_bytes = std::fs::read(&third.layer).unwrap();
        std::fs::remove_file(&third.path).unwrap();
        std::fs::remove_file(&third.layer).unwrap();
        let again = builder.build().unwrap();
        assert!(!again.cached);
        assert_eq!(std::fs::read(&again.path).unwrap(), bytes);
        assert_eq!(std::fs::read(&again.layer).unwrap(), layer_bytes);
    }

    #[test]
    fn missing_host_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("prog");
        std::fs::copy("/bin/busybox", &prog).unwrap();
        let spec = spec_with(dir.path(), "[machines.a]\nprograms = [\"prog\"]\n");
        std::fs::remove_file(&prog).unwrap();
        let kernel = Kernel::host_default().unwrap();
        let e = ImageBuilder::new(&spec, &spec.machines[0], &kernel)
            .cache_dir(dir.path().join("c"))
            .build()
            .unwrap_err();
        assert_eq!(e.machine, "a");
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(chain.contains(prog.to_str().unwrap()), "{chain}");

        let spec = spec_with(dir.path(), "[machines.a]\n");
        let e = ImageBuilder::new(&spec, &spec.machines[0], &kernel)
            .busybox(dir.path().join("nobusybox"))
            .cache_dir(dir.path().join("c"))
            .build()
            .unwrap_err();
        assert!(matches!(e.kind, ImageErrorKind::Host { .. }), "{e:?}");
        let fake = dir.path().join("fakebox");
        std::fs::write(&fake, "not busybox").unwrap();
        let e = ImageBuilder::new(&spec, &spec.machines[0], &kernel)
            .busybox(&fake)
            .cache_dir(dir.path().join("c"))
            .build()
            .unwrap_err();
        assert!(matches!(e.kind, ImageErrorKind::NoApplets { .. }), "{e:?}");
    }

    #[test]
    fn applet_table_matches_busybox_list() {
        let bin = std::fs::read(DEFAULT_BUSYBOX).expect("busybox-static is required");
        let out = std::process::Command::new("timeout")
            .args(["10", DEFAULT_BUSYBOX, "--list"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let listed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(busybox_applets(&bin), listed);
        assert!(listed.iter().any(|a| a == "insmod"));
        assert!(busybox_applets(b"nothing here").is_empty());
    }

    /// The boot test's probe, run through the control channel: what init
    /// set up.
    const PROBE: &str = r#"
echo "probe: hostname=$(hostname)"
ip -o -4 addr show | while read -r _ ifc _ addr _; do echo "probe: addr $ifc $addr"; done
for d in /sys/class/net/eth*; do echo "probe: mac ${d##*/}: $(cat "$d/address")"; done
echo "probe: modules $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
i=0
until out=$(wget -q -O- http://server/index.html 2>&1); do
	i=$((i + 1)); [ "$i" -ge 100 ] && break; sleep 0.1
done
echo "probe: http $out"
i=0
until [ -s /tmp/greeting ]; do i=$((i + 1)); [ "$i" -ge 100 ] && break; sleep 0.1; done
echo "probe: greeting $(cat /tmp/greeting)"
echo "probe: httpd $(tr '\0' ' ' </proc/$(cat /run/covnet/httpd.pid)/cmdline)"
echo "probe: gcov $GCOV_PREFIX"
echo "probe: curl $(curl --version | head -n 1 | cut -d' ' -f1)"
echo "probe: tool $(@TOOL@)"
echo "probe: nc $(ls -l /usr/sbin/nc /sbin/nc 2>&1 | grep -c busybox)"
echo "probe: done"
"#;

    /// A VM booted from the base with the machine's layer sent at its
    /// release: init unpacks it and becomes the machine.
    #[test]
    fn boots_under_qemu_and_init_sets_everything_up() {
        use crate::machine::vm::{Vm, VmConfig};
        use crate::machine::{EventSink, Machine};
        use crate::net::switch::Switch;

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        // A program under /tmp: init must not hide it under a tmpfs.
        let tool = dir.path().join("tool.sh");
        std::fs::write(&tool, "#!/bin/sh\necho \"tool ran by $0\"\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = spec_with(
            dir.path(),
            &format!(
                r#"
[machines.server]
vlans = [1, 2]
programs = ["/usr/bin/curl", "tool.sh"]
forward = ["{port}:80"]
[[machines.server.files]]
source = "index.html"
target = "/srv/index.html"
[[machines.server.files]]
content = "stub"
target = "/usr/bin/nc"
mode = "0755"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv"
[[machines.server.services]]
name = "greeter"
command = "echo \"$GREETING\" >/tmp/greeting; exec sleep 600"
env = {{ GREETING = "hello world" }}
[machines.client]
"#
            ),
        );
        let m = &spec.machines[0];
        let kernel = Kernel::host_default().unwrap();
        let image = ImageBuilder::new(&spec, m, &kernel)
            .cache_dir(dir.path().join("cache"))
            .env("GCOV_PREFIX", "/covnet/gcov")
            .build()
            .unwrap();
        eprintln!(
            "base: {} bytes, layer: {} bytes, {} entries",
            std::fs::metadata(&image.path).unwrap().len(),
            std::fs::metadata(&image.layer).unwrap().len(),
            image.entries
        );

        let accel = crate::machine::vm::accel::detect().accel;
        let run = crate::rundir::RunDir::create_in(dir.path()).unwrap();
        let switch = std::sync::Arc::new(Switch::start().unwrap());
        let cfg = VmConfig::from_spec(m, &kernel.image, &image, accel, None);
        let vm = Vm::new(cfg, &run, Some(switch), EventSink::none()).unwrap();
        let started = Instant::now();
        if let Err(err) = vm.start() {
            panic!("{err}; console:\n{}", vm.console_lines(60).join("\n"));
        }
        eprintln!("boot under {accel}: {:?}", started.elapsed());
        let out = vm
            .execute(
                &PROBE.replace("@TOOL@", tool.to_str().unwrap()),
                Duration::from_secs(60),
            )
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        vm.crash().unwrap();
        eprintln!("{log}");
        let has = |line: &str| log.lines().any(|l| l.trim_end() == line);
        for line in [
            "probe: hostname=server",
            "probe: addr eth0 192.168.1.1/24",
            "probe: addr eth1 192.168.2.1/24",
            "probe: addr eth2 10.0.2.15/24",
            // The machine's own MACs, not the slots' the NICs booted with.
            "probe: mac eth0: 52:54:00:01:01:00",
            "probe: mac eth1: 52:54:00:02:01:01",
            "probe: http <h1>hi</h1>",
            "probe: greeting hello world",
            "probe: httpd busybox httpd -f -p 80 -h /srv",
            "probe: gcov /covnet/gcov",
            "probe: curl curl",
            &format!("probe: tool tool ran by {}", tool.display()),
            // The base's busybox links named like the machine's file went.
            "probe: nc 0",
            "probe: done",
        ] {
            assert!(has(line), "`{line}` missing; probe:\n{log}");
        }
        let modules = log
            .lines()
            .find_map(|l| l.strip_prefix("probe: modules "))
            .unwrap_or_default();
        for m in ["virtio_pci", "virtio_console", "virtio_net"] {
            assert!(
                modules.split(' ').any(|x| x == m),
                "{m} not loaded: {modules}"
            );
        }
    }

    /// A layer init cannot unpack (here: not a cpio archive) ends the boot
    /// with the reason on the console, not with a machine missing its
    /// files.
    #[test]
    fn a_layer_that_cannot_be_unpacked_fails_the_boot_and_says_so() {
        use crate::machine::vm::{Vm, VmConfig};
        use crate::machine::{EventSink, Machine, MachineError};
        use crate::net::switch::Switch;

        let dir = tempfile::tempdir().unwrap();
        let spec = spec_with(dir.path(), "[machines.m]\n");
        let kernel = Kernel::host_default().unwrap();
        let image = ImageBuilder::new(&spec, &spec.machines[0], &kernel)
            .cache_dir(dir.path().join("cache"))
            .build()
            .unwrap();
        // Four blocks of garbage.
        std::fs::write(
            &image.layer,
            "not a cpio archive, \n".repeat(512 * 4 / 21 + 1),
        )
        .unwrap();
        std::fs::File::options()
            .append(true)
            .open(&image.layer)
            .and_then(|f| f.set_len(2048))
            .unwrap();
        let accel = crate::machine::vm::accel::detect().accel;
        let run = crate::rundir::RunDir::create_in(dir.path()).unwrap();
        let switch = std::sync::Arc::new(Switch::start().unwrap());
        let cfg = VmConfig::from_spec(&spec.machines[0], &kernel.image, &image, accel, None);
        let vm = Vm::new(cfg, &run, Some(switch), EventSink::none()).unwrap();
        let err = vm.start().expect_err("a broken layer");
        let text = err.to_string();
        assert!(matches!(err, MachineError::Exited { .. }), "{text}");
        assert!(
            text.contains("the machine's layer could not be unpacked from /dev/vda: cpio:"),
            "{text}"
        );
        assert!(!vm.is_running());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
