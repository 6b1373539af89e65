//! The QEMU backend of [`Machine`](super::Machine): one VM booted from a kernel and an
//! initramfs, driven through its control shell on a virtio-serial port.
//!
//! [`Vm`] is a [`Session`] over the [`Qemu`] backend: [`Vm::new`] attaches
//! the VM's NICs to the switch; on start the backend spawns QEMU (own
//! process group, dies with covnet) and names the control socket it
//! creates; the session connects, pings the shell, and owns the rest of the
//! lifecycle (see [`super::session`]). QEMU ends on the guest's
//! own power-off (`-no-reboot`), or SIGTERM then SIGKILL.

pub mod accel;
pub mod qemu;
pub mod qmp;
pub mod snapshot;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::console::{ChannelError, ControlChannel};
use super::process::{OwnedChild, ProcessError};
use super::session::{self, lock, Backend, Control, Session, Setup, Sockets};
use super::terminal::{self, Terminal};
use super::{EventSink, MachineError, MachineEvent, SnapshotAction};
use crate::net::switch::Switch;
use accel::Accel;
use qemu::{Forward, Mac, Nic, QemuConfig};
use qmp::Qmp;
use snapshot::{ColdBoot, SnapshotCache, SnapshotKey};

/// The QEMU binary used unless the config names another.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// How long services get to exit in the guest during `shutdown`.
pub const SERVICE_STOP_GRACE: Duration = session::SERVICE_STOP_GRACE;

/// One VLAN NIC of a VM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmNic {
    /// VLAN number.
    pub vlan: u8,
    /// MAC address. A VM with a layer boots the NIC with its slot's MAC
    /// ([`Mac::for_slot`]) and its init sets this one (from the layer's
    /// `machine.env`) after the release.
    pub mac: Mac,
}

/// Everything a [`Vm`] needs, resolved (no `auto` left but the boot
/// timeout, which follows the accelerator when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Machine name (for errors, events, file names).
    pub name: String,
    /// 1-based machine index (forward NIC MAC).
    pub index: u8,
    /// Accelerator.
    pub accel: Accel,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// The machine's layer (see [`crate::image::initramfs::Image`]), a
    /// read-only virtio disk that init unpacks when released; `None`: the
    /// initramfs is the whole image.
    pub layer: Option<PathBuf>,
    /// Extra kernel parameters (after [`qemu::BASE_KERNEL_PARAMS`]).
    pub kernel_params: Vec<String>,
    /// VLAN NICs in guest order.
    pub nics: Vec<VmNic>,
    /// Host port forwards.
    pub forwards: Vec<Forward>,
    /// Boot deadline; `None`: [`Accel::boot_timeout`].
    pub boot_timeout: Option<Duration>,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Firmware; `None`: QEMU's default (SeaBIOS).
    pub bios: Option<PathBuf>,
    /// Boot the guest with ACPI. Off for one vCPU: `acpi=off` saves about
    /// 0.5 s of CPU per boot under TCG, and covnet needs no ACPI (shutdown
    /// is a reset, which ends QEMU under `-no-reboot`). On for more than
    /// one ([`VmConfig::from_spec`]): without ACPI's tables a directly
    /// booted guest finds no local APIC and runs on one CPU whatever
    /// `-smp` says; and in a network of more VMs than host cores
    /// ([`acpi_for_network`]), where idle guests cost. qboot needs ACPI: without it the guest never starts,
    /// so set both together.
    pub acpi: bool,
    /// Serial console log file; `None`: `<run dir>/<name>-console.log`.
    pub console_log: Option<PathBuf>,
    /// Where booted guests are saved and restored from; `None`: every
    /// boot is cold.
    pub snapshots: Option<SnapshotCache>,
    /// Of the VMs of this process that share a snapshot key and find no
    /// snapshot, one boots cold and saves it while this one waits, then
    /// restores it (see [`snapshot::ColdBoot`]). Set for a network of more
    /// VMs than host cores: a cold boot there costs about five restores.
    pub await_cold_boot: bool,
}

/// The size of a VM's layer disk: the machine's layer (a cpio archive, see
/// [`crate::image::initramfs::Image`]) at the start of a sparse file of
/// this size in the run directory. The guest sees the disk from its boot
/// (its driver is loaded then: loading it after a restore costs TCG's
/// translation of the driver's paths, 0.12 s), so the size must not depend
/// on the machine for one snapshot to fit all; a layer larger than this
/// gets the next power of two (and snapshots of its own).
pub const LAYER_DISK_BYTES: u64 = 4 << 30;

/// Writes the layer disk of `layer` at `disk` (replacing it): a copy of
/// the layer, extended without writing to [`LAYER_DISK_BYTES`].
pub fn layer_disk(layer: &Path, disk: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(disk);
    let bytes = std::fs::copy(layer, disk)?;
    let size = if bytes <= LAYER_DISK_BYTES {
        LAYER_DISK_BYTES
    } else {
        bytes.next_power_of_two()
    };
    File::options().write(true).open(disk)?.set_len(size)
}

