//! The test spec: a TOML file describing machines, their networks, programs,
//! files and services, and the test script to run against them.
//!
//! [`Spec::from_path`] (or [`Spec::from_str`]) parses the file, checks every
//! rule and returns the resolved form: machines in spec order with their
//! 1-based index, addresses `192.168.<vlan>.<index>`, deterministic MACs,
//! defaults applied and relative paths resolved against the spec's
//! directory. Every error names the spec file and, where the problem sits in
//! the text, its line and column. The format is documented in `docs/spec.md`.
//!
//! ```
//! use covnet_runner::spec::Spec;
//! let text = r#"
//! [machines.server]
//! [machines.client]
//! vlans = [1, 2]
//! "#;
//! let spec = Spec::from_str(text, std::path::Path::new("/tmp/net.toml")).unwrap();
//! assert_eq!(spec.machines[1].nics[1].address.to_string(), "192.168.2.2");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU8};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::net::faults::{parse_delay, parse_rate, FaultError, LinkFaults};

mod coverage;
pub use coverage::{CoverageSettings, FailUnder};

/// Default guest memory in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Default per-command timeout of the control shell.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default timeout of the whole test script.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Highest machine count: the index is the last octet of every address.
pub const MAX_MACHINES: usize = 254;
/// Guest paths covnet itself uses; spec files may not be placed there.
pub const RESERVED_GUEST_PATHS: &[&str] = &["/init", "/covnet"];

// ---------------------------------------------------------------------------
// Resolved, validated data
// ---------------------------------------------------------------------------

/// A parsed and validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The spec file (as given; names it in messages).
    pub path: PathBuf,
    /// Spec-wide defaults.
    pub defaults: Defaults,
    /// Machines in spec (file) order; `machines[i].index == i + 1`.
    pub machines: Vec<Machine>,
    /// The test to run, if the spec has a `[test]` table.
    pub test: Option<Test>,
    /// Coverage settings (`[coverage]`), all default when absent.
    pub coverage: CoverageSettings,
}

/// Spec-wide settings (`[defaults]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Accelerator for machines that don't choose one.
    pub accel: Accel,
    /// Guest memory for machines that don't choose it.
    pub memory_mib: NonZeroU32,
    /// vCPUs for machines that don't choose them.
    pub cpus: NonZeroU8,
    /// Kernel for machines that don't choose one (`None`: the host's).
    pub kernel: Option<PathBuf>,
    /// How long a machine may take to boot to its control shell.
    pub boot_timeout: BootTimeout,
    /// Default timeout of one command on a machine.
    pub command_timeout: Duration,
    /// Backend for machines that don't choose one.
    pub backend: Backend,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            accel: Accel::Auto,
            memory_mib: NonZeroU32::new(DEFAULT_MEMORY_MIB).unwrap_or(NonZeroU32::MIN),
            cpus: NonZeroU8::MIN,
            kernel: None,
            boot_timeout: BootTimeout::Auto,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            backend: Backend::Vm,
        }
    }
}

/// Which QEMU accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when usable, TCG otherwise.
    #[default]
    Auto,
    /// KVM; an error if it is not usable.
    Kvm,
    /// TCG (emulation), always available.
    Tcg,
}

/// What runs a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A QEMU VM with its own kernel.
    #[default]
    Vm,
    /// PID, mount, UTS, IPC and network namespaces on the host (plus a user
    /// namespace when covnet is not root): no kernel of its own.
    Namespace,
}

/// A boot timeout: fixed, or chosen from the accelerator in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootTimeout {
    /// Scale with the accelerator (short for KVM, longer for TCG).
    #[default]
    Auto,
    /// A fixed duration.
    Fixed(Duration),
}

/// One machine, with defaults applied and its network resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Name: a valid hostname, unique in the spec.
    pub name: String,
    /// 1-based position in the spec; the last octet of its addresses.
    pub index: u8,
    /// What runs it.
    pub backend: Backend,
    /// Guest memory in MiB.
    pub memory_mib: NonZeroU32,
    /// vCPUs.
    pub cpus: NonZeroU8,
    /// Accelerator.
    pub accel: Accel,
    /// Kernel image (`None`: the host's default, see `image::kernel`).
    pub kernel: Option<PathBuf>,
    /// Extra kernel command-line parameters.
    pub kernel_params: Vec<String>,
    /// Absolute host paths of programs to install (with their ELF closure)
    /// at the same path in the guest.
    pub programs: Vec<PathBuf>,
    /// NICs, one per VLAN in spec order (`eth0`, `eth1`, ...).
    pub nics: Vec<Nic>,
    /// Host-to-guest TCP port forwards.
    pub forward: Vec<Forward>,
    /// Files to place in the guest.
    pub files: Vec<GuestFile>,
    /// Services started by init, in order.
    pub services: Vec<Service>,
    /// Faults of the machine's links from boot on (perfect by default);
    /// scripts change them with `set_link`.
    pub link: LinkFaults,
}

impl Machine {
    /// The machine's main address: the one on its first VLAN.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.nics.first().map(|n| n.address)
    }
}

/// A network interface of a machine on one VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nic {
    /// Position among the machine's NICs (`eth<slot>`).
    pub slot: u8,
    /// VLAN number, 1..=254.
    pub vlan: u8,
    /// `52:54:00:<vlan>:<machine index>:<slot>` (hex bytes).
    pub mac: [u8; 6],
    /// `192.168.<vlan>.<machine index>`.
    pub address: Ipv4Addr,
}

impl Nic {
    /// The guest interface name, `eth<slot>`.
    pub fn ifname(&self) -> String {
        format!("eth{}", self.slot)
    }

    /// The MAC in `aa:bb:cc:dd:ee:ff` form.
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A host port forwarded to a guest port (`"H:G"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Port on host 127.0.0.1.
    pub host_port: NonZeroU16,
    /// Port in the guest.
    pub guest_port: NonZeroU16,
}

/// A file placed in the guest image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// Absolute guest path.
    pub target: String,
    /// Permission bits (at most `0o7777`).
    pub mode: u32,
    /// Where its bytes come from.
    pub source: FileSource,
}

/// The contents of a [`GuestFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A host file (absolute path, checked to exist at validation time).
    Host(PathBuf),
    /// Inline text from the spec.
    Content(String),
}

/// A service started by init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Name: `[A-Za-z0-9_.-]+`, unique per machine; logs go to
    /// `/var/log/<name>.log`, the pid to `/run/covnet/<name>.pid`.
    pub name: String,
    /// Shell command (run by busybox `sh -c`).
    pub command: String,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// How to tell the service is ready, if it can be told.
    pub ready: Option<Ready>,
}

/// How to tell that a service is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// A TCP port accepts connections in the guest.
    Port(NonZeroU16),
    /// A guest file exists.
    File(String),
    /// A guest shell command exits 0.
    Command(String),
}

/// The test (`[test]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// The Rhai script.
    pub script: Script,
    /// Time limit of the whole script.
    pub timeout: Duration,
}

/// A test script, inline or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Script text from the spec.
    Inline(String),
    /// Absolute path of a script file (checked to exist).
    File(PathBuf),
}

