//! Self-test of the media path: a room system calls a tiny in-test UAS whose
//! SDP answer points at an RTP echo socket, so the room hears its own tone
//! after encode → RTP → decode. This is not a bridge test; it shows that
//! `heard()` works before anyone relies on it against the real node.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_loadtest::sip::{Message, header_param};
use tandem_loadtest::{Codec, Error, RoomSystem, RoomSystemConfig, sdp};
use tokio::net::UdpSocket;

/// Answers INVITE (200 with SDP at the echo socket, or 486 for conference
/// "busy"), BYE (200); echoes every RTP packet back to its sender.
async fn start_echo_uas() -> SocketAddr {
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
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sip.recv_from(&mut buf).await {
            let Ok(req) = Message::parse(&buf[..n]) else {
                continue;
            };
            let method = req.method().unwrap_or_default().to_owned();
            if method == "ACK" || req.code().is_some() {
                continue;
            }
            let busy = matches!(&req.start, tandem_loadtest::sip::StartLine::Request { uri, .. } if uri.contains("busy"));
            let (code, body) = match method.as_str() {
                "INVITE" if busy => (486, None),
                "INVITE" => {
                    let offer = sdp::parse_answer(req.body_str().unwrap_or_default())
                        .expect("offer parses");
                    let localhost = "127.0.0.1".parse().expect("ip");
                    (
                        200,
                        Some(sdp::offer(localhost, echo_port, offer.codec, 20, 1)),
                    )
                }
                _ => (200, None),
            };
            let mut resp = Message::response(code, "Echo");
            for name in ["Via", "From", "Call-ID", "CSeq"] {
                resp = resp.with(name, req.header(name).unwrap_or_default());
            }
            let to = req.header("To").unwrap_or_default().to_owned();
            let to = if header_param(&to, "tag").is_some() {
                to
            } else {
                format!("{to};tag=echo")
            };
            resp = resp
                .with("To", to)
                .with("Contact", format!("<sip:echo@{sip_addr}>"));
            if let Some(body) = body {
                resp = resp.with_body("application/sdp", body);
            }
            let _ = sip.send_to(&resp.to_bytes(), from).await;
        }
    });
    sip_addr
}

#[tokio::test]
async fn hears_its_own_opus_tone_through_an_echo_and_follows_set_tone() {
    let server = start_echo_uas().await;
    let cfg = RoomSystemConfig::new(server, "4711", "Loopback Room").with_tone(440.0, 0.3);
    let room = RoomSystem::call(cfg).await.expect("call");
    assert!(room.is_active());
    assert_eq!(room.stats().codec, Some(Codec::Opus));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = room.heard();
    assert!(
        heard.duration() > Duration::from_millis(800),
        "{:?}",
        heard.duration()
    );
    assert!(
        heard.contains(440.0),
        "440 at {} dB, floor {}",
        heard.tone_level(440.0),
        heard.noise_floor(440.0)
    );
    assert!(!heard.contains(700.0));
    // Level survives Opus within a few dB: 0.3 of full scale is -10.5 dBFS.
    assert!(
        (heard.tone_level(440.0) + 10.5).abs() < 4.0,
        "{}",
        heard.tone_level(440.0)
    );

    room.set_tone(Some(700.0), 0.3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    room.mark();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let heard = room.heard();
    assert!(heard.contains(700.0));
    assert!(!heard.contains(440.0));

    // Quiet: comfort noise only.
    room.set_tone(None, 0.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    room.mark();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let heard = room.heard();
    assert!(!heard.contains(700.0));
    assert!(heard.rms_db() < -50.0, "{}", heard.rms_db());

    let stats = room.stats();
    assert!(stats.packets_sent > 100, "{stats:?}");
    assert!(stats.packets_received > 100, "{stats:?}");
    assert_eq!(stats.packets_lost, 0);
    assert_eq!(stats.undecodable, 0);
    assert!(stats.first_audio_latency.is_some());
    room.hangup().await.expect("hangup");
}

#[tokio::test]
async fn g711_legs_hear_two_tones_from_two_rooms() {
    // Two rooms on the same echo each hear only themselves: the echo is per
    // sender, so this checks that legs do not cross.
    let server = start_echo_uas().await;
    let a = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "a")
            .with_codec(Codec::Pcmu)
            .with_tone(500.0, 0.2),
    );
    let b = RoomSystem::call(
        RoomSystemConfig::new(server, "1", "b")
            .with_codec(Codec::Pcma)
            .with_tone(1100.0, 0.2),
    );
    let (a, b) = tokio::try_join!(a, b).expect("calls");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (ha, hb) = (a.heard(), b.heard());
    assert!(ha.contains(500.0) && !ha.contains(1100.0));
    assert!(hb.contains(1100.0) && !hb.contains(500.0));
    assert_eq!(b.stats().payload_type, Some(8));
    a.hangup().await.expect("hangup a");
    b.hangup().await.expect("hangup b");
}

#[tokio::test]
async fn a_busy_answer_is_a_rejection() {
    let server = start_echo_uas().await;
    let err = RoomSystem::call(RoomSystemConfig::new(server, "busy", "x"))
        .await
        .expect_err("busy");
    assert!(matches!(err, Error::Rejected { code: 486, .. }), "{err}");
}
