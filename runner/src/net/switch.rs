//! The virtual Ethernet switch: one learning switch per VLAN, inside the
//! runner, over unix datagram sockets in the run's private directory.
//!
//! Every NIC is a port. The switch binds one datagram socket per port
//! (QEMU's `-netdev dgram` sends frames to it) and sends frames to the
//! NIC's own socket. A namespace machine's NIC is instead attached as the
//! `AF_PACKET` socket on the far end of its veth
//! ([`Switch::attach_packet_socket`]): the switch reads the machine's
//! frames from it and writes frames for the machine into it, with no
//! thread or datagram between. Frames are switched by learned source MACs; unknown,
//! broadcast and multicast destinations are flooded to the VLAN's other
//! ports, except IPv6 multicast, which MLD snooping keeps to the ports that
//! listen (see [`crate::net::snoop`]). A port can be taken down and up (frames to and from it are
//! dropped while down), and each VLAN can be captured to a pcap file.
//!
//! Faults (see [`crate::net::faults`]): each port can get loss, delay, jitter
//! and a rate limit ([`Switch::set_link_faults`]); a port with faults sends
//! what its NIC transmits through a shaper task before switching it, and
//! what is switched to it through another before delivering it. Ports can
//! be split into partition groups ([`Switch::partition`]): a frame between
//! ports of different groups is dropped at switching time until
//! [`Switch::heal`].
//!
//! The switch runs on its own tokio runtime thread; its API is synchronous.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use crate::machine::namespace::ns;
use crate::net::faults::{Direction, FaultRng, LinkFaults, Shaper, Verdict, MAX_DELAYED_FRAMES};
use crate::net::packet;
use crate::net::snoop::{self, Forward, Snooping};

/// Largest frame accepted (jumbo frames are not supported; 64 KiB covers
/// virtio-net's largest without offloads plus slack).
const MAX_FRAME: usize = 65_536;

/// How long a port waits for a full receiver queue before dropping a frame.
const SEND_PATIENCE: Duration = Duration::from_millis(50);

