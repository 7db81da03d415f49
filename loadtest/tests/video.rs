//! Self-test of the video path over real UDP on 127.0.0.1: room systems call
//! a tiny in-test UAS whose SDP answer points their video either at an echo
//! socket (a room sees itself) or at a relay that joins two calls (each room
//! sees the other). Not a bridge test: it shows that `seen_colour`, PLI/FIR
//! and keyframes work before anyone relies on them against the real node.
//!
//! Waits poll for a condition with a generous deadline (a liveness bound,
//! not a timing assertion).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_loadtest::sdp::{self, VideoOffer};
use tandem_loadtest::sip::{Message, header_param};
use tandem_loadtest::video::picture::colour_distance;
use tandem_loadtest::{
    Error, KeyframeRequest, RoomSystem, RoomSystemConfig, VideoClip, VideoSpec, rtp,
};
use tokio::net::UdpSocket;

/// What the UAS puts in its answer's video m-line.
#[derive(Debug, Clone)]
enum VideoAnswer {
    /// Accept, with our video at these ports (the n-th call gets the n-th,
    /// cycling).
    Ports(Vec<u16>),
    /// `m=video 0`.
    Refuse,
    /// No video m-line at all (an RFC 3264 violation).
    Omit,
}

/// The rooms' video addresses from their offers, in call order.
type Offers = Arc<Mutex<Vec<SocketAddr>>>;

/// Answers INVITE (200 with audio at an echo socket and video as `video`
/// says), BYE (200); records each room's offered video address in `offers`.
async fn start_uas(video: VideoAnswer, offers: Offers) -> SocketAddr {
    let sip = UdpSocket::bind("127.0.0.1:0").await.expect("bind sip");
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind rtp");
    let sip_addr = sip.local_addr().expect("addr");
    let echo_port = echo.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let seen = offers;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut calls: HashMap<String, usize> = HashMap::new();
        while let Ok((n, from)) = sip.recv_from(&mut buf).await {
            let Ok(req) = Message::parse(&buf[..n]) else {
                continue;
            };
            let method = req.method().unwrap_or_default().to_owned();
            if method == "ACK" || req.code().is_some() {
                continue;
            }
            let body = if method == "INVITE" {
                let offer = req.body_str().unwrap_or_default();
                let audio = sdp::parse_answer(offer).expect("audio offer parses");
                let room_video = sdp::parse_video_answer(offer)
                    .expect("video offer parses")
                    .expect("video offered");
                let next = calls.len();
                let index = *calls
                    .entry(req.call_id().unwrap_or_default().to_owned())
                    .or_insert(next);
                {
                    let mut offers = seen.lock().expect("lock");
                    if offers.len() == index {
                        offers.push(room_video.rtp);
                    }
                }
                let localhost = "127.0.0.1".parse().expect("ip");
                let mut answer = sdp::offer_with_video(
                    localhost,
                    echo_port,
                    audio.codec,
                    20,
                    1,
                    match &video {
                        VideoAnswer::Ports(ports) => Some(VideoOffer {
                            port: ports[index % ports.len()],
                            bitrate_bps: 500_000,
                        }),
                        VideoAnswer::Refuse | VideoAnswer::Omit => None,
                    },
                );
                if let VideoAnswer::Refuse = video {
                    answer.push_str("m=video 0 RTP/AVP 96\r\n");
                }
                Some(answer)
            } else {
                None
            };
            let mut resp = Message::response(200, "OK");
            for name in ["Via", "From", "Call-ID", "CSeq"] {
                resp = resp.with(name, req.header(name).unwrap_or_default());
            }
            let to = req.header("To").unwrap_or_default().to_owned();
            let to = if header_param(&to, "tag").is_some() {
                to
            } else {
                format!("{to};tag=uas")
            };
            resp = resp
                .with("To", to)
                .with("Contact", format!("<sip:uas@{sip_addr}>"));
            if let Some(body) = body {
                resp = resp.with_body("application/sdp", body);
            }
            let _ = sip.send_to(&resp.to_bytes(), from).await;
        }
    });
    sip_addr
}

/// A socket that sends every datagram (RTP and RTCP) back where it came from.
async fn start_video_echo() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    port
}

/// Two sockets joining call 0 and call 1: what arrives on one goes out of the
/// other to the other room's offered video address. `drop_from_first` RTP
/// packets of call 0 are lost on the way (RTCP is never dropped).
async fn start_video_relay(offers: Offers, drop_from_first: Arc<AtomicU32>) -> [u16; 2] {
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let ports = [
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    ];
    for (from, to, peer) in [(a.clone(), b.clone(), 1usize), (b, a, 0usize)] {
        let offers = offers.clone();
        let drop_from_first = drop_from_first.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = from.recv_from(&mut buf).await {
                let datagram = &buf[..n];
                if peer == 1
                    && !rtp::is_rtcp(datagram)
                    && drop_from_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                        .is_ok()
                {
                    continue;
                }
                let dest = offers.lock().expect("lock").get(peer).copied();
                if let Some(dest) = dest {
                    let _ = to.send_to(datagram, dest).await;
                }
            }
        });
    }
    ports
}

