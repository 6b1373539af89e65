//! The spec's rules: checks the raw form, applies defaults, resolves
//! paths against the spec's directory and assigns addresses and MACs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::*;
use super::*;
use crate::net::faults::{parse_delay, parse_rate, FaultError, LinkFaults};

/// The directory of a spec file, absolute when the process's current
/// directory is known.
pub(super) fn spec_dir(path: &Path) -> PathBuf {
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
pub(super) fn normalize(path: &Path) -> PathBuf {
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

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
    pub(super) dir: PathBuf,
}

impl Validator<'_> {
    pub(super) fn err(&self, span: Option<&Span>, kind: SpecErrorKind) -> SpecError {
        SpecError {
            path: self.path.to_path_buf(),
            location: span.map(|s| Location::of_offset(self.text, s.start)),
            kind,
        }
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        normalize(&self.dir.join(p))
    }

    pub(super) fn spec(&self, raw: RawSpec) -> Result<Spec, SpecError> {
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

    pub(super) fn defaults(&self, raw: RawDefaults) -> Result<Defaults, SpecError> {
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

    pub(super) fn nonzero(
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

    pub(super) fn kernel(&self, k: Spanned<PathBuf>) -> Result<PathBuf, SpecError> {
        let span = k.span();
        let path = self.resolve(k.get_ref());
        match std::fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(source) => {
                Err(self.err(Some(&span), SpecErrorKind::KernelNotFound { path, source }))
            }
        }
    }

    pub(super) fn machine(
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
            let cpus = raw.cpus.unwrap_or(defaults.cpus).get();
            if let Some(online) = cpus_left_by(&param).filter(|&n| n < u32::from(cpus)) {
                return Err(self.err(
                    Some(&span),
                    SpecErrorKind::KernelParamLimitsCpus {
                        machine: name,
                        param,
                        online,
                        cpus,
                    },
                ));
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

    pub(super) fn link(
        &self,
        machine: &str,
        raw: Spanned<RawLink>,
    ) -> Result<LinkFaults, SpecError> {
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

    pub(super) fn vlans(
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

    pub(super) fn file(&self, f: Spanned<RawFile>) -> Result<(GuestFile, Span), SpecError> {
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
            || RESERVED_SHELL_PATHS.contains(&target.as_str())
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

    pub(super) fn service(&self, s: Spanned<RawService>) -> Result<(Service, Span), SpecError> {
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

    pub(super) fn test(&self, t: Spanned<RawTest>) -> Result<Test, SpecError> {
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
        let language = match t.language {
            Some(l) => match l.get_ref().as_str() {
                "rhai" => ScriptLanguage::Rhai,
                "python" => ScriptLanguage::Python,
                other => {
                    let lspan = l.span();
                    return Err(self.err(
                        Some(&lspan),
                        SpecErrorKind::UnknownLanguage {
                            name: other.to_owned(),
                        },
                    ));
                }
            },
            None => match &script {
                Script::File(p) if p.extension().is_some_and(|e| e == "py") => {
                    ScriptLanguage::Python
                }
                _ => ScriptLanguage::Rhai,
            },
        };
        let timeout = match t.timeout {
            Some(d) => self.nonzero(d, "timeout")?,
            None => DEFAULT_TEST_TIMEOUT,
        };
        Ok(Test {
            script,
            language,
            timeout,
        })
    }
}

pub(super) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(super) fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_clean_absolute(s: &str) -> bool {
    s.starts_with('/')
        && s.len() > 1
        && !s.ends_with('/')
        && !s.contains('\0')
        && s.split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

pub(super) fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

pub(super) fn parse_forward(s: &str) -> Option<Forward> {
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

/// How many CPUs a guest booted with kernel parameter `param` can use at
/// most, when the parameter limits them: without ACPI a directly booted
/// guest finds no other CPU (`acpi=off`), `nosmp` and `maxcpus=0` keep it to
/// one, `maxcpus=N` and `nr_cpus=N` to N.
fn cpus_left_by(param: &str) -> Option<u32> {
    match param.split_once('=') {
        None if param == "nosmp" => Some(1),
        Some(("acpi", "off")) => Some(1),
        Some(("maxcpus" | "nr_cpus", n)) => n.parse::<u32>().ok().map(|n| n.max(1)),
        _ => None,
    }
}
