//! [`NamespaceMachine`]: a [`Session`] over the [`Namespaces`] backend.
//!
//! [`NamespaceMachine::new`] resolves the root file system inputs (busybox
//! applets, the programs' ELF closure, the machine's files) and attaches
//! one switch port per NIC. On start the backend clones the machine's init
//! into its namespaces, attaches the packet socket of each NIC's veth to
//! its switch port, starts the console bridges, and
//! hands the session the control pty's stream; the session owns the rest
//! of the lifecycle (see [`crate::machine::session`]). Killing
//! init ends every process of the machine: the guest's own power-off ends
//! the PID namespace, `crash` kills init at once.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::guest::{self, GuestFileData, NS_INIT_PATH};
use super::link::NicWiring;
use super::ns::{self, ChildConfig};
use super::rootfs::{self, Inputs};
use super::tty::TtyBridge;
use crate::image::closure::{self, SearchPaths};
use crate::image::initramfs::{applets_of, DEFAULT_BUSYBOX};
use crate::machine::process::OwnedChild;
use crate::machine::session::{self, lock, Backend, Control, Session, Setup, Sockets};
use crate::machine::terminal::{self, Terminal};
use crate::machine::{EventSink, MachineError};
use crate::net::switch::{PortId, Switch};
use crate::rundir::RunDir;

/// Default deadline for the first shell answer of a namespace machine.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the control channel gets beyond a command's own timeout to
/// kill it and confirm.
pub const CHANNEL_SLACK: Duration = Duration::from_secs(3);
/// Longest the guest's services get to exit after SIGTERM on shutdown.
pub const SERVICE_STOP_GRACE: Duration = session::SERVICE_STOP_GRACE;

/// A NIC of a namespace machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsNic {
    /// VLAN (switch) number.
    pub vlan: u8,
    /// The MAC of `eth<slot>`.
    pub mac: [u8; 6],
}

/// Everything a namespace machine is made of.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// Machine name: hostname, file names, messages.
    pub name: String,
    /// NICs in `eth<i>` order.
    pub nics: Vec<NsNic>,
    /// Host programs to install at their own path, with their ELF closure.
    pub programs: Vec<PathBuf>,
    /// Generated and spec files (see [`guest::files`]).
    pub files: Vec<GuestFileData>,
    /// Static busybox on the host.
    pub busybox: PathBuf,
    /// Deadline for the first shell answer.
    pub boot_timeout: Duration,
    /// Console log file; `None`: `<run dir>/<name>-console.log`.
    pub console_log: Option<PathBuf>,
}

impl NamespaceConfig {
    /// The config of `machine` of `spec`; `env` is exported to init,
    /// services and the control shell (e.g. `GCOV_PREFIX`).
    pub fn from_spec(
        spec: &crate::spec::Spec,
        machine: &crate::spec::Machine,
        env: &[(String, String)],
    ) -> Result<NamespaceConfig, MachineError> {
        let files = guest::files(spec, machine, env).map_err(|err| MachineError::Io {
            machine: machine.name.clone(),
            what: err.to_string(),
            source: err.source,
        })?;
        Ok(NamespaceConfig {
            name: machine.name.clone(),
            nics: machine
                .nics
                .iter()
                .map(|n| NsNic {
                    vlan: n.vlan,
                    mac: n.mac,
                })
                .collect(),
            programs: machine.programs.clone(),
            files,
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            console_log: None,
        })
    }
}

/// What runs while the machine is up.
struct Running {
    init: OwnedChild,
    /// Switch ports with this run's packet sockets attached.
    attached: Vec<PortId>,
    control: TtyBridge,
    console: TtyBridge,
}

/// The namespace backend: the machine's root file system inputs and, while
/// it runs, its init, attached switch ports and pty bridges.
pub struct Namespaces {
    cfg: NamespaceConfig,
    /// The switch of the machine's ports (named `<machine>/eth<i>`).
    switch: Option<Arc<Switch>>,
    inputs: Inputs,
    root: PathBuf,
    ids: ns::IdMap,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaces")
            .field("name", &self.cfg.name)
            .finish()
    }
}

/// A machine in its own namespaces on this host, sharing the VMs' switch.
pub type NamespaceMachine = Session<Namespaces>;

