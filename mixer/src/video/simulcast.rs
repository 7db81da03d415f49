//! Simulcast: one source, three independently decodable H.264 layers.
//!
//! The cascade agent publishes a conference's active speaker into a WebRTC
//! SFU (Janus VideoRoom) as simulcast, so that each subscriber gets the
//! largest layer its link carries: 720p30 ("h"), 360p30 ("m") and 180p15
//! ("l"). Each layer has its own OpenH264 encoder, bitrate and keyframes.
//!
//! Per tick (the output frame rate, 30 fps) the caller hands in the latest
//! source picture; every *active* layer due this tick gets it scaled once
//! (cropped to 16:9 like a pane, see [`super::scale`]) and
//! encoded. 180p runs at half rate, on every other tick. An inactive layer
//! costs nothing: it is neither scaled nor encoded, and its encoder is
//! dropped, so that the SFU telling us nobody wants 720p frees that CPU at
//! once. A layer that comes back starts with a keyframe, since whoever
//! switches to it has no reference pictures.
//!
//! Sans-IO like the rest of the mixer: time is the tick count, the caller
//! packetizes and sends the output.

use std::borrow::Cow;

use super::codec::{EncodedFrame, EncoderSettings, VideoEncoder};
use super::frame::I420Frame;
use super::scale::Scaler;
use crate::error::Error;

/// One simulcast layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimulcastLayer {
    /// 1280x720 at the full frame rate.
    Hd720,
    /// 640x360 at the full frame rate.
    Sd360,
    /// 320x180 at half the frame rate.
    Low180,
}

impl SimulcastLayer {
    /// Largest first: the order layers are scaled and reported in.
    pub const ALL: [SimulcastLayer; 3] = [
        SimulcastLayer::Hd720,
        SimulcastLayer::Sd360,
        SimulcastLayer::Low180,
    ];

    /// Picture size in pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            SimulcastLayer::Hd720 => (1280, 720),
            SimulcastLayer::Sd360 => (640, 360),
            SimulcastLayer::Low180 => (320, 180),
        }
    }

    /// The layer encodes on every `n`th tick.
    pub fn tick_interval(self) -> u64 {
        match self {
            SimulcastLayer::Hd720 | SimulcastLayer::Sd360 => 1,
            SimulcastLayer::Low180 => 2,
        }
    }

    /// The RTP stream id (RFC 8852 `rid`) browsers and Janus use for it.
    pub fn rid(self) -> &'static str {
        match self {
            SimulcastLayer::Hd720 => "h",
            SimulcastLayer::Sd360 => "m",
            SimulcastLayer::Low180 => "l",
        }
    }

    /// A sensible default bitrate (at the layer's own frame rate).
    pub fn default_bitrate_bps(self) -> u32 {
        match self {
            SimulcastLayer::Hd720 => 1_500_000,
            SimulcastLayer::Sd360 => 500_000,
            SimulcastLayer::Low180 => 150_000,
        }
    }

    fn index(self) -> usize {
        match self {
            SimulcastLayer::Hd720 => 0,
            SimulcastLayer::Sd360 => 1,
            SimulcastLayer::Low180 => 2,
        }
    }
}

/// How a [`SimulcastEncoder`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulcastConfig {
    /// Tick rate (the full-rate layers' frame rate).
    pub fps: f32,
    /// Bitrate per layer, bits per second.
    pub bitrate_hd720: u32,
    pub bitrate_sd360: u32,
    pub bitrate_low180: u32,
    /// Least ticks between two requested keyframes of one layer.
    pub keyframe_min_interval_ticks: u64,
    /// See [`EncoderSettings::max_slice_bytes`].
    pub max_slice_bytes: Option<u32>,
}

impl Default for SimulcastConfig {
    fn default() -> Self {
        SimulcastConfig {
            fps: 30.0,
            bitrate_hd720: SimulcastLayer::Hd720.default_bitrate_bps(),
            bitrate_sd360: SimulcastLayer::Sd360.default_bitrate_bps(),
            bitrate_low180: SimulcastLayer::Low180.default_bitrate_bps(),
            keyframe_min_interval_ticks: 15,
            max_slice_bytes: None,
        }
    }
}

impl SimulcastConfig {
    fn bitrate(&self, layer: SimulcastLayer) -> u32 {
        match layer {
            SimulcastLayer::Hd720 => self.bitrate_hd720,
            SimulcastLayer::Sd360 => self.bitrate_sd360,
            SimulcastLayer::Low180 => self.bitrate_low180,
        }
    }
}

/// One encoded picture of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOutput {
    pub layer: SimulcastLayer,
    pub encoded: EncodedFrame,
    /// The tick this picture belongs to (media time: tick x 90000 / fps).
    pub tick: u64,
}

