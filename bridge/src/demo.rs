//! `tandem up --demo`: synthetic room systems talking in conference 1000, so a
//! newcomer who dials in hears something at once. They take turns being the
//! loudest, so the active speaker moves.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tandem_loadtest::{Codec, RoomSystem, RoomSystemConfig, VideoSource, VideoSpec};

use crate::node::Node;

pub const DEMO_CONFERENCE: &str = "1000";

pub async fn start(node: &Node) -> anyhow::Result<()> {
    let server = match node.sip_addr.ip() {
        ip if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), node.sip_addr.port())
        }
        _ => node.sip_addr,
    };
    // Each has a camera of its own colour, so a caller with video sees who
    // is who in the layout and the talker move into the large pane.
    let voices = [
        ("Alice", 392.0, Codec::Opus, (200, 40, 40)),
        ("Bob", 523.25, Codec::Pcmu, (40, 160, 60)),
        ("Carol", 659.25, Codec::Opus, (50, 70, 200)),
    ];
    let mut rooms = Vec::new();
    for (name, hz, codec, colour) in voices {
        let room = RoomSystem::call(RoomSystemConfig {
            server,
            conference: DEMO_CONFERENCE.into(),
            name: name.into(),
            local_ip: server.ip(),
            codec,
            tone_hz: Some(hz),
            amplitude: 0.05,
            ptime_ms: 20,
            video: Some(VideoSource::Live(VideoSpec::new(colour))),
        })
        .await?;
        rooms.push((room, hz));
    }
    tokio::spawn(async move {
        let mut turn = 0usize;
        loop {
            for (i, (room, hz)) in rooms.iter().enumerate() {
                let amplitude = if i == turn % rooms.len() { 0.3 } else { 0.03 };
                room.set_tone(Some(*hz), amplitude);
            }
            turn += 1;
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    });
    Ok(())
}