/// A failure of the switch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchError {
    /// The switch's runtime could not be started.
    #[error("failed to start the switch runtime")]
    Runtime(#[source] io::Error),
    /// A port's socket could not be bound.
    #[error("failed to bind switch port `{port}` at {}", path.display())]
    Bind {
        /// Port name.
        port: String,
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A pcap file could not be created or written.
    #[error("failed to write pcap {}", path.display())]
    Pcap {
        /// The pcap path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// No such port.
    #[error("no switch port with id {0}")]
    NoPort(usize),
    /// A packet socket could not be attached to a port.
    #[error("failed to attach a packet socket to switch port `{port}`")]
    Attach {
        /// Port name.
        port: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Link faults out of range.
    #[error("invalid link faults")]
    Faults(#[source] crate::net::faults::FaultError),
}

/// Identifies a port of a [`Switch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub usize);

/// Counters of one switch, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames received from ports that were up.
    pub received: u64,
    /// Frame copies delivered to ports.
    pub delivered: u64,
    /// Frames or copies dropped (link down, runt frame, full or gone peer,
    /// and the fault drops counted below).
    pub dropped: u64,
    /// Of `dropped`: lost to a link's `loss`.
    pub lost: u64,
    /// Of `dropped`: a rate limiter's queue (or a delay stage) was full.
    pub overflowed: u64,
    /// Of `dropped`: between ports in different partition groups.
    pub partitioned: u64,
}

#[derive(Debug)]
struct Port {
    name: String,
    vlan: u8,
    up: bool,
    socket: Arc<UnixDatagram>,
    /// The NIC's socket, where frames for this port go (unless a packet
    /// socket is attached).
    peer: PathBuf,
    path: PathBuf,
    /// A namespace machine's packet socket, when attached.
    packet: Option<PacketLink>,
}

/// A packet socket attached to a port and the task reading it.
#[derive(Debug)]
struct PacketLink {
    fd: Arc<AsyncFd<OwnedFd>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Port {
    /// Where frames for this port go now.
    fn nic(&self) -> Nic {
        match &self.packet {
            Some(link) => Nic::Packet(Arc::clone(&link.fd)),
            None => Nic::Dgram(Arc::clone(&self.socket), self.peer.clone()),
        }
    }
}

/// Where frames for a port go.
enum Nic {
    /// A datagram to the NIC's socket (QEMU's `-netdev dgram`).
    Dgram(Arc<UnixDatagram>, PathBuf),
    /// Into a namespace machine's packet socket.
    Packet(Arc<AsyncFd<OwnedFd>>),
}

impl Nic {
    /// Delivers one frame; false when it was dropped.
    async fn deliver(&self, frame: &[u8]) -> bool {
        match self {
            Nic::Dgram(socket, peer) => send_patiently(socket, frame, peer).await,
            Nic::Packet(fd) => send_packet_patiently(fd, frame).await,
        }
    }
}

#[derive(Debug)]
struct Pcap {
    file: File,
    path: PathBuf,
}

/// The shapers of a port with faults: frames go in, the tasks release them.
#[derive(Debug)]
struct PortFaults {
    faults: LinkFaults,
    from_machine: mpsc::UnboundedSender<Vec<u8>>,
    to_machine: mpsc::UnboundedSender<Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    ports: Vec<Option<Port>>,
    /// Ports with faults.
    faults: HashMap<PortId, PortFaults>,
    /// Partition group per port (`None`: no partition). Ports not listed
    /// form one more group together.
    groups: Option<HashMap<PortId, usize>>,
    /// Seed of every fault PRNG.
    seed: u64,
    /// (vlan, mac) → port.
    macs: HashMap<(u8, [u8; 6]), PortId>,
    /// What MLD said about who listens to which IPv6 group.
    snooping: Snooping,
    pcaps: HashMap<u8, Pcap>,
    stats: SwitchStats,
}

impl State {
    /// The port `port`, if it exists (was added and not removed).
    fn port(&self, port: PortId) -> Option<&Port> {
        self.ports.get(port.0).and_then(Option::as_ref)
    }

    /// The port `port`, or [`SwitchError::NoPort`].
    fn port_mut(&mut self, port: PortId) -> Result<&mut Port, SwitchError> {
        self.ports
            .get_mut(port.0)
            .and_then(Option::as_mut)
            .ok_or(SwitchError::NoPort(port.0))
    }
}

/// The runner's switch for all VLANs of a run.
#[derive(Debug)]
pub struct Switch {
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Plain data: a panic elsewhere leaves it usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Switch {
    /// The switch's runtime, or an error once it is shut down.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, SwitchError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| SwitchError::Runtime(io::Error::other("switch is shut down")))
    }

    /// Starts a switch with no ports on its own runtime thread.
    pub fn start() -> Result<Switch, SwitchError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("covnet-switch")
            .enable_all()
            .build()
            .map_err(SwitchError::Runtime)?;
        let state = State {
            seed: fresh_seed(),
            ..State::default()
        };
        Ok(Switch {
            runtime: Some(runtime),
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Adds a port on `vlan`: binds `port_socket` (where the NIC sends) and
    /// forwards frames to `nic_socket` (where the NIC listens). The port
    /// starts up.
    pub fn add_port(
        &self,
        name: &str,
        vlan: u8,
        port_socket: &Path,
        nic_socket: &Path,
    ) -> Result<PortId, SwitchError> {
        let bind_err = |source| SwitchError::Bind {
            port: name.to_owned(),
            path: port_socket.to_owned(),
            source,
        };
        let runtime = self.runtime()?;
        match std::fs::remove_file(port_socket) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(bind_err(err)),
        }
        let std_socket = std::os::unix::net::UnixDatagram::bind(port_socket).map_err(bind_err)?;
        crate::rundir::restrict_socket(port_socket).map_err(bind_err)?;
        std_socket.set_nonblocking(true).map_err(bind_err)?;
        let socket = {
            let _guard = runtime.enter();
            Arc::new(UnixDatagram::from_std(std_socket).map_err(bind_err)?)
        };
        let id = {
            let mut state = lock(&self.state);
            let id = PortId(state.ports.len());
            state.ports.push(Some(Port {
                name: name.to_owned(),
                vlan,
                up: true,
                socket: Arc::clone(&socket),
                peer: nic_socket.to_owned(),
                path: port_socket.to_owned(),
                packet: None,
            }));
            id
        };
        runtime.spawn(port_task(Arc::clone(&self.state), id, socket));
        Ok(id)
    }

    /// Attaches `packet`, an `AF_PACKET` socket bound to the far end of a
    /// namespace machine's veth, to `port` (replacing an earlier one):
    /// from now on the switch reads the machine's frames from it and
    /// writes the port's frames into it, instead of the NIC socket.
    pub fn attach_packet_socket(&self, port: PortId, packet: OwnedFd) -> Result<(), SwitchError> {
        let runtime = self.runtime()?;
        let mut state = lock(&self.state);
        let entry = state.port_mut(port)?;
        let attach_err = |source| SwitchError::Attach {
            port: entry.name.clone(),
            source,
        };
        ns::set_nonblocking(packet.as_fd()).map_err(attach_err)?;
        let fd = {
            let _guard = runtime.enter();
            // SAFETY: the `OwnedFd` is open, and the `AsyncFd` owns it (so
            // it stays open and the same file) until the `AsyncFd` drops.
            let registered =
                unsafe { AsyncFd::register_with_interest(packet, tokio::io::Interest::READABLE) };
            Arc::new(registered.map_err(|e| attach_err(e.into_parts().1))?)
        };
        let reader = runtime.spawn(packet_task(Arc::clone(&self.state), port, Arc::clone(&fd)));
        if let Some(old) = entry.packet.replace(PacketLink { fd, reader }) {
            old.reader.abort();
        }
        Ok(())
    }

    /// Detaches and closes `port`'s packet socket, if it has one: its
    /// frames go to its NIC socket again.
    pub fn detach_packet_socket(&self, port: PortId) {
        let link = lock(&self.state)
            .port_mut(port)
            .ok()
            .and_then(|p| p.packet.take());
        let Some(PacketLink { fd, reader }) = link else {
            return;
        };
        reader.abort();
        // Closing a packet socket waits for an RCU grace period
        // (`synchronize_net` in the kernel's `packet_release`). Wait here
        // for the aborted reader to drop its handle, so that the close
        // happens in this thread and not on the switch's, one machine
        // after another: machines stop in parallel, and so their grace
        // periods overlap (250 closes in a row took 2.5 s).
        if let (Some(runtime), Err(_)) = (&self.runtime, tokio::runtime::Handle::try_current()) {
            let _ = runtime.block_on(reader);
        }
        drop(fd);
    }

    /// Takes a port's link up or down.
    pub fn set_link(&self, port: PortId, up: bool) -> Result<(), SwitchError> {
        let mut state = lock(&self.state);
        let entry = state.port_mut(port)?;
        entry.up = up;
        if !up {
            // MLD reports sent while down are lost: from now on the port
            // gets every multicast frame.
            state.snooping.forget(port);
        }
        Ok(())
    }

    /// True when the port exists and is up.
    pub fn link_up(&self, port: PortId) -> bool {
        lock(&self.state).port(port).is_some_and(|p| p.up)
    }

    /// The port's name, as given to [`Switch::add_port`].
    pub fn port_name(&self, port: PortId) -> Option<String> {
        lock(&self.state).port(port).map(|p| p.name.clone())
    }

    /// Starts capturing every frame received on `vlan` into a new pcap file
    /// at `path` (replacing an earlier capture of that VLAN).
    pub fn capture(&self, vlan: u8, path: &Path) -> Result<(), SwitchError> {
        let pcap_err = |source| SwitchError::Pcap {
            path: path.to_owned(),
            source,
        };
        let mut file = File::create(path).map_err(pcap_err)?;
        file.write_all(&pcap_global_header()).map_err(pcap_err)?;
        lock(&self.state).pcaps.insert(
            vlan,
            Pcap {
                file,
                path: path.to_owned(),
            },
        );
        Ok(())
    }

    /// The ports of machine `machine`: those named `<machine>` or
    /// `<machine>/<nic>` (both backends name their ports
    /// `<machine>/eth<i>`), in the order they were added.
    pub fn machine_ports(&self, machine: &str) -> Vec<PortId> {
        lock(&self.state)
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let name = &p.as_ref()?.name;
                let rest = name.strip_prefix(machine)?;
                (rest.is_empty() || rest.starts_with('/')).then_some(PortId(i))
            })
            .collect()
    }

    /// The seed of the fault PRNGs (random per switch unless set).
    pub fn fault_seed(&self) -> u64 {
        lock(&self.state).seed
    }

    /// Sets the seed of the fault PRNGs; links configured afterwards draw
    /// their loss and jitter from it, so a run repeats given its seed.
    pub fn set_fault_seed(&self, seed: u64) {
        lock(&self.state).seed = seed;
    }

    /// Gives a port's link `faults`, replacing earlier ones (a perfect
    /// [`LinkFaults`] clears them). Frames already delayed are still
    /// delivered at their time.
    pub fn set_link_faults(&self, port: PortId, faults: LinkFaults) -> Result<(), SwitchError> {
        faults.validate().map_err(SwitchError::Faults)?;
        let runtime = self.runtime()?;
        let mut state = lock(&self.state);
        if state.port(port).is_none() {
            return Err(SwitchError::NoPort(port.0));
        }
        if faults.is_perfect() {
            state.faults.remove(&port);
            return Ok(());
        }
        if faults.loss > 0.0 || faults.rate.is_some() {
            // The link may lose MLD reports: see `set_link`.
            state.snooping.forget(port);
        }
        let now = std::time::Instant::now();
        let seed = state.seed;
        let shaper = |dir| {
            let seed = FaultRng::for_link(seed, port.0, dir).next_u64();
            Shaper::new(faults, seed, now)
        };
        let (from_tx, from_rx) = mpsc::unbounded_channel();
        let (to_tx, to_rx) = mpsc::unbounded_channel();
        runtime.spawn(shaper_task(
            Arc::clone(&self.state),
            from_rx,
            shaper(Direction::FromMachine),
            port,
            Release::Switch,
        ));
        runtime.spawn(shaper_task(
            Arc::clone(&self.state),
            to_rx,
            shaper(Direction::ToMachine),
            port,
            Release::Nic,
        ));
        state.faults.insert(
            port,
            PortFaults {
                faults,
                from_machine: from_tx,
                to_machine: to_tx,
            },
        );
        Ok(())
    }

    /// A port's link faults (perfect when none are set).
    pub fn link_faults(&self, port: PortId) -> LinkFaults {
        lock(&self.state)
            .faults
            .get(&port)
            .map(|f| f.faults)
            .unwrap_or_default()
    }

    /// Splits the ports into `groups`; ports in no group form one more
    /// group together. Frames between groups are dropped until
    /// [`Switch::heal`] (or another partition replaces this one).
    pub fn partition(&self, groups: &[Vec<PortId>]) -> Result<(), SwitchError> {
        let mut state = lock(&self.state);
        let mut map = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for &port in group {
                if state.port(port).is_none() {
                    return Err(SwitchError::NoPort(port.0));
                }
                map.insert(port, g);
            }
        }
        state.groups = Some(map);
        Ok(())
    }

    /// Ends a partition: every port can reach every other again.
    pub fn heal(&self) {
        lock(&self.state).groups = None;
    }

    /// The switch's counters so far.
    pub fn stats(&self) -> SwitchStats {
        lock(&self.state).stats
    }

    /// Stops all ports, closes captures and removes the port sockets.
    pub fn shutdown(mut self) -> Result<(), SwitchError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), SwitchError> {
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so it is safe from any context.
            runtime.shutdown_background();
        }
        let mut state = lock(&self.state);
        for port in state.ports.iter_mut().filter_map(Option::take) {
            if let Some(link) = port.packet {
                link.reader.abort();
            }
            let _ = std::fs::remove_file(&port.path);
        }
        let mut first_err = None;
        for (_, mut pcap) in state.pcaps.drain() {
            if let Err(source) = pcap.file.flush() {
                first_err.get_or_insert(SwitchError::Pcap {
                    path: pcap.path,
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            crate::diag::warn(err.to_string());
        }
    }
}

/// Where one received frame goes.
fn destinations(state: &mut State, ingress: PortId, frame: &[u8]) -> Vec<Nic> {
    let Some(port) = state.port(ingress) else {
        return Vec::new();
    };
    let vlan = port.vlan;
    if !port.up {
        state.stats.dropped += 1;
        return Vec::new();
    }
    let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
        state.stats.dropped += 1;
        return Vec::new();
    };
    state.stats.received += 1;
    if let Some(pcap) = state.pcaps.get_mut(&vlan) {
        if let Err(err) = pcap.file.write_all(&pcap_record(frame, SystemTime::now())) {
            crate::diag::warn(format!(
                "failed to write pcap {}: {err}; capture stopped",
                pcap.path.display()
            ));
            state.pcaps.remove(&vlan);
        }
    }
    // Learn the sender (multicast source MACs are bogus: don't).
    if src[0] & 1 == 0 {
        state.macs.insert((vlan, src), ingress);
    }
    let targets: Vec<PortId> = match state.macs.get(&(vlan, dst)) {
        Some(&port) if dst[0] & 1 == 0 => {
            if port == ingress {
                Vec::new()
            } else {
                vec![port]
            }
        }
        _ => {
            let forward = if dst[0] & 1 == 1 && dst != [0xff; 6] {
                let class = snoop::classify(frame);
                state.snooping.learn(vlan, ingress, &class);
                state.snooping.forward(vlan, &class)
            } else {
                Forward::Flood
            };
            let on_vlan =
                |p: &PortId| *p != ingress && state.port(*p).is_some_and(|port| port.vlan == vlan);
            match forward {
                Forward::Flood => (0..state.ports.len()).map(PortId).filter(on_vlan).collect(),
                Forward::Only(ports) => ports.into_iter().filter(on_vlan).collect(),
            }
        }
    };
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        if partitioned(state, ingress, target) {
            state.stats.dropped += 1;
            state.stats.partitioned += 1;
            continue;
        }
        match state.port(target) {
            Some(port) if port.up => match state.faults.get(&target) {
                // Faults on the target's link: its shaper delivers.
                Some(f) => {
                    if f.to_machine.send(frame.to_vec()).is_err() {
                        state.stats.dropped += 1;
                    }
                }
                None => out.push(port.nic()),
            },
            _ => state.stats.dropped += 1,
        }
    }
    out
}

async fn port_task(state: Arc<Mutex<State>>, id: PortId, socket: Arc<UnixDatagram>) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        receive(&state, id, buf.get(..n).unwrap_or(&[])).await;
    }
}

