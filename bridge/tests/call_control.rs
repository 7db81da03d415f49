//! Story: the SIP call control a room system and an operator rely on, seen
//! from the wire and from what each side hears.
//!
//! - a call to an unknown conference is refused (404, `auto_create = false`),
//!   a call to a full one gets Busy (486);
//! - a late-offer INVITE gets our offer in the 200 OK, its ACK the answer,
//!   and audio then flows both ways;
//! - a re-INVITE puts the leg on hold (the bridge stops sending) and takes it
//!   off again, or switches its codec (PCMU → PCMA);
//! - session timers are negotiated (Session-Expires with a refresher) or
//!   refused with 422 and Min-SE;
//! - DTMF by SIP INFO is answered and counted;
//! - BYE outside a dialog gets 481, OPTIONS 200 with Allow;
//! - Ctrl-C hangs up every call with BYE and exits 0;
//! - a leg that sends no RTP is hung up after the media timeout.
//!
//! Peers: synthetic room systems (`tandem-loadtest`) as the other side of the
//! conference, and [`common::uac`]: a scripted SIP dialog with an RTP
//! endpoint the test steers, for what a real endpoint will not do on cue.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_loadtest::Codec;

use common::audio::assert_tones;
use common::sip::{self, SipResponse, parse_sdp_audio, request, udp_socket};
use common::uac::{RtpPeer, Uac, audio_sdp, sdp_direction, sdp_rtpmaps};
use common::{Node, rooms, wait_for};

const PCMU: (u8, &str) = (0, "PCMU/8000");
const PCMA: (u8, &str) = (8, "PCMA/8000");
/// The tone the room systems send, and the one the scripted leg sends.
const ROOM_TONE: f32 = 1000.0;
const UAC_TONE: f32 = 600.0;

/// A scripted leg that called in with `codecs` and ACKed: its dialog, its
/// RTP endpoint, and where the node wants its RTP.
struct Leg {
    uac: Uac,
    rtp: RtpPeer,
    node_rtp: SocketAddr,
}

fn join(node: &Node, conference: &str, name: &str, codecs: &[(u8, &str)]) -> Leg {
    let rtp = RtpPeer::bind();
    let mut uac = Uac::new(node, conference, name);
    uac.set_context(format!("--- node log ---\n{}", node.log_tail()));
    let offer = audio_sdp(rtp.port(), codecs, "sendrecv", 1);
    let r = uac.invite("", Some(&offer));
    assert_eq!(
        r.code,
        200,
        "INVITE {conference} as {name}:\n{}\n--- node log ---\n{}",
        r.raw,
        node.log_tail()
    );
    uac.ack(None);
    let media = parse_sdp_audio(r.body())
        .unwrap_or_else(|| panic!("200 OK has no usable SDP (c= + m=audio):\n{}", r.raw));
    Leg {
        uac,
        rtp,
        node_rtp: media.addr,
    }
}

/// Counts what `leg` receives over `window`.
fn packets_during(leg: &Leg, window: Duration) -> u64 {
    let before = leg.rtp.rx_packets();
    std::thread::sleep(window);
    leg.rtp.rx_packets() - before
}

/// Listens for `secs` and asserts the leg hears the room's tone, not its own.
fn assert_hears_room(who: &str, leg: &Leg, secs: f32) {
    let from = leg.rtp.rx_samples();
    std::thread::sleep(Duration::from_secs_f32(secs));
    let heard = leg.rtp.heard_since(from);
    assert_tones(who, &heard, &[ROOM_TONE], &[UAC_TONE], 0.2, heard.seconds());
}

fn final_codes(r: &[SipResponse]) -> Vec<u16> {
    r.iter().filter(|r| r.code >= 200).map(|r| r.code).collect()
}

#[test]
fn unknown_conference_gets_404_when_auto_create_is_off() {
    let node = Node::start_with(&[("TANDEM_CONFERENCE_AUTO_CREATE", "false")]);
    let rtp = RtpPeer::bind();
    let mut uac = Uac::new(&node, "nosuchroom", "lost room");
    let r = uac.invite("", Some(&audio_sdp(rtp.port(), &[PCMU], "sendrecv", 1)));
    assert_eq!(
        r.code, 404,
        "INVITE to an unknown conference with auto_create=false:\n{}",
        r.raw
    );
    assert!(
        node.conference("nosuchroom").is_none(),
        "refused conference is listed: {}",
        node.conferences()
    );
    assert!(
        node.metric("tandem_calls_total", &[("outcome", "unknown_conference")]) >= 1.0,
        "tandem_calls_total{{outcome=\"unknown_conference\"}} did not count the 404"
    );
}

