//! QEMU command lines, built from small pure functions.
//!
//! Each device or feature is one function from typed inputs to
//! `Vec<OsString>`, unit-tested on its exact argv; [`command_line`] puts
//! them together for one VM. Nothing here touches the system.
//!
//! Channels (all unix sockets in the run's 0700 directory):
//! - serial `ttyS0`: QEMU connects as a client to a socket the runner
//!   listens on, so no early byte is lost (the runner logs it);
//! - control channel: a `virtserialport` named `covnet.control` whose
//!   chardev is a socket QEMU serves (`server=on,wait=off`), the runner
//!   connects. Not a `virtconsole` (`hvc0`): QEMU silently drops console
//!   output when the socket is momentarily full, while a plain port is
//!   flow-controlled, so no byte is ever lost;
//! - one virtio-net NIC per VLAN over `-netdev dgram` unix datagram
//!   sockets: QEMU binds the NIC's socket, and sends to the switch port's;
//! - QMP on a socket QEMU serves;
//! - an optional user-mode NIC, restricted, only for host port forwards.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::machine::terminal::TERMINAL_PORT_NAME;
use crate::machine::vm::accel::Accel;

/// The fast-boot firmware shipped by Debian's `qemu-system-data`.
pub const QBOOT_ROM: &str = "/usr/share/qemu/qboot.rom";

/// Kernel parameters every guest gets (see docs on guest boot): serial
/// console, fast-boot flags, and reboot on panic (QEMU then exits, as it
/// runs with `-no-reboot`).
pub const BASE_KERNEL_PARAMS: &[&str] = &[
    "console=ttyS0",
    "quiet",
    "cryptomgr.notests",
    "no_timer_check",
    "tsc=reliable",
    "random.trust_cpu=on",
    "panic=-1",
];

/// The address the user-mode NIC gives the guest (QEMU's slirp default).
pub const FORWARD_GUEST_ADDR: &str = "10.0.2.15";

/// A deterministic MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC of a VLAN NIC: `52:54:00:<vlan>:<machine index>:<nic index>`.
    pub fn for_nic(vlan: u8, machine_index: u8, nic_index: u8) -> Mac {
        Mac([0x52, 0x54, 0x00, vlan, machine_index, nic_index])
    }

    /// The MAC a VM's NIC boots with, the same for every machine:
    /// `02:00:00:00:00:<slot>` (locally administered). A saved guest thus
    /// fits every machine with as many NICs; init gives each NIC its
    /// machine's own MAC ([`Mac::for_nic`]) after the release, before the
    /// link is up, so no frame ever carries a slot MAC.
    pub fn for_slot(slot: u8) -> Mac {
        Mac([0x02, 0, 0, 0, 0, slot])
    }

    /// The MAC of a machine's user-mode forward NIC:
    /// `52:54:00:ff:<machine index>:ff` (VLAN 255 is reserved for it).
    pub fn for_forward(machine_index: u8) -> Mac {
        Mac([0x52, 0x54, 0x00, 0xff, machine_index, 0xff])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// One VLAN NIC of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// QEMU id suffix and guest order (`eth<index>`).
    pub index: usize,
    /// Its MAC address.
    pub mac: Mac,
    /// The socket QEMU binds for this NIC.
    pub local: PathBuf,
    /// The switch port's socket QEMU sends frames to.
    pub remote: PathBuf,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Port on 127.0.0.1 on the host.
    pub host_port: u16,
    /// Port in the guest.
    pub guest_port: u16,
}

/// Everything needed to build one VM's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// Accelerator.
    pub accel: Accel,
    /// Firmware to pass with `-bios` (qboot when installed), or the default.
    pub bios: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// Initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// The full kernel command line.
    pub append: String,
    /// Socket the runner listens on for the serial console.
    pub serial_socket: PathBuf,
    /// Socket QEMU serves for the control port.
    pub control_socket: PathBuf,
    /// Socket QEMU serves for the terminal port (`covnet shell`).
    pub terminal_socket: PathBuf,
    /// Socket QEMU serves for QMP.
    pub qmp_socket: PathBuf,
    /// VLAN NICs in guest order.
    pub nics: Vec<Nic>,
    /// Host forwards; when non-empty a user-mode NIC with this MAC is added
    /// after the VLAN NICs.
    pub forwards: Vec<Forward>,
    /// MAC of the forward NIC.
    pub forward_mac: Mac,
    /// The machine's layer, attached as a read-only virtio disk.
    pub layer: Option<PathBuf>,
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Builds `key=<path>` as an `OsString` without lossy conversion.
fn keyed_path(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.as_os_str());
    s.push(suffix);
    s
}

