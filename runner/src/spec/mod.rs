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

mod error;
mod raw;
mod validate;

pub use error::{Location, SpecError, SpecErrorKind};
use raw::RawSpec;
use validate::{spec_dir, Validator};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU8};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::net::faults::LinkFaults;

mod coverage;
pub use coverage::{CoverageSettings, DiffSettings, FailUnder, ReportFormats};

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

/// Guest paths of the shell: busybox's `sh`, which init, the control shell
/// and the service scripts need; no spec file may replace it.
pub const RESERVED_SHELL_PATHS: &[&str] = &["/bin/sh", "/usr/bin/sh", "/sbin/sh", "/usr/sbin/sh"];

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
    /// User, PID, mount, UTS, IPC and network namespaces on the host (the
    /// machine's root maps to an unprivileged host id, also when covnet is
    /// root): no kernel of its own.
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
    /// The test script.
    pub script: Script,
    /// What the script is written in.
    pub language: ScriptLanguage,
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

/// The language of a test script: `language` in `[test]`, else the
/// script file's extension (`.py` is Python), else Rhai.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptLanguage {
    /// Rhai, run in covnet's embedded engine.
    #[default]
    Rhai,
    /// Python, run by the host's `python3` with covnet's `covnet` module.
    Python,
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

#[cfg(test)]
mod tests {
    use super::validate::normalize;
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
        let doc = include_str!("../../../docs/spec.md");
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
        for (cpus, param, line) in [
            ("2", "acpi=off", 3),
            ("4", "maxcpus=2", 3),
            ("2", "nosmp", 3),
            ("3", "nr_cpus=1", 3),
        ] {
            let e = err(&format!(
                "[machines.a]\ncpus = {cpus}\nkernel_params = [\"quiet\", \"{param}\"]\n"
            ));
            assert!(
                matches!(e.kind, SpecErrorKind::KernelParamLimitsCpus { .. }),
                "{param}: {e}"
            );
            assert_eq!(loc(&e).0, line);
        }
        let e = err("[defaults]\ncpus = 2\n[machines.a]\nkernel_params = [\"acpi=off\"]\n");
        assert!(e.to_string().contains(
            "kernel parameter `acpi=off` leaves machine `a` 1 CPU(s), but it has cpus = 2"
        ));
        for ok in [
            "[machines.a]\nkernel_params = [\"acpi=off\"]\n",
            "[machines.a]\ncpus = 2\nkernel_params = [\"maxcpus=2\", \"acpi=force\"]\n",
        ] {
            Spec::from_str(ok, Path::new("net.toml")).expect(ok);
        }
        for reserved in ["/covnet/x", "/init", "/bin/sh", "/usr/bin/sh"] {
            let e = err(&format!(
                "[machines.a]\n[[machines.a.files]]\ntarget = \"{reserved}\"\ncontent = \"\"\n"
            ));
            assert!(
                matches!(e.kind, SpecErrorKind::ReservedFileTarget { .. }),
                "{reserved}"
            );
        }
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
        assert_eq!(t.language, ScriptLanguage::Rhai);
        let spec = parse("[machines.a]\n[test]\nscript = \"start_all()\"\nlanguage = \"python\"\n")
            .unwrap();
        assert_eq!(spec.test.unwrap().language, ScriptLanguage::Python);
        let e = err("[machines.a]\n[test]\nscript = \"x\"\nlanguage = \"lua\"\n");
        assert!(matches!(e.kind, SpecErrorKind::UnknownLanguage { .. }));
        assert_eq!(loc(&e).0, 4);
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