impl Session<Namespaces> {
    /// A stopped machine whose sockets, logs and root mount point live in
    /// `run_dir`, with one port per NIC on `switch`.
    pub fn new(
        cfg: NamespaceConfig,
        run_dir: &RunDir,
        switch: Option<Arc<Switch>>,
        events: EventSink,
    ) -> Result<NamespaceMachine, MachineError> {
        let switch_for_backend = switch.clone();
        let setup = Setup {
            name: &cfg.name,
            run_dir,
            vlans: cfg.nics.iter().map(|n| n.vlan).collect(),
            console_log: cfg.console_log.clone(),
            switch,
            events,
        };
        Session::create(setup, |_| {
            Namespaces::new(cfg.clone(), run_dir, switch_for_backend)
        })
    }

    /// True when the machine runs in a user namespace of its own: always,
    /// whether covnet is root or not (see [`NamespaceMachine::id_map`]).
    pub fn uses_user_namespace(&self) -> bool {
        true
    }

    /// How the machine's uids and gids map to the host's.
    pub fn id_map(&self) -> ns::IdMap {
        self.backend().ids
    }
}

impl Namespaces {
    fn new(
        cfg: NamespaceConfig,
        run_dir: &RunDir,
        switch: Option<Arc<Switch>>,
    ) -> Result<Namespaces, MachineError> {
        let name = cfg.name.clone();
        let io_err = |what: String, source: std::io::Error| MachineError::Io {
            machine: name.clone(),
            what,
            source,
        };
        let names = applets_of(&cfg.busybox)
            .map_err(|e| io_err(format!("read busybox {}", cfg.busybox.display()), e))?;
        if names.is_empty() {
            return Err(io_err(
                format!("find the applet list in {}", cfg.busybox.display()),
                std::io::Error::other("not a busybox binary"),
            ));
        }
        let host_files = closure::closure(&cfg.programs, &SearchPaths::host()).map_err(|err| {
            io_err(
                "resolve the programs' shared libraries".into(),
                std::io::Error::other(err.to_string()),
            )
        })?;
        let inputs = Inputs {
            busybox: cfg.busybox.clone(),
            applets: names,
            host_files,
            files: cfg.files.clone(),
            control_tty: PathBuf::new(),
            console_tty: None,
        };
        Ok(Namespaces {
            root: run_dir.file(&format!("{name}-root")),
            cfg,
            switch,
            inputs,
            ids: ns::IdMap::for_this_process(),
            running: Mutex::new(None),
        })
    }

    fn io_err(&self, what: &str, source: std::io::Error) -> MachineError {
        MachineError::Io {
            machine: self.cfg.name.clone(),
            what: what.to_owned(),
            source,
        }
    }

