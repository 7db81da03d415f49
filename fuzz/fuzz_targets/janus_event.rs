#![no_main]
//! Janus HTTP bodies (long-poll arrays, replies) → typed messages → meeting
//! events, for each role a handle can have. Any panic is a bug.

use libfuzzer_sys::fuzz_target;
use tandem_cascade::SubscriptionId;
use tandem_cascade::janus::{HandleRole, parse_poll_body, translate};

fuzz_target!(|data: &[u8]| {
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