/// Counters of one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub frames_encoded: u64,
    pub keyframes: u64,
    /// Pictures the rate controller skipped.
    pub frames_skipped: u64,
    /// Keyframe requests that had to wait for the rate limit.
    pub keyframe_requests_deferred: u64,
    pub encode_errors: u64,
}

#[derive(Debug)]
struct LayerState {
    active: bool,
    /// Made on the layer's first picture after (re)activation.
    encoder: Option<VideoEncoder>,
    /// The next picture must be a keyframe whatever the rate limit says
    /// (first picture after activation, or after a failed encode).
    keyframe_needed: bool,
    /// A subscriber asked (PLI/FIR); served within the rate limit.
    keyframe_requested: bool,
    last_keyframe_tick: Option<u64>,
    stats: LayerStats,
}

impl LayerState {
    fn new() -> Self {
        LayerState {
            active: true,
            encoder: None,
            keyframe_needed: true,
            keyframe_requested: false,
            last_keyframe_tick: None,
            stats: LayerStats::default(),
        }
    }
}

/// Encodes one source as the three simulcast layers. See the module docs.
#[derive(Debug)]
pub struct SimulcastEncoder {
    config: SimulcastConfig,
    layers: [LayerState; 3],
    scaler: Scaler,
    tick: u64,
}

impl SimulcastEncoder {
    /// All layers start active; encoders are made on first use.
    pub fn new(config: SimulcastConfig) -> Result<Self, Error> {
        if !(config.fps.is_finite() && config.fps > 0.0 && config.fps <= 120.0) {
            return Err(Error::InvalidFrame(format!("frame rate {}", config.fps)));
        }
        for layer in SimulcastLayer::ALL {
            if config.bitrate(layer) == 0 {
                return Err(Error::InvalidFrame(format!(
                    "simulcast layer {} has no bitrate",
                    layer.rid()
                )));
            }
        }
        Ok(SimulcastEncoder {
            config,
            layers: [LayerState::new(), LayerState::new(), LayerState::new()],
            scaler: Scaler::new(),
            tick: 0,
        })
    }

    pub fn config(&self) -> &SimulcastConfig {
        &self.config
    }

    /// Turns a layer on or off. Off drops its encoder; back on, its first
    /// picture is a keyframe.
    pub fn set_layer_active(&mut self, layer: SimulcastLayer, active: bool) {
        let state = &mut self.layers[layer.index()];
        if state.active == active {
            return;
        }
        state.active = active;
        if !active {
            state.encoder = None;
            state.keyframe_requested = false;
        }
        state.keyframe_needed = true;
    }

    pub fn is_layer_active(&self, layer: SimulcastLayer) -> bool {
        self.layers[layer.index()].active
    }

    /// A subscriber of `layer` lost pictures: the layer sends a keyframe as
    /// soon as its rate limit allows. Ignored for an inactive layer, which
    /// starts with a keyframe anyway.
    pub fn request_keyframe(&mut self, layer: SimulcastLayer) {
        let state = &mut self.layers[layer.index()];
        if state.active {
            state.keyframe_requested = true;
        }
    }