#[test]
fn third_caller_to_a_full_conference_gets_486() {
    let node = Node::start_with(&[("TANDEM_CONFERENCE_MAX_PARTICIPANTS", "2")]);
    let rt = rooms::runtime();
    let a = rooms::call(
        &rt,
        &node,
        "full",
        "room-a",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );
    let b = rooms::call(
        &rt,
        &node,
        "full",
        "room-b",
        Codec::Pcmu,
        Some((1500.0, 0.25)),
    );
    wait_for("two participants listed", Duration::from_secs(10), || {
        (node.participant_codecs("full").len() == 2).then_some(())
    });
    let rtp = RtpPeer::bind();
    let mut uac = Uac::new(&node, "full", "room-c");
    let r = uac.invite("", Some(&audio_sdp(rtp.port(), &[PCMU], "sendrecv", 1)));
    assert_eq!(
        r.code, 486,
        "third INVITE to a conference with max_participants=2:\n{}",
        r.raw
    );
    assert_eq!(
        node.participant_codecs("full").len(),
        2,
        "the refused caller changed the roster: {}",
        node.conferences()
    );
    // The two already in still hear each other.
    a.mark();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        a.heard().contains(1500.0),
        "room-a stopped hearing room-b after the 486"
    );
    assert!(
        a.is_active() && b.is_active(),
        "a call in the full conference ended"
    );
    rt.block_on(async {
        let _ = a.hangup().await;
        let _ = b.hangup().await;
    });
}

#[test]
fn late_offer_gets_our_offer_in_200_and_media_flows_after_the_answer_in_ack() {
    let node = Node::start();
    let rt = rooms::runtime();
    let room = rooms::call(
        &rt,
        &node,
        "late",
        "room",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );

    let rtp = RtpPeer::bind();
    let mut uac = Uac::new(&node, "late", "late offerer");
    let r = uac.invite("", None);
    assert_eq!(r.code, 200, "INVITE without SDP:\n{}", r.raw);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp")),
        "200 OK to a late-offer INVITE must carry an SDP offer:\n{}",
        r.raw
    );
    let maps = sdp_rtpmaps(r.body());
    for codec in ["OPUS/48000", "G722/8000", "PCMU/8000", "PCMA/8000"] {
        assert!(
            maps.iter().any(|m| m.starts_with(codec)),
            "our offer lacks {codec} (rtpmaps {maps:?}):\n{}",
            r.body()
        );
    }
    let offer =
        parse_sdp_audio(r.body()).unwrap_or_else(|| panic!("offer has no m=audio:\n{}", r.body()));
    assert_ne!(
        offer.addr.port(),
        0,
        "offer has audio port 0:\n{}",
        r.body()
    );
    // The API lists the caller only once the answer came; the ACK brings it.
    uac.ack(Some(&audio_sdp(rtp.port(), &[PCMU], "sendrecv", 1)));
    rtp.send(offer.addr, 0, UAC_TONE);
    wait_for(
        "late offerer in /api/conferences as PCMU",
        Duration::from_secs(5),
        || {
            let p = node.participant("late", "late offerer")?;
            (p.get("audio_codec")?.as_str()? == "pcmu").then_some(())
        },
    );
    wait_for(
        "RTP from the node after the ACK",
        Duration::from_secs(5),
        || (rtp.rx_packets() > 25).then_some(()),
    );
    // Both ways: we hear the room, the room hears us.
    let from = rtp.rx_samples();
    room.mark();
    std::thread::sleep(Duration::from_secs(2));
    let heard = rtp.heard_since(from);
    assert_tones(
        "late offerer",
        &heard,
        &[ROOM_TONE],
        &[UAC_TONE],
        0.2,
        heard.seconds(),
    );
    let room_heard = room.heard();
    assert!(
        room_heard.contains(UAC_TONE),
        "the room does not hear the late offerer's {UAC_TONE} Hz (level {:.1} dB)",
        room_heard.tone_level(UAC_TONE)
    );
    let bye = uac.request("BYE", "", "", "");
    assert_eq!(bye.code, 200, "BYE:\n{}", bye.raw);
    let _ = rt.block_on(room.hangup());
}

