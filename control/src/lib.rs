//! # tandem-control
//!
//! DMA-style routing across MCU nodes (issue 5): a node registry with leases,
//! conference placement, the SIP front door and meeting-room records, with state
//! in etcd or, for `tandem up`, in memory. Today it holds the placement policy's
//! vocabulary; the single-node `tandem up` places every conference locally.
#![forbid(unsafe_code)]

pub mod vmr;

pub use vmr::{RoomDirectory, StaticRooms, Vmr};

/// Why a conference was placed where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementReason {
    /// The only node there is (the embedded default).
    Local,
    /// Same site as the caller.
    Site,
    /// Least loaded node in the pool.
    LeastLoaded,
    /// Overflow to the next site in the pool order.
    Overflow,
}
