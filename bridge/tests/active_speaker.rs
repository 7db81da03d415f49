//! Story: in a meeting where two rooms murmur and a third is silent, the
//! silent room starts talking up; within a second the bridge makes it the
//! active speaker (what a layout would switch to), says so in the API and in
//! `tandem_active_speaker`, and the others hear it.
//!
//! Peers: three synthetic room systems (`tandem-loadtest`), PCMU, each with
//! a tone of its own. Quiet talkers send 0.03 of full scale (about -33 dBov,
//! above the VAD threshold of -45); the new talker 0.3 (-13 dBov), 20 dB
//! louder, well past the 6 dB switch margin.

mod common;

use std::time::{Duration, Instant};

use tandem_loadtest::Codec;

use common::{Node, rooms, wait_for};

const CONFERENCE: &str = "speaker";
const QUIET: f32 = 0.03;
const LOUD: f32 = 0.3;
/// What a participant perceives as "the layout followed me": the switch is
/// specified to happen within one second of starting to talk (the detector
/// holds a challenger 400 ms; the API snapshot is refreshed every 100 ms).
const SWITCH_WITHIN: Duration = Duration::from_secs(1);

fn active_speaker(node: &Node) -> Option<String> {
    node.conference(CONFERENCE)?
        .get("active_speaker")?
        .as_str()
        .map(str::to_string)
}

fn speaking(node: &Node, name: &str) -> Option<bool> {
    node.participant(CONFERENCE, name)?
        .get("speaking")?
        .as_bool()
}

#[test]
fn the_room_that_starts_talking_louder_becomes_active_speaker_within_a_second() {
    let node = Node::start();
    let rt = rooms::runtime();
    let alice = rooms::call(
        &rt,
        &node,
        CONFERENCE,
        "alice",
        Codec::Pcmu,
        Some((440.0, QUIET)),
    );
    let bob = rooms::call(
        &rt,
        &node,
        CONFERENCE,
        "bob",
        Codec::Pcmu,
        Some((1000.0, QUIET)),
    );
    let carol = rooms::call(&rt, &node, CONFERENCE, "carol", Codec::Pcmu, None);

    let ids = wait_for(
        "three participants in /api/conferences",
        Duration::from_secs(10),
        || {
            let ids: Vec<Option<String>> = ["alice", "bob", "carol"]
                .iter()
                .map(|n| node.participant_id(CONFERENCE, n))
                .collect();
            ids.iter()
                .all(Option::is_some)
                .then(|| ids.into_iter().flatten().collect::<Vec<_>>())
        },
    );
    let (alice_id, bob_id, carol_id) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    eprintln!("participants: alice {alice_id}, bob {bob_id}, carol {carol_id}");

    // The murmur settles: one of the two quiet talkers holds the floor, and
    // carol, silent, is neither speaking nor active.
    let before = wait_for(
        "alice or bob to be active speaker",
        Duration::from_secs(10),
        || active_speaker(&node).filter(|s| *s == alice_id || *s == bob_id),
    );
    std::thread::sleep(Duration::from_secs(1));
    let conf = node.conference(CONFERENCE).expect("conference listed");
    assert_ne!(
        active_speaker(&node).as_deref(),
        Some(carol_id.as_str()),
        "the silent room became active speaker: {conf}"
    );
    assert_eq!(
        speaking(&node, "carol"),
        Some(false),
        "silent carol shown as speaking: {conf}"
    );
    assert_eq!(
        speaking(&node, "alice"),
        Some(true),
        "alice (quiet tone) not shown as speaking: {conf}"
    );
    eprintln!("before: active speaker {before}");

    // Carol starts talking, louder than both.
    carol.set_tone(Some(1700.0), LOUD);
    let t0 = Instant::now();
    let mut switched = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if active_speaker(&node).as_deref() == Some(carol_id.as_str()) {
            switched = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(took) = switched else {
        panic!(
            "carol (id {carol_id}) never became active speaker within 5 s of talking louder: {}\n--- node log ---\n{}",
            node.conference(CONFERENCE)
                .map(|c| c.to_string())
                .unwrap_or_default(),
            node.log_tail()
        );
    };
    eprintln!(
        "active speaker switched to carol {} ms after set_tone",
        took.as_millis()
    );
    assert!(
        took <= SWITCH_WITHIN,
        "carol became active speaker only after {} ms (want <= {} ms)",
        took.as_millis(),
        SWITCH_WITHIN.as_millis()
    );
    let conf = node.conference(CONFERENCE).expect("conference listed");
    assert_eq!(
        speaking(&node, "carol"),
        Some(true),
        "active speaker carol not shown as speaking: {conf}"
    );

    // The operator's view: the gauge names the same participant. It is set
    // on the tick of the switch, so it is at least as fresh as the API.
    let want: f64 = carol_id.parse().expect("participant ids are numbers");
    let metrics = node.metrics();
    let gauge = common::http::metric_sum(
        &metrics,
        "tandem_active_speaker",
        &[("conference", CONFERENCE)],
    );
    assert_eq!(
        gauge,
        Some(want),
        "tandem_active_speaker{{conference=\"{CONFERENCE}\"}} should be carol's participant id {carol_id}:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("active_speaker"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // And the others hear her, over their own murmur.
    alice.mark();
    bob.mark();
    std::thread::sleep(Duration::from_secs(2));
    let (a, b) = (alice.heard(), bob.heard());
    assert!(
        a.contains(1700.0),
        "alice does not hear carol's 1700 Hz (level {:.1} dB, heard {:?})",
        a.tone_level(1700.0),
        a.duration()
    );
    assert!(
        b.contains(1700.0),
        "bob does not hear carol's 1700 Hz (level {:.1} dB, heard {:?})",
        b.tone_level(1700.0),
        b.duration()
    );
    assert!(!a.contains(440.0), "alice hears her own 440 Hz (mix-minus)");

    rt.block_on(async {
        let _ = alice.hangup().await;
        let _ = bob.hangup().await;
        let _ = carol.hangup().await;
    });
}
