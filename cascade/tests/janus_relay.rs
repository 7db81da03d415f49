//! Story: the cascade agent joins the native meeting (Janus VideoRoom 4711)
//! through the Edge TURN relay (coturn) with a relay-only ICE policy,
//! publishes simulcast H.264 (720p/360p/180p) plus Opus, and a native
//! participant's subscription receives it: 1280 wide on the high layer,
//! 320 wide after switching to the low layer.
//!
//! Janus never uses loopback for media, so the test re-executes itself
//! inside a private network namespace (`unshare -n`) with a veth pair on
//! 10.99.0.1, starts coturn and Janus there, and runs the scenario. Nothing
//! leaves the namespace.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tandem_cascade::agent::{
    CandidateKind, IceServer, PublishSession, ReceivedCodec, SessionConfig, SubscribeSession,
    TurnCredential,
};
use tandem_cascade::connector::{MediaKind, StreamRequest};
use tandem_cascade::janus::{JanusConfig, JanusConnector};
use tandem_cascade::{IcePolicy, MeetingConnector, MeetingEvent, RoomId};
use tandem_mixer::audio::{CodecKind, encoder};
use tandem_mixer::video::codec::VideoDecoder;
use tandem_mixer::video::{
    I420Frame, Rect, Rgb, SimulcastConfig, SimulcastEncoder, SimulcastLayer,
};
use tandem_proto::rtp::MediaTime;
use tandem_proto::rtp::h264::H264Depacketizer;
use tokio::sync::mpsc;

const CHILD_ENV: &str = "TANDEM_CASCADE_NETNS_CHILD";
const MEDIA_IP: &str = "10.99.0.1";
const ROOM: u64 = 4711;
const JANUS_URL: &str = "http://127.0.0.1:8088/janus";
const ADMIN_URL: &str = "http://127.0.0.1:7088/admin";

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

