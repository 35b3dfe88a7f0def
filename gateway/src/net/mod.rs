//! L2/L3 services of the datapath: interface addresses, longest-prefix-match routes, the ARP
//! neighbour table, and the handlers for ARP and ICMP echo addressed to the gateway itself.

mod cidr;
pub mod neigh;
pub mod route;

pub use cidr::{Ipv4Cidr, Ipv6Cidr};
pub use neigh::{NeighConfig, NeighDrop, NeighTable, Resolve};
pub use route::{NextHop, RouteTable};
