//! MLD snooping: which ports of a VLAN an IPv6 multicast frame goes to.
//!
//! Without it every IPv6 multicast frame is flooded like a broadcast, so
//! each machine's MLD reports, router solicitations and neighbour
//! solicitations reach every other machine: n^2 deliveries for a VLAN of n.
//! The switch instead learns, like a bridge with MLD snooping (RFC 4541):
//!
//! - **Members.** A port that sends an MLD report (v1, or a v2 record that
//!   listens to any source) for a group is a member of it on its VLAN; a v1
//!   done or a v2 record that leaves (include mode, no sources) ends that.
//! - **Router ports.** A port that sends an MLD query has a multicast
//!   router behind it: it gets every report and every group's frames.
//! - **Unknown ports.** A port whose reports may have been lost (its link
//!   was down, or lossy or rate-limited) gets every multicast frame, as
//!   without snooping: the switch cannot know what it listens to.
//!
//! Forwarding: MLD reports and dones go to router ports only (none: to no
//! one); queries, frames to all-nodes (`ff02::1`, which no one reports) and
//! frames to groups no port has reported are flooded; frames to a reported
//! group go to its members, the router ports and the unknown ports. A port
//! never gets its own frames back (the switch removes the ingress port).
//!
//! Everything here is pure (no I/O): [`classify`] reads a frame,
//! [`Snooping`] holds what was learned.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::switch::PortId;

/// An IPv6 multicast group address.
pub type Group = [u8; 16];

/// EtherType of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of an Ethernet header without a VLAN tag.
const ETH_HEADER: usize = 14;
/// Length of the IPv6 fixed header.
const IPV6_HEADER: usize = 40;
/// Next-header numbers of extension headers MLD may follow.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DESTINATION_OPTIONS: u8 = 60;
/// ICMPv6.
const ICMPV6: u8 = 58;
/// ICMPv6 types of MLD.
const MLD_QUERY: u8 = 130;
const MLD_V1_REPORT: u8 = 131;
const MLD_V1_DONE: u8 = 132;
const MLD_V2_REPORT: u8 = 143;
/// MLDv2 record types (RFC 3810 5.2.12).
const MODE_IS_INCLUDE: u8 = 1;
const MODE_IS_EXCLUDE: u8 = 2;
const CHANGE_TO_INCLUDE: u8 = 3;
const CHANGE_TO_EXCLUDE: u8 = 4;
const ALLOW_NEW_SOURCES: u8 = 5;

/// What a frame is, as far as multicast forwarding goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Not IPv6 multicast, or not readable as such (ARP, IPv4, broadcast,
    /// truncated): forwarded without snooping.
    Other,
    /// To a group that every node is in without reporting it (`ff02::1`,
    /// or a scope below link-local): flooded.
    AllNodes,
    /// An MLD query: flooded; its sender is a multicast router.
    Query,
    /// An MLD report or done: what it changes; it goes to router ports.
    Report(Vec<Change>),
    /// Any other frame to this group.
    Data(Group),
}

/// One change of a port's membership, from a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The port listens to the group.
    Join(Group),
    /// The port no longer listens to the group.
    Leave(Group),
}

/// Reads what `frame` (a whole Ethernet frame) is for snooping.
pub fn classify(frame: &[u8]) -> Class {
    // IPv6 multicast goes to 33:33:xx:xx:xx:xx (RFC 2464).
    if frame.get(..2) != Some(&[0x33, 0x33][..]) {
        return Class::Other;
    }
    if be16(frame, 12) != Some(ETHERTYPE_IPV6) {
        return Class::Other;
    }
    let Some(ip) = frame.get(ETH_HEADER..) else {
        return Class::Other;
    };
    let (Some(version), Some(dst)) = (ip.first(), group_at(ip, 24)) else {
        return Class::Other;
    };
    if version >> 4 != 6 || dst[0] != 0xff {
        return Class::Other;
    }
    if let Some(mld) = mld_message(ip) {
        return mld;
    }
    // Scope (RFC 4291 2.7): 0 reserved, 1 interface-local, and ff02::1
    // are never reported.
    let scope = dst[1] & 0x0f;
    if scope < 2 || dst == ALL_NODES {
        return Class::AllNodes;
    }
    Class::Data(dst)
}

