//! Choosing the QEMU accelerator: KVM when it really works, else TCG.
//!
//! KVM is chosen only when the CPU advertises `vmx`/`svm`, `/dev/kvm` opens
//! read-write, and a `KVM_GET_API_VERSION` + `KVM_CREATE_VM` probe succeeds
//! within [`KVM_PROBE_TIMEOUT`]. The probe runs on its own thread, because
//! on some nested setups the ioctl never returns: detection gives up on it
//! and falls back to TCG instead of hanging. Every timeout in the runner
//! scales with the accelerator (see [`Accel::boot_timeout`]).

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::str::FromStr;
use std::sync::{mpsc, Once, OnceLock};
use std::thread;
use std::time::Duration;

use crate::machine::process::sys;

/// How long the KVM ioctl probe may take before KVM counts as unusable.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Boot deadline (spawn → control shell) under KVM.
pub const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Boot deadline under TCG; a boot takes about 2 s alone on an idle host,
/// but TCG guests slow down a lot when they share few cores.
pub const TCG_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Grace period for a guest to power off after `shutdown` under KVM.
pub const KVM_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Grace period for a guest to power off after `shutdown` under TCG.
pub const TCG_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Time a control-channel request (outside the command's own timeout) may
/// take under KVM: framing, base64, the guest shell's own work.
pub const KVM_CHANNEL_SLACK: Duration = Duration::from_secs(10);
/// Control-channel slack under TCG.
pub const TCG_CHANNEL_SLACK: Duration = Duration::from_secs(30);

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: i32 = 12;

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's multi-threaded software emulation.
    Tcg,
}

impl Accel {
    /// Deadline from spawning QEMU to the first control-shell answer.
    pub fn boot_timeout(self) -> Duration {
        match self {
            Accel::Kvm => KVM_BOOT_TIMEOUT,
            Accel::Tcg => TCG_BOOT_TIMEOUT,
        }
    }

    /// Grace period between asking the guest to power off and SIGTERM.
    pub fn shutdown_grace(self) -> Duration {
        match self {
            Accel::Kvm => KVM_SHUTDOWN_GRACE,
            Accel::Tcg => TCG_SHUTDOWN_GRACE,
        }
    }

    /// Extra time a control-channel request may take beyond its own timeout.
    pub fn channel_slack(self) -> Duration {
        match self {
            Accel::Kvm => KVM_CHANNEL_SLACK,
            Accel::Tcg => TCG_CHANNEL_SLACK,
        }
    }

    /// Lower-case name, as QEMU spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the spec or the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccelRequest {
    /// Detect: KVM when usable, else TCG.
    #[default]
    Auto,
    /// KVM, or an error ([`KvmUnusable`]) when detection finds it
    /// unusable: never a silent fallback to TCG.
    Kvm,
    /// Force TCG.
    Tcg,
}

/// `kvm` was asked for on a host where KVM is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("accel = \"kvm\", but KVM is not usable here ({0})\n  (hint: set accel = \"auto\" to fall back to TCG, or \"tcg\"; check /dev/kvm permissions and CPU virtualisation)")]
pub struct KvmUnusable(pub String);

/// An accelerator name that is not `auto`, `kvm` or `tcg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator `{0}` (expected auto, kvm or tcg)")]
pub struct UnknownAccel(pub String);

impl FromStr for AccelRequest {
    type Err = UnknownAccel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AccelRequest::Auto),
            "kvm" => Ok(AccelRequest::Kvm),
            "tcg" => Ok(AccelRequest::Tcg),
            other => Err(UnknownAccel(other.to_owned())),
        }
    }
}

/// The outcome of KVM detection, with the reason when KVM was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why KVM is not used (`None` when it is).
    pub kvm_unusable: Option<String>,
}

impl Detection {
    /// A warning for the user when detection fell back to TCG.
    pub fn warning(&self) -> Option<String> {
        self.kvm_unusable.as_ref().map(|why| {
            format!(
                "KVM is not usable ({why}); using TCG software emulation, \
                 expect guests to be several times slower\n  \
                 (hint: check /dev/kvm permissions and CPU virtualisation, or set accel = \"tcg\" to silence this)"
            )
        })
    }
}

