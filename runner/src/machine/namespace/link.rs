//! A namespace machine's network links: veth pairs whose machine end is
//! `eth<i>` and whose far end is read and written by the runner's switch
//! through an `AF_PACKET` socket attached to the VLAN's switch port
//! ([`crate::net::switch::Switch::attach_packet_socket`]).
//!
//! The veth pairs are created by the machine's first process: `eth<i>` in
//! the machine's network namespace and its peer, directly, in a second
//! network namespace of the machine's own (the "link" namespace, owned by
//! the machine's user namespace). Nothing touches the host's
//! network: when the machine dies its namespace takes `eth<i>` and so the
//! whole pair with it, and the link namespace goes when the runner closes
//! its packet sockets.
//!
//! This module builds the rtnetlink requests (pure, unit-tested); the
//! system calls are in `ns.rs`.

/// `RTM_NEWLINK`.
const RTM_NEWLINK: u16 = 16;
/// `RTM_SETLINK`.
const RTM_SETLINK: u16 = 19;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFF_UP: u32 = 0x1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Size of `struct ifinfomsg`.
#[cfg(test)]
const IFINFOMSG_LEN: usize = 16;
/// Longest interface name (without the NUL), `IFNAMSIZ - 1`.
pub const MAX_IFNAME: usize = 15;

/// An interface name as the kernel's `char[IFNAMSIZ]`.
pub type IfName = [u8; MAX_IFNAME + 1];

/// `name` as a NUL-padded `IfName`, or `None` when it is empty, too long or
/// contains a NUL or `/`.
pub fn ifname(name: &str) -> Option<IfName> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IFNAME || bytes.iter().any(|&b| b == 0 || b == b'/') {
        return None;
    }
    let mut out = [0u8; MAX_IFNAME + 1];
    out.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(out)
}

/// Everything the machine's first process needs to wire one NIC, prepared
/// on the host side so the child only sends bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicWiring {
    /// The machine-side name, `eth<i>`.
    pub eth: IfName,
    /// The runner-side name (in the link namespace).
    pub peer: IfName,
    /// `RTM_NEWLINK` creating the pair with the machine's MAC, the peer in
    /// the namespace whose fd goes at `peer_ns_fd_at`.
    pub create: Vec<u8>,
    /// Offset of the peer's 4-byte namespace fd in `create`.
    pub peer_ns_fd_at: usize,
    /// `RTM_SETLINK` taking the peer up.
    pub peer_up: Vec<u8>,
}

impl NicWiring {
    /// The wiring of NIC `slot` with address `mac`, using netlink sequence
    /// numbers from `seq` upwards.
    pub fn new(slot: u8, mac: [u8; 6], seq: u32) -> NicWiring {
        let eth = format!("eth{slot}");
        let peer = format!("covnet{slot}");
        let (create, peer_ns_fd_at) = create_veth(seq, &eth, mac, &peer);
        NicWiring {
            eth: ifname(&eth).unwrap_or([0; MAX_IFNAME + 1]),
            peer: ifname(&peer).unwrap_or([0; MAX_IFNAME + 1]),
            create,
            peer_ns_fd_at,
            peer_up: set_up(seq.wrapping_add(1), &peer),
        }
    }
}

/// A netlink message under construction.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, ifi_flags: u32, ifi_change: u32) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        Msg::ifinfo(&mut b, ifi_flags, ifi_change);
        Msg(b)
    }

    /// Appends a `struct ifinfomsg` for any device (index 0: by name).
    fn ifinfo(b: &mut Vec<u8>, flags: u32, change: u32) {
        b.push(0); // AF_UNSPEC
        b.push(0);
        b.extend_from_slice(&0u16.to_ne_bytes()); // ARPHRD (any)
        b.extend_from_slice(&0i32.to_ne_bytes()); // index
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> usize {
        let len = 4 + data.len();
        self.0
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        let at = self.0.len();
        self.0.extend_from_slice(data);
        self.pad();
        at
    }

    fn str_attr(&mut self, kind: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data);
    }

    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = u16::try_from(self.0.len() - at).unwrap_or(u16::MAX);
        if let Some(slot) = self.0.get_mut(at..at + 2) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        if let Some(slot) = self.0.get_mut(0..4) {
            slot.copy_from_slice(&len.to_ne_bytes());
        }
        self.0
    }
}

