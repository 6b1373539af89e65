//! Why a spec cannot be used: the file, the line and column, and one
//! [`SpecErrorKind`] per rule.

use std::fmt;
use std::path::PathBuf;

use super::MAX_MACHINES;
use crate::net::faults::FaultError;

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
    #[error(
        "file target `{target}` is reserved for covnet (/init, /covnet/ and the shell, /bin/sh)"
    )]
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
    /// A kernel parameter that leaves a VM fewer CPUs than its `cpus`.
    #[error("kernel parameter `{param}` leaves machine `{machine}` {online} CPU(s), but it has cpus = {cpus} (a directly booted guest finds its other CPUs through ACPI)\n  (hint: drop `{param}`, or set cpus = {online})")]
    KernelParamLimitsCpus {
        /// The machine.
        machine: String,
        /// The parameter.
        param: String,
        /// CPUs the guest can use with it.
        online: u32,
        /// The machine's `cpus`.
        cpus: u8,
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
    /// `language` other than `rhai` or `python`.
    #[error("[test] language `{name}` is unknown (expected \"rhai\" or \"python\")")]
    UnknownLanguage {
        /// The name given.
        name: String,
    },
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