/// Arguments every VM gets: no default devices or config files, no
/// display, the `pc` machine, and exit instead of reboot.
pub fn base_args() -> Vec<OsString> {
    os(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-machine",
        "pc",
        "-no-reboot",
    ])
}

/// `-bios <path>` when a firmware is given.
pub fn bios_args(bios: Option<&Path>) -> Vec<OsString> {
    match bios {
        Some(path) => vec!["-bios".into(), path.into()],
        None => Vec::new(),
    }
}

/// The qboot firmware if `rom` exists (pass [`QBOOT_ROM`]).
pub fn find_qboot(rom: &Path) -> Option<PathBuf> {
    rom.is_file().then(|| rom.to_owned())
}

/// The accelerator: KVM with the host CPU model, or multi-threaded TCG.
pub fn accel_args(accel: Accel) -> Vec<OsString> {
    match accel {
        Accel::Kvm => os(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => os(&["-accel", "tcg,thread=multi"]),
    }
}

/// Guest RAM.
pub fn memory_args(mib: u32) -> Vec<OsString> {
    vec!["-m".into(), format!("{mib}M").into()]
}

/// Virtual CPUs.
pub fn smp_args(cpus: u32) -> Vec<OsString> {
    vec!["-smp".into(), cpus.to_string().into()]
}

/// The machine's layer (see `image::initramfs::Image`) as a read-only
/// virtio disk (`/dev/vda` in the guest): the guest reads it in large
/// requests, where the control port's host-to-guest path moves 4 KiB per
/// interrupt (about 20 MB/s under TCG). Commas in the path are doubled, as
/// QEMU's option syntax wants.
pub fn layer_args(layer: &Path) -> Vec<OsString> {
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    let mut drive = b"file=".to_vec();
    for &b in layer.as_os_str().as_bytes() {
        if b == b',' {
            drive.push(b',');
        }
        drive.push(b);
    }
    drive.extend_from_slice(b",format=raw,if=none,id=layer,readonly=on");
    vec![
        "-drive".into(),
        OsString::from_vec(drive),
        "-device".into(),
        "virtio-blk-pci,drive=layer".into(),
    ]
}

/// Direct kernel boot.
pub fn kernel_args(kernel: &Path, initrd: &Path, append: &str) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
        "-append".into(),
        append.into(),
    ]
}

/// The kernel command line: [`BASE_KERNEL_PARAMS`] then `extra` in order.
pub fn kernel_cmdline<S: AsRef<str>>(extra: &[S]) -> String {
    BASE_KERNEL_PARAMS
        .iter()
        .copied()
        .chain(extra.iter().map(AsRef::as_ref))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Serial port `ttyS0` on a socket chardev QEMU connects to (the runner
/// listens on `socket` before spawning QEMU).
pub fn serial_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        keyed_path("socket,id=serial0,path=", socket, ""),
        "-serial".into(),
        "chardev:serial0".into(),
    ]
}

/// The guest-visible name of the control port
/// (`/sys/class/virtio-ports/*/name`).
pub const CONTROL_PORT_NAME: &str = "covnet.control";

/// The control channel: a virtio-serial bus with one flow-controlled
/// `virtserialport` ([`CONTROL_PORT_NAME`], port 1, so `/dev/vport0p1` in
/// the guest) on a socket chardev QEMU serves without waiting for a client.
pub fn control_port_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-device".into(),
        "virtio-serial-pci,id=vser0".into(),
        "-chardev".into(),
        keyed_path("socket,id=control,path=", socket, ",server=on,wait=off"),
        "-device".into(),
        format!("virtserialport,bus=vser0.0,nr=1,chardev=control,name={CONTROL_PORT_NAME}").into(),
    ]
}

/// The terminal port of `covnet shell` sessions: a second
/// `virtserialport` ([`TERMINAL_PORT_NAME`], port 2) on the same bus, on a
/// socket chardev QEMU serves; the guest sees the host connect and
/// disconnect (see [`crate::machine::terminal`]).
pub fn terminal_port_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        keyed_path("socket,id=terminal,path=", socket, ",server=on,wait=off"),
        "-device".into(),
        format!("virtserialport,bus=vser0.0,nr=2,chardev=terminal,name={TERMINAL_PORT_NAME}")
            .into(),
    ]
}

