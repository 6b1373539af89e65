//! Namespace machines: the [`Machine`](crate::machine::Machine) backend
//! that runs a machine's root file system in its own user, PID, mount,
//! UTS, IPC and network namespaces instead of a VM. The user namespace maps
//! the machine's root to an unprivileged host id also when covnet is root
//! ([`ns::IdMap`]), so the machine holds no host privileges. No kernel boots, so the first shell answers in
//! milliseconds; the machine's NICs are ports of the same switch as the
//! VMs', so both kinds share one network.
//!
//! - `ns.rs`: the system calls (clone, mounts, netlink, packet sockets,
//!   ptys), all `unsafe` in one place;
//! - `rootfs.rs`: the root file system as a plan of steps;
//! - `guest.rs`: the generated guest files (same form as the VM image);
//! - `link.rs`: veth wiring messages (the switch reads and writes the
//!   veths' packet sockets itself);
//! - `tty.rs`: pty bridges for the control shell and the console;
//! - `machine.rs`: the [`Namespaces`] backend of the machine session
//!   ([`NamespaceMachine`] is a session over it).

pub mod guest;
pub mod link;
pub mod machine;
pub mod ns;
pub mod rootfs;
pub mod tty;
pub mod worker;

pub use machine::{NamespaceConfig, NamespaceMachine, Namespaces, NsNic};