    fn cstring(&self, what: &str, bytes: &[u8]) -> Result<CString, MachineError> {
        CString::new(bytes).map_err(|_| {
            self.io_err(
                &format!("use {what}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "contains a NUL byte"),
            )
        })
    }

    /// The console pty's bridge into the session's console socket.
    fn console_bridge(
        &self,
        serial: &Path,
    ) -> Result<(TtyBridge, std::os::fd::OwnedFd, PathBuf), MachineError> {
        let (console_master, console_slave_path) =
            ns::open_pty().map_err(|e| self.io_err("open the console pty", e))?;
        let console_slave = ns::open_slave(&console_slave_path)
            .map_err(|e| self.io_err("open the console pty", e))?;
        ns::give_to_machine_root(&console_slave_path, self.ids)
            .map_err(|e| self.io_err("hand the console pty to the machine", e))?;
        let console_stream =
            UnixStream::connect(serial).map_err(|e| self.io_err("connect the console log", e))?;
        let bridge = TtyBridge::spawn(
            &format!("{}-console", self.cfg.name),
            console_master,
            console_stream,
            None,
        )
        .map_err(|e| self.io_err("start the console bridge", e))?;
        Ok((bridge, console_slave, console_slave_path))
    }

    /// Attaches the packet socket of each NIC's veth to the machine's
    /// switch port (the ports of `nics` NICs, in order); on failure
    /// detaches those already attached.
    fn attach(
        &self,
        packets: Vec<std::os::fd::OwnedFd>,
        nics: usize,
    ) -> Result<Vec<PortId>, MachineError> {
        let link_err = |detail: String| MachineError::Link {
            machine: self.cfg.name.clone(),
            up: true,
            detail,
        };
        let Some(switch) = &self.switch else {
            return Err(link_err(
                "the machine has NICs but no switch was given".into(),
            ));
        };
        let ports = switch.machine_ports(&self.cfg.name);
        if ports.len() != nics || packets.len() != nics {
            return Err(link_err(format!(
                "{} switch ports and {} packet sockets for {nics} NICs",
                ports.len(),
                packets.len()
            )));
        }
        let mut attached = Vec::new();
        for (packet, port) in packets.into_iter().zip(ports) {
            if let Err(err) = switch.attach_packet_socket(port, packet) {
                for &done in &attached {
                    switch.detach_packet_socket(done);
                }
                return Err(link_err(error_chain(&err)));
            }
            attached.push(port);
        }
        Ok(attached)
    }

    fn child_config(
        &self,
        control_tty: PathBuf,
        console_tty: PathBuf,
    ) -> Result<ChildConfig, MachineError> {
        let mut inputs = self.inputs.clone();
        inputs.control_tty = control_tty;
        inputs.console_tty = Some(console_tty);
        let steps = rootfs::plan(&self.root, &inputs)
            .map_err(|e| self.io_err("plan the root file system", std::io::Error::other(e)))?;
        let nics = self
            .cfg
            .nics
            .iter()
            .enumerate()
            .map(|(slot, nic)| {
                let slot = u8::try_from(slot).unwrap_or(u8::MAX);
                NicWiring::new(slot, nic.mac, 1 + 3 * u32::from(slot))
            })
            .collect();
        Ok(ChildConfig {
            steps,
            root: self.cstring("the root path", self.root.as_os_str().as_bytes())?,
            hostname: self.cstring("the machine name", self.cfg.name.as_bytes())?,
            nics,
            program: c"/bin/sh".to_owned(),
            argv: vec![
                c"/bin/sh".to_owned(),
                self.cstring("init", NS_INIT_PATH.as_bytes())?,
            ],
            env: vec![
                c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                c"HOME=/root".to_owned(),
                c"TERM=linux".to_owned(),
                c"COVNET_NAMESPACE=1".to_owned(),
            ],
        })
    }
}

impl Backend for Namespaces {
    const STARTING: &'static str = "starting";
    /// Host bytes per second assumed for copies through the control shell.
    const COPY_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;
    const EXIT_SETTLE: Duration = Duration::ZERO;

    fn kind(&self) -> String {
        match self.ids {
            ns::IdMap::Caller { .. } => "namespaces, unprivileged".into(),
            ns::IdMap::Range { .. } => "namespaces, private users".into(),
        }
    }

    fn boot_timeout(&self) -> Duration {
        self.cfg.boot_timeout
    }

    fn channel_slack(&self) -> Duration {
        CHANNEL_SLACK
    }

    fn launch(&self, sockets: &Sockets) -> Result<Control, MachineError> {
        match std::fs::create_dir(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io_err("create the root mount point", e)),
        }
        // Serial console: init's output goes to a pty bridged into the
        // session's console log.
        let (console_bridge, console_slave, console_tty) = self.console_bridge(&sockets.serial)?;

        // Control shell: a pty that is the guest's /dev/hvc0.
        let (ctl_master, ctl_slave_path) =
            ns::open_pty().map_err(|e| self.io_err("open the control pty", e))?;
        let hold =
            ns::open_slave(&ctl_slave_path).map_err(|e| self.io_err("open the control pty", e))?;
        ns::give_to_machine_root(&ctl_slave_path, self.ids)
            .map_err(|e| self.io_err("hand the control pty to the machine", e))?;
        let (host_end, bridge_end) =
            UnixStream::pair().map_err(|e| self.io_err("create the control socket pair", e))?;
        let control_bridge = TtyBridge::spawn(
            &format!("{}-control", self.cfg.name),
            ctl_master,
            bridge_end,
            Some(hold),
        )
        .map_err(|e| self.io_err("start the control bridge", e))?;