/// Detects KVM against the real system files. Never blocks longer than
/// about [`KVM_PROBE_TIMEOUT`].
pub fn detect() -> Detection {
    detect_with(
        Path::new("/proc/cpuinfo"),
        Path::new("/dev/kvm"),
        KVM_PROBE_TIMEOUT,
    )
}

/// Detection with explicit file paths and probe timeout (for tests).
pub fn detect_with(cpuinfo: &Path, kvm_dev: &Path, probe_timeout: Duration) -> Detection {
    let tcg = |why: String| Detection {
        accel: Accel::Tcg,
        kvm_unusable: Some(why),
    };
    match std::fs::read_to_string(cpuinfo) {
        Ok(text) if cpu_has_virtualisation(&text) => {}
        Ok(_) => return tcg(format!("{} shows no vmx/svm flag", cpuinfo.display())),
        Err(err) => return tcg(format!("cannot read {}: {err}", cpuinfo.display())),
    }
    let file = match OpenOptions::new().read(true).write(true).open(kvm_dev) {
        Ok(file) => file,
        Err(err) => {
            return tcg(format!(
                "cannot open {} read-write: {err}",
                kvm_dev.display()
            ))
        }
    };
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("covnet-kvm-probe".into())
        .spawn(move || {
            let result = probe_kvm(&file);
            let _ = tx.send(result);
        });
    if let Err(err) = spawned {
        return tcg(format!("cannot start the KVM probe thread: {err}"));
    }
    // A probe stuck in the kernel is left behind on its detached thread.
    match rx.recv_timeout(probe_timeout) {
        Ok(Ok(())) => Detection {
            accel: Accel::Kvm,
            kvm_unusable: None,
        },
        Ok(Err(why)) => tcg(why),
        Err(_) => tcg(format!(
            "the KVM probe did not answer within {}s (nested virtualisation?)",
            probe_timeout.as_secs_f64()
        )),
    }
}

fn probe_kvm(file: &std::fs::File) -> Result<(), String> {
    let version = sys::ioctl_no_arg(file, KVM_GET_API_VERSION)
        .map_err(|err| format!("KVM_GET_API_VERSION failed: {err}"))?;
    if version != KVM_API_VERSION {
        return Err(format!(
            "KVM API version {version}, expected {KVM_API_VERSION}"
        ));
    }
    let vm_fd = sys::ioctl_no_arg(file, KVM_CREATE_VM)
        .map_err(|err| format!("KVM_CREATE_VM failed: {err}"))?;
    sys::close_fd(vm_fd);
    Ok(())
}

/// True when a `/proc/cpuinfo` text has a `flags` line with `vmx` or `svm`.
pub fn cpu_has_virtualisation(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, flags)| {
            flags
                .split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
}

/// Resolves a request to an accelerator. Detection runs once per process
/// (cached), for `Auto` and `Kvm`; `Auto` falls back to TCG, with a
/// warning the first time, and `Kvm` is refused when KVM is not usable
/// (QEMU would start, and on some hosts hang or crash the guest).
pub fn resolve(request: AccelRequest) -> Result<Accel, KvmUnusable> {
    static DETECTED: OnceLock<Detection> = OnceLock::new();
    static WARNED: Once = Once::new();
    let detection = || DETECTED.get_or_init(detect);
    let accel = choose(request, detection)?;
    if request == AccelRequest::Auto {
        if let Some(warning) = detection().warning() {
            WARNED.call_once(|| crate::diag::warn(warning));
        }
    }
    Ok(accel)
}