/// Polls `cond` every 20 ms; panics with `what` after 15 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The picture above the bottom tenth (where the moving square runs).
fn body_colour(room: &RoomSystem) -> Option<(u8, u8, u8)> {
    room.seen_colour(0.05, 0.05, 0.95, 0.85)
}

const RED: (u8, u8, u8) = (220, 30, 30);
const BLUE: (u8, u8, u8) = (30, 60, 220);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_sees_its_own_colour_and_its_pli_and_fir_bring_keyframes() {
    let echo = start_video_echo().await;
    let server = start_uas(VideoAnswer::Ports(vec![echo]), Offers::default()).await;
    let cfg = RoomSystemConfig::new(server, "4711", "Echo Room").with_video(VideoSpec::new(RED));
    let room = RoomSystem::call(cfg).await.expect("call");
    let answer = room.video_stats().answer.expect("video accepted");
    assert_eq!(answer.rtp.port(), echo);
    assert_eq!(answer.payload_type, 96);
    assert!(room.local_video_addr().is_some());

    wait_for("a picture", || {
        room.video_stats().received.frames_decoded >= 5
    })
    .await;
    let seen = body_colour(&room).expect("colour");
    assert!(colour_distance(seen, RED) <= 12, "{seen:?}");
    let stats = room.video_stats();
    assert_eq!(stats.received.frame_size, Some((320, 180)));
    // The first picture was an IDR, so no PLI was needed to start.
    assert_eq!(stats.received.pli_sent, 0, "{stats:?}");
    assert_eq!(stats.sent.keyframes, 1, "{stats:?}");
    assert!(stats.first_picture_latency.is_some());

    // Our PLI names the SSRC we receive — our own, through the echo — so it
    // comes back to our sender, which answers with an IDR that we receive.
    room.request_keyframe(KeyframeRequest::Pli);
    wait_for("a keyframe after PLI", || {
        let s = room.video_stats();
        s.sent.pli_received == 1 && s.received.keyframes >= 2
    })
    .await;
    room.request_keyframe(KeyframeRequest::Fir);
    wait_for("a keyframe after FIR", || {
        let s = room.video_stats();
        s.sent.fir_received == 1 && s.received.keyframes >= 3
    })
    .await;
    let s = room.video_stats();
    assert_eq!(
        (s.sent.keyframes, s.received.pli_sent, s.received.fir_sent),
        (3, 1, 1)
    );
    assert_eq!(s.received.decode_errors, 0);
    assert_eq!(s.malformed_datagrams, 0);

    // The colour follows set_video_colour.
    room.set_video_colour(BLUE);
    wait_for("blue", || {
        body_colour(&room).is_some_and(|c| colour_distance(c, BLUE) <= 12)
    })
    .await;

    let path = std::env::temp_dir().join(format!("tandem-loadtest-{}.ppm", std::process::id()));
    room.save_seen(&path).expect("save");
    let ppm = std::fs::read(&path).expect("read");
    assert!(ppm.starts_with(b"P6\n320 180\n255\n"));
    let _ = std::fs::remove_file(&path);
    // Audio still flows beside video.
    assert!(room.stats().packets_received > 0);
    room.hangup().await.expect("hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_see_each_other_and_loss_is_repaired_by_pli() {
    let drop_from_a = Arc::new(AtomicU32::new(0));
    let offers = Offers::default();
    let ports = start_video_relay(offers.clone(), drop_from_a.clone()).await;
    let server = start_uas(VideoAnswer::Ports(ports.to_vec()), offers).await;
    let a = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "Room A").with_video(VideoSpec::new(RED)),
    )
    .await
    .expect("call a");
    // A's first pictures (its only unrequested IDR among them) go nowhere:
    // the relay does not know B yet.
    wait_for("A sends", || a.video_stats().sent.frames >= 3).await;
    let b = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "Room B").with_video(VideoSpec::new(BLUE)),
    )
    .await
    .expect("call b");
    // The relay dropped A's pictures until B's offer told it where to send
    // them, so B joined A's stream mid-way: its first access unit was no IDR,
    // it asked with a PLI, and A answered.
    wait_for("both rooms see a picture", || {
        a.video_stats().received.frames_decoded >= 3 && b.video_stats().received.frames_decoded >= 3
    })
    .await;
    let (vb, va) = (b.video_stats(), a.video_stats());
    assert!(vb.received.access_units_skipped >= 1, "{vb:?}");
    assert!(
        vb.received.pli_sent >= 1 && va.sent.pli_received >= 1,
        "{vb:?} {va:?}"
    );
    assert!(va.sent.keyframes >= 2, "{va:?}");
    // A joined B's stream from its start: no request needed.
    assert_eq!(va.received.pli_sent, 0, "{va:?}");
    let (sa, sb) = (
        body_colour(&a).expect("a sees"),
        body_colour(&b).expect("b sees"),
    );
    assert!(colour_distance(sa, BLUE) <= 12, "A sees {sa:?}");
    assert!(colour_distance(sb, RED) <= 12, "B sees {sb:?}");

    // Lose A's next packets: B drops the access unit, sends a PLI on its own,
    // A answers with a keyframe and B decodes again.
    let before = (a.video_stats(), b.video_stats());
    drop_from_a.store(2, Ordering::SeqCst);
    wait_for("B recovers with a keyframe", || {
        let (sa, sb) = (a.video_stats(), b.video_stats());
        sb.received.access_units_dropped > before.1.received.access_units_dropped
            && sb.received.pli_sent > before.1.received.pli_sent
            && sa.sent.pli_received > before.0.sent.pli_received
            && sa.sent.keyframes > before.0.sent.keyframes
            && sb.received.keyframes > before.1.received.keyframes
            && sb.received.frames_decoded > before.1.received.frames_decoded + 3
    })
    .await;
    assert!(b.video_stats().received.packets_lost >= 2);

    // A freezes: B's pictures stop; A resumes: they come back.
    a.set_video_paused(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (frozen_a, frozen_b) = (
        a.video_stats().sent.frames,
        b.video_stats().received.frames_decoded,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.video_stats().sent.frames, frozen_a, "A still sends");
    assert_eq!(
        b.video_stats().received.frames_decoded,
        frozen_b,
        "B still decodes"
    );
    a.set_video_paused(false);
    wait_for("pictures again", || {
        b.video_stats().received.frames_decoded > frozen_b + 3
    })
    .await;
    assert_eq!(b.video_stats().received.decode_errors, 0);
    a.hangup().await.expect("hangup a");
    b.hangup().await.expect("hangup b");
}