/// Whether a network of `vms` VMs on a host with `cores` cores boots its
/// one-vCPU guests with ACPI as well. Without ACPI a guest has no local
/// APIC, and its timer, the PIT, wakes it at least every 55 ms: idle, it
/// costs about 2.5 % of a host core under TCG, with ACPI about 0.9 %
/// (bench/vm's idle table), for about 0.3 s more CPU per cold boot (none
/// for a restore). When the VMs outnumber the cores the idle ones take
/// their share from those at work, so from then on ACPI.
pub fn acpi_for_network(vms: usize, cores: usize) -> bool {
    vms > cores
}

impl VmConfig {
    /// A config from a resolved spec machine, its kernel, its image and
    /// the accelerator. SeaBIOS, and `acpi=off` for one vCPU (measured
    /// fastest, see bench/RESULTS.md); a machine with more vCPUs boots
    /// with ACPI, which is where its guest finds them.
    pub fn from_spec(
        machine: &crate::spec::Machine,
        kernel: &Path,
        image: &crate::image::initramfs::Image,
        accel: Accel,
        boot_timeout: Option<Duration>,
    ) -> VmConfig {
        VmConfig {
            name: machine.name.clone(),
            index: machine.index,
            accel,
            memory_mib: machine.memory_mib.get(),
            cpus: u32::from(machine.cpus.get()),
            kernel: kernel.to_owned(),
            initrd: image.path.clone(),
            layer: Some(image.layer.clone()),
            kernel_params: machine.kernel_params.clone(),
            nics: machine
                .nics
                .iter()
                .map(|n| VmNic {
                    vlan: n.vlan,
                    mac: Mac(n.mac),
                })
                .collect(),
            forwards: machine
                .forward
                .iter()
                .map(|f| Forward {
                    host_port: f.host_port.get(),
                    guest_port: f.guest_port.get(),
                })
                .collect(),
            boot_timeout,
            qemu: PathBuf::from(QEMU_BINARY),
            bios: None,
            acpi: machine.cpus.get() > 1,
            console_log: None,
            snapshots: None,
            await_cold_boot: false,
        }
    }

    /// A minimal config (no NICs, 256 MiB, 1 vCPU, SeaBIOS, `acpi=off`).
    pub fn new(name: &str, kernel: &Path, initrd: &Path, accel: Accel) -> VmConfig {
        VmConfig {
            name: name.to_owned(),
            index: 1,
            accel,
            memory_mib: 256,
            cpus: 1,
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            layer: None,
            kernel_params: Vec::new(),
            nics: Vec::new(),
            forwards: Vec::new(),
            boot_timeout: None,
            qemu: PathBuf::from(QEMU_BINARY),
            bios: None,
            acpi: false,
            console_log: None,
            snapshots: None,
            await_cold_boot: false,
        }
    }
}

/// Longest a QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a restore's progress is asked for.
const RESTORE_POLL: Duration = Duration::from_millis(5);

/// How often a save's progress is asked for.
const SAVE_POLL: Duration = Duration::from_millis(10);

/// How long a held guest must have been silent before it is saved.
const SAVE_SETTLE: Duration = Duration::from_millis(100);

/// How long a restored guest gets, once QEMU runs it, to answer a ping
/// before the restore counts as failed and the machine boots cold.
const RESTORE_ANSWER: Duration = Duration::from_secs(30);

/// Migration bandwidth while saving: unlimited in practice (QEMU's default
/// limit, 128 MiB/s, would add most of a second per snapshot).
const SAVE_BANDWIDTH: u64 = 1 << 40;

/// Host paths of one VM besides the session's sockets.
#[derive(Debug, Clone)]
struct Paths {
    serial: PathBuf,
    control: PathBuf,
    terminal: PathBuf,
    qmp: PathBuf,
    qemu_log: PathBuf,
    /// The layer disk QEMU attaches (see [`layer_disk`]).
    layer_disk: PathBuf,
    /// (NIC socket, switch port socket) per NIC.
    nics: Vec<(PathBuf, PathBuf)>,
}

/// The QEMU backend: the VM's config, paths and QEMU process.
#[derive(Debug)]
pub struct Qemu {
    cfg: VmConfig,
    paths: Paths,
    child: Mutex<Option<OwnedChild>>,
    /// Set while a terminal session holds the one terminal port.
    terminal_busy: Arc<AtomicBool>,
    /// The snapshot key of the current boot, when snapshots are on.
    key: Mutex<Option<SnapshotKey>>,
    /// The current boot was restored from a snapshot.
    restored: AtomicBool,
    /// This boot is the one of this process that saves its key's
    /// snapshot (held until saved or stopped).
    cold_boot: Mutex<Option<ColdBoot>>,
    events: EventSink,
}