/// QMP on a socket QEMU serves.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-qmp".into(),
        keyed_path("unix:", socket, ",server=on,wait=off"),
    ]
}

/// One VLAN NIC: a unix datagram netdev (bound at `local`, sending to
/// `remote`) and a virtio-net device without option ROM.
pub fn nic_args(nic: &Nic) -> Vec<OsString> {
    let id = nic.index;
    let mut netdev = OsString::from(format!("dgram,id=net{id},local.type=unix,local.path="));
    netdev.push(nic.local.as_os_str());
    netdev.push(",remote.type=unix,remote.path=");
    netdev.push(nic.remote.as_os_str());
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!("virtio-net-pci,netdev=net{id},mac={},romfile=", nic.mac).into(),
    ]
}

/// The user-mode NIC for host forwards: restricted (no route to the host
/// network), each forward bound to 127.0.0.1 only. Empty without forwards.
pub fn forward_args(forwards: &[Forward], mac: Mac) -> Vec<OsString> {
    if forwards.is_empty() {
        return Vec::new();
    }
    let mut netdev = String::from("user,id=fwd,restrict=on");
    for fwd in forwards {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-:{}",
            fwd.host_port, fwd.guest_port
        ));
    }
    vec![
        "-netdev".into(),
        netdev.into(),
        "-device".into(),
        format!("virtio-net-pci,netdev=fwd,mac={mac},romfile=").into(),
    ]
}

