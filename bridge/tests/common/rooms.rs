//! Synthetic room systems ([`tandem_loadtest::RoomSystem`]) from blocking
//! tests: they run on a tokio runtime the test owns, while the test thread
//! sleeps and polls the node's API.

use std::time::Duration;

use tandem_loadtest::{CallOptions, Codec, RoomSystem, RoomSystemConfig, VideoSpec};

use super::Node;

/// A two-worker runtime for room systems (the machine has two cores; the
/// node under test needs them too).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime for room systems")
}

/// Calls conference `conference` as room system `name` sending `tone`
/// (`Some((hz, amplitude))`) or quiet-room noise (`None`); panics with the
/// node's log unless the call is established within 15 s.
pub fn call(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conference: &str,
    name: &str,
    codec: Codec,
    tone: Option<(f32, f32)>,
) -> RoomSystem {
    let mut cfg = RoomSystemConfig::new(node.sip_addr(), conference, name).with_codec(codec);
    if let Some((hz, amplitude)) = tone {
        cfg = cfg.with_tone(hz, amplitude);
    }
    place(rt, node, conference, name, cfg)
}

/// As [`call`], with a camera showing `video` (Opus, quiet room).
pub fn call_video(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conference: &str,
    name: &str,
    video: VideoSpec,
) -> RoomSystem {
    let cfg = RoomSystemConfig::new(node.sip_addr(), conference, name).with_video(video);
    place(rt, node, conference, name, cfg)
}

/// Places the call; panics with the node's log unless it is established
/// within 15 s.
fn place(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conference: &str,
    name: &str,
    cfg: RoomSystemConfig,
) -> RoomSystem {
    place_with(rt, node, conference, name, cfg, CallOptions::default())
}

/// As [`place`], with call options (content, listening...).
pub fn place_with(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    conference: &str,
    name: &str,
    cfg: RoomSystemConfig,
    options: CallOptions,
) -> RoomSystem {
    let placed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), RoomSystem::call_with(cfg, options)).await
    });
    match placed {
        Ok(Ok(room)) => room,
        Ok(Err(e)) => panic!(
            "room system {name} could not join conference {conference}: {e}\n--- node log ---\n{}",
            node.log_tail()
        ),
        Err(_) => panic!(
            "room system {name}: no answer from conference {conference} within 15 s\n--- node log ---\n{}",
            node.log_tail()
        ),
    }
}