/// Reads the frames of a namespace machine's NIC from its packet socket.
async fn packet_task(state: Arc<Mutex<State>>, id: PortId, fd: Arc<AsyncFd<OwnedFd>>) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return;
        };
        match ready.try_io(|fd| packet::recv_frame(fd.get_ref().as_fd(), &mut buf)) {
            Ok(Ok(Some(n))) => receive(&state, id, buf.get(..n).unwrap_or(&[])).await,
            // What the switch itself wrote into the veth.
            Ok(Ok(None)) => {}
            Ok(Err(err)) => match err.raw_os_error() {
                Some(libc::EBADF | libc::ENOTSOCK) => return,
                // A pending socket error (ENETDOWN while the machine's end
                // was down): reading reported and cleared it. Never spin.
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Nothing left: wait for readiness again.
            Err(_would_block) => {}
        }
    }
}

/// Takes one frame received on port `id` into the switch.
async fn receive(state: &Mutex<State>, id: PortId, frame: &[u8]) {
    let shaper = lock(state).faults.get(&id).map(|f| f.from_machine.clone());
    match shaper {
        // Faults on this port's link: switched when its shaper says.
        Some(tx) => {
            if tx.send(frame.to_vec()).is_err() {
                lock(state).stats.dropped += 1;
            }
        }
        None => forward(state, id, frame).await,
    }
}