/// `ff02::1`.
const ALL_NODES: Group = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The MLD message in the IPv6 packet `ip`, if it carries one (after any
/// hop-by-hop, routing or destination options headers). A malformed MLD
/// message is [`Class::Other`].
fn mld_message(ip: &[u8]) -> Option<Class> {
    let mut next = *ip.get(6)?;
    let mut at = IPV6_HEADER;
    while matches!(next, HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS) {
        next = *ip.get(at)?;
        at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
    }
    if next != ICMPV6 {
        return None;
    }
    let icmp = ip.get(at..)?;
    let class = match *icmp.first()? {
        MLD_QUERY => Class::Query,
        MLD_V1_REPORT => {
            group_at(icmp, 8).map_or(Class::Other, |g| Class::Report(vec![Change::Join(g)]))
        }
        MLD_V1_DONE => {
            group_at(icmp, 8).map_or(Class::Other, |g| Class::Report(vec![Change::Leave(g)]))
        }
        MLD_V2_REPORT => v2_records(icmp).map_or(Class::Other, Class::Report),
        _ => return None,
    };
    Some(class)
}

/// The membership changes of an MLDv2 report (`icmp` from its type byte),
/// or `None` when it is truncated.
fn v2_records(icmp: &[u8]) -> Option<Vec<Change>> {
    let count = be16(icmp, 6)?;
    let mut at = 8;
    let mut changes = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let kind = *icmp.get(at)?;
        let aux_words = usize::from(*icmp.get(at + 1)?);
        let sources = usize::from(be16(icmp, at + 2)?);
        let group = group_at(icmp, at + 4)?;
        let len = 20 + 16 * sources + 4 * aux_words;
        icmp.get(at..at + len)?;
        at += len;
        changes.push(match kind {
            // Include mode with no source: listens to nothing.
            MODE_IS_INCLUDE | CHANGE_TO_INCLUDE if sources == 0 => Change::Leave(group),
            // Source-specific interest counts as membership: the switch
            // does not filter by source, a member gets the whole group.
            MODE_IS_INCLUDE | CHANGE_TO_INCLUDE | MODE_IS_EXCLUDE | CHANGE_TO_EXCLUDE => {
                Change::Join(group)
            }
            ALLOW_NEW_SOURCES if sources > 0 => Change::Join(group),
            // BLOCK_OLD_SOURCES (and unknown types) leave the membership as
            // it is: keeping a member only costs frames it ignores.
            _ => continue,
        });
    }
    Some(changes)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn group_at(b: &[u8], at: usize) -> Option<Group> {
    b.get(at..at + 16)?.try_into().ok()
}

/// Where a multicast frame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// To every other port of the VLAN.
    Flood,
    /// To these ports only (of the VLAN, but never the ingress port: the
    /// switch filters both).
    Only(BTreeSet<PortId>),
}

/// What the switch has learned from MLD, for all VLANs.
#[derive(Debug, Default)]
pub struct Snooping {
    /// (vlan, group) → member ports.
    members: HashMap<(u8, Group), BTreeSet<PortId>>,
    /// Ports with a multicast router (they sent a query).
    routers: BTreeSet<PortId>,
    /// Ports whose membership is unknown: they get every multicast frame.
    unknown: HashSet<PortId>,
}

impl Snooping {
    /// Learns from `class`, received on `port` of `vlan`.
    pub fn learn(&mut self, vlan: u8, port: PortId, class: &Class) {
        match class {
            Class::Query => {
                self.routers.insert(port);
            }
            Class::Report(changes) => {
                for change in changes {
                    match *change {
                        Change::Join(group) => {
                            self.members.entry((vlan, group)).or_default().insert(port);
                        }
                        Change::Leave(group) => {
                            if let Some(ports) = self.members.get_mut(&(vlan, group)) {
                                ports.remove(&port);
                                if ports.is_empty() {
                                    self.members.remove(&(vlan, group));
                                }
                            }
                        }
                    }
                }
            }
            Class::Other | Class::AllNodes | Class::Data(_) => {}
        }
    }

    /// From now on `port` gets every multicast frame: what it listens to
    /// is unknown (its reports may have been lost).
    pub fn forget(&mut self, port: PortId) {
        self.unknown.insert(port);
    }

    /// True when `port`'s membership is unknown (see [`Snooping::forget`]).
    #[cfg(test)]
    fn is_unknown(&self, port: PortId) -> bool {
        self.unknown.contains(&port)
    }

    /// Where a frame of `class` on `vlan` goes.
    pub fn forward(&self, vlan: u8, class: &Class) -> Forward {
        let extra = || self.routers.iter().chain(&self.unknown).copied();
        match class {
            Class::Other | Class::AllNodes | Class::Query => Forward::Flood,
            Class::Report(_) => Forward::Only(extra().collect()),
            Class::Data(group) => match self.members.get(&(vlan, *group)) {
                None => Forward::Flood,
                Some(members) => Forward::Only(members.iter().copied().chain(extra()).collect()),
            },
        }
    }
}

/// IPv6 frames for tests, here and in the switch's.
#[cfg(test)]
pub(crate) mod test_frames {
    use super::{Group, ETHERTYPE_IPV6, HOP_BY_HOP};

