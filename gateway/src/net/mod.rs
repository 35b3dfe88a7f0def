//! The L2/L3 layer of the datapath: interface addresses (CIDRs), longest-prefix-match routes (IPv4
//! and IPv6), the ARP neighbour table with its NUD states, the ports and addresses the control
//! plane builds (`topology`), and each worker's L3 state with the handlers that use them
//! (`l3`: ARP, neighbour confirmation, output through the routes and neighbours, generated
//! frames, what goes up to a kernel twin by `punt`'s policy).

mod cidr;
pub mod l3;
pub mod neigh;
pub mod punt;
pub mod route;
pub mod route6;
pub mod topology;

pub use cidr::{Ipv4Cidr, Ipv6Cidr};
pub use l3::L3;
pub use neigh::{NeighConfig, NeighDrop, NeighTable, Resolve};
pub use route::{NextHop, RouteTable};
pub use topology::{PortCtx, Topology};