/// A QEMU virtual machine.
pub type Vm = Session<Qemu>;

impl Session<Qemu> {
    /// A stopped VM whose sockets and logs live in `run_dir`, with one
    /// switch port per NIC (on `switch`, which must outlive the VM's use).
    pub fn new(
        cfg: VmConfig,
        run_dir: &crate::rundir::RunDir,
        switch: Option<Arc<Switch>>,
        events: EventSink,
    ) -> Result<Vm, MachineError> {
        let backend_events = events.clone();
        let setup = Setup {
            name: &cfg.name,
            run_dir,
            vlans: cfg.nics.iter().map(|n| n.vlan).collect(),
            console_log: cfg.console_log.clone(),
            switch,
            events,
        };
        Session::create(setup, |sockets| {
            let name = &cfg.name;
            let paths = Paths {
                serial: sockets.serial.clone(),
                control: session::socket(run_dir, name, "ctl.sock")?,
                terminal: session::socket(run_dir, name, "term.sock")?,
                qmp: session::socket(run_dir, name, "qmp.sock")?,
                qemu_log: run_dir.file(&format!("{name}-qemu.log")),
                layer_disk: run_dir.file(&format!("{name}-layer.disk")),
                nics: sockets.nics.clone(),
            };
            Ok(Qemu {
                cfg: cfg.clone(),
                paths,
                child: Mutex::new(None),
                terminal_busy: Arc::new(AtomicBool::new(false)),
                key: Mutex::new(None),
                restored: AtomicBool::new(false),
                cold_boot: Mutex::new(None),
                events: backend_events.clone(),
            })
        })
    }

    /// The VM's config.
    pub fn config(&self) -> &VmConfig {
        &self.backend().cfg
    }

    /// QEMU's own stderr/stdout log.
    pub fn qemu_log_path(&self) -> &Path {
        &self.backend().paths.qemu_log
    }

    /// The QEMU command line (without the program).
    pub fn qemu_args(&self) -> Vec<OsString> {
        self.backend().qemu_args()
    }
}

impl Qemu {
    fn qemu_args(&self) -> Vec<OsString> {
        qemu::command_line(&self.qemu_config())
    }

    fn qemu_config(&self) -> QemuConfig {
        QemuConfig {
            accel: self.cfg.accel,
            bios: self.cfg.bios.clone(),
            memory_mib: self.cfg.memory_mib,
            cpus: self.cfg.cpus,
            kernel: self.cfg.kernel.clone(),
            initrd: self.cfg.initrd.clone(),
            append: qemu::kernel_cmdline(&self.kernel_params()),
            serial_socket: self.paths.serial.clone(),
            control_socket: self.paths.control.clone(),
            terminal_socket: self.paths.terminal.clone(),
            qmp_socket: self.paths.qmp.clone(),
            nics: self
                .cfg
                .nics
                .iter()
                .zip(&self.paths.nics)
                .enumerate()
                .map(|(index, (nic, (local, remote)))| Nic {
                    index,
                    // With a layer, init gives the NIC its own MAC.
                    mac: match self.cfg.layer {
                        Some(_) => Mac::for_slot(u8::try_from(index).unwrap_or(u8::MAX)),
                        None => nic.mac,
                    },
                    local: local.clone(),
                    remote: remote.clone(),
                })
                .collect(),
            forwards: self.cfg.forwards.clone(),
            forward_mac: Mac::for_forward(self.cfg.index),
            layer: self
                .cfg
                .layer
                .as_ref()
                .map(|_| self.paths.layer_disk.clone()),
        }
    }

    /// Extra kernel parameters: `acpi=off pci=nomsi` unless ACPI is
    /// wanted, then the config's own. Without ACPI the guest has no local
    /// APIC, so no MSI: virtio's drivers would try MSI-X first and fall
    /// back to INTx only after a kernel WARNING with a stack trace in
    /// every boot's log (which a test checking `dmesg` would see);
    /// `pci=nomsi` takes INTx at once.
    fn kernel_params(&self) -> Vec<String> {
        let mut params = Vec::with_capacity(self.cfg.kernel_params.len() + 2);
        if !self.cfg.acpi {
            params.extend(["acpi=off".to_owned(), "pci=nomsi".to_owned()]);
        }
        params.extend(self.cfg.kernel_params.iter().cloned());
        params
    }