/// The accelerator for `request`, given a detection that is run only when
/// the request needs it.
pub fn choose<'a>(
    request: AccelRequest,
    detection: impl FnOnce() -> &'a Detection,
) -> Result<Accel, KvmUnusable> {
    match request {
        AccelRequest::Tcg => Ok(Accel::Tcg),
        AccelRequest::Auto => Ok(detection().accel),
        AccelRequest::Kvm => match &detection().kvm_unusable {
            None => Ok(Accel::Kvm),
            Some(why) => Err(KvmUnusable(why.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cpuinfo_file(flags: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "processor\t: 0\nflags\t\t: {flags}\nbogomips\t: 1").expect("write");
        file
    }

    #[test]
    fn cpu_flags_are_matched_as_words() {
        assert!(cpu_has_virtualisation("flags\t: fpu vmx sse\n"));
        assert!(cpu_has_virtualisation("flags : svm\n"));
        assert!(!cpu_has_virtualisation("flags\t: fpu vmxfoo svm2\n"));
        assert!(!cpu_has_virtualisation("model name : vmx svm\n"));
    }

    #[test]
    fn no_cpu_flag_means_tcg_with_reason() {
        let info = cpuinfo_file("fpu sse2");
        let d = detect_with(info.path(), Path::new("/dev/kvm"), KVM_PROBE_TIMEOUT);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d
            .kvm_unusable
            .as_deref()
            .is_some_and(|w| w.contains("vmx/svm")));
        assert!(d.warning().is_some_and(|w| w.contains("TCG")));
    }

    #[test]
    fn unopenable_device_means_tcg() {
        let info = cpuinfo_file("fpu vmx");
        let d = detect_with(
            info.path(),
            Path::new("/nonexistent/kvm"),
            KVM_PROBE_TIMEOUT,
        );
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d
            .kvm_unusable
            .as_deref()
            .is_some_and(|w| w.contains("/nonexistent/kvm")));
    }

    #[test]
    fn failing_ioctl_means_tcg() {
        // A regular file opens read-write but rejects the KVM ioctls.
        let info = cpuinfo_file("fpu svm");
        let dev = tempfile::NamedTempFile::new().expect("temp file");
        let d = detect_with(info.path(), dev.path(), KVM_PROBE_TIMEOUT);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d
            .kvm_unusable
            .as_deref()
            .is_some_and(|w| w.contains("KVM_GET_API_VERSION")));
    }

    #[test]
    fn requests_parse_and_override() {
        assert_eq!("tcg".parse::<AccelRequest>(), Ok(AccelRequest::Tcg));
        assert_eq!("kvm".parse::<AccelRequest>(), Ok(AccelRequest::Kvm));
        assert_eq!("auto".parse::<AccelRequest>(), Ok(AccelRequest::Auto));
        assert_eq!(
            "hvf".parse::<AccelRequest>().unwrap_err().to_string(),
            "unknown accelerator `hvf` (expected auto, kvm or tcg)"
        );
        assert_eq!(resolve(AccelRequest::Tcg), Ok(Accel::Tcg));
    }

    #[test]
    fn kvm_is_refused_where_it_is_unusable_and_auto_falls_back() {
        let unusable = Detection {
            accel: Accel::Tcg,
            kvm_unusable: Some("/proc/cpuinfo shows no vmx/svm flag".into()),
        };
        let usable = Detection {
            accel: Accel::Kvm,
            kvm_unusable: None,
        };
        let err = choose(AccelRequest::Kvm, || &unusable).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "accel = \"kvm\", but KVM is not usable here (/proc/cpuinfo shows no vmx/svm flag)"
            ),
            "{err}"
        );
        assert_eq!(choose(AccelRequest::Kvm, || &usable), Ok(Accel::Kvm));
        assert_eq!(choose(AccelRequest::Auto, || &unusable), Ok(Accel::Tcg));
        assert_eq!(choose(AccelRequest::Auto, || &usable), Ok(Accel::Kvm));
        assert_eq!(
            choose(AccelRequest::Tcg, || -> &Detection {
                unreachable!("tcg needs no detection")
            }),
            Ok(Accel::Tcg)
        );
    }

    #[test]
    fn timeouts_scale_with_accel() {
        assert!(Accel::Tcg.boot_timeout() > Accel::Kvm.boot_timeout());
        assert!(Accel::Tcg.shutdown_grace() > Accel::Kvm.shutdown_grace());
        assert!(Accel::Tcg.channel_slack() > Accel::Kvm.channel_slack());
    }
}
