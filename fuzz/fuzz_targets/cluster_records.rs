#![no_main]
//! The control plane's JSON records, as the REST API and the cluster store
//! hand them over: a room (VMR) body, a node record, a placement. Whatever
//! parses and validates must serialize and parse back to the same record;
//! nothing may panic.

use libfuzzer_sys::fuzz_target;
use tandem_control::{NodeRecord, Placement, Vmr};

fuzz_target!(|data: &[u8]| {
    if let Ok(vmr) = serde_json::from_slice::<Vmr>(data)
        && vmr.validate().is_ok()
    {
        let json = serde_json::to_vec(&vmr).expect("serialize a valid room");
        let back: Vmr = serde_json::from_slice(&json).expect("a valid room parses back");
        assert_eq!(back, vmr);
        assert!(back.validate().is_ok());
    }
    if let Ok(node) = serde_json::from_slice::<NodeRecord>(data) {
        let _ = node.has_room(usize::MAX);
        let json = serde_json::to_vec(&node).expect("serialize a node");
        let _: NodeRecord = serde_json::from_slice(&json).expect("a node parses back");
    }
    if let Ok(p) = serde_json::from_slice::<Placement>(data) {
        let _ = p.home();
        let json = serde_json::to_vec(&p).expect("serialize a placement");
        let back: Placement = serde_json::from_slice(&json).expect("a placement parses back");
        assert_eq!(back, p);
    }
});