/// `ip link add <name> address <mac> type veth peer name <peer> netns
/// <fd>`: the message and the offset of the peer's namespace fd.
pub fn create_veth(seq: u32, name: &str, mac: [u8; 6], peer: &str) -> (Vec<u8>, usize) {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        0,
        0,
    );
    m.str_attr(IFLA_IFNAME, name);
    m.attr(IFLA_ADDRESS, &mac);
    let info = m.begin(IFLA_LINKINFO);
    m.str_attr(IFLA_INFO_KIND, "veth");
    let data = m.begin(IFLA_INFO_DATA);
    let peer_at = m.begin(VETH_INFO_PEER);
    Msg::ifinfo(&mut m.0, 0, 0);
    m.str_attr(IFLA_IFNAME, peer);
    let fd_at = m.attr(IFLA_NET_NS_FD, &0u32.to_ne_bytes());
    m.end(peer_at);
    m.end(data);
    m.end(info);
    (m.finish(), fd_at)
}

/// `ip link set <name> up`.
pub fn set_up(seq: u32, name: &str) -> Vec<u8> {
    let mut m = Msg::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, IFF_UP, IFF_UP);
    m.str_attr(IFLA_IFNAME, name);
    m.finish()
}

/// The outcome of a netlink acknowledgement in `reply`: `Ok(())`, or the
/// kernel's errno (`EPROTO` when the reply is not an ack).
pub fn parse_ack(reply: &[u8]) -> Result<(), i32> {
    let kind = reply
        .get(4..6)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes);
    if kind != Some(NLMSG_ERROR) {
        return Err(libc::EPROTO);
    }
    let code = reply
        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or(libc::EPROTO)?;
    if code == 0 {
        Ok(())
    } else {
        Err(code.saturating_neg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(&ifname("eth0").unwrap()[..5], b"eth0\0");
        assert!(ifname("").is_none());
        assert!(ifname("a-very-long-name").is_none());
        assert!(ifname("a/b").is_none());
        assert!(ifname("fifteen-chars-x").is_some());
    }

    #[test]
    fn create_veth_layout() {
        let (m, fd_at) = create_veth(7, "eth0", [0x52, 0x54, 0, 1, 2, 0], "covnet0");
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(
            u16_at(&m, 6),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(m.len() % 4, 0);
        // First attribute: IFLA_IFNAME "eth0\0" (len 9, padded to 12).
        let a = NLMSG_HDRLEN + IFINFOMSG_LEN;
        assert_eq!(u16_at(&m, a), 9);
        assert_eq!(u16_at(&m, a + 2), IFLA_IFNAME);
        assert_eq!(&m[a + 4..a + 9], b"eth0\0");
        // Then the MAC.
        assert_eq!(u16_at(&m, a + 12), 10);
        assert_eq!(u16_at(&m, a + 14), IFLA_ADDRESS);
        assert_eq!(&m[a + 16..a + 22], &[0x52, 0x54, 0, 1, 2, 0]);
        // Then IFLA_LINKINFO spanning the rest of the message.
        let li = a + 24;
        assert_eq!(u16_at(&m, li + 2), IFLA_LINKINFO);
        assert_eq!(li + usize::from(u16_at(&m, li)), m.len());
        assert_eq!(&m[li + 8..li + 13], b"veth\0");
        // The peer's name, then its namespace fd, end the message.
        assert_eq!(fd_at + 4, m.len());
        assert_eq!(u16_at(&m, fd_at - 2), IFLA_NET_NS_FD);
        assert_eq!(u16_at(&m, fd_at - 4), 8);
        let name = &m[fd_at - 16..fd_at - 4];
        assert_eq!(u16_at(name, 0), 12);
        assert_eq!(u16_at(name, 2), IFLA_IFNAME);
        assert_eq!(&name[4..12], b"covnet0\0");
    }

    #[test]
    fn set_up_sets_flag_and_change() {
        let m = set_up(1, "covnet0");
        let flags = u32::from_ne_bytes(m[24..28].try_into().unwrap());
        let change = u32::from_ne_bytes(m[28..32].try_into().unwrap());
        assert_eq!((flags, change), (IFF_UP, IFF_UP));
    }

    #[test]
    fn acks_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_ack(&ack), Ok(()));
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(parse_ack(&ack), Err(libc::EEXIST));
        assert_eq!(parse_ack(&ack[..10]), Err(libc::EPROTO));
        assert_eq!(parse_ack(&[]), Err(libc::EPROTO));
        let mut other = ack.clone();
        other[4..6].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(parse_ack(&other), Err(libc::EPROTO));
    }

    #[test]
    fn wiring_names() {
        let w = NicWiring::new(1, [0x52, 0x54, 0, 1, 1, 1], 10);
        assert_eq!(&w.eth[..5], b"eth1\0");
        assert_eq!(&w.peer[..8], b"covnet1\0");
        assert_eq!(w.peer_ns_fd_at + 4, w.create.len());
    }
}