impl Spec {
    /// The directory relative paths in the spec are resolved against.
    pub fn dir(&self) -> PathBuf {
        spec_dir(&self.path)
    }

    /// Runs every machine on `backend` (`covnet run --backend`). Switching
    /// to namespace machines fails for a machine that needs its own kernel
    /// (a `kernel`, `kernel_params` or host `forward`), naming it.
    pub fn with_backend(mut self, backend: Backend) -> Result<Spec, SpecError> {
        for m in &mut self.machines {
            if backend == Backend::Namespace && m.backend == Backend::Vm {
                let field = if m.kernel.is_some() {
                    Some("kernel")
                } else if !m.kernel_params.is_empty() {
                    Some("kernel_params")
                } else if !m.forward.is_empty() {
                    Some("forward")
                } else {
                    None
                };
                if let Some(field) = field {
                    return Err(SpecError {
                        path: self.path.clone(),
                        location: None,
                        kind: SpecErrorKind::BackendOverride {
                            machine: m.name.clone(),
                            field,
                        },
                    });
                }
            }
            m.backend = backend;
        }
        self.defaults.backend = backend;
        Ok(self)
    }

    /// The machine called `name`.
    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// `/etc/hosts` entries: every machine's name and main address.
    pub fn hosts(&self) -> Vec<(&str, Ipv4Addr)> {
        self.machines
            .iter()
            .filter_map(|m| m.address().map(|a| (m.name.as_str(), a)))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A 1-based line and column (in characters) in the spec text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = text.get(..end).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A spec that cannot be used: the file, where in it, and why.
#[derive(Debug)]
pub struct SpecError {
    /// The spec file.
    pub path: PathBuf,
    /// Where in the file, when the problem is tied to a place.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: SpecErrorKind,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(loc) => write!(f, "{}:{}: {}", self.path.display(), loc, self.kind),
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// What is wrong with a spec; one variant per rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// The spec file could not be read.
    #[error("failed to read spec file")]
    Read(#[source] std::io::Error),
    /// TOML syntax or a field of the wrong type / unknown field.
    #[error("{0}")]
    Syntax(String),
    /// No `[machines.<name>]` table.
    #[error("the spec has no machines (add a `[machines.<name>]` table)")]
    NoMachines,
    /// More machines than addresses on a /24.
    #[error("{count} machines, at most {MAX_MACHINES} are allowed")]
    TooManyMachines {
        /// How many the spec has.
        count: usize,
    },
    /// A machine name that is not a valid hostname.
    #[error("machine name `{name}` is not a valid hostname (letters, digits and '-', 1 to 63 characters, not starting or ending with '-')")]
    InvalidMachineName {
        /// The name.
        name: String,
    },
    /// Two machines whose names differ only in case.
    #[error(
        "machine name `{name}` is used twice (hostnames ignore case; first at line {first_line})"
    )]
    DuplicateMachineName {
        /// The name.
        name: String,
        /// Line of the first use.
        first_line: usize,
    },
    /// A VLAN number outside 1..=254.
    #[error("vlan {vlan} is out of range 1..=254")]
    VlanOutOfRange {
        /// The number.
        vlan: i64,
    },
    /// A VLAN listed twice for one machine.
    #[error("vlan {vlan} is listed twice for machine `{machine}`")]
    DuplicateVlan {
        /// The machine.
        machine: String,
        /// The VLAN.
        vlan: u8,
    },
    /// `vlans = []`.
    #[error("machine `{machine}` has no vlans (omit `vlans` for the default [1])")]
    NoVlans {
        /// The machine.
        machine: String,
    },
    /// A program that does not exist or cannot be read.
    #[error("program {} of machine `{machine}` not found", path.display())]
    ProgramNotFound {
        /// The machine.
        machine: String,
        /// The resolved path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program that is not a regular executable file.
    #[error("program {} of machine `{machine}` is not an executable file", path.display())]
    ProgramNotExecutable {
        /// The machine.
        machine: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// A file entry with both or neither of `source` and `content`.
    #[error("file entry for `{target}` needs exactly one of `source` and `content`")]
    FileSourceChoice {
        /// The target.
        target: String,
    },
    /// A file source that does not exist.
    #[error("file source {} not found", path.display())]
    FileSourceNotFound {
        /// The resolved path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file source that is not a regular file.
    #[error("file source {} is not a regular file", path.display())]
    FileSourceNotAFile {
        /// The resolved path.
        path: PathBuf,
    },
    /// A file target that is not a normalised absolute path.
    #[error("file target `{target}` must be an absolute path without `.`/`..` components")]
    InvalidFileTarget {
        /// The target.
        target: String,
    },
    /// A file target inside covnet's own guest paths.
    #[error("file target `{target}` is reserved for covnet (/init and /covnet/)")]
    ReservedFileTarget {
        /// The target.
        target: String,
    },
    /// Two files with the same target on one machine.
    #[error("file target `{target}` is listed twice for machine `{machine}`")]
    DuplicateFileTarget {
        /// The machine.
        machine: String,
        /// The target.
        target: String,
    },
    /// A mode that is not an octal number up to 7777.
    #[error("file mode `{mode}` is not an octal permission like \"0644\" or 0o644 (at most 7777)")]
    InvalidMode {
        /// The text.
        mode: String,
    },
    /// A forward that is not `"H:G"` with ports 1..=65535.
    #[error("forward `{text}` is not \"HOSTPORT:GUESTPORT\" with ports 1..=65535")]
    InvalidForward {
        /// The text.
        text: String,
    },
    /// A host port forwarded twice.
    #[error("host port {port} is forwarded twice")]
    DuplicateForwardPort {
        /// The port.
        port: u16,
    },
    /// A service name not usable as a file name.
    #[error("service name `{name}` must be 1 to 64 of [A-Za-z0-9_.-] and not start with '.'")]
    InvalidServiceName {
        /// The name.
        name: String,
    },
    /// Two services with one name on one machine.
    #[error("service `{name}` is listed twice for machine `{machine}`")]
    DuplicateServiceName {
        /// The machine.
        machine: String,
        /// The service.
        name: String,
    },
    /// An empty service command.
    #[error("service `{name}` has an empty command")]
    EmptyCommand {
        /// The service.
        name: String,
    },
    /// An environment variable name that is not a shell identifier.
    #[error("environment variable name `{name}` is not [A-Za-z_][A-Za-z0-9_]*")]
    InvalidEnvName {
        /// The name.
        name: String,
    },
    /// A kernel parameter that is empty or contains whitespace.
    #[error("kernel parameter `{param}` is empty or contains whitespace")]
    InvalidKernelParam {
        /// The parameter.
        param: String,
    },
    /// A kernel image that does not exist.
    #[error("kernel {} not found", path.display())]
    KernelNotFound {
        /// The resolved path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--backend namespace` for a machine that needs a VM.
    #[error("machine `{machine}` needs a VM (it sets `{field}`), so it cannot run as a namespace machine\n  (hint: drop `--backend namespace`, or set `backend = \"namespace\"` only on the machines that need no kernel of their own)")]
    BackendOverride {
        /// The machine.
        machine: String,
        /// The VM-only field it sets.
        field: &'static str,
    },
    /// A VM-only setting on a namespace machine.
    #[error("`{field}` needs a VM, but machine `{machine}` has backend = \"namespace\" (namespace machines run on the host's kernel)\n  (hint: remove `{field}` or set backend = \"vm\")")]
    VmOnlyField {
        /// The machine.
        machine: String,
        /// The field.
        field: &'static str,
    },
    /// A `link` value out of range or malformed.
    #[error("link of machine `{machine}`: {source}")]
    InvalidLink {
        /// The machine.
        machine: String,
        /// What is wrong.
        #[source]
        source: FaultError,
    },
    /// A timeout of zero.
    #[error("`{field}` must be longer than zero")]
    ZeroDuration {
        /// The field.
        field: &'static str,
    },
    /// `boot_timeout` that is neither `auto` nor a duration.
    #[error("boot_timeout `{text}` is neither \"auto\" nor a duration like \"60s\"")]
    InvalidBootTimeout {
        /// The text.
        text: String,
    },
    /// `ready` with other than exactly one of `port`, `file`, `command`.
    #[error("`ready` of service `{name}` needs exactly one of `port`, `file` and `command`")]
    ReadyChoice {
        /// The service.
        name: String,
    },
    /// `[test]` with both or neither of `script` and `script_file`.
    #[error("[test] needs exactly one of `script` and `script_file`")]
    ScriptChoice,
    /// A script file that does not exist.
    #[error("script file {} not found", path.display())]
    ScriptFileNotFound {
        /// The resolved path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bad value in `[coverage]`.
    #[error("[coverage] {field}: {why}")]
    InvalidCoverage {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

// ---------------------------------------------------------------------------
// Raw (as written) form
// ---------------------------------------------------------------------------

type Span = Range<usize>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    defaults: RawDefaults,
    machines: Option<Spanned<BTreeMap<Spanned<String>, RawMachine>>>,
    test: Option<Spanned<RawTest>>,
    #[serde(default)]
    coverage: coverage::RawCoverage,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    accel: Option<Accel>,
    memory_mib: Option<NonZeroU32>,
    cpus: Option<NonZeroU8>,
    kernel: Option<Spanned<PathBuf>>,
    boot_timeout: Option<Spanned<String>>,
    command_timeout: Option<Spanned<humantime_serde::Serde<Duration>>>,
    backend: Option<Backend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    backend: Option<Backend>,
    memory_mib: Option<NonZeroU32>,
    cpus: Option<NonZeroU8>,
    kernel: Option<Spanned<PathBuf>>,
    #[serde(default)]
    kernel_params: Vec<Spanned<String>>,
    accel: Option<Accel>,
    #[serde(default)]
    programs: Vec<Spanned<PathBuf>>,
    vlans: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    forward: Vec<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<RawFile>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    link: Option<Spanned<RawLink>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    loss: Option<Spanned<f64>>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<Spanned<PathBuf>>,
    content: Option<String>,
    target: Spanned<String>,
    mode: Option<Spanned<RawMode>>,
}

/// A mode as written: `"0644"` (octal text) or `0o644` (a TOML integer).
enum RawMode {
    Text(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode like \"0644\" or 0o644")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawMode, E> {
                Ok(RawMode::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    command: String,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    ready: Option<Spanned<RawReady>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    port: Option<NonZeroU16>,
    file: Option<String>,
    command: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    script: Option<String>,
    script_file: Option<Spanned<PathBuf>>,
    timeout: Option<Spanned<humantime_serde::Serde<Duration>>>,
}

// ---------------------------------------------------------------------------
// Parse and validate
// ---------------------------------------------------------------------------

impl Spec {
    /// Reads, parses and validates the spec file at `path`.
    pub fn from_path(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            path: path.to_path_buf(),
            location: None,
            kind: SpecErrorKind::Read(e),
        })?;
        Spec::from_str(&text, path)
    }

    /// Parses and validates spec `text`; `path` names it in errors and its
    /// directory anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError {
            path: path.to_path_buf(),
            location: e.span().map(|s| Location::of_offset(text, s.start)),
            kind: SpecErrorKind::Syntax(e.message().trim_end().to_owned()),
        })?;
        Validator {
            text,
            path,
            dir: spec_dir(path),
        }
        .spec(raw)
    }
}

/// The directory of a spec file, absolute when the process's current
/// directory is known.
fn spec_dir(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if parent.is_absolute() {
        normalize(parent)
    } else {
        match std::env::current_dir() {
            Ok(cwd) => normalize(&cwd.join(parent)),
            Err(_) => parent.to_path_buf(),
        }
    }
}

/// Lexically removes `.` and resolves `..` (no symlinks are followed, so a
/// program keeps the name it was given).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    dir: PathBuf,
}

impl Validator<'_> {
    fn err(&self, span: Option<&Span>, kind: SpecErrorKind) -> SpecError {
        SpecError {
            path: self.path.to_path_buf(),
            location: span.map(|s| Location::of_offset(self.text, s.start)),
            kind,
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        normalize(&self.dir.join(p))
    }

    fn spec(&self, raw: RawSpec) -> Result<Spec, SpecError> {
        let defaults = self.defaults(raw.defaults)?;
        let Some(machines) = raw.machines else {
            return Err(self.err(None, SpecErrorKind::NoMachines));
        };
        let table_span = machines.span();
        let mut entries: Vec<(Spanned<String>, RawMachine)> =
            machines.into_inner().into_iter().collect();
        if entries.is_empty() {
            return Err(self.err(Some(&table_span), SpecErrorKind::NoMachines));
        }
        if entries.len() > MAX_MACHINES {
            return Err(self.err(
                Some(&table_span),
                SpecErrorKind::TooManyMachines {
                    count: entries.len(),
                },
            ));
        }
        // Spec order is text order.
        entries.sort_by_key(|(name, _)| name.span().start);

        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut host_ports: BTreeSet<u16> = BTreeSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for (i, (name, raw_machine)) in entries.into_iter().enumerate() {
            let index = u8::try_from(i + 1).map_err(|_| {
                self.err(
                    Some(&table_span),
                    SpecErrorKind::TooManyMachines { count: i + 1 },
                )
            })?;
            let span = name.span();
            let name = name.into_inner();
            if !is_hostname(&name) {
                return Err(self.err(Some(&span), SpecErrorKind::InvalidMachineName { name }));
            }
            let here = Location::of_offset(self.text, span.start);
            if let Some(first_line) = seen.insert(name.to_ascii_lowercase(), here.line) {
                return Err(self.err(
                    Some(&span),
                    SpecErrorKind::DuplicateMachineName { name, first_line },
                ));
            }
            out.push(self.machine(name, index, raw_machine, &defaults, &mut host_ports)?);
        }

        let test = match raw.test {
            None => None,
            Some(t) => Some(self.test(t)?),
        };
        let coverage = self.coverage(raw.coverage)?;
        Ok(Spec {
            path: self.path.to_path_buf(),
            defaults,
            machines: out,
            test,
            coverage,
        })
    }

    fn defaults(&self, raw: RawDefaults) -> Result<Defaults, SpecError> {
        let mut d = Defaults::default();
        if let Some(a) = raw.accel {
            d.accel = a;
        }
        if let Some(m) = raw.memory_mib {
            d.memory_mib = m;
        }
        if let Some(c) = raw.cpus {
            d.cpus = c;
        }
        if let Some(k) = raw.kernel {
            d.kernel = Some(self.kernel(k)?);
        }
        if let Some(bt) = raw.boot_timeout {
            let span = bt.span();
            let text = bt.into_inner();
            d.boot_timeout = if text == "auto" {
                BootTimeout::Auto
            } else {
                match humantime::parse_duration(&text) {
                    Ok(dur) if dur.is_zero() => {
                        return Err(self.err(
                            Some(&span),
                            SpecErrorKind::ZeroDuration {
                                field: "boot_timeout",
                            },
                        ))
                    }
                    Ok(dur) => BootTimeout::Fixed(dur),
                    Err(_) => {
                        return Err(
                            self.err(Some(&span), SpecErrorKind::InvalidBootTimeout { text })
                        )
                    }
                }
            };
        }
        if let Some(ct) = raw.command_timeout {
            d.command_timeout = self.nonzero(ct, "command_timeout")?;
        }
        if let Some(b) = raw.backend {
            d.backend = b;
        }
        Ok(d)
    }

    fn nonzero(
        &self,
        d: Spanned<humantime_serde::Serde<Duration>>,
        field: &'static str,
    ) -> Result<Duration, SpecError> {
        let span = d.span();
        let dur = d.into_inner().into_inner();
        if dur.is_zero() {
            return Err(self.err(Some(&span), SpecErrorKind::ZeroDuration { field }));
        }
        Ok(dur)
    }

    fn kernel(&self, k: Spanned<PathBuf>) -> Result<PathBuf, SpecError> {
        let span = k.span();
        let path = self.resolve(k.get_ref());
        match std::fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(source) => {
                Err(self.err(Some(&span), SpecErrorKind::KernelNotFound { path, source }))
            }
        }
    }

    fn machine(
        &self,
        name: String,
        index: u8,
        raw: RawMachine,
        defaults: &Defaults,
        host_ports: &mut BTreeSet<u16>,
    ) -> Result<Machine, SpecError> {
        let backend = raw.backend.unwrap_or(defaults.backend);
        if backend == Backend::Namespace {
            let vm_only = [
                ("kernel", raw.kernel.as_ref().map(|k| k.span())),
                ("kernel_params", raw.kernel_params.first().map(|p| p.span())),
                ("forward", raw.forward.first().map(|f| f.span())),
            ];
            if let Some((field, span)) = vm_only
                .into_iter()
                .find_map(|(field, span)| span.map(|s| (field, s)))
            {
                return Err(self.err(
                    Some(&span),
                    SpecErrorKind::VmOnlyField {
                        machine: name,
                        field,
                    },
                ));
            }
        }
        let kernel = match raw.kernel {
            Some(k) => Some(self.kernel(k)?),
            None if backend == Backend::Vm => defaults.kernel.clone(),
            None => None,
        };

        let mut kernel_params = Vec::with_capacity(raw.kernel_params.len());
        for p in raw.kernel_params {
            let span = p.span();
            let param = p.into_inner();
            if param.is_empty() || param.chars().any(char::is_whitespace) {
                return Err(self.err(Some(&span), SpecErrorKind::InvalidKernelParam { param }));
            }
            kernel_params.push(param);
        }

        let mut programs = Vec::with_capacity(raw.programs.len());
        for p in raw.programs {
            let span = p.span();
            let path = self.resolve(p.get_ref());
            match std::fs::metadata(&path) {
                Err(source) => {
                    return Err(self.err(
                        Some(&span),
                        SpecErrorKind::ProgramNotFound {
                            machine: name,
                            path,
                            source,
                        },
                    ))
                }
                Ok(md) => {
                    use std::os::unix::fs::PermissionsExt;
                    if !md.is_file() || md.permissions().mode() & 0o111 == 0 {
                        return Err(self.err(
                            Some(&span),
                            SpecErrorKind::ProgramNotExecutable {
                                machine: name,
                                path,
                            },
                        ));
                    }
                }
            }
            if !programs.contains(&path) {
                programs.push(path);
            }
        }

        let vlans = self.vlans(&name, raw.vlans)?;
        let nics = vlans
            .iter()
            .enumerate()
            .map(|(slot, &vlan)| {
                let slot = u8::try_from(slot).unwrap_or(u8::MAX);
                Nic {
                    slot,
                    vlan,
                    mac: [0x52, 0x54, 0x00, vlan, index, slot],
                    address: Ipv4Addr::new(192, 168, vlan, index),
                }
            })
            .collect();

        let mut forward = Vec::with_capacity(raw.forward.len());
        for f in raw.forward {
            let span = f.span();
            let text = f.into_inner();
            let Some(fw) = parse_forward(&text) else {
                return Err(self.err(Some(&span), SpecErrorKind::InvalidForward { text }));
            };
            if !host_ports.insert(fw.host_port.get()) {
                return Err(self.err(
                    Some(&span),
                    SpecErrorKind::DuplicateForwardPort {
                        port: fw.host_port.get(),
                    },
                ));
            }
            forward.push(fw);
        }

        let mut files: Vec<GuestFile> = Vec::with_capacity(raw.files.len());
        for f in raw.files {
            let file = self.file(f)?;
            if files.iter().any(|g| g.target == file.0.target) {
                return Err(self.err(
                    Some(&file.1),
                    SpecErrorKind::DuplicateFileTarget {
                        machine: name,
                        target: file.0.target,
                    },
                ));
            }
            files.push(file.0);
        }

        let mut services: Vec<Service> = Vec::with_capacity(raw.services.len());
        for s in raw.services {
            let (service, span) = self.service(s)?;
            if services.iter().any(|x| x.name == service.name) {
                return Err(self.err(
                    Some(&span),
                    SpecErrorKind::DuplicateServiceName {
                        machine: name,
                        name: service.name,
                    },
                ));
            }
            services.push(service);
        }

        let link = match raw.link {
            Some(l) => self.link(&name, l)?,
            None => LinkFaults::default(),
        };

        Ok(Machine {
            link,
            index,
            backend,
            memory_mib: raw.memory_mib.unwrap_or(defaults.memory_mib),
            cpus: raw.cpus.unwrap_or(defaults.cpus),
            accel: raw.accel.unwrap_or(defaults.accel),
            kernel,
            kernel_params,
            programs,
            nics,
            forward,
            files,
            services,
            name,
        })
    }

    fn link(&self, machine: &str, raw: Spanned<RawLink>) -> Result<LinkFaults, SpecError> {
        let raw = raw.into_inner();
        let bad = |span: Span, source: FaultError| {
            self.err(
                Some(&span),
                SpecErrorKind::InvalidLink {
                    machine: machine.to_owned(),
                    source,
                },
            )
        };
        let mut link = LinkFaults::default();
        if let Some(loss) = raw.loss {
            let span = loss.span();
            link.loss = loss.into_inner();
            if !(0.0..=100.0).contains(&link.loss) {
                return Err(bad(span, FaultError::LossOutOfRange { loss: link.loss }));
            }
        }
        for (field, value) in [("delay", raw.delay), ("jitter", raw.jitter)] {
            if let Some(v) = value {
                let span = v.span();
                let d = parse_delay(field, v.get_ref()).map_err(|e| bad(span, e))?;
                if field == "delay" {
                    link.delay = d;
                } else {
                    link.jitter = d;
                }
            }
        }
        if let Some(rate) = raw.rate {
            let span = rate.span();
            link.rate = Some(parse_rate(rate.get_ref()).map_err(|e| bad(span, e))?);
        }
        Ok(link)
    }

    fn vlans(
        &self,
        machine: &str,
        raw: Option<Spanned<Vec<Spanned<i64>>>>,
    ) -> Result<Vec<u8>, SpecError> {
        let Some(raw) = raw else {
            return Ok(vec![1]);
        };
        let span = raw.span();
        let list = raw.into_inner();
        if list.is_empty() {
            return Err(self.err(
                Some(&span),
                SpecErrorKind::NoVlans {
                    machine: machine.to_owned(),
                },
            ));
        }
        let mut out: Vec<u8> = Vec::with_capacity(list.len());
        for v in list {
            let vspan = v.span();
            let n = *v.get_ref();
            let vlan = match u8::try_from(n) {
                Ok(b) if (1..=254).contains(&b) => b,
                _ => return Err(self.err(Some(&vspan), SpecErrorKind::VlanOutOfRange { vlan: n })),
            };
            if out.contains(&vlan) {
                return Err(self.err(
                    Some(&vspan),
                    SpecErrorKind::DuplicateVlan {
                        machine: machine.to_owned(),
                        vlan,
                    },
                ));
            }
            out.push(vlan);
        }
        Ok(out)
    }

    fn file(&self, f: Spanned<RawFile>) -> Result<(GuestFile, Span), SpecError> {
        let entry_span = f.span();
        let f = f.into_inner();
        let tspan = f.target.span();
        let target = f.target.into_inner();
        if !is_clean_absolute(&target) {
            return Err(self.err(Some(&tspan), SpecErrorKind::InvalidFileTarget { target }));
        }
        if RESERVED_GUEST_PATHS
            .iter()
            .any(|r| target == *r || target.starts_with(&format!("{r}/")))
        {
            return Err(self.err(Some(&tspan), SpecErrorKind::ReservedFileTarget { target }));
        }
        let mode = match f.mode {
            None => 0o644,
            Some(m) => {
                let mspan = m.span();
                let (parsed, text) = match m.into_inner() {
                    RawMode::Text(t) => (parse_mode(&t), t),
                    RawMode::Int(i) => (
                        u32::try_from(i).ok().filter(|v| *v <= 0o7777),
                        format!("{i:#o}"),
                    ),
                };
                match parsed {
                    Some(v) => v,
                    None => {
                        return Err(
                            self.err(Some(&mspan), SpecErrorKind::InvalidMode { mode: text })
                        )
                    }
                }
            }
        };
        let source = match (f.source, f.content) {
            (Some(src), None) => {
                let sspan = src.span();
                let path = self.resolve(src.get_ref());
                match std::fs::metadata(&path) {
                    Err(source) => {
                        return Err(self.err(
                            Some(&sspan),
                            SpecErrorKind::FileSourceNotFound { path, source },
                        ))
                    }
                    Ok(md) if !md.is_file() => {
                        return Err(
                            self.err(Some(&sspan), SpecErrorKind::FileSourceNotAFile { path })
                        )
                    }
                    Ok(_) => FileSource::Host(path),
                }
            }
            (None, Some(c)) => FileSource::Content(c),
            _ => {
                return Err(self.err(
                    Some(&entry_span),
                    SpecErrorKind::FileSourceChoice { target },
                ))
            }
        };
        Ok((
            GuestFile {
                target,
                mode,
                source,
            },
            tspan,
        ))
    }

    fn service(&self, s: Spanned<RawService>) -> Result<(Service, Span), SpecError> {
        let entry_span = s.span();
        let s = s.into_inner();
        let nspan = s.name.span();
        let name = s.name.into_inner();
        if !is_service_name(&name) {
            return Err(self.err(Some(&nspan), SpecErrorKind::InvalidServiceName { name }));
        }
        if s.command.trim().is_empty() {
            return Err(self.err(Some(&entry_span), SpecErrorKind::EmptyCommand { name }));
        }
        let mut env = BTreeMap::new();
        for (k, v) in s.env {
            let kspan = k.span();
            let key = k.into_inner();
            if !is_env_name(&key) {
                return Err(self.err(Some(&kspan), SpecErrorKind::InvalidEnvName { name: key }));
            }
            env.insert(key, v);
        }
        let ready = match s.ready {
            None => None,
            Some(r) => {
                let rspan = r.span();
                let r = r.into_inner();
                match (r.port, r.file, r.command) {
                    (Some(p), None, None) => Some(Ready::Port(p)),
                    (None, Some(f), None) => Some(Ready::File(f)),
                    (None, None, Some(c)) => Some(Ready::Command(c)),
                    _ => return Err(self.err(Some(&rspan), SpecErrorKind::ReadyChoice { name })),
                }
            }
        };
        Ok((
            Service {
                name,
                command: s.command,
                env,
                ready,
            },
            nspan,
        ))
    }

    fn test(&self, t: Spanned<RawTest>) -> Result<Test, SpecError> {
        let span = t.span();
        let t = t.into_inner();
        let script = match (t.script, t.script_file) {
            (Some(s), None) => Script::Inline(s),
            (None, Some(f)) => {
                let fspan = f.span();
                let path = self.resolve(f.get_ref());
                if let Err(source) = std::fs::metadata(&path) {
                    return Err(self.err(
                        Some(&fspan),
                        SpecErrorKind::ScriptFileNotFound { path, source },
                    ));
                }
                Script::File(path)
            }
            _ => return Err(self.err(Some(&span), SpecErrorKind::ScriptChoice)),
        };
        let timeout = match t.timeout {
            Some(d) => self.nonzero(d, "timeout")?,
            None => DEFAULT_TEST_TIMEOUT,
        };
        Ok(Test { script, timeout })
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_clean_absolute(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.ends_with('/')
        && !s.contains('\0')
        && s.split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

fn parse_forward(s: &str) -> Option<Forward> {
    let (h, g) = s.split_once(':')?;
    let port = |p: &str| -> Option<NonZeroU16> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().and_then(NonZeroU16::new)
    };
    Some(Forward {
        host_port: port(h)?,
        guest_port: port(g)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::from_str(text, Path::new("/nonexistent-dir/net.toml"))
    }

    fn err(text: &str) -> SpecError {
        match parse(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    fn loc(e: &SpecError) -> (usize, usize) {
        let l = e.location.expect("error has a location");
        (l.line, l.column)
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../docs/spec.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/spec.md has a ```toml example");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("build")).unwrap();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        let server = dir.path().join("build/server");
        std::fs::write(&server, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "hi").unwrap();
        let spec = Spec::from_str(example, &dir.path().join("net.toml")).unwrap();
        assert_eq!(spec.machines.len(), 2);
        assert!(spec.test.is_some());
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = parse("[machines.a]\n").unwrap();
        assert_eq!(spec.defaults, Defaults::default());
        let m = &spec.machines[0];
        assert_eq!(m.name, "a");
        assert_eq!(m.index, 1);
        assert_eq!(m.memory_mib.get(), 256);
        assert_eq!(m.cpus.get(), 1);
        assert_eq!(m.accel, Accel::Auto);
        assert_eq!(m.nics.len(), 1);
        assert_eq!(m.nics[0].address, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(m.nics[0].mac_string(), "52:54:00:01:01:00");
        assert_eq!(m.nics[0].ifname(), "eth0");
        assert!(spec.test.is_none());
    }

    #[test]
    fn machines_keep_file_order_and_get_addresses() {
        let spec = parse(
            "[machines.zeta]\nvlans = [2]\n[machines.alpha]\nvlans = [1, 2]\n[machines.mid]\n",
        )
        .unwrap();
        let names: Vec<_> = spec.machines.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        let alpha = spec.machine("alpha").unwrap();
        assert_eq!(alpha.index, 2);
        assert_eq!(alpha.nics[1].address, Ipv4Addr::new(192, 168, 2, 2));
        assert_eq!(alpha.nics[1].mac, [0x52, 0x54, 0, 2, 2, 1]);
        assert_eq!(
            spec.hosts(),
            vec![
                ("zeta", Ipv4Addr::new(192, 168, 2, 1)),
                ("alpha", Ipv4Addr::new(192, 168, 1, 2)),
                ("mid", Ipv4Addr::new(192, 168, 1, 3)),
            ]
        );
    }

    #[test]
    fn full_spec_parses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "hi").unwrap();
        std::fs::write(dir.path().join("test.rhai"), "start_all();").unwrap();
        let text = r#"
[defaults]
accel = "tcg"
memory_mib = 512
cpus = 2
boot_timeout = "90s"
command_timeout = "2m"

[machines.server]
memory_mib = 128
kernel_params = ["debug"]
programs = ["/bin/sh"]
forward = ["8081:80"]
[[machines.server.files]]
source = "www/index.html"
target = "/srv/index.html"
mode = "0600"
[[machines.server.files]]
content = "x=1\n"
target = "/etc/x.conf"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv"
env = { K = "v" }
ready = { port = 80 }
[[machines.server.services]]
name = "other"
command = "sleep 1000"
ready = { file = "/run/x" }

[machines.client]
accel = "kvm"

[test]
script_file = "test.rhai"
timeout = "5m"
"#;
        let path = dir.path().join("net.toml");
        std::fs::write(&path, text).unwrap();
        let spec = Spec::from_path(&path).unwrap();
        assert_eq!(spec.defaults.accel, Accel::Tcg);
        assert_eq!(
            spec.defaults.boot_timeout,
            BootTimeout::Fixed(Duration::from_secs(90))
        );
        assert_eq!(spec.defaults.command_timeout, Duration::from_secs(120));
        let s = &spec.machines[0];
        assert_eq!(s.memory_mib.get(), 128);
        assert_eq!(s.cpus.get(), 2);
        assert_eq!(s.accel, Accel::Tcg);
        assert_eq!(s.kernel_params, ["debug"]);
        assert_eq!(s.programs, [PathBuf::from("/bin/sh")]);
        assert_eq!(s.forward[0].host_port.get(), 8081);
        assert_eq!(s.forward[0].guest_port.get(), 80);
        assert_eq!(s.files[0].mode, 0o600);
        assert_eq!(
            s.files[0].source,
            FileSource::Host(normalize(&dir.path().join("www/index.html")))
        );
        assert_eq!(s.files[1].mode, 0o644);
        assert_eq!(s.files[1].source, FileSource::Content("x=1\n".into()));
        assert_eq!(s.services[0].env["K"], "v");
        assert_eq!(
            s.services[0].ready,
            Some(Ready::Port(NonZeroU16::new(80).unwrap()))
        );
        assert_eq!(s.services[1].ready, Some(Ready::File("/run/x".into())));
        let c = &spec.machines[1];
        assert_eq!(c.accel, Accel::Kvm);
        assert_eq!(c.memory_mib.get(), 512);
        let t = spec.test.unwrap();
        assert_eq!(t.timeout, Duration::from_secs(300));
        assert_eq!(
            t.script,
            Script::File(normalize(&dir.path().join("test.rhai")))
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = err("[machines.a]\nmemory_mib = \n");
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)));
        assert_eq!(loc(&e).0, 2);
        let shown = e.to_string();
        assert!(shown.starts_with("/nonexistent-dir/net.toml:2:"), "{shown}");
    }

    #[test]
    fn unknown_field_is_rejected_with_location() {
        let e = err("[machines.a]\nmemroy_mib = 3\n");
        assert!(e.to_string().contains("memroy_mib"), "{e}");
        assert_eq!(loc(&e), (2, 1));
    }

    #[test]
    fn wrong_type_and_zero_counts_are_rejected() {
        let e = err("[machines.a]\ncpus = 0\n");
        assert_eq!(loc(&e).0, 2);
        let e = err("[machines.a]\naccel = \"fast\"\n");
        assert_eq!(loc(&e), (2, 9));
    }

    #[test]
    fn no_machines() {
        assert!(matches!(err("").kind, SpecErrorKind::NoMachines));
        assert!(matches!(
            err("[machines]\n").kind,
            SpecErrorKind::NoMachines
        ));
    }

    #[test]
    fn invalid_and_duplicate_names() {
        let e = err("[machines.a]\n[machines.\"bad_name\"]\n");
        assert!(matches!(e.kind, SpecErrorKind::InvalidMachineName { .. }));
        assert_eq!(loc(&e).0, 2);
        let e = err("[machines.-x]\n");
        assert!(matches!(e.kind, SpecErrorKind::InvalidMachineName { .. }));
        let e = err("[machines.web]\n[machines.WEB]\n");
        assert!(
            matches!(
                e.kind,
                SpecErrorKind::DuplicateMachineName { first_line: 1, .. }
            ),
            "{e}"
        );
        assert_eq!(loc(&e).0, 2);
    }

    #[test]
    fn vlan_rules() {
        let e = err("[machines.a]\nvlans = [1, 255]\n");
        assert!(matches!(
            e.kind,
            SpecErrorKind::VlanOutOfRange { vlan: 255 }
        ));
        assert_eq!(loc(&e), (2, 13));
        let e = err("[machines.a]\nvlans = [0]\n");
        assert!(matches!(e.kind, SpecErrorKind::VlanOutOfRange { vlan: 0 }));
        let e = err("[machines.a]\nvlans = [3, 3]\n");
        assert!(matches!(
            e.kind,
            SpecErrorKind::DuplicateVlan { vlan: 3, .. }
        ));
        let e = err("[machines.a]\nvlans = []\n");
        assert!(matches!(e.kind, SpecErrorKind::NoVlans { .. }));
    }

    #[test]
    fn programs_must_exist_and_be_executable() {
        let e = err("[machines.a]\nprograms = [\"/bin/sh\", \"bin/server\"]\n");
        match &e.kind {
            SpecErrorKind::ProgramNotFound { path, machine, .. } => {
                assert_eq!(path, Path::new("/nonexistent-dir/bin/server"));
                assert_eq!(machine, "a");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(loc(&e), (2, 24));
        assert!(e.to_string().contains("/nonexistent-dir/bin/server"));

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = "[machines.a]\nprograms = [\"./data\"]\n";
        let e = Spec::from_str(text, &dir.path().join("s.toml")).unwrap_err();
        assert!(
            matches!(e.kind, SpecErrorKind::ProgramNotExecutable { .. }),
            "{e}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_spec_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let f = dir.path().join("prog");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = "[machines.a]\nprograms = [\"../prog\"]\n";
        let spec = Spec::from_str(text, &dir.path().join("sub/s.toml")).unwrap();
        assert_eq!(spec.machines[0].programs, [normalize(&f)]);
    }

    #[test]
    fn forward_rules() {
        for bad in ["80", "0:80", "80:0", "a:80", "70000:80", "80:80:80", ":80"] {
            let e = err(&format!("[machines.a]\nforward = [\"{bad}\"]\n"));
            assert!(
                matches!(e.kind, SpecErrorKind::InvalidForward { .. }),
                "{bad}: {e}"
            );
            assert_eq!(loc(&e), (2, 12));
        }
        let e =
            err("[machines.a]\nforward = [\"8080:80\"]\n[machines.b]\nforward = [\"8080:81\"]\n");
        assert!(matches!(
            e.kind,
            SpecErrorKind::DuplicateForwardPort { port: 8080 }
        ));
        assert_eq!(loc(&e).0, 4);
    }

    #[test]
    fn file_rules() {
        let e = err("[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\n");
        assert!(matches!(e.kind, SpecErrorKind::FileSourceChoice { .. }));
        let e = err("[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\nsource = \"/etc/hostname\"\n");
        assert!(matches!(e.kind, SpecErrorKind::FileSourceChoice { .. }));
        for bad in ["x", "/", "/a/../b", "/a/", "/a//b"] {
            let e = err(&format!(
                "[machines.a]\n[[machines.a.files]]\ntarget = \"{bad}\"\ncontent = \"\"\n"
            ));
            assert!(
                matches!(e.kind, SpecErrorKind::InvalidFileTarget { .. }),
                "{bad}"
            );
            assert_eq!(loc(&e), (3, 10));
        }
        let e = err("[machines.a]\n[[machines.a.files]]\ntarget = \"/covnet/x\"\ncontent = \"\"\n");
        assert!(matches!(e.kind, SpecErrorKind::ReservedFileTarget { .. }));
        for bad in ["9", "0x1", "17777", ""] {
            let e = err(&format!(
                "[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\nmode = \"{bad}\"\n"
            ));
            assert!(matches!(e.kind, SpecErrorKind::InvalidMode { .. }), "{bad}");
            assert_eq!(loc(&e).0, 5);
        }
        for bad in ["0o17777", "-1"] {
            let e = err(&format!(
                "[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\nmode = {bad}\n"
            ));
            assert!(matches!(e.kind, SpecErrorKind::InvalidMode { .. }), "{bad}");
            assert_eq!(loc(&e), (5, 8));
        }
        let e = err(
            "[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\nmode = true\n",
        );
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)), "{e}");
        let spec = parse(
            "[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\nmode = 0o4755\n",
        )
        .unwrap();
        assert_eq!(spec.machines[0].files[0].mode, 0o4755);
        let e =
            err("[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\nsource = \"missing.txt\"\n");
        match &e.kind {
            SpecErrorKind::FileSourceNotFound { path, .. } => {
                assert_eq!(path, Path::new("/nonexistent-dir/missing.txt"))
            }
            other => panic!("{other:?}"),
        }
        let e = err("[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\nsource = \"/etc\"\n");
        assert!(matches!(e.kind, SpecErrorKind::FileSourceNotAFile { .. }));
        let e = err("[machines.a]\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\n[[machines.a.files]]\ntarget = \"/x\"\ncontent = \"\"\n");
        assert!(matches!(e.kind, SpecErrorKind::DuplicateFileTarget { .. }));
    }

    #[test]
    fn service_rules() {
        let svc = |body: &str| format!("[machines.a]\n[[machines.a.services]]\n{body}\n");
        let e = err(&svc("name = \"a b\"\ncommand = \"x\""));
        assert!(matches!(e.kind, SpecErrorKind::InvalidServiceName { .. }));
        assert_eq!(loc(&e), (3, 8));
        let e = err(&svc("name = \"s\"\ncommand = \"  \""));
        assert!(matches!(e.kind, SpecErrorKind::EmptyCommand { .. }));
        let e = err(&svc(
            "name = \"s\"\ncommand = \"x\"\nenv = { \"1X\" = \"v\" }",
        ));
        assert!(matches!(e.kind, SpecErrorKind::InvalidEnvName { .. }));
        let e = err(&svc(
            "name = \"s\"\ncommand = \"x\"\nready = { port = 80, file = \"/x\" }",
        ));
        assert!(matches!(e.kind, SpecErrorKind::ReadyChoice { .. }), "{e}");
        assert_eq!(loc(&e), (5, 9));
        let e = err(&svc("name = \"s\"\ncommand = \"x\"\nready = {}"));
        assert!(matches!(e.kind, SpecErrorKind::ReadyChoice { .. }), "{e}");
        let e = err(&svc("name = \"s\"\ncommand = \"x\"\nready = { port = 0 }"));
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)), "{e}");
        let e = err(&svc(
            "name = \"s\"\ncommand = \"x\"\nready = { socket = 1 }",
        ));
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)), "{e}");
        let e = err("[machines.a]\n[[machines.a.services]]\nname = \"s\"\ncommand = \"x\"\n[[machines.a.services]]\nname = \"s\"\ncommand = \"y\"\n");
        assert!(matches!(e.kind, SpecErrorKind::DuplicateServiceName { .. }));
        let spec = parse(&svc(
            "name = \"s\"\ncommand = \"x\"\nready = { command = \"true\" }",
        ))
        .unwrap();
        assert_eq!(
            spec.machines[0].services[0].ready,
            Some(Ready::Command("true".into()))
        );
    }

    #[test]
    fn test_and_timeout_rules() {
        let e = err("[machines.a]\n[test]\n");
        assert!(matches!(e.kind, SpecErrorKind::ScriptChoice));
        let e = err("[machines.a]\n[test]\nscript = \"x\"\nscript_file = \"t.rhai\"\n");
        assert!(matches!(e.kind, SpecErrorKind::ScriptChoice));
        let e = err("[machines.a]\n[test]\nscript_file = \"t.rhai\"\n");
        assert!(matches!(e.kind, SpecErrorKind::ScriptFileNotFound { .. }));
        assert_eq!(loc(&e), (3, 15));
        let spec = parse("[machines.a]\n[test]\nscript = \"start_all();\"\n").unwrap();
        let t = spec.test.unwrap();
        assert_eq!(t.script, Script::Inline("start_all();".into()));
        assert_eq!(t.timeout, DEFAULT_TEST_TIMEOUT);
        let e = err("[defaults]\ncommand_timeout = \"0s\"\n[machines.a]\n");
        assert!(matches!(
            e.kind,
            SpecErrorKind::ZeroDuration {
                field: "command_timeout"
            }
        ));
        let e = err("[defaults]\ncommand_timeout = \"soon\"\n[machines.a]\n");
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)));
        assert_eq!(loc(&e).0, 2);
        let e = err("[defaults]\nboot_timeout = \"later\"\n[machines.a]\n");
        assert!(matches!(e.kind, SpecErrorKind::InvalidBootTimeout { .. }));
        let spec = parse("[defaults]\nboot_timeout = \"auto\"\n[machines.a]\n").unwrap();
        assert_eq!(spec.defaults.boot_timeout, BootTimeout::Auto);
    }

    #[test]
    fn backend_rules() {
        let spec = parse("[machines.a]\n[machines.b]\nbackend = \"namespace\"\n").unwrap();
        assert_eq!(spec.defaults.backend, Backend::Vm);
        let all_ns = spec.clone().with_backend(Backend::Namespace).unwrap();
        assert!(all_ns
            .machines
            .iter()
            .all(|m| m.backend == Backend::Namespace));
        assert_eq!(spec.machines[0].backend, Backend::Vm);
        assert_eq!(spec.machines[1].backend, Backend::Namespace);
        let spec = parse(
            "[defaults]\nbackend = \"namespace\"\n[machines.a]\n[machines.b]\nbackend = \"vm\"\n",
        )
        .unwrap();
        assert_eq!(spec.machines[0].backend, Backend::Namespace);
        assert_eq!(spec.machines[1].backend, Backend::Vm);
        let vm_only = parse("[machines.a]\n[machines.b]\nkernel_params = [\"quiet\"]\n").unwrap();
        let e = vm_only.with_backend(Backend::Namespace).unwrap_err();
        assert!(
            matches!(&e.kind, SpecErrorKind::BackendOverride { machine, field: "kernel_params" } if machine == "b"),
            "{e}"
        );
        assert!(e.to_string().contains("machine `b` needs a VM"), "{e}");
        let e = err("[machines.a]\nbackend = \"namespace\"\nkernel_params = [\"quiet\"]\n");
        assert!(
            matches!(
                e.kind,
                SpecErrorKind::VmOnlyField {
                    field: "kernel_params",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(loc(&e), (3, 18));
        assert!(
            e.to_string().contains("hint: remove `kernel_params`"),
            "{e}"
        );
        let e = err("[defaults]\nbackend = \"namespace\"\n[machines.a]\nkernel = \"/boot\"\n");
        assert!(
            matches!(
                e.kind,
                SpecErrorKind::VmOnlyField {
                    field: "kernel",
                    ..
                }
            ),
            "{e}"
        );
        let e = err("[machines.a]\nbackend = \"namespace\"\nforward = [\"8080:80\"]\n");
        assert!(
            matches!(
                e.kind,
                SpecErrorKind::VmOnlyField {
                    field: "forward",
                    ..
                }
            ),
            "{e}"
        );
        let e = err("[machines.a]\nbackend = \"container\"\n");
        assert!(matches!(e.kind, SpecErrorKind::Syntax(_)), "{e}");
    }

    #[test]
    fn link_faults_parse_with_defaults_and_locations() {
        let spec = parse(
            "[machines.a]\nlink = { loss = 5.0, delay = \"200ms\", jitter = \"20ms\", rate = \"1mbit\" }\n[machines.b]\nlink = { loss = 100 }\n[machines.c]\n",
        )
        .unwrap();
        let a = &spec.machines[0].link;
        assert_eq!(a.loss, 5.0);
        assert_eq!(a.delay, Duration::from_millis(200));
        assert_eq!(a.jitter, Duration::from_millis(20));
        assert_eq!(a.rate.map(|r| r.get()), Some(1_000_000));
        assert_eq!(spec.machines[1].link.loss, 100.0);
        assert!(spec.machines[1].link.delay.is_zero());
        assert!(spec.machines[2].link.is_perfect());

        let e = err("[machines.a]\nlink = { loss = 101.0 }\n");
        assert_eq!(loc(&e), (2, 17));
        assert!(
            e.to_string().contains("link of machine `a`: loss 101"),
            "{e}"
        );
        let e = err("[machines.a]\nlink = { loss = -1 }\n");
        assert!(matches!(e.kind, SpecErrorKind::InvalidLink { .. }), "{e}");
        let e = err("[machines.a]\nlink = { delay = \"soon\" }\n");
        assert_eq!(loc(&e), (2, 18));
        assert!(e.to_string().contains("delay `soon`"), "{e}");
        let e = err("[machines.a]\nlink = { jitter = \"2h\" }\n");
        assert!(e.to_string().contains("jitter"), "{e}");
        let e = err("[machines.a]\nlink = { rate = \"1mbps\" }\n");
        assert_eq!(loc(&e), (2, 17));
        assert!(e.to_string().contains("rate `1mbps`"), "{e}");
        let e = err("[machines.a]\nlink = { rate = \"10bit\" }\n");
        assert!(e.to_string().contains("below the minimum"), "{e}");
        let e = err("[machines.a]\nlink = { los = 1.0 }\n");
        assert_eq!(loc(&e).0, 2);
        assert!(e.to_string().contains("los"), "{e}");
    }

    #[test]
    fn kernel_rules() {
        let e = err("[machines.a]\nkernel = \"vmlinuz\"\n");
        assert!(matches!(e.kind, SpecErrorKind::KernelNotFound { .. }));
        let e = err("[machines.a]\nkernel_params = [\"a b\"]\n");
        assert!(matches!(e.kind, SpecErrorKind::InvalidKernelParam { .. }));
    }

    #[test]
    fn too_many_machines() {
        let text: String = (0..255).map(|i| format!("[machines.m{i}]\n")).collect();
        assert!(matches!(
            err(&text).kind,
            SpecErrorKind::TooManyMachines { count: 255 }
        ));
        let text: String = (0..254).map(|i| format!("[machines.m{i}]\n")).collect();
        let spec = parse(&text).unwrap();
        assert_eq!(spec.machines[253].index, 254);
        assert_eq!(spec.machines[253].name, "m253");
    }

    #[test]
    fn location_counts_characters() {
        let t = "ab\nçd\n";
        assert_eq!(Location::of_offset(t, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of_offset(t, 3), Location { line: 2, column: 1 });
        assert_eq!(Location::of_offset(t, 5), Location { line: 2, column: 2 });
        assert_eq!(Location::of_offset(t, 4), Location { line: 2, column: 1 });
        assert_eq!(Location::of_offset(t, 99), Location { line: 3, column: 1 });
    }

    #[test]
    fn read_error_names_the_file() {
        let e = Spec::from_path(Path::new("/nonexistent-dir/x.toml")).unwrap_err();
        assert!(matches!(e.kind, SpecErrorKind::Read(_)));
        assert!(e.to_string().contains("/nonexistent-dir/x.toml"));
    }
}
