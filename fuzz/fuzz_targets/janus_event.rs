#![no_main]
//! Janus HTTP bodies (long-poll arrays, replies) → typed messages → meeting
//! events, for each role a handle can have; the same bytes as an admin API
//! `handle_info` reply (layers forwarded, loss). Any panic is a bug.

use libfuzzer_sys::fuzz_target;
use tandem_cascade::SubscriptionId;
use tandem_cascade::janus::{
    HandleRole, layers_forwarded, lost_by_server, parse_poll_body, translate,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = layers_forwarded(&info, 7);
        let _ = lost_by_server(&info);
    }
    let Ok(items) = parse_poll_body(data) else {
        return;
    };
    for msg in items.into_iter().flatten() {
        for role in [
            None,
            Some(HandleRole::Publisher),
            Some(HandleRole::Subscription(SubscriptionId(1))),
        ] {
            let _ = translate(&msg, role);
        }
    }
});
