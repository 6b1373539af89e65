//! The virtual network between machines: the switch that carries their
//! Ethernet frames per VLAN (learning, link state, pcap) and the faults a
//! link can be given (loss, delay, jitter, partitions).

pub mod faults;
pub mod switch;