    /// Spawns QEMU with the VM's command line and `extra` arguments, its
    /// output into the QEMU log.
    fn spawn(&self, extra: &[OsString]) -> Result<(), MachineError> {
        let qemu_log = File::create(&self.paths.qemu_log)
            .map_err(|e| self.io_err("create the QEMU log", e))?;
        let qemu_log2 = qemu_log
            .try_clone()
            .map_err(|e| self.io_err("create the QEMU log", e))?;
        let mut cmd = Command::new(&self.cfg.qemu);
        cmd.args(self.qemu_args())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(qemu_log))
            .stderr(Stdio::from(qemu_log2));
        let child =
            OwnedChild::spawn(cmd, &format!("qemu of {}", self.cfg.name)).map_err(|err| {
                MachineError::Spawn {
                    machine: self.cfg.name.clone(),
                    program: self.cfg.qemu.display().to_string(),
                    source: match err {
                        ProcessError::Spawn { source, .. } => source,
                        other => std::io::Error::other(other.to_string()),
                    },
                }
            })?;
        *lock(&self.child) = Some(child);
        Ok(())
    }

    /// Waits until QEMU, started with `-incoming`, runs the restored guest,
    /// and returns the control port's connection; why not when QEMU exits
    /// or stalls first.
    ///
    /// The host connects to the control port while the guest is still
    /// being loaded: the guest was saved with the host connected, and QEMU
    /// tells a restored guest about a host that connects or goes away
    /// after the load; with the host already there, nothing changes for
    /// the guest. (Connecting only once the guest ran lost that event now
    /// and then: two of 40 restored guests waited forever to answer.)
    fn await_restore(&self) -> Result<UnixStream, String> {
        let deadline = Instant::now() + self.boot_timeout();
        let mut qmp = None;
        let mut control = None;
        loop {
            if let Some(Some(how)) = self.exited() {
                let said = self.qemu_last_line().unwrap_or_default();
                return Err(format!("QEMU exited ({how}): {said}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "QEMU did not run the restored guest within {}s",
                    self.boot_timeout().as_secs()
                ));
            }
            if control.is_none() {
                control = UnixStream::connect(&self.paths.control).ok();
                if control.is_none() {
                    std::thread::sleep(RESTORE_POLL);
                    continue;
                }
            }
            if qmp.is_none() {
                qmp = Qmp::connect(&self.paths.qmp, deadline).ok();
            }
            if let Some(q) = qmp.as_mut() {
                match q.status() {
                    Ok(status) if status == "running" => {
                        let control = control.ok_or_else(|| "no control connection".to_owned())?;
                        return self.await_answer(control, deadline);
                    }
                    Ok(status) if status == "inmigrate" || status == "prelaunch" => {}
                    // Saved stopped: QEMU leaves the loaded guest paused.
                    Ok(status) if status == "paused" => {
                        if let Err(e) = q.execute("cont", None) {
                            return Err(format!("QMP cont after the restore: {e}"));
                        }
                    }
                    Ok(status) => return Err(format!("QEMU is `{status}` after the restore")),
                    // QEMU went away: the next round says how it ended.
                    Err(_) => qmp = None,
                }
            }
            std::thread::sleep(RESTORE_POLL);
        }
    }

    /// Pings the restored guest on `control` until its init answers (it
    /// answers every ping while it holds), within [`RESTORE_ANSWER`] and
    /// `deadline`; the guest's answers are left for the session's own
    /// pings to find again.
    fn await_answer(&self, control: UnixStream, deadline: Instant) -> Result<UnixStream, String> {
        let start = Instant::now();
        let until = deadline.min(start + RESTORE_ANSWER);
        let mut channel = ControlChannel::new(control);
        match channel.wait_greeting(until, || self.exited().is_none()) {
            Ok(_) => Ok(channel.into_stream()),
            Err(err) => Err(format!(
                "the restored guest did not answer within {:.0}s: {err}",
                until.saturating_duration_since(start).as_secs_f64()
            )),
        }
    }

    /// Saves the running guest (held by its init) into `cache` under `key`
    /// with QEMU's migration, then lets it run on. Failures are reported
    /// as events: the run goes on without a snapshot.
    fn save(&self, cache: &SnapshotCache, key: &SnapshotKey, deadline: Instant) {
        let started = Instant::now();
        let result = cache
            .begin()
            .map_err(|e| format!("{}: {e}", cache.dir().display()))
            .and_then(|tmp| {
                let mut qmp =
                    Qmp::connect(&self.paths.qmp, deadline).map_err(|e| format!("QMP: {e}"))?;
                let migrated = migrate_to(&mut qmp, &tmp, deadline);
                // Whatever the save did, the guest runs on.
                let resumed = resume(&mut qmp);
                match migrated.and(resumed) {
                    Ok(()) => cache.commit(key, &tmp).map_err(|e| e.to_string()),
                    Err(reason) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(reason)
                    }
                }
            });
        self.snapshot_event(match result {
            Ok((path, bytes)) => SnapshotAction::Saved {
                path,
                bytes,
                took: started.elapsed(),
            },
            Err(reason) => SnapshotAction::SaveFailed { reason },
        });
    }

    /// The last `n` lines of QEMU's own log (none when it cannot be read).
    fn qemu_log_lines(&self, n: usize) -> Vec<String> {
        let log = std::fs::read_to_string(&self.paths.qemu_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let skip = lines.len().saturating_sub(n);
        lines[skip..].iter().map(|l| (*l).to_owned()).collect()
    }

    /// What QEMU said last in its log, if anything.
    fn qemu_last_line(&self) -> Option<String> {
        let last = self.qemu_log_lines(1).pop()?;
        let last = last.trim();
        (!last.is_empty()).then(|| last.to_owned())
    }

    fn snapshot_event(&self, action: SnapshotAction) {
        self.events.emit(MachineEvent::Snapshot {
            machine: self.cfg.name.clone(),
            action,
        });
    }

    fn io_err(&self, what: &str, source: std::io::Error) -> MachineError {
        MachineError::Io {
            machine: self.cfg.name.clone(),
            what: what.to_owned(),
            source,
        }
    }
}

