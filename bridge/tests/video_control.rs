//! Video signalling and control with scripted SIP dialogs: what the node
//! answers to video offers, keyframe requests both ways (SIP INFO
//! picture_fast_update, RFC 5168), layouts by API and by DTMF `*8`, and
//! hostile video RTP. What the pictures look like is checked in
//! `video_layouts.rs` (synthetic cameras) and `video_peers.rs` (baresip,
//! FFmpeg).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::uac::Uac;
use common::{Node, wait_for};

/// An offer of PCMU plus H.264 (mode 1) with the given RTCP feedback lines.
fn av_offer(audio_port: u16, video_port: u16, feedback: &str) -> String {
    format!(
        "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {audio_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
         m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n{feedback}a=sendrecv\r\n"
    )
}

/// The port of the answer's video m-line (0 when declined).
fn answered_video_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("m=video "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

/// Two sockets standing in for a room system's audio and video ports.
fn media_sockets() -> (UdpSocket, UdpSocket) {
    let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind media socket");
    (bind(), bind())
}

/// A video caller in `conference`; returns the dialog, its sockets and the
/// node's video port.
fn video_call(
    node: &Node,
    conference: &str,
    name: &str,
    feedback: &str,
) -> (Uac, (UdpSocket, UdpSocket), u16) {
    let (a, v) = media_sockets();
    let offer = av_offer(
        a.local_addr().expect("addr").port(),
        v.local_addr().expect("addr").port(),
        feedback,
    );
    let mut uac = Uac::new(node, conference, name);
    uac.set_context(node.log_tail());
    let r = uac.invite("", Some(&offer));
    assert_eq!(r.code, 200, "INVITE with video: {}", r.raw);
    uac.ack(None);
    let port = answered_video_port(r.body()).unwrap_or(0);
    (uac, (a, v), port)
}

fn participant_id(node: &Node, conference: &str, name: &str) -> String {
    wait_for(
        &format!("{name} in conference {conference}"),
        Duration::from_secs(5),
        || node.participant_id(conference, name),
    )
}

#[test]
fn video_offer_is_answered_with_h264_in_the_video_range_or_declined_when_off() {
    let node = Node::start();
    let (mut uac, _media, port) = video_call(&node, "7300", "camera", "");
    let (lo, hi) = node.video_ports;
    assert!(
        (lo..=hi).contains(&port),
        "video answered on port {port}, outside the node's video range {lo}-{hi}"
    );
    let p = wait_for("camera listed with video", Duration::from_secs(5), || {
        node.participant("7300", "camera")
            .filter(|p| p["video"] == true && p["video_stream"]["resolution"].is_string())
    });
    assert_eq!(p["video_stream"]["resolution"], "1280x720", "{p}");
    uac.request("BYE", "", "", "");

    let off = Node::start_with(&[("TANDEM_VIDEO_ENABLED", "false")]);
    let (_uac, _media, port) = video_call(&off, "7301", "camera", "");
    assert_eq!(
        port, 0,
        "video off: the video m-line must be declined (port 0)"
    );
    let p = wait_for("camera listed", Duration::from_secs(5), || {
        off.participant("7301", "camera")
    });
    assert_eq!(p["video"], false, "{p}");
}

#[test]
fn a_source_without_rtcp_feedback_is_asked_for_keyframes_by_sip_info() {
    let node = Node::start();
    // No a=rtcp-fb: the node must fall back to RFC 5168 INFO.
    let (old_school, _m1, _) = video_call(&node, "7310", "old school", "");
    // When a second participant arrives, "old school" enters its pane.
    let (_viewer, _m2, _) = video_call(&node, "7310", "viewer", "a=rtcp-fb:96 nack pli\r\n");
    let info = wait_for(
        "INFO picture_fast_update sent to the room system without RTCP feedback",
        Duration::from_secs(5),
        || {
            old_school
                .messages_received()
                .into_iter()
                .find(|m| m.starts_with("INFO ") && m.contains("picture_fast_update"))
        },
    );
    assert!(
        info.to_ascii_lowercase()
            .contains("content-type: application/media_control+xml"),
        "{info}"
    );
    assert!(
        node.metric(
            "tandem_video_keyframes_requested_total",
            &[("method", "info")]
        ) >= 1.0
    );
}

#[test]
fn picture_fast_update_from_a_receiver_gets_its_view_a_keyframe() {
    let node = Node::start();
    let (_a, _m1, _) = video_call(&node, "7320", "left", "a=rtcp-fb:96 nack pli\r\n");
    let (mut b, _m2, _) = video_call(&node, "7320", "right", "a=rtcp-fb:96 nack pli\r\n");
    participant_id(&node, "7320", "right");
    // Let the join keyframes and the rate limit pass.
    std::thread::sleep(Duration::from_millis(1500));
    let before = node.metric("tandem_video_keyframes_sent_total", &[]);
    let r = b.request(
        "INFO",
        "",
        "application/media_control+xml",
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive><to_encoder>\
         <picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n",
    );
    assert_eq!(r.code, 200, "{}", r.raw);
    wait_for(
        "a keyframe after INFO picture_fast_update",
        Duration::from_secs(3),
        || (node.metric("tandem_video_keyframes_sent_total", &[]) > before).then_some(()),
    );
    assert_eq!(
        node.metric(
            "tandem_video_keyframe_requests_received_total",
            &[("method", "info")]
        ),
        1.0
    );
}

#[test]
fn layouts_follow_the_api_and_dtmf_star_8() {
    let node = Node::start();
    let (_a, _m1, _) = video_call(&node, "7330", "north", "");
    let (mut b, _m2, _) = video_call(&node, "7330", "south", "");
    let south = participant_id(&node, "7330", "south");
    let layout_of = |name: &str| {
        node.participant("7330", name)
            .and_then(|p| p["video_stream"]["layout"].as_str().map(str::to_string))
    };
    wait_for("south's layout", Duration::from_secs(5), || {
        (layout_of("south").as_deref() == Some("auto")).then_some(())
    });

    // The conference default.
    let r = node.post("/api/conferences/7330/layout", r#"{"layout":"2x2"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("conference layout 2x2", Duration::from_secs(3), || {
        let c = node.conference("7330")?;
        (c["layout"] == "2x2" && layout_of("north").as_deref() == Some("2x2")).then_some(())
    });
    // Bad input gets a clear answer.
    let r = node.post("/api/conferences/7330/layout", r#"{"layout":"7x7"}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("unknown_layout"), "{}", r.body);
    let r = node.post("/api/conferences/9999/layout", r#"{"layout":"2x2"}"#);
    assert_eq!(r.status, 404, "{}", r.body);

    // One participant's own choice.
    let r = node.post(
        &format!("/api/conferences/7330/participants/{south}/layout"),
        r#"{"layout":"1+5"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("south's own layout 1+5", Duration::from_secs(3), || {
        (layout_of("south").as_deref() == Some("1+5")
            && layout_of("north").as_deref() == Some("2x2"))
        .then_some(())
    });

    // *8 from the keypad steps south to the next layout of the cycle (1+5 → 3x3).
    for digit in ["*", "8"] {
        let r = b.request(
            "INFO",
            "",
            "application/dtmf-relay",
            &format!("Signal={digit}\r\nDuration=160\r\n"),
        );
        assert_eq!(r.code, 200, "{}", r.raw);
    }
    wait_for("south's layout after *8", Duration::from_secs(3), || {
        (layout_of("south").as_deref() == Some("3x3")).then_some(())
    });
    assert_eq!(layout_of("north").as_deref(), Some("2x2"));
    assert!(node.metric("tandem_video_layout_changes_total", &[("source", "dtmf")]) >= 1.0);
}

#[test]
fn hostile_video_rtp_is_counted_and_the_views_keep_flowing() {
    let mut node = Node::start();
    let (_a, m1, port) = video_call(&node, "7340", "target", "");
    let (_b, m2, _) = video_call(&node, "7340", "watcher", "");
    participant_id(&node, "7340", "watcher");
    let frames_sent = |node: &Node, name: &str| {
        node.participant("7340", name)
            .and_then(|p| p["video_stream"]["frames_sent"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "views flowing to the watcher",
        Duration::from_secs(5),
        || (frames_sent(&node, "watcher") > 10).then_some(()),
    );
    let before_malformed = node.metric("tandem_malformed_total", &[("protocol", "rtp")]);
    let dest = format!("127.0.0.1:{port}");
    let video = &m1.1;
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x00; 12],                                                  // version 0
        vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7],                    // RTP, empty H.264 payload
        vec![0x80, 96, 0, 2, 0, 0, 0, 1, 0, 0, 0, 7, 0x7C], // FU-A without its header byte
        vec![0x80, 96, 0, 3, 0, 0, 0, 1, 0, 0, 0, 7, 0x78, 0, 50, 0x65], // STAP-A overrunning
        vec![0x80, 111, 0, 4, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3], // unknown payload type
        vec![0x81, 200, 0, 1],                              // truncated RTCP
    ];
    // A seeded spray of random bytes on an RTP header.
    let mut x: u32 = 0x1234_5678;
    for seq in 10..400u16 {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 7]);
        for _ in 0..(x % 1400) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.push(x as u8);
        }
        junk.push(p);
    }
    for p in &junk {
        let _ = video.send_to(p, &dest);
    }
    let watcher_before = frames_sent(&node, "watcher");
    std::thread::sleep(Duration::from_secs(2));
    node.assert_running();
    assert!(
        node.metric("tandem_malformed_total", &[("protocol", "rtp")]) > before_malformed,
        "malformed video RTP was not counted"
    );
    // At 30 fps, 2 s is ~60 pictures; the watcher's view kept coming.
    let watcher_after = frames_sent(&node, "watcher");
    assert!(
        watcher_after >= watcher_before + 30,
        "the watcher's view stalled: {watcher_before} → {watcher_after} pictures in 2 s"
    );
    drop(m2);
}
