//! The virtual network between machines: the switch that carries their
//! Ethernet frames per VLAN (learning, link state, pcap) and the faults a
//! link can be given (loss, delay, jitter, partitions), and the MLD
//! snooping that keeps IPv6 multicast to the ports that listen.

pub mod faults;
pub mod packet;
pub mod snoop;
pub mod switch;