impl Backend for Qemu {
    const STARTING: &'static str = "booting";
    /// About 3 MiB/s was measured each way under TCG on a loaded 2-core
    /// host; assume much less.
    const COPY_BYTES_PER_SEC: u64 = 256 * 1024;
    /// QEMU closes its sockets before it exits.
    const EXIT_SETTLE: Duration = Duration::from_millis(500);

    fn kind(&self) -> String {
        self.cfg.accel.to_string()
    }

    fn boot_timeout(&self) -> Duration {
        self.cfg
            .boot_timeout
            .unwrap_or_else(|| self.cfg.accel.boot_timeout())
    }

    fn channel_slack(&self) -> Duration {
        self.cfg.accel.channel_slack()
    }

    fn stale_files(&self) -> Vec<PathBuf> {
        vec![
            self.paths.control.clone(),
            self.paths.terminal.clone(),
            self.paths.qmp.clone(),
        ]
    }

    fn launch(&self, _sockets: &Sockets) -> Result<Control, MachineError> {
        self.restored.store(false, Ordering::SeqCst);
        if let Some(layer) = &self.cfg.layer {
            layer_disk(layer, &self.paths.layer_disk)
                .map_err(|e| self.io_err("write the layer disk", e))?;
        }
        let key = self
            .cfg
            .snapshots
            .as_ref()
            .and_then(|_| snapshot::key(&self.cfg.qemu, &self.qemu_config()).ok());
        *lock(&self.key) = key.clone();
        *lock(&self.cold_boot) = None;
        let lookup = || {
            self.cfg
                .snapshots
                .as_ref()
                .zip(key.as_ref())
                .and_then(|(cache, key)| Some((cache, key, cache.lookup(key)?)))
        };
        let mut saved = lookup();
        if let (None, Some(cache), Some(key)) = (&saved, &self.cfg.snapshots, &key) {
            // One cold boot per key in this process saves the snapshot;
            // with `await_cold_boot` the others wait for it and restore.
            let state = cache.state_path(key);
            let mut claim = ColdBoot::claim(&state);
            if claim.is_none() && self.cfg.await_cold_boot {
                ColdBoot::wait(&state, Instant::now() + self.boot_timeout() / 2);
                saved = lookup();
                if saved.is_none() {
                    claim = ColdBoot::claim(&state);
                }
            }
            *lock(&self.cold_boot) = claim;
        }
        if let Some((cache, key, path)) = saved {
            let started = Instant::now();
            self.spawn(&["-incoming".into(), snapshot::incoming_uri(&path)])?;
            match self.await_restore() {
                Ok(stream) => {
                    self.restored.store(true, Ordering::SeqCst);
                    self.snapshot_event(SnapshotAction::Restored {
                        path,
                        took: started.elapsed(),
                    });
                    return Ok(Control::Stream(stream));
                }
                Err(reason) => {
                    cache.discard(key);
                    self.snapshot_event(SnapshotAction::RestoreFailed {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                    return Err(MachineError::Restore {
                        machine: self.cfg.name.clone(),
                        snapshot: path,
                        reason,
                    });
                }
            }
        } else {
            self.spawn(&[])?;
        }
        Ok(Control::Socket(self.paths.control.clone()))
    }

    /// A restored guest gets 30 s (`RESTORE_ANSWER`) to come up after its
    /// release.
    fn ready_by(&self, deadline: Instant) -> Instant {
        if self.restored.load(Ordering::SeqCst) {
            deadline.min(Instant::now() + RESTORE_ANSWER)
        } else {
            deadline
        }
    }

    /// A restored guest that did not come up after its release: the
    /// restore failed (QEMU 7.2 now and then reports "Virtqueue size
    /// exceeded" for a restored guest's virtio-serial device under load):
    /// the snapshot is removed and the session boots the machine cold.
    fn not_ready(&self) -> Option<MachineError> {
        if !self.restored.load(Ordering::SeqCst) {
            return None;
        }
        let key = lock(&self.key).clone()?;
        let cache = self.cfg.snapshots.as_ref()?;
        let path = cache.state_path(&key);
        cache.discard(&key);
        let reason = match self.qemu_last_line() {
            Some(said) => {
                format!("the restored guest did not come up after its release; QEMU: {said}")
            }
            None => "the restored guest did not come up after its release".to_owned(),
        };
        self.snapshot_event(SnapshotAction::RestoreFailed {
            path: path.clone(),
            reason: reason.clone(),
        });
        Some(MachineError::Restore {
            machine: self.cfg.name.clone(),
            snapshot: path,
            reason,
        })
    }

    /// Saves the held guest the first time its image boots (by the one
    /// VM of this process that claimed its cold boot), then releases it
    /// with the machine's layer.
    fn release(&self, channel: &mut ControlChannel, deadline: Instant) -> Result<(), ChannelError> {
        let key = lock(&self.key).clone();
        let claim = lock(&self.cold_boot).take();
        if let (false, Some(cache), Some(key), Some(_claim)) = (
            self.restored.load(Ordering::SeqCst),
            self.cfg.snapshots.as_ref(),
            key,
            claim,
        ) {
            if cache.lookup(&key).is_none() {
                // Pings queued while the guest booted are all answered
                // first: saved mid-answer, a restored guest now and then
                // never answered again (2 of 40 guests, under load).
                channel.settle(SAVE_SETTLE, deadline)?;
                self.save(cache, &key, deadline);
            }
        }
        channel.release(
            std::time::SystemTime::now(),
            &session::fresh_seed(),
            self.cfg.layer.is_some(),
            deadline,
        )
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(OwnedChild::pid)
    }

    fn forward_port(
        &self,
        machine: &str,
        host_port: u16,
        guest_port: u16,
    ) -> Result<(), MachineError> {
        let op = format!("forward host port {host_port} to guest port {guest_port}");
        if self.cfg.forwards.is_empty() {
            return Err(MachineError::Unsupported {
                machine: machine.to_owned(),
                op,
                why: "the VM has no port-forward NIC, which a VM gets when its spec lists a \
                      `forward` (covnet adds that NIC at boot and hot-plugs none)\n  \
                      (hint: add `forward = [\"<host port>:<guest port>\"]` to the machine)"
                    .to_owned(),
            });
        }
        let rule = format!("hostfwd_add fwd tcp:127.0.0.1:{host_port}-:{guest_port}");
        match qmp::human_command(&self.paths.qmp, &rule, QMP_TIMEOUT) {
            Ok(reply) if reply.trim().is_empty() => Ok(()),
            Ok(reply) => Err(MachineError::Guest {
                machine: machine.to_owned(),
                op,
                status: 1,
                stderr: format!("QEMU: {}", reply.trim()),
            }),
            Err(source) => Err(MachineError::Io {
                machine: machine.to_owned(),
                what: format!("{op} over QMP"),
                source,
            }),
        }
    }

    /// Connects to the terminal port (one session at a time: the port is
    /// a single byte stream) and asks the guest for a session.
    fn open_terminal(&self, name: &str, term: &str) -> Result<Terminal, MachineError> {
        if self
            .terminal_busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(MachineError::Terminal {
                machine: name.to_owned(),
                detail: "a VM has one terminal port and another `covnet shell` session uses it\n  \
                         (hint: run single commands with `covnet shell -c`)"
                    .into(),
            });
        }
        let busy = Arc::clone(&self.terminal_busy);
        let connect = || -> std::io::Result<UnixStream> {
            let mut stream = UnixStream::connect(&self.paths.terminal)?;
            stream.write_all(terminal::start_line(term).as_bytes())?;
            Ok(stream)
        };
        match connect() {
            Ok(stream) => Ok(Terminal::new(stream, None, Some(busy))),
            Err(e) => {
                busy.store(false, Ordering::SeqCst);
                Err(self.io_err("connect to the terminal port", e))
            }
        }
    }

    fn exited(&self) -> Option<Option<String>> {
        match lock(&self.child).as_mut().map(OwnedChild::try_wait) {
            Some(Ok(Some(status))) => Some(Some(status.to_string())),
            Some(Ok(None)) => None,
            Some(Err(err)) => Some(Some(err.to_string())),
            None => Some(None),
        }
    }

    fn wait_exit(&self, timeout: Duration) -> Result<bool, String> {
        match lock(&self.child).as_mut() {
            Some(child) => child
                .wait_timeout(timeout)
                .map(|status| status.is_some())
                .map_err(|err| err.to_string()),
            None => Ok(true),
        }
    }

    fn kill_now(&self) {
        if let Some(child) = lock(&self.child).as_mut() {
            if let Err(err) = child.signal_group(libc::SIGKILL) {
                crate::diag::warn(err.to_string());
            }
        }
    }

    fn stop(&self, grace: Option<Duration>) -> Option<Result<String, String>> {
        // A cold boot that ends unsaved wakes the VMs waiting for it.
        *lock(&self.cold_boot) = None;
        let mut child = lock(&self.child).take()?;
        let ended = match grace {
            Some(grace) => child.terminate(grace),
            None => child.kill(),
        };
        Some(ended.map(|s| s.to_string()).map_err(|err| err.to_string()))
    }

    /// The last lines of QEMU's own log.
    fn log_tail(&self) -> Vec<String> {
        self.qemu_log_lines(5)
            .iter()
            .map(|line| format!("[qemu] {line}"))
            .collect()
    }

    /// A guest given too little memory for the kernel and initramfs QEMU
    /// loads into it panics out of memory, resets (QEMU then exits at
    /// once under `-no-reboot`) or hangs, often before its first console
    /// line. Said when the memory is less than twice what is loaded plus
    /// 32 MiB (the initramfs and the layer are unpacked again in the
    /// guest, and the kernel needs room of its own).
    fn boot_failure_hint(&self) -> Option<String> {
        let mib = |path: &Path| {
            std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / f64::from(1u32 << 20))
        };
        let kernel = mib(&self.cfg.kernel);
        let initrd = mib(&self.cfg.initrd) + self.cfg.layer.as_deref().map_or(0.0, mib);
        let memory = f64::from(self.cfg.memory_mib);
        (memory < 2.0 * (kernel + initrd) + 32.0).then(|| {
            format!(
                "a guest with too little memory panics, resets or hangs while booting, often \
                 before its first console line: this one has {} MiB, and it gets a {kernel:.1} MiB kernel image and \
                 {initrd:.1} MiB of initramfs and machine layer (unpacked again in the guest); raise `memory_mib`",
                self.cfg.memory_mib
            )
        })
    }
}

