//! # tandem-control
//!
//! DMA-style routing across MCU nodes (issue 5): a node registry with leases
//! ([`registry`]), conference placement ([`placement`]), meeting-room records
//! ([`vmr`]), their REST API ([`api`]) and the SIP front door
//! ([`front_door`]), with cluster state in etcd or, for `tandem up`, in memory
//! ([`store`]). It never touches media.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod front_door;
pub mod metrics;
pub mod placement;
pub mod registry;
pub mod service;
pub mod store;
pub mod vmr;

pub use placement::{Placement, PlacementReason, Placer};
pub use registry::{Load, Membership, NodeRecord};
pub use service::Control;
pub use vmr::{RoomDirectory, StaticRooms, Vmr};
