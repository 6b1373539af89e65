//! Namespace machines: the [`Machine`](crate::machine::Machine) backend
//! that runs a machine's root file system in its own PID, mount, UTS, IPC
//! and network namespaces (plus a user namespace when covnet is not root)
//! instead of a VM. No kernel boots, so the first shell answers in
//! milliseconds; the machine's NICs are ports of the same switch as the
//! VMs', so both kinds share one network.

pub mod link;
pub mod ns;
pub mod rootfs;