    /// The source address of every frame (the switch forwards by MAC).
    pub const LINK_LOCAL: Group = [
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 1, 1, 0,
    ];

    /// `s` as an IPv6 address.
    pub fn group(s: &str) -> Group {
        s.parse::<std::net::Ipv6Addr>().expect("address").octets()
    }

    /// An Ethernet frame from `src` with an IPv6 packet to `dst`: `ext`
    /// extension headers (each (next header of this one's kind, bytes))
    /// then `payload` with next header `proto`.
    pub fn ipv6(
        src: [u8; 6],
        dst: Group,
        ext: &[(u8, Vec<u8>)],
        proto: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0x33, 0x33, dst[12], dst[13], dst[14], dst[15]];
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let mut body = Vec::new();
        let mut kinds: Vec<u8> = ext.iter().map(|(k, _)| *k).collect();
        kinds.push(proto);
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut h = bytes.clone();
            h[0] = kinds[i + 1];
            body.extend_from_slice(&h);
        }
        body.extend_from_slice(payload);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        f.push(kinds[0]);
        f.push(1); // hop limit
        f.extend_from_slice(&LINK_LOCAL);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&body);
        f
    }

    /// The hop-by-hop header MLD carries: router alert, padded to 8 bytes.
    pub fn router_alert() -> (u8, Vec<u8>) {
        (HOP_BY_HOP, vec![0, 0, 5, 2, 0, 0, 1, 0])
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{group, router_alert, LINK_LOCAL};
    use super::*;

    const SRC_MAC: [u8; 6] = [0x52, 0x54, 0, 1, 1, 0];

    fn ipv6(dst: Group, ext: &[(u8, Vec<u8>)], proto: u8, payload: &[u8]) -> Vec<u8> {
        super::test_frames::ipv6(SRC_MAC, dst, ext, proto, payload)
    }

    fn mld(dst: &str, icmp: &[u8]) -> Vec<u8> {
        ipv6(group(dst), &[router_alert()], ICMPV6, icmp)
    }

    fn v1(kind: u8, g: &str) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&group(g));
        mld(g, &m)
    }

    /// An MLDv2 report with `records` (type, group, number of sources).
    fn v2(records: &[(u8, &str, u16)]) -> Vec<u8> {
        let mut m = vec![MLD_V2_REPORT, 0, 0, 0, 0, 0];
        m.extend_from_slice(&u16::try_from(records.len()).expect("n").to_be_bytes());
        for &(kind, g, sources) in records {
            m.extend_from_slice(&[kind, 1]); // one aux word
            m.extend_from_slice(&sources.to_be_bytes());
            m.extend_from_slice(&group(g));
            for _ in 0..sources {
                m.extend_from_slice(&LINK_LOCAL);
            }
            m.extend_from_slice(&[0xaa; 4]);
        }
        mld("ff02::16", &m)
    }

    fn icmp(dst: &str, kind: u8) -> Vec<u8> {
        ipv6(group(dst), &[], ICMPV6, &[kind, 0, 0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn classifies_mld_and_multicast_data() {
        let sn = "ff02::1:ff01:100";
        assert_eq!(
            classify(&v1(MLD_V1_REPORT, sn)),
            Class::Report(vec![Change::Join(group(sn))])
        );
        assert_eq!(
            classify(&v1(MLD_V1_DONE, sn)),
            Class::Report(vec![Change::Leave(group(sn))])
        );
        assert_eq!(
            classify(&v2(&[
                (CHANGE_TO_EXCLUDE, sn, 0),
                (MODE_IS_EXCLUDE, "ff05::fb", 0),
                (CHANGE_TO_INCLUDE, "ff02::fb", 0),
                (MODE_IS_INCLUDE, "ff0e::1:3", 2),
                (ALLOW_NEW_SOURCES, "ff0e::1:4", 1),
                (6, "ff0e::1:5", 1), // BLOCK_OLD_SOURCES
                (MODE_IS_INCLUDE, "ff0e::1:6", 0),
            ])),
            Class::Report(vec![
                Change::Join(group(sn)),
                Change::Join(group("ff05::fb")),
                Change::Leave(group("ff02::fb")),
                Change::Join(group("ff0e::1:3")),
                Change::Join(group("ff0e::1:4")),
                Change::Leave(group("ff0e::1:6")),
            ])
        );
        // A general query (to ff02::1) and a group-specific one.
        let mut q = vec![MLD_QUERY, 0, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&[0; 16]);
        assert_eq!(classify(&mld("ff02::1", &q)), Class::Query);
        assert_eq!(classify(&mld(sn, &q)), Class::Query);
        // Neighbour solicitation (135) to a solicited-node group, router
        // solicitation (133) to all-routers, router advertisement (134)
        // and anything else to all-nodes, UDP to a wider group.
        assert_eq!(classify(&icmp(sn, 135)), Class::Data(group(sn)));
        assert_eq!(
            classify(&icmp("ff02::2", 133)),
            Class::Data(group("ff02::2"))
        );
        assert_eq!(classify(&icmp("ff02::1", 134)), Class::AllNodes);
        assert_eq!(classify(&icmp("ff01::1", 128)), Class::AllNodes);
        let udp = ipv6(group("ff05::1:3"), &[], 17, &[0; 12]);
        assert_eq!(classify(&udp), Class::Data(group("ff05::1:3")));
        // MLD behind destination options as well as hop-by-hop.
        let dest_opts = (DESTINATION_OPTIONS, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let mut m = vec![MLD_V1_REPORT, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&group("ff02::fb"));
        let f = ipv6(group("ff02::fb"), &[router_alert(), dest_opts], ICMPV6, &m);
        assert_eq!(
            classify(&f),
            Class::Report(vec![Change::Join(group("ff02::fb"))])
        );
    }

    #[test]
    fn what_is_not_snooped() {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&SRC_MAC);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(classify(&arp), Class::Other);
        // IPv4 multicast (01:00:5e): IGMP is not snooped.
        let mut v4 = vec![0x01, 0x00, 0x5e, 0, 0, 0xfb];
        v4.extend_from_slice(&SRC_MAC);
        v4.extend_from_slice(&[0x08, 0x00, 0x45]);
        v4.extend_from_slice(&[0; 40]);
        assert_eq!(classify(&v4), Class::Other);
        // Truncated: no destination address, an MLDv2 report whose record
        // is cut short, an MLDv1 report without its group.
        let full = icmp("ff02::1:ff00:1", 135);
        assert_eq!(classify(&full[..40]), Class::Other);
        let report = v2(&[(CHANGE_TO_EXCLUDE, "ff02::fb", 0)]);
        assert_eq!(classify(&report[..report.len() - 1]), Class::Other);
        let done = v1(MLD_V1_DONE, "ff02::fb");
        assert_eq!(classify(&done[..done.len() - 4]), Class::Other);
        // A 33:33 frame that is not IPv6, an IPv6 frame whose destination
        // is not multicast.
        let mut odd = full.clone();
        odd[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(classify(&odd), Class::Other);
        let mut unicast = full;
        unicast[14 + 24] = 0xfe;
        assert_eq!(classify(&unicast), Class::Other);
    }

    fn only(ports: &[usize]) -> Forward {
        Forward::Only(ports.iter().copied().map(PortId).collect())
    }

    #[test]
    fn members_routers_and_unknown_ports() {
        let mut s = Snooping::default();
        let sn = group("ff02::1:ff00:1");
        let join = Class::Report(vec![Change::Join(sn)]);
        let leave = Class::Report(vec![Change::Leave(sn)]);
        let data = Class::Data(sn);
        // Nobody reported it: flooded. Reports go to no one without routers.
        assert_eq!(s.forward(1, &data), Forward::Flood);
        assert_eq!(s.forward(1, &join), only(&[]));
        s.learn(1, PortId(3), &join);
        s.learn(1, PortId(5), &join);
        assert_eq!(s.forward(1, &data), only(&[3, 5]));
        // The same group on another VLAN is another group.
        assert_eq!(s.forward(2, &data), Forward::Flood);
        // A querier's port gets reports and every reported group.
        s.learn(1, PortId(7), &Class::Query);
        assert_eq!(s.forward(1, &join), only(&[7]));
        assert_eq!(s.forward(1, &data), only(&[3, 5, 7]));
        // A port whose membership is unknown gets everything but floods.
        s.forget(PortId(9));
        assert!(s.is_unknown(PortId(9)) && !s.is_unknown(PortId(3)));
        assert_eq!(s.forward(1, &data), only(&[3, 5, 7, 9]));
        assert_eq!(s.forward(1, &leave), only(&[7, 9]));
        // Leaving: the last member's leave makes the group unregistered.
        s.learn(1, PortId(3), &leave);
        assert_eq!(s.forward(1, &data), only(&[5, 7, 9]));
        s.learn(1, PortId(5), &leave);
        assert_eq!(s.forward(1, &data), Forward::Flood);
        // Never snooped: all-nodes, queries, anything else.
        for class in [Class::AllNodes, Class::Query, Class::Other] {
            assert_eq!(s.forward(1, &class), Forward::Flood);
        }
        // A leave from a port that never joined changes nothing.
        s.learn(1, PortId(4), &join);
        s.learn(1, PortId(6), &leave);
        assert_eq!(s.forward(1, &data), only(&[4, 7, 9]));
    }
}