        let child = self.child_config(ctl_slave_path, console_tty)?;
        let spawned =
            ns::spawn(child, console_slave, self.ids).map_err(|err| MachineError::Spawn {
                machine: self.cfg.name.clone(),
                program: "the namespace machine's init".into(),
                source: std::io::Error::other(error_chain(&err)),
            })?;

        let mut running = Running {
            init: spawned.init,
            attached: Vec::new(),
            control: control_bridge,
            console: console_bridge,
        };
        if !spawned.packets.is_empty() {
            let attached = self.attach(spawned.packets, sockets.nics.len());
            match attached {
                Ok(ports) => running.attached = ports,
                Err(e) => {
                    let _ = running.init.kill();
                    return Err(e);
                }
            }
        }
        *lock(&self.running) = Some(running);
        Ok(Control::Stream(host_end))
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.running).as_ref().map(|r| r.init.pid())
    }

    /// Starts the session's `telnetd` inside the machine's namespaces
    /// (util-linux `nsenter` into init's user, mount, PID, network, UTS
    /// and IPC namespaces and root; as the machine's root) on one end of
    /// a socket pair: any number of sessions at once.
    fn open_terminal(&self, name: &str, term: &str) -> Result<Terminal, MachineError> {
        let pid = self.pid().ok_or_else(|| MachineError::NotRunning {
            machine: name.to_owned(),
            op: "open a terminal".into(),
        })?;
        let (host_end, guest_end) =
            UnixStream::pair().map_err(|e| self.io_err("create the terminal socket pair", e))?;
        let guest_out = guest_end
            .try_clone()
            .map_err(|e| self.io_err("create the terminal socket pair", e))?;
        let mut cmd = std::process::Command::new("nsenter");
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TERM", terminal::sanitize_term(term))
            .arg(format!("--target={pid}"))
            .args([
                "--user", "--mount", "--pid", "--net", "--uts", "--ipc", "--root", "--wd", "--",
            ])
            // busybox sits at its host path in the machine's root.
            .arg(&self.cfg.busybox)
            .args(terminal::TELNETD_ARGS)
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                guest_end,
            )))
            .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                guest_out,
            )))
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().map_err(|source| MachineError::Spawn {
            machine: name.to_owned(),
            program: "nsenter (util-linux; hint: run scripts/setup.sh)".into(),
            source,
        })?;
        Ok(Terminal::new(host_end, Some(child), None))
    }

    fn exited(&self) -> Option<Option<String>> {
        match lock(&self.running).as_mut().map(|r| r.init.try_wait()) {
            Some(Ok(Some(st))) => Some(Some(ns::describe_status(st.into_raw()))),
            Some(Ok(None)) => None,
            Some(Err(err)) => Some(Some(err.to_string())),
            None => Some(None),
        }
    }

    fn wait_exit(&self, timeout: Duration) -> Result<bool, String> {
        match lock(&self.running).as_mut() {
            Some(r) => r
                .init
                .wait_timeout(timeout)
                .map(|st| st.is_some())
                .map_err(|err| err.to_string()),
            None => Ok(true),
        }
    }

    fn kill_now(&self) {
        if let Some(r) = lock(&self.running).as_mut() {
            if let Err(err) = r.init.signal_group(libc::SIGKILL) {
                crate::diag::warn(err.to_string());
            }
        }
    }

    /// Kills init (which ends every process of the machine; a grace is of
    /// no use once the guest did not power off), detaches its packet
    /// sockets from the switch (closing them), stops the
    /// bridges, and removes the root mount point.
    fn stop(&self, _grace: Option<Duration>) -> Option<Result<String, String>> {
        let Some(mut r) = lock(&self.running).take() else {
            // A start that failed before init ran leaves the mount point.
            let _ = std::fs::remove_dir(&self.root);
            return None;
        };
        let ended = r
            .init
            .kill()
            .map(|st| ns::describe_status(st.into_raw()))
            .map_err(|err| err.to_string());
        if let Some(switch) = &self.switch {
            for &port in &r.attached {
                switch.detach_packet_socket(port);
            }
        }
        r.control.stop();
        r.console.stop();
        // The root was mounted only inside the machine's mount namespace;
        // on the host the mount point is an empty directory.
        let _ = std::fs::remove_dir(&self.root);
        Some(ended)
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}