#[test]
fn reinvite_sendonly_holds_the_leg_and_sendrecv_resumes_it() {
    let node = Node::start();
    let rt = rooms::runtime();
    let room = rooms::call(
        &rt,
        &node,
        "hold",
        "room",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );
    let mut leg = join(&node, "hold", "held room", &[PCMU]);
    leg.rtp.send(leg.node_rtp, 0, UAC_TONE);
    wait_for("RTP from the node", Duration::from_secs(5), || {
        (leg.rtp.rx_packets() > 25).then_some(())
    });
    assert_hears_room("held room (before hold)", &leg, 1.5);

    // Hold: we only send; the node must only receive, and stop sending.
    let r = leg
        .uac
        .reinvite("", &audio_sdp(leg.rtp.port(), &[PCMU], "sendonly", 2));
    assert_eq!(r.code, 200, "re-INVITE a=sendonly:\n{}", r.raw);
    assert_eq!(
        sdp_direction(r.body()),
        "recvonly",
        "answer to a=sendonly must be a=recvonly:\n{}",
        r.body()
    );
    std::thread::sleep(Duration::from_secs(1));
    let held = packets_during(&leg, Duration::from_secs(2));
    assert!(
        held <= 2,
        "the node kept sending RTP to a held leg: {held} packets in 2 s"
    );
    let p = node
        .participant("hold", "held room")
        .expect("held room listed");
    assert_eq!(
        p.get("on_hold").and_then(|v| v.as_bool()),
        Some(true),
        "API does not show the hold: {p}"
    );
    assert!(
        leg.uac.remote_bye_at().is_none(),
        "the node hung up the held leg"
    );

    // Resume.
    let r = leg
        .uac
        .reinvite("", &audio_sdp(leg.rtp.port(), &[PCMU], "sendrecv", 3));
    assert_eq!(r.code, 200, "re-INVITE a=sendrecv:\n{}", r.raw);
    assert_eq!(
        sdp_direction(r.body()),
        "sendrecv",
        "answer to a=sendrecv:\n{}",
        r.body()
    );
    let resumed = packets_during(&leg, Duration::from_secs(2));
    assert!(
        resumed >= 50,
        "after resume the node sent only {resumed} RTP packets in 2 s (expected ~100)"
    );
    assert_hears_room("held room (after resume)", &leg, 1.5);
    let p = node
        .participant("hold", "held room")
        .expect("held room listed");
    assert_eq!(
        p.get("on_hold").and_then(|v| v.as_bool()),
        Some(false),
        "API still shows the hold: {p}"
    );

    let _ = leg.uac.request("BYE", "", "", "");
    let _ = rt.block_on(room.hangup());
}

