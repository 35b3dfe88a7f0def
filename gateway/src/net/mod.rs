//! The L2/L3 tables of the datapath: interface addresses (CIDRs), longest-prefix-match routes
//! and the ARP neighbour table with its NUD states. The handlers that use them (ARP, ICMP echo,
//! output through the routes and neighbours) are `datapath::L3`'s.

mod cidr;
pub mod neigh;
pub mod route;

pub use cidr::{Ipv4Cidr, Ipv6Cidr};
pub use neigh::{NeighConfig, NeighDrop, NeighTable, Resolve};
pub use route::{NextHop, RouteTable};
