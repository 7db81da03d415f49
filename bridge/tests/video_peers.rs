//! Story: room systems with cameras meet in one conference. Each sees the
//! others in a continuous-presence layout and never itself, and what the
//! node sends is H.264 that an independent decoder takes without a single
//! error.
//!
//! Real peers:
//! - baresip room systems whose camera shows one solid colour edge to edge
//!   (FFmpeg's lavfi colour source, H.264 by libx264, offering
//!   packetization-mode 0 or baresip's full list); their snapshot module
//!   saves a picture they decoded from the node as PNG, and we look at the
//!   middle of each pane;
//! - FFmpeg reading an SDP that describes the video our own SIP leg offered
//!   (packetization-mode 1), decoding every picture for a few seconds.
//!
//! Until the node sends video these tests fail, saying what was missing.

mod common;

use std::time::{Duration, Instant};

use common::uac::{RtpPeer, Uac};
use common::video_peers::{
    BLUE, Colour, FfmpegReceiver, GREEN, GridView, MAGENTA, RED, VideoOffer, VideoRoom,
    VideoRoomSpec, ffmpeg_sdp, parse_sdp_video, require_baresip_video, require_ffmpeg,
};
use common::{Node, ports, sip::parse_sdp_audio, wait_for};

const LAYOUT_CONFERENCE: &str = "4720";
const DECODE_CONFERENCE: &str = "4721";
/// An upper bound: the tests stop their baresips (BYE) when they end.
const CALL_SECONDS: u32 = 60;
/// baresip's cameras: small and slow, to spare the two cores the node needs.
const CAMERA: (u32, u32) = (640, 360);
const CAMERA_FPS: u32 = 15;

fn camera(name: &str, colour: Colour, tone_hz: u32, offer: VideoOffer, dial: String) -> VideoRoom {
    VideoRoom::spawn(VideoRoomSpec {
        name,
        colour,
        lavfi: None,
        size: CAMERA,
        fps: CAMERA_FPS,
        offer,
        tone_hz,
        dial: Some(dial),
        seconds: CALL_SECONDS,
    })
}