    pub fn stats(&self, layer: SimulcastLayer) -> LayerStats {
        self.layers[layer.index()].stats
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Encodes this tick's source picture into every active layer that is
    /// due (180p on every other tick, starting with the first). Layers come
    /// out largest first; a picture the rate controller skipped is left out.
    pub fn tick(&mut self, picture: &I420Frame) -> Result<Vec<LayerOutput>, Error> {
        self.tick += 1;
        let tick = self.tick;
        let mut outputs = Vec::with_capacity(SimulcastLayer::ALL.len());
        // The last scaled picture: smaller layers scale from it rather than
        // from the (usually larger) source. It is already 16:9, so the crop
        // happens once.
        let mut previous: Option<Cow<'_, I420Frame>> = None;
        for layer in SimulcastLayer::ALL {
            let state = &mut self.layers[layer.index()];
            if !state.active || !(tick - 1).is_multiple_of(layer.tick_interval()) {
                continue;
            }
            let (w, h) = layer.size();
            // Scale from the smallest picture at hand that is at least the
            // layer's size (the source if nothing is).
            let covers = |f: &I420Frame| f.width() >= w && f.height() >= h;
            let area = |f: &I420Frame| u64::from(f.width()) * u64::from(f.height());
            let base: &I420Frame = match &previous {
                Some(p) if covers(p) && !(covers(picture) && area(picture) <= area(p)) => p,
                _ => picture,
            };
            let scaled: Cow<'_, I420Frame> = if (picture.width(), picture.height()) == (w, h) {
                Cow::Borrowed(picture)
            } else {
                Cow::Owned(self.scaler.scale(base, w, h)?)
            };

            let encoder = match &mut state.encoder {
                Some(e) => e,
                None => {
                    let fps = self.config.fps / layer.tick_interval() as f32;
                    let mut settings = EncoderSettings::new(w, h, fps, self.config.bitrate(layer));
                    settings.max_slice_bytes = self.config.max_slice_bytes;
                    state.encoder.insert(VideoEncoder::new(settings)?)
                }
            };
            let interval = self.config.keyframe_min_interval_ticks;
            let allowed = state
                .last_keyframe_tick
                .is_none_or(|last| tick.saturating_sub(last) >= interval);
            if state.keyframe_requested && !allowed && !state.keyframe_needed {
                state.stats.keyframe_requests_deferred += 1;
            }
            let force = state.keyframe_needed || (state.keyframe_requested && allowed);
            match encoder.encode(&scaled, force) {
                Err(_) => {
                    state.stats.encode_errors += 1;
                    state.keyframe_needed = true;
                }
                Ok(encoded) if encoded.annexb.is_empty() => {
                    // Skipped by the rate controller; a forced keyframe
                    // stays owed.
                    state.stats.frames_skipped += 1;
                }
                Ok(encoded) => {
                    state.stats.frames_encoded += 1;
                    if encoded.keyframe {
                        state.stats.keyframes += 1;
                        state.last_keyframe_tick = Some(tick);
                        state.keyframe_needed = false;
                        state.keyframe_requested = false;
                    }
                    outputs.push(LayerOutput {
                        layer,
                        encoded,
                        tick,
                    });
                }
            }
            previous = Some(scaled);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::codec::VideoDecoder;
    use crate::video::frame::{Rect, Rgb};

    /// A 4:3 source, left half red and right half blue.
    fn source() -> I420Frame {
        let mut f = I420Frame::solid(960, 720, Rgb::BLUE).unwrap();
        f.fill_rect(Rect::new(0, 0, 480, 720), Rgb::RED);
        f
    }

    fn count(out: &[LayerOutput], layer: SimulcastLayer) -> usize {
        out.iter().filter(|o| o.layer == layer).count()
    }

    #[test]
    fn video_simulcast_inactive_layers_produce_nothing() {
        let mut enc = SimulcastEncoder::new(SimulcastConfig::default()).unwrap();
        enc.set_layer_active(SimulcastLayer::Hd720, false);
        enc.set_layer_active(SimulcastLayer::Low180, false);
        let src = source();
        for _ in 0..6 {
            let out = enc.tick(&src).unwrap();
            assert_eq!(count(&out, SimulcastLayer::Hd720), 0);
            assert_eq!(count(&out, SimulcastLayer::Low180), 0);
            assert_eq!(count(&out, SimulcastLayer::Sd360), 1);
        }
        assert_eq!(enc.stats(SimulcastLayer::Hd720), LayerStats::default());
        assert_eq!(enc.stats(SimulcastLayer::Low180), LayerStats::default());
        assert_eq!(enc.stats(SimulcastLayer::Sd360).frames_encoded, 6);
        // No encoder is kept for an inactive layer.
        assert!(enc.layers[SimulcastLayer::Hd720.index()].encoder.is_none());
        // All off: nothing at all.
        enc.set_layer_active(SimulcastLayer::Sd360, false);
        assert!(enc.tick(&src).unwrap().is_empty());
        assert!(!enc.is_layer_active(SimulcastLayer::Sd360));
    }

    #[test]
    fn video_simulcast_180p_runs_at_half_rate() {
        let mut enc = SimulcastEncoder::new(SimulcastConfig::default()).unwrap();
        let src = source();
        let mut low_ticks = Vec::new();
        for _ in 0..10 {
            let out = enc.tick(&src).unwrap();
            assert_eq!(count(&out, SimulcastLayer::Hd720), 1);
            assert_eq!(count(&out, SimulcastLayer::Sd360), 1);
            low_ticks.extend(
                out.iter()
                    .filter(|o| o.layer == SimulcastLayer::Low180)
                    .map(|o| o.tick),
            );
            // Largest first.
            let order: Vec<SimulcastLayer> = out.iter().map(|o| o.layer).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted);
        }
        assert_eq!(low_ticks, vec![1, 3, 5, 7, 9]);
        assert_eq!(enc.stats(SimulcastLayer::Low180).frames_encoded, 5);
        assert_eq!(enc.stats(SimulcastLayer::Hd720).frames_encoded, 10);
        assert_eq!(enc.ticks(), 10);
    }

    #[test]
    fn video_simulcast_layers_decode_to_size_and_colour() {
        let mut enc = SimulcastEncoder::new(SimulcastConfig::default()).unwrap();
        let mut decoders: Vec<VideoDecoder> = SimulcastLayer::ALL
            .iter()
            .map(|_| VideoDecoder::new().unwrap())
            .collect();
        let mut last: Vec<Option<I420Frame>> = vec![None, None, None];
        let src = source();
        for _ in 0..6 {
            for out in enc.tick(&src).unwrap() {
                let i = out.layer.index();
                last[i] = decoders[i]
                    .decode(&out.encoded.annexb)
                    .unwrap()
                    .or(last[i].take());
            }
        }
        for layer in SimulcastLayer::ALL {
            let pic = last[layer.index()].as_ref().expect("a picture");
            let (w, h) = layer.size();
            assert_eq!((pic.width(), pic.height()), (w, h), "{layer:?}");
            // Cropped to 16:9, not squeezed: still half red, half blue.
            let left = pic.average_rgb_in(Rect::new(0, 0, w / 2, h).centre(0.6));
            let right = pic.average_rgb_in(Rect::new(w / 2, 0, w / 2, h).centre(0.6));
            assert!(left.distance(Rgb::RED) <= 30, "{layer:?} left {left:?}");
            assert!(right.distance(Rgb::BLUE) <= 30, "{layer:?} right {right:?}");
        }
    }

    #[test]
    fn video_simulcast_reactivated_layer_starts_with_keyframe() {
        let mut enc = SimulcastEncoder::new(SimulcastConfig::default()).unwrap();
        let src = source();
        let first = enc.tick(&src).unwrap();
        assert!(first.iter().all(|o| o.encoded.keyframe));
        for _ in 0..3 {
            let out = enc.tick(&src).unwrap();
            assert!(out.iter().all(|o| !o.encoded.keyframe));
        }
        enc.set_layer_active(SimulcastLayer::Hd720, false);
        enc.tick(&src).unwrap();
        enc.set_layer_active(SimulcastLayer::Hd720, true);
        let out = enc.tick(&src).unwrap();
        let hd = out
            .iter()
            .find(|o| o.layer == SimulcastLayer::Hd720)
            .expect("720p is back");
        assert!(hd.encoded.keyframe);
        // The others were left alone.
        assert!(
            out.iter()
                .filter(|o| o.layer != SimulcastLayer::Hd720)
                .all(|o| !o.encoded.keyframe)
        );
        // And a fresh decoder can start on that keyframe.
        let mut dec = VideoDecoder::new().unwrap();
        assert!(dec.decode(&hd.encoded.annexb).unwrap().is_some());
        assert_eq!(enc.stats(SimulcastLayer::Hd720).keyframes, 2);
        // Re-activating 180p on an off tick: its keyframe comes on its next
        // due tick.
        enc.set_layer_active(SimulcastLayer::Low180, false);
        enc.set_layer_active(SimulcastLayer::Low180, true);
        let mut found = false;
        for _ in 0..2 {
            for o in enc.tick(&src).unwrap() {
                if o.layer == SimulcastLayer::Low180 {
                    assert!(o.encoded.keyframe);
                    found = true;
                }
            }
        }
        assert!(found);
    }

    #[test]
    fn video_simulcast_keyframe_requests_are_per_layer_and_rate_limited() {
        let mut enc = SimulcastEncoder::new(SimulcastConfig::default()).unwrap();
        let src = source();
        let interval = enc.config().keyframe_min_interval_ticks;
        for _ in 0..interval {
            enc.tick(&src).unwrap();
        }
        enc.request_keyframe(SimulcastLayer::Sd360);
        let out = enc.tick(&src).unwrap();
        for o in &out {
            assert_eq!(
                o.encoded.keyframe,
                o.layer == SimulcastLayer::Sd360,
                "{o:?}"
            );
        }
        // Asked again at once: deferred to the interval, then served.
        enc.request_keyframe(SimulcastLayer::Sd360);
        let mut waited = 0;
        loop {
            waited += 1;
            let out = enc.tick(&src).unwrap();
            let sd = out
                .iter()
                .find(|o| o.layer == SimulcastLayer::Sd360)
                .unwrap();
            if sd.encoded.keyframe {
                break;
            }
            assert!(waited <= interval, "keyframe never came");
        }
        assert_eq!(waited, interval);
        let stats = enc.stats(SimulcastLayer::Sd360);
        assert_eq!(stats.keyframes, 3);
        assert_eq!(stats.keyframe_requests_deferred, interval - 1);
        assert_eq!(enc.stats(SimulcastLayer::Hd720).keyframes, 1);
    }

    #[test]
    fn video_simulcast_rejects_bad_config() {
        assert!(
            SimulcastEncoder::new(SimulcastConfig {
                fps: 0.0,
                ..SimulcastConfig::default()
            })
            .is_err()
        );
        assert!(
            SimulcastEncoder::new(SimulcastConfig {
                bitrate_sd360: 0,
                ..SimulcastConfig::default()
            })
            .is_err()
        );
    }
}