/// Switches one frame received on `id` and sends it to its destinations.
async fn forward(state: &Mutex<State>, id: PortId, frame: &[u8]) {
    let targets = destinations(&mut lock(state), id, frame);
    for nic in targets {
        let delivered = nic.deliver(frame).await;
        let mut st = lock(state);
        if delivered {
            st.stats.delivered += 1;
        } else {
            st.stats.dropped += 1;
        }
    }
}

/// True when a partition separates ports `a` and `b`.
fn partitioned(state: &State, a: PortId, b: PortId) -> bool {
    let Some(groups) = &state.groups else {
        return false;
    };
    let group = |p| groups.get(&p).copied().unwrap_or(usize::MAX);
    group(a) != group(b)
}

/// A seed that differs between runs (time and pid); runs that must repeat
/// set theirs with [`Switch::set_fault_seed`].
fn fresh_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    FaultRng::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// Where a shaper's frames go when their time comes.
enum Release {
    /// Into the switch, as if just received on the port.
    Switch,
    /// Out to the port's NIC.
    Nic,
}

/// One direction of a port with faults: admits each frame through the
/// [`Shaper`] and releases it at its time, in order. Ends when its sender
/// is gone (faults changed or cleared) and every held frame is out.
async fn shaper_task(
    state: Arc<Mutex<State>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    mut shaper: Shaper,
    port: PortId,
    release: Release,
) {
    let mut held: std::collections::VecDeque<(std::time::Instant, Vec<u8>)> =
        std::collections::VecDeque::new();
    let mut open = true;
    while open || !held.is_empty() {
        let next = held.front().map(|(at, _)| *at);
        tokio::select! {
            frame = rx.recv(), if open => match frame {
                None => open = false,
                Some(frame) => {
                    let verdict = shaper.admit(std::time::Instant::now(), frame.len());
                    let mut st = lock(&state);
                    match verdict {
                        Verdict::Deliver(_) if held.len() >= MAX_DELAYED_FRAMES => {
                            st.stats.dropped += 1;
                            st.stats.overflowed += 1;
                        }
                        Verdict::Deliver(at) => held.push_back((at, frame)),
                        Verdict::Lost => {
                            st.stats.dropped += 1;
                            st.stats.lost += 1;
                        }
                        Verdict::Overflow => {
                            st.stats.dropped += 1;
                            st.stats.overflowed += 1;
                        }
                    }
                }
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(
                next.unwrap_or_else(std::time::Instant::now),
            )), if next.is_some() => {
                let now = std::time::Instant::now();
                while held.front().is_some_and(|(at, _)| *at <= now) {
                    let Some((_, frame)) = held.pop_front() else { break };
                    match &release {
                        Release::Switch => forward(&state, port, &frame).await,
                        Release::Nic => {
                            let nic = lock(&state)
                                .port(port)
                                .filter(|p| p.up)
                                .map(Port::nic);
                            let delivered = match nic {
                                Some(nic) => nic.deliver(&frame).await,
                                None => false,
                            };
                            let mut st = lock(&state);
                            if delivered {
                                st.stats.delivered += 1;
                            } else {
                                st.stats.dropped += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Sends one datagram; a full receiver queue is retried briefly, a missing
/// receiver (NIC not bound yet, VM down) drops the frame.
async fn send_patiently(sock: &UnixDatagram, frame: &[u8], peer: &Path) -> bool {
    retry_briefly(
        || sock.try_send_to(frame, peer).map(drop),
        |err| err.kind() == io::ErrorKind::WouldBlock,
    )
    .await
}

/// Writes one frame into a packet socket; a full send buffer is retried
/// briefly, any other failure drops the frame.
async fn send_packet_patiently(fd: &AsyncFd<OwnedFd>, frame: &[u8]) -> bool {
    retry_briefly(
        || packet::send_frame(fd.get_ref().as_fd(), frame),
        |err| matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)),
    )
    .await
}

/// Runs `send` until it succeeds (true), fails otherwise than `full` says
/// (false), or has been full for [`SEND_PATIENCE`] (false), polling every
/// millisecond.
async fn retry_briefly(
    mut send: impl FnMut() -> io::Result<()>,
    full: impl Fn(&io::Error) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + SEND_PATIENCE;
    loop {
        match send() {
            Ok(()) => return true,
            Err(err) if full(&err) => {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => return false,
        }
    }
}

fn mac_at(frame: &[u8], offset: usize) -> Option<[u8; 6]> {
    frame.get(offset..offset + 6)?.try_into().ok()
}

/// The pcap file header: microsecond timestamps, Ethernet link type.
pub fn pcap_global_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    let fields: [&[u8]; 7] = [
        &0xa1b2_c3d4u32.to_le_bytes(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
        &0i32.to_le_bytes(),
        &0u32.to_le_bytes(),
        &(MAX_FRAME as u32).to_le_bytes(),
        &1u32.to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(dst) = h.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
        at += field.len();
    }
    h
}

/// One pcap record (header + frame) stamped with `time`.
pub fn pcap_record(frame: &[u8], time: SystemTime) -> Vec<u8> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let mut rec = Vec::with_capacity(16 + frame.len());
    rec.extend_from_slice(
        &u32::try_from(since.as_secs())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    rec.extend_from_slice(&since.subsec_micros().to_le_bytes());
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(frame);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::snoop::test_frames;
    use std::os::unix::net::UnixDatagram as StdDatagram;

    const WAIT: Duration = Duration::from_secs(10);
    const QUIET: Duration = Duration::from_millis(300);

    /// A fake NIC: its own bound socket, sending to its switch port.
    struct Nic {
        sock: StdDatagram,
        port_path: PathBuf,
        mac: [u8; 6],
    }

    impl Nic {
        fn send_to(&self, dst: [u8; 6], payload: &[u8]) {
            let mut frame = Vec::new();
            frame.extend_from_slice(&dst);
            frame.extend_from_slice(&self.mac);
            frame.extend_from_slice(&[0x88, 0xb5]);
            frame.extend_from_slice(payload);
            self.sock
                .send_to(&frame, &self.port_path)
                .expect("send frame");
        }

        /// Sends a whole frame (its own MACs and EtherType).
        fn send_raw(&self, frame: &[u8]) {
            self.sock
                .send_to(frame, &self.port_path)
                .expect("send frame");
        }

        /// Receives one whole frame.
        fn recv_raw(&self, timeout: Duration) -> Option<Vec<u8>> {
            self.sock.set_read_timeout(Some(timeout)).expect("timeout");
            let mut buf = [0u8; 2048];
            let n = self.sock.recv(&mut buf).ok()?;
            Some(buf.get(..n)?.to_vec())
        }

        fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
            self.sock.set_read_timeout(Some(timeout)).expect("timeout");
            let mut buf = [0u8; 2048];
            let n = self.sock.recv(&mut buf).ok()?;
            Some(buf.get(14..n)?.to_vec())
        }
    }

    fn nic(sw: &Switch, dir: &Path, name: &str, vlan: u8, last: u8) -> (Nic, PortId) {
        let nic_path = dir.join(format!("{name}.nic"));
        let port_path = dir.join(format!("{name}.port"));
        let sock = StdDatagram::bind(&nic_path).expect("bind nic");
        let id = sw
            .add_port(name, vlan, &port_path, &nic_path)
            .expect("add port");
        (
            Nic {
                sock,
                port_path,
                mac: [0x52, 0x54, 0, vlan, last, 0],
            },
            id,
        )
    }

    /// A switch with one NIC per entry of `vlans` (the i-th, from 1, on
    /// VLAN `vlans[i - 1]` with a MAC ending in i), and the directory of
    /// their sockets, to be kept as long as they are used.
    fn lan<const N: usize>(vlans: [u8; N]) -> (tempfile::TempDir, Switch, [(Nic, PortId); N]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sw = Switch::start().expect("switch");
        let mut last = 0u8;
        let nics = vlans.map(|vlan| {
            last += 1;
            nic(&sw, dir.path(), &format!("n{last}"), vlan, last)
        });
        (dir, sw, nics)
    }

    const BROADCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn floods_unknown_then_switches_learned_unicast() {
        let (_dir, sw, [(a, _), (b, _), (c, _), (other, _)]) = lan([1, 1, 1, 2]);

        a.send_to(BROADCAST, b"hello all");
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"hello all"[..]));
        assert_eq!(c.recv(WAIT).as_deref(), Some(&b"hello all"[..]));
        assert_eq!(other.recv(QUIET), None, "VLANs are separate");
        assert_eq!(a.recv(QUIET), None, "no echo to the sender");

        // b answers a: a's MAC was learned, so only a gets it.
        b.send_to(a.mac, b"to a");
        assert_eq!(a.recv(WAIT).as_deref(), Some(&b"to a"[..]));
        assert_eq!(
            c.recv(QUIET),
            None,
            "unicast to a learned MAC is not flooded"
        );
        // Unknown unicast floods.
        c.send_to([0x52, 0x54, 0, 1, 99, 0], b"who");
        assert_eq!(a.recv(WAIT).as_deref(), Some(&b"who"[..]));
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"who"[..]));
        sw.shutdown().expect("shutdown");
    }

    #[test]
    fn link_down_blocks_both_directions() {
        let (_dir, sw, [(a, _), (b, b_port)]) = lan([1, 1]);
        sw.set_link(b_port, false).expect("down");
        assert!(!sw.link_up(b_port));
        a.send_to(BROADCAST, b"lost");
        assert_eq!(b.recv(QUIET), None);
        b.send_to(BROADCAST, b"lost too");
        assert_eq!(a.recv(QUIET), None);
        sw.set_link(b_port, true).expect("up");
        a.send_to(BROADCAST, b"back");
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"back"[..]));
        assert!(sw.stats().dropped >= 2);
        assert!(matches!(
            sw.set_link(PortId(99), true),
            Err(SwitchError::NoPort(99))
        ));
    }

    #[test]
    fn runt_frames_are_dropped() {
        let (_dir, _sw, [(a, _), (b, _)]) = lan([1, 1]);
        a.sock.send_to(&[1, 2, 3], &a.port_path).expect("send");
        assert_eq!(b.recv(QUIET), None);
    }

    #[test]
    fn pcap_has_header_and_one_record_per_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sw = Switch::start().expect("switch");
        let pcap = dir.path().join("vlan1.pcap");
        sw.capture(1, &pcap).expect("capture");
        let (a, _) = nic(&sw, dir.path(), "a", 1, 1);
        let (b, _) = nic(&sw, dir.path(), "b", 1, 2);
        a.send_to(BROADCAST, b"one");
        assert!(b.recv(WAIT).is_some());
        b.send_to(a.mac, b"two!");
        assert!(a.recv(WAIT).is_some());
        sw.shutdown().expect("shutdown");
        let bytes = std::fs::read(&pcap).expect("pcap");
        assert_eq!(bytes.get(..24), Some(&pcap_global_header()[..]));
        // Parse records: (incl_len at +8) then data.
        let mut at = 24;
        let mut payloads = Vec::new();
        while at < bytes.len() {
            let len_bytes: [u8; 4] = bytes
                .get(at + 8..at + 12)
                .and_then(|s| s.try_into().ok())
                .expect("record header");
            let len = u32::from_le_bytes(len_bytes) as usize;
            let frame = bytes.get(at + 16..at + 16 + len).expect("record data");
            payloads.push(frame.get(14..).expect("payload").to_vec());
            at += 16 + len;
        }
        assert_eq!(payloads, [b"one".to_vec(), b"two!".to_vec()]);
    }

    fn faults(loss: f64, delay_ms: u64, jitter_ms: u64, rate: Option<u64>) -> LinkFaults {
        LinkFaults {
            loss,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            rate: rate.and_then(std::num::NonZeroU64::new),
        }
    }

    /// Receives frames until `count` arrived (each within `WAIT`), then
    /// checks that nothing more comes; returns their sequence numbers.
    fn recv_seqs(nic: &Nic, count: usize) -> Vec<u32> {
        let mut seqs = Vec::with_capacity(count);
        while seqs.len() < count {
            let payload = nic
                .recv(WAIT)
                .unwrap_or_else(|| panic!("only {} of {count} frames arrived", seqs.len()));
            let head: [u8; 4] = payload
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .expect("sequence number");
            seqs.push(u32::from_be_bytes(head));
        }
        assert_eq!(nic.recv(QUIET), None, "more than {count} frames arrived");
        seqs
    }

    #[test]
    fn loss_is_exactly_what_the_seed_says_and_order_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sw = Switch::start().expect("switch");
        sw.set_fault_seed(0x5EED);
        let (a, a_port) = nic(&sw, dir.path(), "a", 1, 1);
        let (b, _) = nic(&sw, dir.path(), "b", 1, 2);
        // Let the switch learn b, so a's frames go to b only.
        b.send_to(BROADCAST, b"hi");
        assert!(a.recv(WAIT).is_some());
        let f = faults(10.0, 0, 0, None);
        sw.set_link_faults(a_port, f).expect("faults");
        assert_eq!(sw.link_faults(a_port), f);
        let b_mac = b.mac;
        const N: u32 = 2000;
        // The same draws, replayed: a's frames leave through its
        // from-machine shaper seeded from (seed, port, direction).
        let seed = FaultRng::for_link(0x5EED, a_port.0, Direction::FromMachine).next_u64();
        let now = std::time::Instant::now();
        let mut replay = Shaper::new(f, seed, now);
        let expect_lost = (0..N)
            .filter(|_| replay.admit(now, 64) == Verdict::Lost)
            .count();
        assert!(
            (150..=250).contains(&expect_lost),
            "10% of {N} is far from {expect_lost}"
        );
        // b reads while a sends, so b's socket queue never overflows.
        let reader = std::thread::spawn(move || recv_seqs(&b, N as usize - expect_lost));
        for seq in 0..N {
            a.send_to(b_mac, &seq.to_be_bytes());
        }
        let seqs = reader.join().expect("reader");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "reordered: {seqs:?}");
        assert_eq!(sw.stats().lost, expect_lost as u64);
        assert_eq!(sw.stats().dropped, expect_lost as u64, "{:?}", sw.stats());
        sw.shutdown().expect("shutdown");
    }

    #[test]
    fn full_loss_drops_both_directions_and_clearing_restores() {
        let (_dir, sw, [(a, a_port), (b, _)]) = lan([1, 1]);
        sw.set_link_faults(a_port, faults(100.0, 0, 0, None))
            .expect("faults");
        a.send_to(BROADCAST, b"lost");
        b.send_to(BROADCAST, b"lost too");
        assert_eq!(b.recv(QUIET), None);
        assert_eq!(a.recv(QUIET), None);
        assert_eq!(sw.stats().lost, 2);
        sw.set_link_faults(a_port, LinkFaults::default())
            .expect("clear");
        a.send_to(BROADCAST, b"back");
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"back"[..]));
        assert!(matches!(
            sw.set_link_faults(a_port, faults(101.0, 0, 0, None)),
            Err(SwitchError::Faults(_))
        ));
        assert!(matches!(
            sw.set_link_faults(PortId(42), faults(1.0, 0, 0, None)),
            Err(SwitchError::NoPort(42))
        ));
    }

    #[test]
    fn delay_applies_per_direction_and_jitter_never_reorders() {
        let (_dir, sw, [(a, _), (b, b_port)]) = lan([1, 1]);
        // Faults on b's link: frames *to* b are delayed too.
        sw.set_link_faults(b_port, faults(0.0, 100, 0, None))
            .expect("faults");
        let sent = std::time::Instant::now();
        a.send_to(BROADCAST, &0u32.to_be_bytes());
        assert_eq!(recv_seqs(&b, 1), [0]);
        assert!(sent.elapsed() >= Duration::from_millis(100));
        // b answers: from-machine delay on its link.
        let sent = std::time::Instant::now();
        b.send_to(a.mac, b"pong");
        assert!(a.recv(WAIT).is_some());
        assert!(sent.elapsed() >= Duration::from_millis(100));
        // Jitter larger than the gaps between frames would reorder them;
        // the link keeps them in order.
        sw.set_link_faults(b_port, faults(0.0, 20, 15, None))
            .expect("jitter");
        for seq in 0..200u32 {
            a.send_to(b.mac, &seq.to_be_bytes());
        }
        let seqs = recv_seqs(&b, 200);
        assert_eq!(seqs, (0..200).collect::<Vec<u32>>());
    }

    #[test]
    fn rate_limit_paces_frames_to_the_rate() {
        let (_dir, sw, [(a, a_port), (b, _)]) = lan([1, 1]);
        // 800 kbit/s = 100 kB/s; 30 frames of 1000 bytes fit the queue.
        sw.set_link_faults(a_port, faults(0.0, 0, 0, Some(800_000)))
            .expect("rate");
        let payload = vec![0u8; 1000 - 14];
        let started = std::time::Instant::now();
        for seq in 0..30u32 {
            let mut p = seq.to_be_bytes().to_vec();
            p.extend_from_slice(&payload[4..]);
            a.send_to(BROADCAST, &p);
        }
        let seqs = recv_seqs(&b, 30);
        // Lower bound only: all but the burst wait for tokens.
        let bound = (30.0 * 1000.0 - crate::net::faults::BURST_BYTES as f64) * 8.0 / 800_000.0;
        assert!(
            started.elapsed().as_secs_f64() >= bound,
            "{:?} < {bound}s",
            started.elapsed()
        );
        assert_eq!(seqs, (0..30).collect::<Vec<u32>>());
        assert_eq!(sw.stats().overflowed, 0);
    }

    #[test]
    fn partition_drops_between_groups_until_heal() {
        let (_dir, sw, [(a, a_port), (b, b_port), (c, _)]) = lan([1, 1, 1]);
        // c is in no group: it joins the implicit "rest" group.
        sw.partition(&[vec![a_port], vec![b_port]])
            .expect("partition");
        a.send_to(BROADCAST, b"from a");
        assert_eq!(b.recv(QUIET), None);
        assert_eq!(c.recv(QUIET), None);
        b.send_to(BROADCAST, b"from b");
        assert_eq!(a.recv(QUIET), None);
        assert_eq!(c.recv(QUIET), None);
        assert_eq!(sw.stats().partitioned, 4);
        sw.partition(&[vec![a_port, b_port]]).expect("regroup");
        a.send_to(BROADCAST, b"a to b");
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"a to b"[..]));
        assert_eq!(c.recv(QUIET), None);
        sw.heal();
        c.send_to(BROADCAST, b"healed");
        assert_eq!(a.recv(WAIT).as_deref(), Some(&b"healed"[..]));
        assert_eq!(b.recv(WAIT).as_deref(), Some(&b"healed"[..]));
        assert!(matches!(
            sw.partition(&[vec![PortId(7)]]),
            Err(SwitchError::NoPort(7))
        ));
    }

    #[test]
    fn machine_ports_match_the_machine_prefix_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sw = Switch::start().expect("switch");
        let p = |n: &str| {
            sw.add_port(
                n,
                1,
                &dir.path().join(format!("{}.port", n.replace('/', "_"))),
                &dir.path().join("x.nic"),
            )
            .expect("port")
        };
        let (a0, _, a1, _) = (p("a/eth0"), p("ab/eth0"), p("a/eth1"), p("b"));
        assert_eq!(sw.machine_ports("a"), [a0, a1]);
        assert_eq!(sw.machine_ports("b"), [PortId(3)]);
        assert!(sw.machine_ports("c").is_empty());
        let seed = sw.fault_seed();
        sw.set_fault_seed(seed ^ 1);
        assert_eq!(sw.fault_seed(), seed ^ 1);
    }

    #[test]
    fn port_socket_is_replaced_and_removed_on_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join("p.port");
        std::fs::write(&stale, b"stale").expect("write");
        let sw = Switch::start().expect("switch");
        sw.add_port("p", 1, &stale, &dir.path().join("p.nic"))
            .expect("add over a stale file");
        assert_eq!(sw.port_name(PortId(0)).as_deref(), Some("p"));
        sw.shutdown().expect("shutdown");
        assert!(!stale.exists());
    }

    /// An IPv6 frame from `from` to multicast group `group` carrying
    /// `icmp` (ICMPv6; `hbh`: behind a router-alert hop-by-hop header, as
    /// MLD is).
    fn ipv6_multicast(from: &Nic, group: &str, hbh: bool, icmp: &[u8]) -> Vec<u8> {
        let ext = if hbh {
            vec![test_frames::router_alert()]
        } else {
            Vec::new()
        };
        test_frames::ipv6(
            from.mac,
            test_frames::group(group),
            &ext,
            58, /* ICMPv6 */
            icmp,
        )
    }

    /// An MLDv2 report from `from`: `join` or leave `group`.
    fn mld_report(from: &Nic, group: &str, join: bool) -> Vec<u8> {
        let mut m = vec![143, 0, 0, 0, 0, 0, 0, 1, if join { 4 } else { 3 }, 0, 0, 0];
        m.extend_from_slice(&test_frames::group(group));
        ipv6_multicast(from, "ff02::16", true, &m)
    }

    /// A neighbour solicitation from `from` to solicited-node `group`.
    fn solicitation(from: &Nic, group: &str) -> Vec<u8> {
        ipv6_multicast(from, group, false, &[135, 0, 0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn mld_snooping_keeps_ipv6_multicast_to_listeners() {
        let (_dir, sw, [(a, _), (b, _), (c, _), (x, _)]) = lan([1, 1, 1, 2]);
        let b_group = "ff02::1:ff00:2";
        // Nobody has reported b's group yet: flooded, like a bridge.
        let ns = solicitation(&a, b_group);
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(ns.clone()));
        // b reports it: the report goes to no port (no multicast router).
        let report = mld_report(&b, b_group, true);
        b.send_raw(&report);
        until_registered(&sw, 1, b_group);
        assert_eq!(a.recv_raw(QUIET), None, "reports go to router ports only");
        assert_eq!(c.recv_raw(QUIET), None);
        // Now the solicitation reaches b alone; other VLANs never see it.
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(QUIET), None, "c is not in b's group");
        assert_eq!(x.recv_raw(QUIET), None);
        // All-nodes is flooded.
        let ra = ipv6_multicast(&a, "ff02::1", false, &[134, 0, 0, 0, 0, 0, 0, 0]);
        a.send_raw(&ra);
        assert_eq!(b.recv_raw(WAIT), Some(ra.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(ra));
        // c sends a query: its port is a router port, which gets reports
        // and every group's frames.
        let mut query = vec![130, 0, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(&[0; 16]);
        let query = ipv6_multicast(&c, "ff02::1", true, &query);
        c.send_raw(&query);
        assert_eq!(a.recv_raw(WAIT), Some(query.clone()));
        assert_eq!(b.recv_raw(WAIT), Some(query));
        let report_a = mld_report(&a, "ff05::1:3", true);
        a.send_raw(&report_a);
        assert_eq!(c.recv_raw(WAIT), Some(report_a));
        assert_eq!(b.recv_raw(QUIET), None);
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(ns.clone()));
        // b leaves: its group is unregistered again, so flooded.
        b.send_raw(&mld_report(&b, b_group, false));
        assert_eq!(c.recv_raw(WAIT).map(|f| f.len()), Some(report.len()));
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(ns));
        sw.shutdown().expect("shutdown");
    }

    /// Waits until the switch knows a member of `group` on `vlan` (a
    /// report and a frame sent from different ports race each other).
    fn until_registered(sw: &Switch, vlan: u8, group: &str) {
        let group = group.parse::<std::net::Ipv6Addr>().expect("group");
        let class = snoop::Class::Data(group.octets());
        let deadline = std::time::Instant::now() + WAIT;
        while lock(&sw.state).snooping.forward(vlan, &class) == Forward::Flood {
            assert!(
                std::time::Instant::now() < deadline,
                "{group} never registered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_port_that_was_down_gets_all_multicast() {
        let (_dir, sw, [(a, _), (b, _), (c, c_port), (d, d_port)]) = lan([1, 1, 1, 1]);
        let group = "ff02::1:ff00:2";
        b.send_raw(&mld_report(&b, group, true));
        until_registered(&sw, 1, group);
        let ns = solicitation(&a, group);
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(QUIET), None);
        assert_eq!(d.recv_raw(QUIET), None);
        // c's link goes down and up: whatever it reported meanwhile was
        // lost, so it gets every group's frames from now on. So does d,
        // whose link may lose frames.
        sw.set_link(c_port, false).expect("down");
        sw.set_link(c_port, true).expect("up");
        sw.set_link_faults(d_port, faults(0.0, 0, 0, Some(100_000_000)))
            .expect("faults");
        a.send_raw(&ns);
        assert_eq!(b.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(ns.clone()));
        assert_eq!(d.recv_raw(WAIT), Some(ns.clone()));
        // The others still get only what they listen to.
        let other = solicitation(&a, "ff02::1:ff00:9");
        let report = mld_report(&b, "ff02::1:ff00:9", true);
        b.send_raw(&report);
        // Reports go to the unknown ports as to routers.
        assert_eq!(c.recv_raw(WAIT), Some(report.clone()));
        assert_eq!(d.recv_raw(WAIT), Some(report));
        until_registered(&sw, 1, "ff02::1:ff00:9");
        a.send_raw(&other);
        assert_eq!(b.recv_raw(WAIT), Some(other.clone()));
        assert_eq!(c.recv_raw(WAIT), Some(other.clone()));
        assert_eq!(d.recv_raw(WAIT), Some(other));
        assert_eq!(a.recv_raw(QUIET), None);
        sw.shutdown().expect("shutdown");
    }
}