#[test]
fn janus_relay() {
    if std::env::var_os(CHILD_ENV).is_none() {
        for tool in ["janus", "turnserver", "ip", "unshare", "stdbuf"] {
            assert!(
                on_path(tool),
                "{tool} not found: apt-get install janus coturn iproute2 (util-linux for unshare)"
            );
        }
        let exe = std::env::current_exe().expect("test binary path");
        let status = Command::new("unshare")
            .arg("-n")
            .arg("--")
            .arg(exe)
            .args(["janus_relay", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .status()
            .expect("unshare runs");
        assert!(status.success(), "scenario in the network namespace failed");
        return;
    }
    let peers = Peers::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(scenario(&peers));
    drop(rt);
    drop(peers);
}

/// coturn and Janus inside the namespace; killed by PID on drop.
struct Peers {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Peers {
    fn start() -> Peers {
        for cmd in [
            "ip link set lo up",
            "ip link add v0 type veth peer name v1",
            "ip addr add 10.99.0.1/24 dev v0",
            "ip link set v0 up",
            "ip link set v1 up",
        ] {
            let args: Vec<&str> = cmd.split(' ').collect();
            let ok = Command::new(args[0])
                .args(&args[1..])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "{cmd} failed");
        }
        let dir = std::env::temp_dir().join(format!("tandem-cascade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("janus");
        std::fs::create_dir_all(&conf).expect("conf dir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/peers/janus");
        for entry in std::fs::read_dir(&src).expect("deploy/peers/janus") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("config");
            let name = path.file_name().expect("name");
            std::fs::write(
                conf.join(name),
                text.replace("@CONF@", conf.to_str().expect("utf8")),
            )
            .expect("write config");
        }
        let mut children = Vec::new();
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        children.push(
            // Line-buffered, so the log shows allocations while it runs.
            Command::new("stdbuf")
                .args([
                    "-oL",
                    "turnserver",
                    "-n",
                    "--listening-ip=10.99.0.1",
                    "--relay-ip=10.99.0.1",
                    "--listening-port=3478",
                    "--min-port=49160",
                    "--max-port=49200",
                    "--lt-cred-mech",
                    "--user=test:test123",
                    "--realm=itest.local",
                    "--fingerprint",
                    "--no-tls",
                    "--no-dtls",
                    "--no-cli",
                    "--allow-loopback-peers",
                    "--no-rfc5780",
                    "--log-file=stdout",
                    "--simple-log",
                    "--verbose",
                ])
                .arg(format!("--userdb={}", dir.join("turndb").display()))
                .stdout(log("coturn.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("turnserver starts"),
        );
        children.push(
            Command::new("janus")
                .arg("-F")
                .arg(&conf)
                .arg("-C")
                .arg(conf.join("janus.jcfg"))
                .args(["-o", "-D"])
                .stdout(log("janus.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("janus starts"),
        );
        Peers { dir, children }
    }

    fn coturn_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("coturn.log")).unwrap_or_default()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("peer logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn http_post(url: &str, body: &Value) -> Option<Value> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::post(url)
        .body(Full::new(Bytes::from(body.to_string())))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

async fn admin(request: &str, extra: Value) -> Value {
    let mut body = json!({"janus": request, "transaction": "adm", "admin_secret": "janusoverlord"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    http_post(ADMIN_URL, &body).await.unwrap_or(Value::Null)
}

async fn wait_for_janus() {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let info = http_post(JANUS_URL, &json!({"janus": "info", "transaction": "i"})).await;
        if info.is_some_and(|v| v["janus"] == "server_info") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("janus did not come up on {JANUS_URL}");
}

fn session_config() -> SessionConfig {
    SessionConfig {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:{MEDIA_IP}:3478?transport=udp")],
            credential: TurnCredential::Static {
                username: "test".into(),
                password: "test123".into(),
            },
        }],
        ice_policy: IcePolicy::Relay,
        bind: MEDIA_IP.parse::<IpAddr>().expect("ip"),
    }
}

/// Encoded media from the synthetic source, produced on its own thread
/// (encoding three layers is CPU work that must not sit on the runtime).
enum Media {
    Video {
        layer: SimulcastLayer,
        timestamp: MediaTime,
        data: Vec<u8>,
    },
    Audio {
        timestamp: MediaTime,
        data: Vec<u8>,
    },
}

fn synthetic_source(tx: mpsc::Sender<Media>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut sim = SimulcastEncoder::new(SimulcastConfig::default()).expect("simulcast encoder");
    let mut opus = encoder(CodecKind::Opus, 20).expect("opus encoder");
    let start = Instant::now();
    let mut audio_ts = 0u32;
    let mut audio_sent = Duration::ZERO;
    let mut tick = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut frame = I420Frame::solid(1280, 720, Rgb(20, 40, 160)).expect("frame");
        let x = ((tick * 12) % 1100) as u32;
        frame.fill_rect(
            Rect {
                x,
                y: 260,
                w: 160,
                h: 200,
            },
            Rgb(240, 200, 30),
        );
        if tick.is_multiple_of(30) {
            for layer in SimulcastLayer::ALL {
                sim.request_keyframe(layer);
            }
        }
        let outputs = sim.tick(&frame).expect("encode");
        let timestamp = MediaTime((tick * 3000) as u32);
        for out in outputs {
            let media = Media::Video {
                layer: out.layer,
                timestamp,
                data: out.encoded.annexb,
            };
            if tx.blocking_send(media).is_err() {
                return;
            }
        }
        // Audio: a 440 Hz tone, 20 ms packets, kept up with wall time.
        while audio_sent <= start.elapsed() {
            let pcm: Vec<i16> = (0..960)
                .map(|i| {
                    let t = f64::from(audio_ts + i) / 48_000.0;
                    ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
                })
                .collect();
            let mut data = Vec::new();
            opus.encode(&pcm, &mut data).expect("opus");
            if tx
                .blocking_send(Media::Audio {
                    timestamp: MediaTime(audio_ts),
                    data,
                })
                .is_err()
            {
                return;
            }
            audio_ts = audio_ts.wrapping_add(960);
            audio_sent += Duration::from_millis(20);
        }
        tick += 1;
        let next = start + Duration::from_micros(tick * 33_333);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Decodes the received video of one mid and reports picture widths.
struct VideoSink {
    depacketizer: H264Depacketizer,
    decoder: VideoDecoder,
}

impl VideoSink {
    fn new() -> Self {
        VideoSink {
            depacketizer: H264Depacketizer::new(),
            decoder: VideoDecoder::new().expect("decoder"),
        }
    }

    fn push(&mut self, sequence: u16, ts: MediaTime, marker: bool, payload: &[u8]) -> Vec<u32> {
        self.depacketizer
            .handle_packet(sequence, ts, marker, payload);
        let mut widths = Vec::new();
        while let Some(au) = self.depacketizer.poll_access_unit() {
            if let Ok(Some(frame)) = self.decoder.decode(&au.data) {
                widths.push(frame.width());
            }
        }
        widths
    }
}

async fn scenario(peers: &Peers) {
    let started = Instant::now();
    wait_for_janus().await;
    let janus_up = started.elapsed();

    // The agent joins room 4711 (creating it, H.264 only).
    let mut config = JanusConfig::new(JANUS_URL);
    config.create_room = true;
    config.admin_key = Some("supersecret".into());
    let agent_start = Instant::now();
    let mut agent = JanusConnector::new(config.clone());
    let joined = agent
        .join(RoomId(ROOM), "tandem-vtc")
        .await
        .expect("agent joins");
    println!("agent joined {:?} as {:?}", joined.room, joined.id);

    // A native participant (plain connector) is in the room too.
    let mut native = JanusConnector::new(config);
    let native_joined = native
        .join(RoomId(ROOM), "native-observer")
        .await
        .expect("native joins");
    assert!(
        native_joined.publishers.is_empty(),
        "agent is not publishing yet"
    );

    // Publish through the relay.
    let session_config = session_config();
    let mut publisher = PublishSession::new(&session_config, SystemTime::now())
        .await
        .expect("publish session");
    let offer = publisher.create_offer().await.expect("offer");
    assert!(
        offer.sdp.contains("typ relay"),
        "relay candidate gathered:\n{}",
        offer.sdp
    );
    assert!(
        !offer.sdp.contains("typ host"),
        "relay policy offers no host candidates"
    );
    assert!(
        offer.sdp.contains("a=rid:h send"),
        "simulcast rids offered:\n{}",
        offer.sdp
    );
    let answer = agent.publish(offer).await.expect("janus answers");
    publisher
        .handle_answer(answer)
        .await
        .expect("answer applies");
    publisher
        .wait_connected(Duration::from_secs(15))
        .await
        .expect("publisher connects through TURN");
    println!("publisher connected after {:?}", agent_start.elapsed());

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (media_tx, mut media_rx) = mpsc::channel::<Media>(64);
    let source = {
        let stop = stop.clone();
        std::thread::spawn(move || synthetic_source(media_tx, stop))
    };
    let sender = tokio::spawn(async move {
        while let Some(m) = media_rx.recv().await {
            let r = match m {
                Media::Video {
                    layer,
                    timestamp,
                    data,
                } => publisher.send_video(layer, timestamp, &data).await,
                Media::Audio { timestamp, data } => publisher.send_audio(timestamp, &data).await,
            };
            r.expect("media accepted");
        }
        publisher
    });

    // The native participant learns of the agent's publication.
    let agent_pub = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match native.next_event().await {
                Some(MeetingEvent::PublishersUpdated(list)) => {
                    if let Some(p) = list.into_iter().find(|p| p.id == joined.id) {
                        return p;
                    }
                }
                Some(_) => {}
                None => panic!("native connector closed"),
            }
        }
    })
    .await
    .expect("publisher event");
    println!("native sees {:?}", agent_pub);
    assert_eq!(agent_pub.display.as_deref(), Some("tandem-vtc"));
    let video = agent_pub
        .streams
        .iter()
        .find(|s| s.kind == MediaKind::Video)
        .expect("video stream");
    assert!(video.simulcast, "published as simulcast");
    assert_eq!(video.codec.as_deref(), Some("h264"));

    // Subscribe (also relay only) to everything the agent sends.
    let offer = native
        .subscribe(&[StreamRequest {
            publisher: joined.id,
            mid: None,
        }])
        .await
        .expect("subscribe");
    let video_mid = offer
        .streams
        .iter()
        .find(|s| s.kind == MediaKind::Video)
        .map(|s| s.mid.clone())
        .expect("subscribed video");
    let (mut sub, answer) =
        SubscribeSession::answer(&session_config, SystemTime::now(), &offer.offer, 1024)
            .await
            .expect("subscribe answer");
    native.start(offer.id, answer).await.expect("start");
    let mut packets = sub.take_packets().expect("packets");

    let mut sink = VideoSink::new();
    let mut first_packet: Option<Duration> = None;
    let mut audio_packets = 0u64;
    let mut widths_high = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while widths_high.len() < 30 && Instant::now() < deadline {
        let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), packets.recv()).await else {
            break;
        };
        first_packet.get_or_insert_with(|| agent_start.elapsed());
        match p.codec {
            ReceivedCodec::H264 => {
                assert_eq!(p.mid.as_deref(), Some(video_mid.as_str()));
                widths_high.extend(sink.push(p.sequence, p.timestamp, p.marker, &p.payload));
            }
            ReceivedCodec::Opus => audio_packets += 1,
            ReceivedCodec::Other(_) => {}
        }
    }
    let first_packet = first_packet.expect("no RTP reached the subscriber");
    println!(
        "FIGURE janus up after {janus_up:?}; agent start to first RTP at subscriber: {first_packet:?}"
    );
    println!(
        "high layer: {} pictures decoded, widths {:?}",
        widths_high.len(),
        &widths_high[..widths_high.len().min(5)]
    );
    assert!(
        widths_high.len() >= 30,
        "frames keep arriving on the high layer"
    );
    assert!(
        widths_high.iter().all(|w| *w == 1280),
        "high layer is 1280 wide: {widths_high:?}"
    );
    assert!(audio_packets > 0, "Opus arrives too");

    // Switch to the low layer.
    let switch_at = Instant::now();
    native
        .switch_layer(offer.id, &video_mid, SimulcastLayer::Low180)
        .await
        .expect("switch");
    let mut low = 0usize;
    let mut switched_after = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while low < 15 && Instant::now() < deadline {
        let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), packets.recv()).await else {
            break;
        };
        if p.codec == ReceivedCodec::H264 {
            for w in sink.push(p.sequence, p.timestamp, p.marker, &p.payload) {
                if w == 320 {
                    low += 1;
                    switched_after.get_or_insert_with(|| switch_at.elapsed());
                }
            }
        }
    }
    println!(
        "FIGURE low layer after switch: {low} pictures at 320 wide, first after {switched_after:?}"
    );
    assert!(low >= 15, "low layer (320 wide) arrives after the switch");

    // Janus' own view: the agent's handle receives three rids.
    let session = agent.session_id().expect("session");
    let handle = agent.publisher_handle_id().expect("handle");
    let info = admin(
        "handle_info",
        json!({"session_id": session, "handle_id": handle}),
    )
    .await;
    let media = &info["info"]["webrtc"]["media"];
    let mut video_info = None;
    if let Value::Object(m) = media {
        video_info = m.values().find(|v| v["type"] == "video").cloned();
    }
    let video_info = video_info.unwrap_or_else(|| panic!("no video in handle_info: {info:#}"));
    println!(
        "janus handle_info video: {}",
        serde_json::to_string(&video_info).unwrap_or_default()
    );
    let rids = video_info["rid-simulcast"]["rid"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        rids,
        vec![json!("h"), json!("m"), json!("l")],
        "three rids: {video_info:#}"
    );
    let in_stats = &video_info["stats"]["in"];
    let substream_packets: Vec<u64> = [
        &in_stats["packets"],
        &in_stats["video-simulcast-1"]["packets"],
        &in_stats["video-simulcast-2"]["packets"],
    ]
    .iter()
    .map(|v| v.as_u64().unwrap_or(0))
    .collect();
    println!("janus per-substream packets received: {substream_packets:?}");
    assert!(
        substream_packets.iter().all(|n| *n > 0),
        "all three substreams receive: {video_info:#}"
    );

    // Stop the source and look at the agent's side.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = source.join();
    let publisher = sender.await.expect("sender task");
    let stats = publisher.stats().await;
    let pair = stats.selected_pair.expect("selected candidate pair");
    println!("agent selected pair {pair:?}");
    assert_eq!(
        pair.local,
        CandidateKind::Relay,
        "media goes through the TURN relay"
    );
    for layer in SimulcastLayer::ALL {
        let c = publisher.layer_counters(layer);
        println!("layer {}: {c:?}", layer.rid());
        assert!(c.bytes > 0 && c.send_errors == 0);
    }
    println!("agent outbound streams: {:?}", stats.outbound);
    let sub_stats = sub.stats().await;
    println!(
        "subscriber pair {:?}, dropped {}",
        sub_stats.selected_pair,
        sub.dropped()
    );

    let log = peers.coturn_log();
    assert!(
        log.contains("ALLOCATE processed, success"),
        "coturn shows an allocation:\n{log}"
    );

    let _ = sub.close().await;
    let _ = publisher.close().await;
    native.leave().await.expect("native leaves");
    agent.leave().await.expect("agent leaves");
    let _ = std::io::stdout().flush();
}