/// Migrates the guest into the file `tmp` and waits for the end.
fn migrate_to(qmp: &mut Qmp, tmp: &Path, deadline: Instant) -> Result<(), String> {
    let qmp_err = |e: std::io::Error| format!("QMP: {e}");
    qmp.execute(
        "migrate-set-parameters",
        Some(serde_json::json!({ "max-bandwidth": SAVE_BANDWIDTH })),
    )
    .map_err(qmp_err)?;
    // A stopped guest is saved in one consistent pass (no live
    // migration's dirty-page rounds while it runs); restores are
    // resumed by `await_restore`, the guest here by `resume`.
    qmp.execute("stop", None).map_err(qmp_err)?;
    let uri = format!("exec:cat > {}", snapshot::quoted(tmp));
    qmp.execute("migrate", Some(serde_json::json!({ "uri": uri })))
        .map_err(qmp_err)?;
    loop {
        let info = qmp.execute("query-migrate", None).map_err(qmp_err)?;
        match info.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some(status @ ("failed" | "cancelled")) => {
                let why = info
                    .get("error-desc")
                    .and_then(|d| d.as_str())
                    .unwrap_or("no reason given");
                return Err(format!("migration {status}: {why}"));
            }
            _ if Instant::now() >= deadline => {
                let _ = qmp.execute("migrate_cancel", None);
                return Err("the save did not finish before the boot deadline".into());
            }
            _ => std::thread::sleep(SAVE_POLL),
        }
    }
}