fn participant_count(node: &Node, conference: &str) -> usize {
    node.conference(conference)
        .and_then(|c| c.get("participants")?.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Four room systems, red, green, blue and magenta, in one conference with
/// the layout forced to 2x2: each sees the other three cameras, one per
/// pane, and not its own. The magenta one offers baresip's whole codec list
/// (H264 mode 0 and 1, ...), the others H264 mode 0 only. Each offers
/// profile-level-id 42e01f (level 3.1), so each gets 1280x720.
#[test]
fn baresip_receives_layout() {
    require_baresip_video();
    let mut node = Node::start();
    let uri = node.uri(LAYOUT_CONFERENCE);
    let rooms = [
        ("cam-red", RED, 440, VideoOffer::H264Mode0),
        ("cam-green", GREEN, 1000, VideoOffer::H264Mode0),
        ("cam-blue", BLUE, 1700, VideoOffer::H264Mode0),
        ("viewer-magenta", MAGENTA, 600, VideoOffer::Everything),
    ];
    let mut peers: Vec<VideoRoom> = rooms
        .iter()
        .map(|&(name, colour, tone, offer)| camera(name, colour, tone, offer, uri.clone()))
        .collect();

    wait_for(
        "4 participants in /api/conferences",
        Duration::from_secs(15),
        || (participant_count(&node, LAYOUT_CONFERENCE) == 4).then_some(()),
    );
    for p in &peers {
        wait_for(
            &format!("baresip {} to establish its call", p.name),
            Duration::from_secs(10),
            || p.established().then_some(()),
        );
    }

    let r = node.post(
        &format!("/api/conferences/{LAYOUT_CONFERENCE}/layout"),
        r#"{"layout":"2x2"}"#,
    );
    assert!(
        (200..300).contains(&r.status),
        "POST /api/conferences/{LAYOUT_CONFERENCE}/layout {{\"layout\":\"2x2\"}} answered HTTP {}: {}",
        r.status,
        r.body
    );

    // Look at each room's screen until it shows the others (a layout change
    // takes a keyframe or two to arrive), for at most 15 s in all; judge
    // the last picture of each.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut views = Vec::new();
    for p in &mut peers {
        let own = p.colour;
        let others: Vec<Colour> = rooms.iter().map(|r| r.1).filter(|&c| c != own).collect();
        let view = loop {
            p.assert_running();
            let left = deadline.saturating_duration_since(Instant::now());
            let image = p
                .snapshot(left.max(Duration::from_secs(3)))
                .unwrap_or_else(|e| panic!("{e}\n--- node log ---\n{}", node.log_tail()));
            let view = GridView::of(&p.name, image, 2, 2);
            if view.problems(&others, own).is_empty() || Instant::now() >= deadline {
                break view;
            }
            std::thread::sleep(Duration::from_millis(700));
        };
        eprintln!("{}", view.describe());
        views.push((view, others, own));
    }
    node.assert_running();

    let mut problems = Vec::new();
    for (view, others, own) in &views {
        problems.extend(view.problems(others, *own));
        if (view.image.width, view.image.height) != (1280, 720) {
            problems.push(format!(
                "{}: offered H.264 level 3.1 (profile-level-id 42e01f) and got {}x{}, want 1280x720",
                view.who, view.image.width, view.image.height
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the layout is not what each room should see:\n  {}\n\n{}",
        problems.join("\n  "),
        views
            .iter()
            .map(|(v, _, _)| v.describe())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How long FFmpeg decodes our stream, in stream time.
const DECODE_SECONDS: u32 = 8;
/// Pictures it must decode in that time: 12.5 a second on average, under
/// the 15-30 a room system expects, well over a stalled stream.
const MIN_FRAMES: usize = 100;

/// An SDP offer: PCMU on `audio_port`, H.264 (PT 96, `fmtp`) on
/// `video_port`, sendrecv as a room system whose camera is off would offer.
fn av_offer(audio_port: u16, video_port: u16, fmtp: &str) -> String {
    format!(
        "v=0\r\no=ffviewer 4242 1 IN IP4 127.0.0.1\r\ns=tandem-test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {audio_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n\
         m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n\
         a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=sendrecv\r\n"
    )
}

/// Our own SIP leg offers H.264 packetization-mode 1 at level 3.0 with the
/// video port where FFmpeg listens, while two baresip cameras give the
/// layout something to show. FFmpeg must decode at least [`MIN_FRAMES`]
/// pictures of 640x360 in [`DECODE_SECONDS`] s and log no decoder error:
/// the stream starts with what a decoder needs (SPS, PPS, IDR) and its
/// FU-A/STAP-A packets reassemble.
#[test]
fn ffmpeg_decodes_our_stream() {
    require_baresip_video();
    require_ffmpeg();
    let mut node = Node::start();
    let uri = node.uri(DECODE_CONFERENCE);
    let _cams: Vec<VideoRoom> = [("cam-red", RED, 440), ("cam-blue", BLUE, 1700)]
        .iter()
        .map(|&(name, colour, tone)| camera(name, colour, tone, VideoOffer::H264Mode0, uri.clone()))
        .collect();
    wait_for(
        "2 cameras in /api/conferences",
        Duration::from_secs(15),
        || (participant_count(&node, DECODE_CONFERENCE) == 2).then_some(()),
    );

    // FFmpeg listens first, so that it sees the stream from its first packet.
    let fmtp = "profile-level-id=42e01e;packetization-mode=1";
    let video_port = ports::even_pair();
    let mut ffmpeg = FfmpegReceiver::start(
        video_port,
        &ffmpeg_sdp(video_port, 96, fmtp),
        DECODE_SECONDS,
    );
    ffmpeg.wait_listening();

    let audio = RtpPeer::bind();
    let mut uac = Uac::new(&node, DECODE_CONFERENCE, "ffmpeg viewer");
    uac.set_context(format!("--- node log ---\n{}", node.log_tail()));
    let r = uac.invite("", Some(&av_offer(audio.port(), video_port, fmtp)));
    assert_eq!(
        r.code,
        200,
        "INVITE with H.264 video:\n{}\n--- node log ---\n{}",
        r.raw,
        node.log_tail()
    );
    uac.ack(None);
    let answer = r.body().to_string();
    let node_audio = parse_sdp_audio(&answer)
        .unwrap_or_else(|| panic!("200 OK has no usable audio (c= + m=audio):\n{answer}"));
    audio.send(node_audio.addr, 0, 600.0);
    let video = parse_sdp_video(&answer).unwrap_or_else(|| {
        panic!(
            "the node answered an H.264 video offer without an m=video line:\n{answer}\n--- node log ---\n{}",
            node.log_tail()
        )
    });
    assert!(
        video.port != 0,
        "the node refused video (m=video port 0):\n{answer}\n--- node log ---\n{}",
        node.log_tail()
    );
    assert!(
        (node.video_ports.0..=node.video_ports.1).contains(&video.port),
        "the answer's video port {} is outside the node's video ports {}-{}:\n{answer}",
        video.port,
        node.video_ports.0,
        node.video_ports.1
    );
    assert_eq!(
        video.h264_payload_types(),
        vec![96],
        "the answer must keep H.264 on the offered payload type 96 (FFmpeg's SDP says 96):\n{answer}"
    );

    let decoded = ffmpeg.finish(Duration::from_secs(u64::from(DECODE_SECONDS) + 12));
    node.assert_running();
    let summary = format!(
        "FFmpeg decoded {} pictures of {} in {DECODE_SECONDS} s ({}), {} errors, {} warnings \
         (its files: {})",
        decoded.frames,
        decoded
            .dimensions
            .map(|(w, h)| format!("{w}x{h}"))
            .unwrap_or_else(|| "no size".into()),
        if decoded.finished {
            "finished"
        } else {
            "stopped at the deadline: the stream stalled or never came"
        },
        decoded.errors.len(),
        decoded.warnings.len(),
        ffmpeg.dir().display()
    );
    eprintln!("{summary}");
    for w in decoded.warnings.iter().take(10) {
        eprintln!("  ffmpeg {w}");
    }
    let mut problems = Vec::new();
    if decoded.frames < MIN_FRAMES {
        problems.push(format!(
            "decoded {} pictures, want at least {MIN_FRAMES}",
            decoded.frames
        ));
    }
    if !decoded.errors.is_empty() {
        problems.push(format!(
            "the decoder complained {} times:\n    {}",
            decoded.errors.len(),
            decoded
                .errors
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    if decoded.dimensions != Some((640, 360)) {
        problems.push(format!(
            "pictures of {:?}, want 640x360: the offer said level 3.0 (profile-level-id 42e01e)",
            decoded.dimensions
        ));
    }
    assert!(
        problems.is_empty(),
        "{summary}:\n  {}\n--- ffmpeg stderr ---\n{}\n--- node log ---\n{}",
        problems.join("\n  "),
        ffmpeg.stderr_tail(),
        node.log_tail()
    );
    let bye = uac.request("BYE", "", "", "");
    assert_eq!(bye.code, 200, "BYE:\n{}", bye.raw);
}