/// The whole argv (without the program) for one VM.
pub fn command_line(cfg: &QemuConfig) -> Vec<OsString> {
    let mut args = base_args();
    args.extend(bios_args(cfg.bios.as_deref()));
    args.extend(accel_args(cfg.accel));
    args.extend(memory_args(cfg.memory_mib));
    args.extend(smp_args(cfg.cpus));
    args.extend(kernel_args(&cfg.kernel, &cfg.initrd, &cfg.append));
    args.extend(serial_args(&cfg.serial_socket));
    args.extend(control_port_args(&cfg.control_socket));
    args.extend(terminal_port_args(&cfg.terminal_socket));
    args.extend(qmp_args(&cfg.qmp_socket));
    for nic in &cfg.nics {
        args.extend(nic_args(nic));
    }
    args.extend(forward_args(&cfg.forwards, cfg.forward_mac));
    if let Some(layer) = &cfg.layer {
        args.extend(layer_args(layer));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(args: &[OsString]) -> Vec<&str> {
        args.iter()
            .map(|a| a.to_str().expect("utf-8 arg"))
            .collect()
    }

    #[test]
    fn base_starts_from_nodefaults() {
        assert_eq!(
            strs(&base_args()),
            [
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-machine",
                "pc",
                "-no-reboot"
            ]
        );
    }

    #[test]
    fn bios_only_when_given() {
        assert!(bios_args(None).is_empty());
        assert_eq!(
            strs(&bios_args(Some(Path::new("/usr/share/qemu/qboot.rom")))),
            ["-bios", "/usr/share/qemu/qboot.rom"]
        );
        assert_eq!(find_qboot(Path::new("/nonexistent/qboot.rom")), None);
    }

    #[test]
    fn accel_variants() {
        assert_eq!(
            strs(&accel_args(Accel::Tcg)),
            ["-accel", "tcg,thread=multi"]
        );
        assert_eq!(
            strs(&accel_args(Accel::Kvm)),
            ["-accel", "kvm", "-cpu", "host"]
        );
    }

    #[test]
    fn memory_smp_kernel() {
        assert_eq!(strs(&memory_args(256)), ["-m", "256M"]);
        assert_eq!(strs(&smp_args(1)), ["-smp", "1"]);
        assert_eq!(
            strs(&kernel_args(
                Path::new("/boot/vmlinuz"),
                Path::new("/r/i.cpio"),
                "console=ttyS0 x=1"
            )),
            [
                "-kernel",
                "/boot/vmlinuz",
                "-initrd",
                "/r/i.cpio",
                "-append",
                "console=ttyS0 x=1"
            ]
        );
    }

    #[test]
    fn cmdline_appends_extra_params() {
        assert_eq!(
            kernel_cmdline(&["covnet.x=1", "acpi=off"]),
            "console=ttyS0 quiet cryptomgr.notests no_timer_check tsc=reliable \
             random.trust_cpu=on panic=-1 covnet.x=1 acpi=off"
        );
        assert!(kernel_cmdline::<&str>(&[]).ends_with("panic=-1"));
    }

    #[test]
    fn consoles_and_qmp() {
        assert_eq!(
            strs(&serial_args(Path::new("/r/a-serial.sock"))),
            [
                "-chardev",
                "socket,id=serial0,path=/r/a-serial.sock",
                "-serial",
                "chardev:serial0"
            ]
        );
        assert_eq!(
            strs(&control_port_args(Path::new("/r/a-ctl.sock"))),
            [
                "-device",
                "virtio-serial-pci,id=vser0",
                "-chardev",
                "socket,id=control,path=/r/a-ctl.sock,server=on,wait=off",
                "-device",
                "virtserialport,bus=vser0.0,nr=1,chardev=control,name=covnet.control"
            ]
        );
        assert_eq!(
            strs(&qmp_args(Path::new("/r/a-qmp.sock"))),
            ["-qmp", "unix:/r/a-qmp.sock,server=on,wait=off"]
        );
    }

    #[test]
    fn nic_is_dgram_over_unix_sockets_without_rom() {
        let nic = Nic {
            index: 1,
            mac: Mac::for_nic(2, 3, 1),
            local: "/r/a-nic1.sock".into(),
            remote: "/r/sw2-a-1.sock".into(),
        };
        assert_eq!(
            strs(&nic_args(&nic)),
            [
                "-netdev",
                "dgram,id=net1,local.type=unix,local.path=/r/a-nic1.sock,\
                 remote.type=unix,remote.path=/r/sw2-a-1.sock",
                "-device",
                "virtio-net-pci,netdev=net1,mac=52:54:00:02:03:01,romfile="
            ]
        );
    }

    #[test]
    fn macs_are_deterministic() {
        assert_eq!(Mac::for_nic(1, 2, 0).to_string(), "52:54:00:01:02:00");
        assert_eq!(Mac::for_forward(10).to_string(), "52:54:00:ff:0a:ff");
    }

    #[test]
    fn forwards_are_loopback_only_and_restricted() {
        assert!(forward_args(&[], Mac::for_forward(1)).is_empty());
        let fwds = [
            Forward {
                host_port: 8081,
                guest_port: 80,
            },
            Forward {
                host_port: 2222,
                guest_port: 22,
            },
        ];
        assert_eq!(
            strs(&forward_args(&fwds, Mac::for_forward(1))),
            [
                "-netdev",
                "user,id=fwd,restrict=on,hostfwd=tcp:127.0.0.1:8081-:80,hostfwd=tcp:127.0.0.1:2222-:22",
                "-device",
                "virtio-net-pci,netdev=fwd,mac=52:54:00:ff:01:ff,romfile="
            ]
        );
    }

    #[test]
    fn command_line_composes_in_order() {
        let cfg = QemuConfig {
            accel: Accel::Tcg,
            bios: Some(QBOOT_ROM.into()),
            memory_mib: 128,
            cpus: 1,
            kernel: "/k".into(),
            initrd: "/i".into(),
            append: "console=ttyS0".into(),
            serial_socket: "/r/s".into(),
            control_socket: "/r/c".into(),
            terminal_socket: "/r/t".into(),
            qmp_socket: "/r/q".into(),
            nics: vec![Nic {
                index: 0,
                mac: Mac::for_nic(1, 1, 0),
                local: "/r/n0".into(),
                remote: "/r/p0".into(),
            }],
            forwards: vec![],
            forward_mac: Mac::for_forward(1),
            layer: None,
        };
        let args = command_line(&cfg);
        let joined = strs(&args).join(" ");
        assert_eq!(
            joined,
            "-nodefaults -no-user-config -display none -machine pc -no-reboot \
             -bios /usr/share/qemu/qboot.rom -accel tcg,thread=multi -m 128M -smp 1 \
             -kernel /k -initrd /i -append console=ttyS0 \
             -chardev socket,id=serial0,path=/r/s -serial chardev:serial0 \
             -device virtio-serial-pci,id=vser0 \
             -chardev socket,id=control,path=/r/c,server=on,wait=off \
             -device virtserialport,bus=vser0.0,nr=1,chardev=control,name=covnet.control \
             -chardev socket,id=terminal,path=/r/t,server=on,wait=off \
             -device virtserialport,bus=vser0.0,nr=2,chardev=terminal,name=covnet.terminal \
             -qmp unix:/r/q,server=on,wait=off \
             -netdev dgram,id=net0,local.type=unix,local.path=/r/n0,remote.type=unix,remote.path=/r/p0 \
             -device virtio-net-pci,netdev=net0,mac=52:54:00:01:01:00,romfile="
        );
    }
}
