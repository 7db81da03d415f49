//! Story: three room systems on different codecs meet in one conference and
//! each hears the other two, never itself (mix-minus).
//!
//! Real peers: three baresip instances, each sending its own ausine tone and
//! recording what it hears (sndfile module) to WAV. The tones are chosen so
//! that no low harmonic or 2nd/3rd-order intermodulation product of two of
//! them lands within 50 Hz of the third (440·4 = 1760, 2·1000−440 = 1560,
//! 1700−1000 = 700, ...), and all pass G.711's 300–3400 Hz band.

mod common;

use std::time::Duration;

use common::audio::{assert_tones, read_wav};
use common::peers::{Baresip, BaresipSpec, Codec};
use common::{Node, wait_for};

const CONFERENCE: &str = "4711";
/// How long each baresip stays in the call (it hangs up itself).
const CALL_SECONDS: u32 = 16;

#[test]
fn three_room_systems_hear_each_other_but_not_themselves() {
    let mut node = Node::start();
    let rooms = [
        ("room-pcmu", 440u32, Codec::Pcmu),
        ("room-g722", 1000, Codec::G722),
        ("room-opus", 1700, Codec::Opus),
    ];
    let mut peers: Vec<Baresip> = rooms
        .iter()
        .map(|&(name, tone_hz, codec)| {
            Baresip::spawn(BaresipSpec {
                name,
                tone_hz,
                codec,
                dial: node.uri(CONFERENCE),
                seconds: CALL_SECONDS,
            })
        })
        .collect();

    // While they are in the call, the API and the metrics show all three with
    // the codec each one was forced to use.
    let mut want: Vec<String> = rooms.iter().map(|r| r.2.api().to_string()).collect();
    want.sort();
    let codecs = wait_for(
        "3 participants in /api/conferences",
        Duration::from_secs(10),
        || {
            let c = node.participant_codecs(CONFERENCE);
            (c.len() == 3).then_some(c)
        },
    );
    assert_eq!(
        codecs,
        want,
        "participants' audio_codec in /api/conferences {}",
        node.conferences()
    );
    let metrics = node.metrics();
    let participants = common::http::metric_sum(&metrics, "tandem_participants", &[]);
    assert_eq!(
        participants,
        Some(3.0),
        "tandem_participants (summed):\n{metrics}"
    );
    for r in &rooms {
        let n = common::http::metric_sum(
            &metrics,
            "tandem_participants",
            &[("signalling", "sip"), ("codec", r.2.api())],
        );
        assert_eq!(
            n,
            Some(1.0),
            "tandem_participants{{signalling=\"sip\",codec=\"{}\"}}:\n{metrics}",
            r.2.api()
        );
    }
    assert_eq!(
        common::http::metric_sum(&metrics, "tandem_conferences", &[]),
        Some(1.0),
        "tandem_conferences:\n{metrics}"
    );

    for p in &mut peers {
        let st = p.wait(Duration::from_secs(u64::from(CALL_SECONDS) + 20));
        assert!(
            st.success(),
            "baresip {} exited with {st}\n{}",
            p.name,
            p.log()
        );
        assert!(
            p.established(),
            "baresip {} never established its call\n{}",
            p.name,
            p.log()
        );
    }
    node.assert_running();

    // Each heard the other two tones and not its own. Skip the first 4 s
    // (the others may still be joining) and the last second (leaving).
    for (i, p) in peers.iter().enumerate() {
        let heard = read_wav(&p.recording()).unwrap_or_else(|e| panic!("{e}"));
        let own = rooms[i].1 as f32;
        let others: Vec<f32> = rooms
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| r.1 as f32)
            .collect();
        let end = heard.seconds() - 1.0;
        assert!(
            end > 8.0,
            "{} recorded only {:.1} s; the call should have lasted ~{CALL_SECONDS} s\n{}",
            p.name,
            heard.seconds(),
            p.log()
        );
        assert_tones(&p.name, &heard, &others, &[own], 4.0, end);
    }

    // They all hung up: the conference empties.
    wait_for(
        "participants to drop to 0 after BYE",
        Duration::from_secs(10),
        || {
            let m = node.metrics();
            (common::http::metric_sum(&m, "tandem_participants", &[]).unwrap_or(0.0) == 0.0)
                .then_some(())
        },
    );
    assert!(
        node.metric("tandem_rtp_packets_total", &[("direction", "out")]) > 0.0,
        "tandem_rtp_packets_total{{direction=\"out\"}} never rose"
    );
}