#[tokio::test]
async fn refused_video_leaves_an_audio_call_and_a_missing_m_line_fails_it() {
    let server = start_uas(VideoAnswer::Refuse, Offers::default()).await;
    let room = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "Refused").with_video(VideoSpec::new(RED)),
    )
    .await
    .expect("call");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = room.video_stats();
    assert_eq!(v.answer, None);
    assert_eq!((v.sent.packets, v.received.packets), (0, 0));
    assert!(room.is_active());
    assert_eq!(room.seen_colour(0.0, 0.0, 1.0, 1.0), None);
    room.hangup().await.expect("hangup");

    let server = start_uas(VideoAnswer::Omit, Offers::default()).await;
    let err = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "Omitted").with_video(VideoSpec::new(RED)),
    )
    .await
    .expect_err("an answer without the video m-line is refused");
    assert!(
        matches!(&err, Error::Negotiation(m) if m.contains("no video m-line")),
        "{err}"
    );

    // A bad spec fails before anything is sent.
    let err = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "Odd")
            .with_video(VideoSpec::new(RED).with_size(321, 180)),
    )
    .await
    .expect_err("odd width");
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_rooms_share_one_clip_and_only_count_what_they_receive() {
    let echo = start_video_echo().await;
    let server = start_uas(VideoAnswer::Ports(vec![echo]), Offers::default()).await;
    let spec = VideoSpec::new((40, 200, 90))
        .with_size(256, 144)
        .with_fps(30.0);
    let clip = Arc::new(VideoClip::encode(&spec, 30).expect("clip"));
    let options = tandem_loadtest::CallOptions {
        decode_video: false,
        listen: false,
        ..Default::default()
    };
    let mut rooms = Vec::new();
    for i in 0..3 {
        let cfg = RoomSystemConfig::new(server, "1", format!("replay-{i}"))
            .with_video_replay(clip.clone());
        rooms.push(
            RoomSystem::call_with(cfg, options.clone())
                .await
                .expect("call"),
        );
    }
    // One more that decodes what it gets back.
    let watcher = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "replay-watch").with_video_replay(clip.clone()),
    )
    .await
    .expect("call");
    // 30 pictures at 30 fps: one IDR a second from looping alone.
    wait_for("two clip loops everywhere", || {
        rooms
            .iter()
            .all(|r| r.video_stats().received.keyframes >= 2)
            && watcher.video_stats().received.frames_decoded >= 40
    })
    .await;
    for r in &rooms {
        let s = r.video_stats();
        assert_eq!(s.received.frames_decoded, 0);
        assert!(s.received.access_units >= 30, "{s:?}");
        assert!(s.sent.packets >= clip.packets() as u64, "{s:?}");
        assert_eq!(s.received.pli_sent, 0, "{s:?}");
        assert!(r.seen().is_none());
    }
    let seen = body_colour(&watcher).expect("colour");
    // Textured, so the average is near the colour, not on it.
    assert!(colour_distance(seen, (40, 200, 90)) <= 40, "{seen:?}");
    assert_eq!(watcher.video_stats().received.decode_errors, 0);
    // Distinct SSRCs per leg, though the packets are the same clip's.
    let mut ssrcs: Vec<_> = rooms
        .iter()
        .chain([&watcher])
        .filter_map(|r| r.video_stats().received.remote_ssrc)
        .collect();
    ssrcs.sort_unstable();
    ssrcs.dedup();
    assert_eq!(ssrcs.len(), 4);
    for r in rooms {
        r.hangup().await.expect("hangup");
    }
    watcher.hangup().await.expect("hangup");
}
