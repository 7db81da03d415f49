//! Story: meeting rooms with a PIN, and the lobby number (issue 5).
//!
//! Synthetic room systems (`tandem-loadtest`: real G.711 calls that send a
//! tone, record what they hear, and press keys by RFC 4733 or SIP INFO) call
//! a node whose rooms come from `[[room]]` tables. What a person would
//! perceive is checked: a caller at the door hears a spoken prompt (speech
//! energy) and not the conference's tones, the people inside do not hear it;
//! after the right PIN both sides hear each other; three wrong PINs end with
//! the goodbye prompt and a BYE whose Reason says why. The lobby asks for a
//! conference ID and takes the caller there (then to the PIN door).

mod common;

use std::time::{Duration, Instant};

use common::{Node, TempDir, rooms, wait_for};
use tandem_loadtest::{Codec, DtmfMethod, Error, Heard, RoomSystem, RoomSystemConfig};

/// Tones of the callers (G.711 band, no low harmonics in common).
const ALPHA_HZ: f32 = 440.0;
const BRAVO_HZ: f32 = 1000.0;
const CHARLIE_HZ: f32 = 1700.0;

const ROOMS: &str = r#"
[[room]]
id = "4711"
name = "Board"
pin = "1234"

[[room]]
id = "4712"
name = "Open"

[[room]]
id = "small"
max_participants = 1
layout = "1x1"
"#;

/// A node reading `ROOMS` from a config file, plus `env`.
fn node(env: &[(&str, &str)]) -> Node {
    let dir = TempDir::new("rooms");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, ROOMS).expect("write node.toml");
    let path = path.to_string_lossy().into_owned();
    Node::start_full(env, &["--config", &path])
}

fn call(rt: &tokio::runtime::Runtime, node: &Node, to: &str, name: &str, hz: f32) -> RoomSystem {
    rooms::call(rt, node, to, name, Codec::Pcmu, Some((hz, 0.25)))
}

/// Listens for `secs` from now.
fn listen(rooms: &[&RoomSystem], secs: u64) -> Vec<Heard> {
    for r in rooms {
        r.mark();
    }
    std::thread::sleep(Duration::from_secs(secs));
    rooms.iter().map(|r| r.heard()).collect()
}

fn levels(heard: &Heard, tones: &[f32]) -> String {
    let mut s = format!(
        "{:.1} s, rms {:.1} dBFS",
        heard.duration().as_secs_f32(),
        heard.rms_db()
    );
    for hz in tones {
        s += &format!(", {hz} Hz {:.1} dBFS", heard.tone_level(*hz));
    }
    s
}

/// A caller at the door hears speech (the prompt: well above the comfort
/// noise) and none of `absent`.
fn assert_hears_prompt_only(who: &str, heard: &Heard, absent: &[f32]) {
    let report = levels(heard, absent);
    eprintln!("{who} at the door: {report}");
    assert!(
        heard.duration() > Duration::from_secs(2),
        "{who} heard too little: {report}"
    );
    assert!(
        heard.rms_db() > -40.0,
        "{who} should hear the spoken prompt: {report}"
    );
    for hz in absent {
        assert!(
            !heard.contains(*hz) && heard.tone_level(*hz) < -30.0,
            "{who} must not hear {hz} Hz from the conference at the door: {report}"
        );
    }
}

fn assert_hears(who: &str, heard: &Heard, present: &[f32], absent: &[f32]) {
    let all: Vec<f32> = present.iter().chain(absent).copied().collect();
    let report = levels(heard, &all);
    eprintln!("{who}: {report}");
    for hz in present {
        assert!(heard.contains(*hz), "{who} should hear {hz} Hz: {report}");
    }
    for hz in absent {
        assert!(
            !heard.contains(*hz) && heard.tone_level(*hz) < -30.0,
            "{who} should not hear {hz} Hz: {report}"
        );
    }
}

