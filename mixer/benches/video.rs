//! Video cost, against raw OpenH264 measured in the same run.
//!
//! - raw: OpenH264 720p encode and decode, frames per second, of a moving
//!   synthetic picture (the baseline).
//! - view: one 720p continuous-presence view of a 20-party conference
//!   (1+7 and 4x4), compose + encode, views per second, and its ratio to
//!   the raw encode (1.0 would mean composing costs nothing).
//! - sharing: encoders a 20-receiver conference needs at one class, which
//!   must stay at most 1 + the visible participants, not 20.
//!
//! Plain `main` (harness = false) so that the whole run stays well under a
//! minute and a half on two cores. Wall-clock reads are what a benchmark is
//! for; the core itself never reads the clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use tandem_mixer::ParticipantId;
use tandem_mixer::video::frame::Rgb;
use tandem_mixer::video::{
    EncoderSettings, I420Frame, Layout, LayoutChoice, ReceiverSettings, ResolutionClass,
    VideoConfig, VideoDecoder, VideoEncoder, VideoMixer,
};

const PARTIES: u64 = 20;
/// Each measurement runs at least this many frames and this long.
const MIN_FRAMES: usize = 30;
const MIN_TIME: Duration = Duration::from_secs(3);

/// A picture that moves: diagonal luma stripes shifting with `t`, a
/// per-source tint, and a bright block sliding across, so that the encoder
/// has motion to search and residual to code.
fn moving_picture(w: u32, h: u32, seed: u64, t: u64) -> I420Frame {
    let mut f = I420Frame::solid(
        w,
        h,
        Rgb(
            (seed * 53 % 200) as u8 + 30,
            (seed * 97 % 200) as u8 + 30,
            (seed * 151 % 200) as u8 + 30,
        ),
    )
    .unwrap();
    let (y, _, _) = f.planes_mut();
    for row in 0..h {
        for col in 0..w {
            let i = (row * w + col) as usize;
            let stripe = ((u64::from(row + col) + t * 3) / 8 % 2) as u8;
            y[i] = y[i].saturating_add(stripe * 24);
        }
    }
    let bx = (t * 7 % u64::from(w.saturating_sub(w / 5).max(1))) as u32 & !1;
    f.fill_rect(
        tandem_mixer::video::Rect::new(bx, h / 3, w / 5, h / 4),
        Rgb::WHITE,
    );
    f
}

/// Runs `step` until both minimums are met; returns iterations per second.
fn rate(mut step: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    while n < MIN_FRAMES || start.elapsed() < MIN_TIME {
        step(n);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let total = Instant::now();
    let (w, h) = ResolutionClass::Hd720.size();
    let bitrate = ResolutionClass::Hd720.default_bitrate_bps();

    // --- raw OpenH264 -------------------------------------------------------
    let pictures: Vec<I420Frame> = (0..30).map(|t| moving_picture(w, h, 1, t)).collect();
    let mut enc = VideoEncoder::new(EncoderSettings::new(w, h, 30.0, bitrate)).unwrap();
    let mut stream = Vec::new();
    let encode_fps = rate(|i| {
        let out = enc.encode(&pictures[i % pictures.len()], false).unwrap();
        if stream.len() < 120 {
            stream.push(out.annexb.clone());
        }
        black_box(out);
    });
    let stream: Vec<Vec<u8>> = stream.into_iter().filter(|au| !au.is_empty()).collect();
    let mut dec = VideoDecoder::new().unwrap();
    let decode_fps = rate(|i| {
        // A fresh decoder at each pass, which starts at the keyframe.
        if i > 0 && i % stream.len() == 0 {
            dec = VideoDecoder::new().unwrap();
        }
        black_box(dec.decode(&stream[i % stream.len()]).unwrap());
    });
    println!(
        "raw openh264 720p encode: {encode_fps:8.1} fps ({} kbit/s target)",
        bitrate / 1000
    );
    println!("raw openh264 720p decode: {decode_fps:8.1} fps");

    // --- one 720p view of a 20-party conference -------------------------------
    let sources: Vec<Vec<I420Frame>> = (1..=PARTIES)
        .map(|p| (0..8).map(|t| moving_picture(640, 360, p, t)).collect())
        .collect();
    let order: Vec<ParticipantId> = (1..=PARTIES).map(ParticipantId).collect();
    let onlooker = ParticipantId(1000);
    for layout in [Layout::OnePlus7, Layout::Grid4x4] {
        let mut m = VideoMixer::new(VideoConfig::default()).unwrap();
        for p in 1..=PARTIES {
            m.add_participant(ParticipantId(p), &format!("Party {p}"))
                .unwrap();
        }
        m.set_speaker_order(&order);
        m.set_receiver(
            onlooker,
            ReceiverSettings {
                layout: LayoutChoice::Fixed(layout),
                class: ResolutionClass::Hd720,
            },
        );
        let views_per_s = rate(|t| {
            for p in 1..=PARTIES {
                let frame = sources[(p - 1) as usize][t % 8].clone();
                m.push_source_frame(ParticipantId(p), frame).unwrap();
            }
            black_box(m.tick().unwrap());
        });
        println!(
            "compose+encode 20-party {layout:>4} 720p view: {views_per_s:8.1} views/s \
             ({:.2}x raw encode; includes pushing 20 new 360p sources per tick)",
            views_per_s / encode_fps
        );
    }

    // --- encoder sharing -----------------------------------------------------
    for layout in [Layout::OnePlus7, Layout::Grid4x4] {
        let mut m = VideoMixer::new(VideoConfig::default()).unwrap();
        for p in 1..=PARTIES {
            let id = ParticipantId(p);
            m.add_participant(id, &format!("Party {p}")).unwrap();
            m.push_source_frame(id, sources[(p - 1) as usize][0].clone())
                .unwrap();
            m.set_receiver(
                id,
                ReceiverSettings {
                    layout: LayoutChoice::Fixed(layout),
                    class: ResolutionClass::Sd360,
                },
            );
        }
        m.set_speaker_order(&order);
        m.tick().unwrap();
        let encoders = m.stats().encoders;
        let bound = 1 + layout.pane_count();
        println!(
            "encoders for {PARTIES} receivers, {layout:>4} at 360p: {encoders} \
             (bound 1 + {} visible = {bound}; one per receiver would be {PARTIES})",
            layout.pane_count()
        );
        assert!(encoders <= bound, "encode once per view is broken");
    }

    println!("total bench time: {:.1} s", total.elapsed().as_secs_f64());
}
