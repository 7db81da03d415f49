//! Story: a newcomer runs `tandem up --demo`, dials conference 1000 and at
//! once hears the synthetic rooms talking, whose turns move the active speaker.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tandem_loadtest::Codec;

use common::{Node, rooms};

/// The demo's voices (bridge/src/demo.rs): Alice, Bob and Carol.
const VOICES: [(&str, f32); 3] = [("Alice", 392.0), ("Bob", 523.25), ("Carol", 659.25)];

#[test]
fn demo_rooms_talk_in_conference_1000_and_a_caller_hears_them() {
    let node = Node::start_full(&[], &["--demo"]);
    let rt = rooms::runtime();
    let me = rooms::call(&rt, &node, "1000", "newcomer", Codec::Opus, None);

    // The demo rooms dial in right after the node starts listening.
    let names = || -> BTreeSet<String> {
        node.conference("1000")
            .and_then(|c| c.get("participants").cloned())
            .and_then(|p| p.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !VOICES.iter().all(|(v, _)| names().contains(*v)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let names = names();
    for (voice, _) in VOICES {
        assert!(
            names.contains(voice),
            "demo room {voice} missing from conference 1000: {names:?}"
        );
    }

    // The rooms take turns being loudest every 6 s: over 14 s the active
    // speaker moves at least once.
    let mut speakers = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(14);
    while Instant::now() < deadline && speakers.len() < 2 {
        if let Some(s) = node.conference("1000").and_then(|c| {
            c.get("active_speaker")
                .and_then(|s| s.as_str().map(str::to_string))
        }) {
            speakers.insert(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        speakers.len() >= 2,
        "active speaker never moved: {speakers:?}\n{}",
        node.log_tail()
    );

    let heard = me.heard();
    let levels: Vec<(f32, f32)> = VOICES
        .iter()
        .map(|(_, hz)| (*hz, heard.tone_level(*hz)))
        .collect();
    eprintln!("newcomer hears (Hz, dBFS): {levels:?}");
    let audible = VOICES.iter().filter(|(_, hz)| heard.contains(*hz)).count();
    assert!(
        audible >= 2,
        "the newcomer should hear the demo voices, heard {levels:?}"
    );
    let _ = rt.block_on(me.hangup());
}