#[test]
fn a_pin_room_holds_callers_at_the_door_until_the_right_pin() {
    let node = node(&[]);
    let rt = rooms::runtime();
    let alpha = call(&rt, &node, "4711", "alpha", ALPHA_HZ);
    node.wait_state("4711", "alpha", "pin");
    alpha.send_dtmf("1234", DtmfMethod::Rfc4733);
    node.wait_state("4711", "alpha", "joined");

    // Bravo at the door: hears the prompt, not alpha; alpha does not hear bravo.
    let bravo = call(&rt, &node, "4711", "bravo", BRAVO_HZ);
    node.wait_state("4711", "bravo", "pin");
    let heard = listen(&[&alpha, &bravo], 4);
    assert_hears_prompt_only("bravo", &heard[1], &[ALPHA_HZ]);
    assert_hears("alpha (bravo at the door)", &heard[0], &[], &[BRAVO_HZ]);
    let metrics = node.metrics();
    assert_eq!(
        common::http::metric_sum(&metrics, "tandem_ivr_participants", &[]),
        Some(1.0),
        "tandem_ivr_participants while bravo is at the door"
    );

    // The right PIN by RFC 4733: "you are now joining", then mixed both ways.
    bravo.send_dtmf("1234#", DtmfMethod::Rfc4733);
    node.wait_state("4711", "bravo", "joined");
    let heard = listen(&[&alpha, &bravo], 3);
    assert_hears("alpha", &heard[0], &[BRAVO_HZ], &[ALPHA_HZ]);
    assert_hears("bravo", &heard[1], &[ALPHA_HZ], &[BRAVO_HZ]);

    // Charlie by SIP INFO.
    let charlie = call(&rt, &node, "4711", "charlie", CHARLIE_HZ);
    node.wait_state("4711", "charlie", "pin");
    let heard = listen(&[&charlie], 3);
    assert_hears_prompt_only("charlie", &heard[0], &[ALPHA_HZ, BRAVO_HZ]);
    charlie.send_dtmf("1234#", DtmfMethod::Info);
    node.wait_state("4711", "charlie", "joined");
    let heard = listen(&[&alpha, &charlie], 3);
    assert_hears("charlie", &heard[1], &[ALPHA_HZ, BRAVO_HZ], &[CHARLIE_HZ]);
    assert_hears("alpha", &heard[0], &[BRAVO_HZ, CHARLIE_HZ], &[ALPHA_HZ]);

    assert_eq!(
        node.metric("tandem_pin_attempts_total", &[("result", "accepted")]),
        3.0
    );
    assert_eq!(
        node.metric("tandem_ivr_calls_total", &[("outcome", "joined")]),
        3.0
    );
    assert_eq!(node.metric("tandem_ivr_participants", &[]), 0.0);
    drop((alpha, bravo, charlie));
}

#[test]
fn three_wrong_pins_hear_goodbye_then_bye_with_reason() {
    let node = node(&[]);
    let rt = rooms::runtime();
    let delta = call(&rt, &node, "4711", "delta", ALPHA_HZ);
    node.wait_state("4711", "delta", "pin");
    delta.send_dtmf("1111#", DtmfMethod::Rfc4733);
    std::thread::sleep(Duration::from_millis(2500));
    delta.send_dtmf("22#", DtmfMethod::Info);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(delta.is_active(), "two wrong PINs leave the call up");
    delta.mark();
    delta.send_dtmf("3333", DtmfMethod::Rfc4733);
    let sent = Instant::now();
    wait_for("the node's BYE", Duration::from_secs(15), || {
        delta.stats().ended_by_remote.then_some(())
    });
    let goodbye = delta.heard();
    eprintln!(
        "BYE {:.1} s after the third entry began; heard {}",
        sent.elapsed().as_secs_f32(),
        levels(&goodbye, &[])
    );
    // The goodbye ("Sorry, that PIN is not correct. Goodbye.", ~3.4 s) was
    // played to its end before the BYE.
    assert!(
        goodbye.duration() > Duration::from_millis(2800) && goodbye.rms_db() > -40.0,
        "delta should hear the whole goodbye prompt before the BYE: {}",
        levels(&goodbye, &[])
    );
    let reason = delta.stats().bye_reason.unwrap_or_default();
    assert!(
        reason.contains("cause=403") && reason.contains("Wrong PIN"),
        "BYE Reason: {reason:?}"
    );
    assert_eq!(
        node.metric("tandem_pin_attempts_total", &[("result", "wrong")]),
        3.0
    );
    assert_eq!(
        node.metric("tandem_ivr_calls_total", &[("outcome", "wrong_pin")]),
        1.0
    );
    wait_for("the conference to end", Duration::from_secs(5), || {
        node.conference("4711").is_none().then_some(())
    });
}