/// Lets the guest run again after a save (QEMU stops a guest whose
/// migration completed).
fn resume(qmp: &mut Qmp) -> Result<(), String> {
    let qmp_err = |e: std::io::Error| format!("QMP: {e}");
    if qmp.status().map_err(qmp_err)? != "running" {
        qmp.execute("cont", None).map_err(qmp_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vm::accel::Accel;
    use crate::machine::Machine;
    use crate::net::switch::PortId;

    fn spec_machine(text: &str) -> crate::spec::Spec {
        crate::spec::Spec::from_str(text, Path::new("/tmp/covnet-vm-test.toml")).expect("spec")
    }

    fn image() -> crate::image::initramfs::Image {
        crate::image::initramfs::Image {
            path: "/i".into(),
            layer: "/l".into(),
            hash: String::new(),
            cached: true,
            entries: 0,
        }
    }

    #[test]
    fn the_layer_disk_is_the_layer_then_sparse_zeros_of_one_size() {
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (layer, disk) = (dir.path().join("l.cpio"), dir.path().join("l.disk"));
        for data in [vec![7u8; 1024], vec![9u8; 512]] {
            std::fs::write(&layer, &data).expect("layer");
            layer_disk(&layer, &disk).expect("disk");
            let md = std::fs::metadata(&disk).expect("disk metadata");
            assert_eq!(md.len(), LAYER_DISK_BYTES, "one size for every layer");
            assert!(
                md.blocks() * 512 < 1 << 20,
                "sparse: {} blocks",
                md.blocks()
            );
            let mut head = vec![0u8; 2048];
            std::fs::File::open(&disk)
                .and_then(|mut f| f.read_exact(&mut head))
                .expect("read");
            assert_eq!(&head[..data.len()], &data[..]);
            assert!(
                head[data.len()..].iter().all(|&b| b == 0),
                "the old layer is gone"
            );
        }
    }

    #[test]
    fn acpi_once_vms_outnumber_the_cores() {
        assert!(!acpi_for_network(1, 2));
        assert!(!acpi_for_network(2, 2));
        assert!(acpi_for_network(3, 2));
        assert!(acpi_for_network(40, 2));
        assert!(!acpi_for_network(40, 64));
    }

    #[test]
    fn config_from_spec_keeps_nics_forwards_and_params() {
        let spec = spec_machine(
            "[machines.a]\n[machines.b]\nvlans = [1, 3]\nforward = [\"8081:80\"]\n\
             memory_mib = 128\ncpus = 2\nkernel_params = [\"x=1\"]\n",
        );
        let b = spec.machine("b").expect("machine b");
        let cfg = VmConfig::from_spec(b, Path::new("/k"), &image(), Accel::Tcg, None);
        assert_eq!(cfg.name, "b");
        assert_eq!(cfg.index, 2);
        assert_eq!((cfg.memory_mib, cfg.cpus), (128, 2));
        assert!(cfg.acpi, "more than one vCPU needs ACPI's tables");
        let a = spec.machine("a").expect("machine a");
        let one = VmConfig::from_spec(a, Path::new("/k"), &image(), Accel::Tcg, None);
        assert!(!one.acpi, "one vCPU boots with acpi=off");
        assert_eq!(cfg.kernel_params, ["x=1"]);
        assert_eq!(
            cfg.nics,
            [
                VmNic {
                    vlan: 1,
                    mac: Mac::for_nic(1, 2, 0)
                },
                VmNic {
                    vlan: 3,
                    mac: Mac::for_nic(3, 2, 1)
                }
            ]
        );
        assert_eq!(
            cfg.forwards,
            [Forward {
                host_port: 8081,
                guest_port: 80
            }]
        );
    }

    #[test]
    fn qemu_args_use_the_run_dir_and_switch_ports() {
        let spec = spec_machine("[machines.web]\nvlans = [2]\n");
        let web = spec.machine("web").expect("machine");
        let cfg = VmConfig::from_spec(web, Path::new("/k"), &image(), Accel::Tcg, None);
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let switch = Arc::new(Switch::start().expect("switch"));
        let vm = Vm::new(cfg, &run, Some(Arc::clone(&switch)), EventSink::none()).expect("vm");
        let args: Vec<String> = vm
            .qemu_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dir = run.path().display().to_string();
        assert!(args.contains(&format!(
            "dgram,id=net0,local.type=unix,local.path={dir}/web-nic0.sock,\
             remote.type=unix,remote.path={dir}/web-sw0.sock"
        )));
        // The NIC boots with its slot's MAC (the guest takes 52:54:00:02:01:00
        // from its layer), so that one saved guest is any machine's.
        assert!(
            args.contains(&"virtio-net-pci,netdev=net0,mac=02:00:00:00:00:00,romfile=".to_string()),
            "{args:?}"
        );
        assert!(
            run.file("web-sw0.sock").exists(),
            "switch port bound at creation"
        );
        assert_eq!(vm.boot_timeout(), Accel::Tcg.boot_timeout());
        let append = args
            .iter()
            .skip_while(|a| *a != "-append")
            .nth(1)
            .expect("-append");
        assert!(append.ends_with("panic=-1 acpi=off pci=nomsi"), "{append}");
        assert!(!args.contains(&"-bios".to_string()));
        assert!(!vm.is_running());
        assert!(matches!(
            vm.execute("true", Duration::from_secs(1)),
            Err(MachineError::NotRunning { .. })
        ));
        assert!(vm.console_lines(5).is_empty());
        vm.set_link(false).expect("link down");
        assert!(!switch.link_up(PortId(0)));
    }

    #[test]
    fn nics_without_a_switch_are_refused() {
        let spec = spec_machine("[machines.a]\n");
        let cfg = VmConfig::from_spec(
            spec.machine("a").expect("a"),
            Path::new("/k"),
            &image(),
            Accel::Tcg,
            None,
        );
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let err = Vm::new(cfg, &run, None, EventSink::none()).expect_err("no switch");
        assert!(matches!(err, MachineError::Link { .. }), "{err}");
    }

    #[test]
    fn missing_qemu_binary_is_a_spawn_error() {
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let mut cfg = VmConfig::new("q", Path::new("/k"), Path::new("/i"), Accel::Tcg);
        cfg.qemu = "/nonexistent/qemu-system-x86_64".into();
        let vm = Vm::new(cfg, &run, None, EventSink::none()).expect("vm");
        let err = vm.start().expect_err("no qemu");
        match err {
            MachineError::Spawn { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("expected Spawn, got {other}"),
        }
    }
}