#[test]
fn reinvite_switches_the_codec_from_pcmu_to_pcma() {
    let node = Node::start();
    let rt = rooms::runtime();
    let room = rooms::call(
        &rt,
        &node,
        "recodec",
        "room",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );
    let mut leg = join(&node, "recodec", "switcher", &[PCMU]);
    leg.rtp.send(leg.node_rtp, 0, UAC_TONE);
    wait_for("PCMU from the node", Duration::from_secs(5), || {
        (leg.rtp.rx_packets_pt(0) > 25).then_some(())
    });

    let r = leg
        .uac
        .reinvite("", &audio_sdp(leg.rtp.port(), &[PCMA], "sendrecv", 2));
    assert_eq!(r.code, 200, "re-INVITE offering only PCMA:\n{}", r.raw);
    let maps = sdp_rtpmaps(r.body());
    assert!(
        maps.first().is_some_and(|m| m.starts_with("PCMA/8000")),
        "answer should pick PCMA (rtpmaps {maps:?}):\n{}",
        r.body()
    );
    let media = parse_sdp_audio(r.body()).expect("answer has m=audio");
    assert_eq!(
        media.payload_types.first(),
        Some(&8),
        "answer's m=audio should list PT 8 first:\n{}",
        r.body()
    );
    leg.rtp.send(media.addr, 8, UAC_TONE);

    // Packets in flight at the switch may still be PCMU; after that only PCMA.
    std::thread::sleep(Duration::from_millis(500));
    let (pcmu0, pcma0) = (leg.rtp.rx_packets_pt(0), leg.rtp.rx_packets_pt(8));
    let from = leg.rtp.rx_samples();
    std::thread::sleep(Duration::from_secs(2));
    let (pcmu, pcma) = (
        leg.rtp.rx_packets_pt(0) - pcmu0,
        leg.rtp.rx_packets_pt(8) - pcma0,
    );
    assert!(
        pcma >= 50,
        "after the switch only {pcma} PT 8 (PCMA) packets arrived in 2 s (PT 0: {pcmu})"
    );
    assert_eq!(
        pcmu, 0,
        "PCMU (PT 0) packets still arrive after the switch to PCMA"
    );
    let heard = leg.rtp.heard_since(from);
    assert_tones(
        "switcher (PCMA)",
        &heard,
        &[ROOM_TONE],
        &[UAC_TONE],
        0.2,
        heard.seconds(),
    );
    let p = node
        .participant("recodec", "switcher")
        .expect("switcher listed");
    assert_eq!(
        p.get("audio_codec").and_then(|v| v.as_str()),
        Some("pcma"),
        "API codec after re-INVITE: {p}"
    );
    // The room hears our PCMA.
    room.mark();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        room.heard().contains(UAC_TONE),
        "the room does not hear the leg after its switch to PCMA"
    );

    let _ = leg.uac.request("BYE", "", "", "");
    let _ = rt.block_on(room.hangup());
}

// A re-INVITE without SDP gets our offer in the 200 OK; the answer in its ACK
// updates the leg already in the mix (codec change, or hold as CUCM does it).
#[test]
fn reinvite_without_sdp_takes_the_answer_in_the_ack() {
    let node = Node::start();
    let rt = rooms::runtime();
    let room = rooms::call(
        &rt,
        &node,
        "lateinvite",
        "room",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );
    let mut leg = join(&node, "lateinvite", "delayed offerer", &[PCMU]);
    leg.rtp.send(leg.node_rtp, 0, UAC_TONE);
    wait_for("PCMU from the node", Duration::from_secs(5), || {
        (leg.rtp.rx_packets_pt(0) > 25).then_some(())
    });

    // Delayed-offer re-INVITE: the node offers, we answer PCMA in the ACK.
    let r = leg.uac.invite("", None);
    assert_eq!(r.code, 200, "re-INVITE without SDP:\n{}", r.raw);
    let offer = parse_sdp_audio(r.body()).unwrap_or_else(|| {
        panic!(
            "200 OK to a re-INVITE without SDP must carry an offer:\n{}",
            r.raw
        )
    });
    assert!(
        offer.payload_types.contains(&8),
        "the node's offer lacks PCMA:\n{}",
        r.body()
    );
    leg.uac
        .ack(Some(&audio_sdp(leg.rtp.port(), &[PCMA], "sendrecv", 2)));
    leg.rtp.send(offer.addr, 8, UAC_TONE);

    std::thread::sleep(Duration::from_millis(500));
    let (pcmu0, pcma0) = (leg.rtp.rx_packets_pt(0), leg.rtp.rx_packets_pt(8));
    std::thread::sleep(Duration::from_secs(2));
    let (pcmu, pcma) = (
        leg.rtp.rx_packets_pt(0) - pcmu0,
        leg.rtp.rx_packets_pt(8) - pcma0,
    );
    let p = node.participant("lateinvite", "delayed offerer");
    assert!(
        pcma >= 50 && pcmu == 0,
        "after answering PCMA in the ACK the node sent {pcma} PT 8 and {pcmu} PT 0 packets in 2 s \
         (want only PCMA); participant: {p:?}"
    );
    let _ = leg.uac.request("BYE", "", "", "");
    let _ = rt.block_on(room.hangup());
}