#[test]
fn the_lobby_takes_callers_to_the_conference_they_enter() {
    let node = node(&[("TANDEM_CONFERENCE_AUTO_CREATE", "false")]);
    let rt = rooms::runtime();
    let alpha = call(&rt, &node, "4711", "alpha", ALPHA_HZ);
    node.wait_state("4711", "alpha", "pin");
    alpha.send_dtmf("1234", DtmfMethod::Info);
    node.wait_state("4711", "alpha", "joined");

    // Bravo dials the lobby: asked for an ID, then the room's PIN, then in.
    let bravo = call(&rt, &node, "lobby", "bravo", BRAVO_HZ);
    node.wait_state("lobby", "bravo", "lobby");
    let heard = listen(&[&bravo], 3);
    assert_hears_prompt_only("bravo in the lobby", &heard[0], &[ALPHA_HZ]);
    bravo.send_dtmf("4711#", DtmfMethod::Rfc4733);
    node.wait_state("4711", "bravo", "pin");
    assert!(
        node.conference("lobby").is_none(),
        "the lobby ends with its last caller gone: {}",
        node.conferences()
    );
    let heard = listen(&[&alpha, &bravo], 3);
    assert_hears_prompt_only("bravo at 4711's door", &heard[1], &[ALPHA_HZ]);
    assert_hears("alpha (bravo at the door)", &heard[0], &[], &[BRAVO_HZ]);
    bravo.send_dtmf("1234#", DtmfMethod::Rfc4733);
    node.wait_state("4711", "bravo", "joined");
    let heard = listen(&[&alpha, &bravo], 3);
    assert_hears("alpha", &heard[0], &[BRAVO_HZ], &[ALPHA_HZ]);
    assert_hears("bravo", &heard[1], &[ALPHA_HZ], &[BRAVO_HZ]);
    assert!(bravo.is_active() && bravo.stats().packets_lost < 5);

    // A room without a PIN: "you are now joining", then in.
    let charlie = call(&rt, &node, "lobby", "charlie", CHARLIE_HZ);
    node.wait_state("lobby", "charlie", "lobby");
    charlie.send_dtmf("4712#", DtmfMethod::Info);
    node.wait_state("4712", "charlie", "joined");

    // An unknown ID (auto_create off), three times: goodbye, BYE.
    let delta = call(&rt, &node, "lobby", "delta", ALPHA_HZ);
    node.wait_state("lobby", "delta", "lobby");
    for id in ["999#", "998#", "997#"] {
        delta.send_dtmf(id, DtmfMethod::Rfc4733);
        std::thread::sleep(Duration::from_millis(2500));
    }
    wait_for("the node's BYE", Duration::from_secs(15), || {
        delta.stats().ended_by_remote.then_some(())
    });
    let reason = delta.stats().bye_reason.unwrap_or_default();
    assert!(reason.contains("cause=404"), "BYE Reason: {reason:?}");
    assert_eq!(
        node.metric("tandem_ivr_calls_total", &[("outcome", "not_found")]),
        1.0
    );
    assert_eq!(
        node.metric("tandem_ivr_calls_total", &[("outcome", "joined")]),
        3.0
    );
    drop((alpha, bravo, charlie));
}

#[test]
fn a_rooms_size_and_layout_apply() {
    let node = node(&[]);
    let rt = rooms::runtime();
    let alpha = call(&rt, &node, "small", "alpha", ALPHA_HZ);
    node.wait_state("small", "alpha", "joined");
    let conference = node.conference("small").expect("conference small");
    assert_eq!(
        conference.get("layout").and_then(|l| l.as_str()),
        Some("1x1"),
        "the room's layout is the conference default: {conference}"
    );
    let cfg = RoomSystemConfig::new(node.sip_addr(), "small", "bravo").with_codec(Codec::Pcmu);
    let second = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call(cfg)).await
    });
    match second {
        Ok(Err(Error::Rejected { code, .. })) => assert_eq!(code, 486),
        Ok(Ok(_)) => panic!("a second caller got into a room of max_participants = 1"),
        other => panic!("second call: {other:?}"),
    }
    drop(alpha);
}