#[test]
fn session_timer_is_negotiated_or_refused_with_min_se() {
    let node = Node::start();
    let rtp = RtpPeer::bind();
    let offer = audio_sdp(rtp.port(), &[PCMU], "sendrecv", 1);

    let mut uac = Uac::new(&node, "timer", "timed room");
    let r = uac.invite(
        "Session-Expires: 1800\r\nSupported: timer\r\n",
        Some(&offer),
    );
    assert_eq!(r.code, 200, "INVITE with Session-Expires: 1800:\n{}", r.raw);
    uac.ack(None);
    let se = r
        .header("session-expires")
        .or_else(|| r.header("x"))
        .unwrap_or_else(|| panic!("200 OK lacks Session-Expires:\n{}", r.raw));
    let mut parts = se.split(';').map(str::trim);
    assert_eq!(parts.next(), Some("1800"), "Session-Expires interval: {se}");
    let refresher = parts
        .find_map(|p| p.strip_prefix("refresher="))
        .unwrap_or_else(|| panic!("Session-Expires without refresher: {se}"));
    assert!(["uac", "uas"].contains(&refresher), "refresher={refresher}");
    assert!(
        r.header("require")
            .is_some_and(|v| v.to_ascii_lowercase().contains("timer")),
        "200 OK to a UAC that supports timer should Require: timer (RFC 4028 §9):\n{}",
        r.raw
    );
    let bye = uac.request("BYE", "", "", "");
    assert_eq!(bye.code, 200, "BYE:\n{}", bye.raw);

    let mut short = Uac::new(&node, "timer", "impatient room");
    let r = short.invite("Session-Expires: 30\r\nSupported: timer\r\n", Some(&offer));
    assert_eq!(
        r.code, 422,
        "Session-Expires: 30 is below Min-SE 90:\n{}",
        r.raw
    );
    let min_se: u32 = r
        .header("min-se")
        .unwrap_or_else(|| panic!("422 without Min-SE:\n{}", r.raw))
        .split(';')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("Min-SE is not a number:\n{}", r.raw));
    assert_eq!(min_se, 90, "Min-SE of the default config");
}

#[test]
fn dtmf_by_sip_info_is_answered_and_counted() {
    let node = Node::start();
    let mut leg = join(&node, "dtmf", "keypad", &[PCMU]);
    leg.rtp.send(leg.node_rtp, 0, UAC_TONE);
    let before = node.metric("tandem_dtmf_events_total", &[]);
    for digit in ['5', '#'] {
        let r = leg.uac.request(
            "INFO",
            "",
            "application/dtmf-relay",
            &format!("Signal={digit}\r\nDuration=160\r\n"),
        );
        assert_eq!(r.code, 200, "INFO dtmf-relay Signal={digit}:\n{}", r.raw);
    }
    let after = wait_for(
        "tandem_dtmf_events_total to rise by 2",
        Duration::from_secs(3),
        || {
            let v = node.metric("tandem_dtmf_events_total", &[]);
            (v >= before + 2.0).then_some(v)
        },
    );
    eprintln!("tandem_dtmf_events_total {before} -> {after}");
    let r = leg.uac.request("BYE", "", "", "");
    assert_eq!(r.code, 200, "BYE:\n{}", r.raw);
}

#[test]
fn bye_outside_a_dialog_gets_481_and_options_gets_200_with_allow() {
    let node = Node::start();
    let sock = udp_socket();
    let local = sock.local_addr().expect("local addr");
    let ruri = node.uri("nodialog");
    let bye = request("BYE", &ruri, local, "UDP", "", "").replace(
        &format!("To: <{ruri}>"),
        &format!("To: <{ruri}>;tag=nosuchdialog"),
    );
    sock.send_to(bye.as_bytes(), node.sip_addr())
        .expect("send BYE");
    let r = sip::collect_responses(&sock, Duration::from_secs(3));
    assert_eq!(
        final_codes(&r),
        vec![481],
        "BYE for an unknown dialog: {r:?}"
    );

    let options = request("OPTIONS", &node.uri("options"), local, "UDP", "", "");
    sock.send_to(options.as_bytes(), node.sip_addr())
        .expect("send OPTIONS");
    let r = sip::collect_responses(&sock, Duration::from_secs(3));
    let ok = r
        .iter()
        .find(|r| r.code >= 200)
        .unwrap_or_else(|| panic!("no final response to OPTIONS: {r:?}"));
    assert_eq!(ok.code, 200, "OPTIONS:\n{}", ok.raw);
    let allow = ok
        .header("allow")
        .unwrap_or_else(|| panic!("200 to OPTIONS lacks Allow:\n{}", ok.raw));
    let methods: Vec<String> = allow
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(methods.iter().any(|x| x == m), "Allow lacks {m}: {allow}");
    }
}

#[test]
fn ctrl_c_ends_every_call_with_bye_and_exits_cleanly() {
    let mut node = Node::start();
    let rt = rooms::runtime();
    let a = rooms::call(
        &rt,
        &node,
        "shutdown",
        "room-a",
        Codec::Pcmu,
        Some((ROOM_TONE, 0.25)),
    );
    let b = rooms::call(
        &rt,
        &node,
        "shutdown",
        "room-b",
        Codec::Opus,
        Some((1500.0, 0.25)),
    );
    wait_for("two participants listed", Duration::from_secs(10), || {
        (node.participant_codecs("shutdown").len() == 2).then_some(())
    });
    assert!(a.is_active() && b.is_active(), "a call ended before Ctrl-C");

    node.signal("INT");
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(5);
    while Instant::now() < deadline && (a.is_active() || b.is_active()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        sa.ended_by_remote && sb.ended_by_remote,
        "after SIGINT both rooms should get a BYE within 5 s: room-a ended_by_remote={}, room-b ended_by_remote={}\n--- node log ---\n{}",
        sa.ended_by_remote,
        sb.ended_by_remote,
        node.log_tail()
    );
    eprintln!(
        "both rooms got BYE {} ms after SIGINT",
        t0.elapsed().as_millis()
    );
    let status = node.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "tandem still running 10 s after SIGINT\n--- node log ---\n{}",
            node.log_tail()
        )
    });
    assert!(
        status.success(),
        "tandem exited with {status} after SIGINT\n--- node log ---\n{}",
        node.log_tail()
    );
}

#[test]
fn a_leg_that_sends_no_rtp_is_hung_up_after_the_media_timeout() {
    let node = Node::start_with(&[("TANDEM_MEDIA_RTP_TIMEOUT_S", "2")]);
    // Another leg keeps talking: only the silent one may be hung up.
    let talker = join(&node, "timeout", "talker", &[PCMU]);
    talker.rtp.send(talker.node_rtp, 0, UAC_TONE);
    let t0 = Instant::now();
    let mute = join(&node, "timeout", "dead air", &[PCMU]);
    let bye_at = wait_for(
        "the node's BYE to the leg that sends no RTP",
        Duration::from_secs(10),
        || mute.uac.remote_bye_at(),
    );
    let after = bye_at.duration_since(t0);
    eprintln!(
        "BYE {} ms after the call was set up (rtp_timeout_s = 2)",
        after.as_millis()
    );
    assert!(
        after >= Duration::from_millis(1500),
        "the node hung up after {} ms, before the 2 s media timeout",
        after.as_millis()
    );
    wait_for(
        "dead air to leave the roster",
        Duration::from_secs(3),
        || {
            node.participant("timeout", "dead air")
                .is_none()
                .then_some(())
        },
    );
    assert!(
        talker.uac.remote_bye_at().is_none(),
        "the node also hung up the leg that sends RTP"
    );
    assert!(
        node.participant("timeout", "talker").is_some(),
        "the talking leg left: {}",
        node.conferences()
    );
}

/// A node behind a proxy or NAT advertises the Contact it is configured with,
/// so in-dialog requests (BYE, re-INVITE) reach it by that address.
#[test]
fn configured_contact_is_advertised_in_the_200_ok() {
    let contact = "sip:bridge@bridge.example.invalid:5999";
    let node = Node::start_with(&[("TANDEM_SIP_CONTACT", contact)]);
    let rtp = RtpPeer::bind();
    let mut uac = Uac::new(&node, "contact", "behind a proxy");
    let r = uac.invite("", Some(&audio_sdp(rtp.port(), &[PCMU], "sendrecv", 1)));
    assert_eq!(r.code, 200, "INVITE:\n{}", r.raw);
    let advertised = r.header("Contact").unwrap_or_default();
    assert!(
        advertised.contains(contact),
        "Contact {advertised:?} is not the configured {contact}"
    );
    uac.ack(None);
    let _ = uac.request("BYE", "", "", "");
}
