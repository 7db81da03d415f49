//! The video MCU core: encode once per view.
//!
//! A *view* is what a receiver sees: a layout, who is in each pane, and a
//! resolution class. Receivers whose views are equal share one composition
//! and one encoder, so the cost grows with the number of distinct views, not
//! receivers. Because nobody sees themselves, the visible participants each
//! get a view of their own and everyone else shares one: at most
//! 1 + (visible participants) encoders per class and layout.
//!
//! Encoders outlive views. When the speaker changes, the views' occupants
//! change but most receivers stay together; each new view takes over the
//! encoder that served most of its receivers, and keeps its reference
//! pictures. A receiver that lands on an encoder it was not decoding before
//! cannot decode that encoder's next P-frame, so such a move forces a
//! keyframe on that encoder at once (not rate-limited: without it the
//! receiver shows garbage). Keyframe requests from receivers (PLI/FIR) are
//! rate-limited per encoder; one keyframe serves every receiver of the view.
//!
//! A presentation (content) can be shown in the people layout for receivers
//! that have no content channel of their own
//! ([`ReceiverSettings::presentation_in_layout`]): while one is on, their
//! views put it in pane 0, fitted rather than cropped, and the people in the
//! panes after it. The flag is not part of the [`ViewKey`], only whether the
//! view shows the presentation is: while none is on, receivers with and
//! without the flag share their views as before.
//!
//! Sans-IO: the bridge calls [`VideoMixer::tick`] at the output frame rate.
//! Time is the tick count: freezes and keyframe intervals are in ticks.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{EncodedFrame, EncoderSettings, VideoEncoder};
use super::compose::{Canvas, Compositor, PaneContent, ViewPanes};
use super::frame::{I420Frame, Rect};
use super::layout::{Layout, LayoutChoice, assign, assign_with_presentation};
use crate::audio::ParticipantId;
use crate::error::Error;

/// The output resolutions a receiver can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResolutionClass {
    /// 1280x720.
    Hd720,
    /// 640x360.
    Sd360,
    /// 320x180.
    Low180,
}

impl ResolutionClass {
    pub const ALL: [ResolutionClass; 3] = [
        ResolutionClass::Hd720,
        ResolutionClass::Sd360,
        ResolutionClass::Low180,
    ];

    /// Canvas size in pixels.
    pub fn size(self) -> (u32, u32) {
        match self {
            ResolutionClass::Hd720 => (1280, 720),
            ResolutionClass::Sd360 => (640, 360),
            ResolutionClass::Low180 => (320, 180),
        }
    }

    /// The smallest class that covers a `w`x`h` pane without upscaling
    /// (the largest class when none does).
    pub fn covering(w: u32, h: u32) -> ResolutionClass {
        Self::ALL
            .into_iter()
            .rev()
            .find(|c| {
                let (cw, ch) = c.size();
                cw >= w && ch >= h
            })
            .unwrap_or(ResolutionClass::Hd720)
    }

    /// A sensible default bitrate at 30 fps.
    pub fn default_bitrate_bps(self) -> u32 {
        match self {
            ResolutionClass::Hd720 => 1_500_000,
            ResolutionClass::Sd360 => 600_000,
            ResolutionClass::Low180 => 200_000,
        }
    }
}

/// What a receiver wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiverSettings {
    pub layout: LayoutChoice,
    pub class: ResolutionClass,
    /// Show the presentation, while one is on, in the largest pane of this
    /// layout (for endpoints without a content channel). `auto` then picks
    /// a layout with one large pane; a fixed layout keeps its panes and the
    /// presentation takes the first.
    pub presentation_in_layout: bool,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            layout: LayoutChoice::Auto,
            class: ResolutionClass::Sd360,
            presentation_in_layout: false,
        }
    }
}

/// Everything that makes two receivers' pictures identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    pub layout: Layout,
    /// Who is in each pane, pane order as [`Layout::panes`].
    pub occupants: Vec<Option<ParticipantId>>,
    pub class: ResolutionClass,
    /// Pane 0 shows the presentation (its occupant is then `None`).
    pub presentation: bool,
}

/// One encoded picture and who it is for.
#[derive(Debug, Clone)]
pub struct ViewOutput {
    pub key: ViewKey,
    pub encoded: EncodedFrame,
    /// Sorted; never empty.
    pub receivers: Vec<ParticipantId>,
    /// The tick this picture belongs to (media time: tick x 90000 / fps).
    pub tick: u64,
}

/// How the mixer runs.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// Output frame rate: how often the bridge calls `tick`.
    pub fps: f32,
    /// Bitrate per class, bits per second.
    pub bitrate_hd720: u32,
    pub bitrate_sd360: u32,
    pub bitrate_low180: u32,
    /// A source with no new picture for more than this many ticks is shown
    /// as its name tile.
    pub freeze_timeout_ticks: u64,
    /// Least ticks between two requested keyframes of one encoder.
    pub keyframe_min_interval_ticks: u64,
    /// Passed to every encoder (packetization-mode 0); see
    /// [`EncoderSettings::max_slice_bytes`].
    pub max_slice_bytes: Option<u32>,
    /// Threads a tick may use to scale pictures and encode its views (the
    /// calling thread included). Views are independent, so a conference
    /// with several views finishes its tick sooner; the work itself is the
    /// same. 1 (or 0) keeps everything on the calling thread: use it when
    /// the caller already runs one conference per core.
    pub threads: usize,
}

/// Threads for [`VideoConfig::threads`] by default: the machine's cores,
/// at most 4 (a tick has rarely more than a handful of 720p views, and a
/// conference should not take the whole machine).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            fps: 30.0,
            bitrate_hd720: ResolutionClass::Hd720.default_bitrate_bps(),
            bitrate_sd360: ResolutionClass::Sd360.default_bitrate_bps(),
            bitrate_low180: ResolutionClass::Low180.default_bitrate_bps(),
            freeze_timeout_ticks: 60,
            keyframe_min_interval_ticks: 15,
            max_slice_bytes: None,
            threads: default_threads(),
        }
    }
}

impl VideoConfig {
    fn bitrate(&self, class: ResolutionClass) -> u32 {
        match class {
            ResolutionClass::Hd720 => self.bitrate_hd720,
            ResolutionClass::Sd360 => self.bitrate_sd360,
            ResolutionClass::Low180 => self.bitrate_low180,
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// Encoders alive now (one per view of the last tick).
    pub encoders: usize,
    /// Distinct views composed in the last tick.
    pub views: usize,
    pub ticks: u64,
    pub frames_encoded: u64,
    /// Pictures the rate controller skipped.
    pub frames_skipped: u64,
    pub keyframes: u64,
    /// Keyframes forced because a receiver joined an encoder (a new view's
    /// first picture, or a receiver moving between views).
    pub switch_keyframes: u64,
    /// Receiver keyframe requests that had to wait for the rate limit.
    pub keyframe_requests_deferred: u64,
    pub encode_errors: u64,
    /// Panes drawn, and panes left alone because the view's canvas already
    /// showed exactly that (the source sent no new picture).
    pub panes_drawn: u64,
    pub panes_unchanged: u64,
}

#[derive(Debug)]
struct Source {
    name: String,
    frame: Option<I420Frame>,
    seq: u64,
    last_frame_tick: u64,
    video_muted: bool,
}

/// The presentation while it is on.
#[derive(Debug, Default)]
struct Presentation {
    /// `None` until its first picture: the pane shows a tile until then.
    frame: Option<I420Frame>,
    /// Numbered like source pictures (see `VideoMixer::picture_seq`).
    seq: u64,
}

/// What a presentation pane says before the first picture arrives.
const PRESENTATION_TILE: &str = "Presentation";

#[derive(Debug)]
struct EncoderSlot {
    class: ResolutionClass,
    encoder: VideoEncoder,
    /// The encoder's own canvas: it keeps last tick's picture, so that only
    /// changed panes are drawn again, and parallel views never share one.
    canvas: Canvas,
    /// Receivers that decoded this encoder's last picture.
    receivers: BTreeSet<ParticipantId>,
    last_keyframe_tick: Option<u64>,
    keyframe_pending: bool,
}

/// The video MCU for one conference. See the module docs.
#[derive(Debug)]
pub struct VideoMixer {
    config: VideoConfig,
    sources: BTreeMap<ParticipantId, Source>,
    receivers: BTreeMap<ParticipantId, ReceiverSettings>,
    speaker_order: Vec<ParticipantId>,
    keyframe_requests: BTreeSet<ParticipantId>,
    slots: Vec<EncoderSlot>,
    compositor: Compositor,
    /// Numbers every source and presentation picture, across all sources
    /// and incarnations: the same number always means the same pixels.
    picture_seq: u64,
    /// `Some` while a presentation is on.
    presentation: Option<Presentation>,
    /// Sources in some pane of the last tick's views.
    visible: BTreeSet<ParticipantId>,
    /// Sources that entered a pane and need a keyframe from their sender.
    source_keyframe_requests: Vec<ParticipantId>,
    /// What each visible source's largest pane needs, as last reported by
    /// [`VideoMixer::take_source_class_requests`].
    source_classes: BTreeMap<ParticipantId, ResolutionClass>,
    source_class_requests: Vec<(ParticipantId, ResolutionClass)>,
    /// Sources whose pictures came over a cascade link.
    remote_sources: BTreeSet<ParticipantId>,
    /// Receivers that are cascade links: they never see remote sources.
    link_receivers: BTreeSet<ParticipantId>,
    /// A link that shows the k-th local speaker (0: the active one): one
    /// publisher per room-system speaker in the native meeting.
    link_ranks: BTreeMap<ParticipantId, usize>,
    tick: u64,
    stats: VideoStats,
}

impl VideoMixer {
    pub fn new(config: VideoConfig) -> Result<Self, Error> {
        if !(config.fps.is_finite() && config.fps > 0.0) {
            return Err(Error::InvalidFrame(format!("frame rate {}", config.fps)));
        }
        Ok(VideoMixer {
            config,
            sources: BTreeMap::new(),
            receivers: BTreeMap::new(),
            speaker_order: Vec::new(),
            keyframe_requests: BTreeSet::new(),
            slots: Vec::new(),
            compositor: Compositor::new(),
            picture_seq: 0,
            presentation: None,
            visible: BTreeSet::new(),
            source_keyframe_requests: Vec::new(),
            source_classes: BTreeMap::new(),
            source_class_requests: Vec::new(),
            remote_sources: BTreeSet::new(),
            link_receivers: BTreeSet::new(),
            link_ranks: BTreeMap::new(),
            tick: 0,
            stats: VideoStats::default(),
        })
    }

    pub fn config(&self) -> &VideoConfig {
        &self.config
    }

    /// Adds a participant who may be shown (with or without video yet).
    pub fn add_participant(&mut self, id: ParticipantId, name: &str) -> Result<(), Error> {
        if self.sources.contains_key(&id) {
            return Err(Error::DuplicateParticipant(id));
        }
        self.sources.insert(
            id,
            Source {
                name: name.to_string(),
                frame: None,
                seq: 0,
                last_frame_tick: 0,
                video_muted: false,
            },
        );
        Ok(())
    }

    /// Removes a participant, as a source and as a receiver.
    pub fn remove_participant(&mut self, id: ParticipantId) -> Result<(), Error> {
        self.sources
            .remove(&id)
            .ok_or(Error::UnknownParticipant(id))?;
        self.receivers.remove(&id);
        self.keyframe_requests.remove(&id);
        self.visible.remove(&id);
        self.source_keyframe_requests.retain(|s| *s != id);
        self.source_classes.remove(&id);
        self.source_class_requests.retain(|(s, _)| *s != id);
        self.remote_sources.remove(&id);
        Ok(())
    }

    /// Stops showing `id` anywhere (it stays a receiver if it is one): a
    /// cascade link is somebody's eyes, not a participant to show.
    pub fn remove_source(&mut self, id: ParticipantId) {
        if self.sources.remove(&id).is_some() {
            self.visible.remove(&id);
            self.source_keyframe_requests.retain(|s| *s != id);
            self.source_classes.remove(&id);
            self.source_class_requests.retain(|(s, _)| *s != id);
            self.remote_sources.remove(&id);
        }
    }

    /// Marks a participant's video as muted (shown as a name tile) or not.
    pub fn set_video_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), Error> {
        let s = self
            .sources
            .get_mut(&id)
            .ok_or(Error::UnknownParticipant(id))?;
        s.video_muted = muted;
        Ok(())
    }

    /// The participant's latest decoded picture; it stays on screen until
    /// the next one or the freeze timeout.
    pub fn push_source_frame(&mut self, id: ParticipantId, frame: I420Frame) -> Result<(), Error> {
        let s = self
            .sources
            .get_mut(&id)
            .ok_or(Error::UnknownParticipant(id))?;
        self.picture_seq += 1;
        s.frame = Some(frame);
        s.seq = self.picture_seq;
        s.last_frame_tick = self.tick;
        Ok(())
    }

    /// The presentation's latest picture (decoded from the presenter's
    /// content stream). It stays in its pane until the next one or until
    /// the presentation ends: slides may not change for minutes, so it
    /// never freezes into a tile. A picture that arrives while no
    /// presentation is on is dropped (a decoder finishing after the
    /// presentation ended must not show its last slide in the next one).
    pub fn push_presentation_frame(&mut self, frame: I420Frame) -> Result<(), Error> {
        if let Some(presentation) = &mut self.presentation {
            self.picture_seq += 1;
            presentation.frame = Some(frame);
            presentation.seq = self.picture_seq;
        }
        Ok(())
    }

    /// Whether a presentation is on. Turning it on shows it in the views
    /// of receivers that want it (a tile until its first picture); turning
    /// it off clears its picture and takes it out of every view.
    pub fn set_presentation(&mut self, active: bool) {
        match (active, &self.presentation) {
            (true, None) => self.presentation = Some(Presentation::default()),
            (false, Some(_)) => self.presentation = None,
            _ => {}
        }
    }

    /// Whether some receiver that wants the presentation in its layout has
    /// a view while it is on: if not, nobody needs the content stream
    /// decoded.
    pub fn presentation_visible(&self) -> bool {
        self.presentation.is_some()
            && self
                .receivers
                .values()
                .any(|settings| settings.presentation_in_layout)
    }

    /// Most recent speaker first. Unknown ids are ignored; participants
    /// missing from it come after it, in id order.
    pub fn set_speaker_order(&mut self, order: &[ParticipantId]) {
        self.speaker_order = order.to_vec();
    }

    /// Adds a receiver or changes what it sees. A receiver need not be a
    /// participant (a recorder); if it is, it never sees itself.
    pub fn set_receiver(&mut self, id: ParticipantId, settings: ReceiverSettings) {
        self.receivers.insert(id, settings);
    }

    pub fn remove_receiver(&mut self, id: ParticipantId) -> Result<(), Error> {
        self.keyframe_requests.remove(&id);
        self.link_receivers.remove(&id);
        self.link_ranks.remove(&id);
        self.receivers
            .remove(&id)
            .map(|_| ())
            .ok_or(Error::UnknownParticipant(id))
    }

    /// A receiver lost pictures (PLI/FIR): its view's encoder sends a
    /// keyframe as soon as the rate limit allows.
    pub fn request_keyframe(&mut self, receiver: ParticipantId) -> Result<(), Error> {
        if !self.receivers.contains_key(&receiver) {
            return Err(Error::UnknownParticipant(receiver));
        }
        self.keyframe_requests.insert(receiver);
        Ok(())
    }

    /// Sources that occupied a pane in the last tick. A source outside this
    /// set need not be decoded: nobody sees it. When it enters a pane it is
    /// listed by [`VideoMixer::take_source_keyframe_requests`].
    pub fn visible_sources(&self) -> &BTreeSet<ParticipantId> {
        &self.visible
    }

    /// Sources that entered a pane since the last call: their senders should
    /// be asked for a keyframe (PLI/FIR), since their decoder may have been
    /// idle.
    pub fn take_source_keyframe_requests(&mut self) -> Vec<ParticipantId> {
        std::mem::take(&mut self.source_keyframe_requests)
    }

    /// Sources whose largest pane changed size class since the last call,
    /// with the class that pane needs: the bridge asks each sender for no
    /// more (a 720p camera shown in a 320x180 pane costs a full 720p decode
    /// for nothing), and for more when it moves to a large pane. Listed
    /// when a source becomes visible, and again whenever its class changes.
    pub fn take_source_class_requests(&mut self) -> Vec<(ParticipantId, ResolutionClass)> {
        std::mem::take(&mut self.source_class_requests)
    }

    /// The class the largest pane of a visible source needs.
    pub fn source_class(&self, id: ParticipantId) -> Option<ResolutionClass> {
        self.source_classes.get(&id).copied()
    }

    pub fn stats(&self) -> VideoStats {
        VideoStats {
            encoders: self.slots.len(),
            ..self.stats
        }
    }

    /// The effective speaker order: known participants, speakers first.
    fn order(&self) -> Vec<ParticipantId> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::with_capacity(self.sources.len());
        for &id in self.speaker_order.iter().chain(self.sources.keys()) {
            if self.sources.contains_key(&id) && seen.insert(id) {
                order.push(id);
            }
        }
        order
    }

    /// Marks a source as coming over a cascade link (a native meeting's
    /// participant): links never see it.
    pub fn set_source_remote(&mut self, id: ParticipantId, remote: bool) {
        if remote {
            self.remote_sources.insert(id);
        } else {
            self.remote_sources.remove(&id);
        }
    }

    /// Marks a receiver as a cascade link: its view holds local sources only
    /// (else the native meeting would see its own people come back).
    pub fn set_receiver_link(&mut self, id: ParticipantId, link: bool) {
        if link {
            self.link_receivers.insert(id);
        } else {
            self.link_receivers.remove(&id);
        }
    }

    /// Makes a link show the local sources from the `rank`-th speaker on
    /// (0, the default: the active speaker first).
    pub fn set_link_rank(&mut self, id: ParticipantId, rank: usize) {
        if rank == 0 {
            self.link_ranks.remove(&id);
        } else {
            self.link_ranks.insert(id, rank);
        }
    }

    /// Every receiver's view, grouped.
    pub fn views(&self) -> BTreeMap<ViewKey, Vec<ParticipantId>> {
        let order = self.order();
        let local: Vec<ParticipantId> = if self.link_receivers.is_empty() {
            Vec::new()
        } else {
            order
                .iter()
                .copied()
                .filter(|id| !self.remote_sources.contains(id))
                .collect()
        };
        let mut views: BTreeMap<ViewKey, Vec<ParticipantId>> = BTreeMap::new();
        for (&rx, settings) in &self.receivers {
            let order = if self.link_receivers.contains(&rx) {
                let rank = self.link_ranks.get(&rx).copied().unwrap_or(0);
                &local[rank.min(local.len())..]
            } else {
                &order[..]
            };
            let visible = order.len() - usize::from(order.contains(&rx));
            let presentation = settings.presentation_in_layout && self.presentation.is_some();
            let (layout, occupants) = if presentation {
                let layout = settings.layout.resolve_with_presentation(visible);
                (layout, assign_with_presentation(layout, order, Some(rx)))
            } else {
                let layout = settings.layout.resolve(visible);
                (layout, assign(layout, order, Some(rx)))
            };
            let key = ViewKey {
                layout,
                occupants,
                class: settings.class,
                presentation,
            };
            views.entry(key).or_default().push(rx);
        }
        views
    }

    /// Gives each view an encoder slot, preferring the one most of its
    /// receivers already decode. Returns slot indices parallel to `views`
    /// and, per view, whether some receiver is new to that encoder.
    fn match_encoders(
        &mut self,
        views: &[(ViewKey, Vec<ParticipantId>)],
    ) -> Result<Vec<(usize, bool)>, Error> {
        let mut claimed = vec![false; self.slots.len()];
        let mut chosen: Vec<Option<usize>> = vec![None; views.len()];
        // Biggest views choose first: they have the most to lose.
        let mut by_size: Vec<usize> = (0..views.len()).collect();
        by_size.sort_by_key(|&i| std::cmp::Reverse(views[i].1.len()));
        for &vi in &by_size {
            let (key, rxs) = &views[vi];
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(si, s)| !claimed[*si] && s.class == key.class)
                .map(|(si, s)| (rxs.iter().filter(|r| s.receivers.contains(r)).count(), si))
                .filter(|&(overlap, _)| overlap > 0)
                .max_by_key(|&(overlap, si)| (overlap, std::cmp::Reverse(si)));
            if let Some((_, si)) = best {
                claimed[si] = true;
                chosen[vi] = Some(si);
            }
        }
        // Views nobody was watching yet reuse a spare encoder of their class
        // (saves an init; they need a keyframe either way) or get a new one.
        for &vi in &by_size {
            if chosen[vi].is_some() {
                continue;
            }
            let class = views[vi].0.class;
            let spare =
                (0..self.slots.len()).find(|&si| !claimed[si] && self.slots[si].class == class);
            let si = match spare {
                Some(si) => si,
                None => {
                    let (w, h) = class.size();
                    let mut settings =
                        EncoderSettings::new(w, h, self.config.fps, self.config.bitrate(class));
                    settings.max_slice_bytes = self.config.max_slice_bytes;
                    self.slots.push(EncoderSlot {
                        class,
                        encoder: VideoEncoder::new(settings)?,
                        canvas: Canvas::new(w, h)?,
                        receivers: BTreeSet::new(),
                        last_keyframe_tick: None,
                        keyframe_pending: false,
                    });
                    claimed.push(false);
                    self.slots.len() - 1
                }
            };
            claimed[si] = true;
            chosen[vi] = Some(si);
        }
        let mut out = Vec::with_capacity(views.len());
        for (vi, (_, rxs)) in views.iter().enumerate() {
            let si = chosen[vi].ok_or_else(|| Error::VideoCodec("no encoder for view".into()))?;
            let newcomer = rxs.iter().any(|r| !self.slots[si].receivers.contains(r));
            out.push((si, newcomer));
        }
        // Encoders no view claimed are dropped, keeping indices of the rest.
        let mut remap = vec![usize::MAX; self.slots.len()];
        let mut kept = 0;
        for (si, slot) in claimed.iter().enumerate() {
            if *slot {
                remap[si] = kept;
                kept += 1;
            }
        }
        let mut si = 0;
        self.slots.retain(|_| {
            let keep = claimed[si];
            si += 1;
            keep
        });
        Ok(out
            .into_iter()
            .map(|(si, newcomer)| (remap[si], newcomer))
            .collect())
    }

    /// Each visible source's largest pane over all views, as a class;
    /// changes are queued for [`VideoMixer::take_source_class_requests`].
    fn update_source_classes(&mut self, views: &[(ViewKey, Vec<ParticipantId>)]) {
        let mut wanted: BTreeMap<ParticipantId, ResolutionClass> = BTreeMap::new();
        for (key, _) in views {
            let (w, h) = key.class.size();
            for (rect, occupant) in key.layout.panes(w, h).iter().zip(&key.occupants) {
                let Some(id) = occupant else { continue };
                let class = ResolutionClass::covering(rect.w, rect.h);
                let entry = wanted.entry(*id).or_insert(class);
                if class.size().0 > entry.size().0 {
                    *entry = class;
                }
            }
        }
        for (&id, &class) in &wanted {
            if self.source_classes.get(&id) != Some(&class) {
                self.source_class_requests.retain(|(s, _)| *s != id);
                self.source_class_requests.push((id, class));
            }
        }
        self.source_classes = wanted;
    }

    /// Composes and encodes one picture per distinct view.
    pub fn tick(&mut self) -> Result<Vec<ViewOutput>, Error> {
        self.tick += 1;
        self.stats.ticks += 1;

        let views: Vec<(ViewKey, Vec<ParticipantId>)> = self.views().into_iter().collect();
        let visible: BTreeSet<ParticipantId> = views
            .iter()
            .flat_map(|(key, _)| key.occupants.iter().flatten().copied())
            .collect();
        for id in visible.difference(&self.visible) {
            if !self.source_keyframe_requests.contains(id) {
                self.source_keyframe_requests.push(*id);
            }
        }
        self.visible = visible;
        self.update_source_classes(&views);
        let assignment = self.match_encoders(&views)?;
        self.stats.views = views.len();
        let requests = std::mem::take(&mut self.keyframe_requests);
        let tick = self.tick;
        let threads = self.config.threads.max(1);

        // What every pane shows, then each picture scaled once per pane size
        // (in parallel); the views below only read those copies.
        let sources = &self.sources;
        let freeze = self.config.freeze_timeout_ticks;
        let presentation = presentation_content(self.presentation.as_ref());
        let layouts: Vec<(Vec<Rect>, Vec<PaneContent<'_>>)> = views
            .iter()
            .map(|(key, _)| {
                let (w, h) = key.class.size();
                let contents = key
                    .occupants
                    .iter()
                    .enumerate()
                    .map(|(pane, occupant)| match pane {
                        0 if key.presentation => presentation,
                        _ => pane_content(sources, tick, freeze, *occupant),
                    })
                    .collect();
                (key.layout.panes(w, h), contents)
            })
            .collect();
        let prepared: Vec<ViewPanes<'_, '_>> = views
            .iter()
            .zip(&layouts)
            .map(|((key, _), (panes, contents))| ViewPanes {
                canvas: key.class.size(),
                panes,
                contents,
            })
            .collect();
        self.compositor.prepare(&prepared, threads)?;
        drop(prepared);

        // One job per view, each with its own encoder and canvas.
        let interval = self.config.keyframe_min_interval_ticks;
        let mut slots: Vec<Option<&mut EncoderSlot>> = self.slots.iter_mut().map(Some).collect();
        let mut jobs = Vec::with_capacity(views.len());
        for (((_, receivers), &(si, newcomer)), (panes, contents)) in
            views.iter().zip(&assignment).zip(&layouts)
        {
            let slot = slots
                .get_mut(si)
                .and_then(Option::take)
                .ok_or_else(|| Error::VideoCodec("one encoder for two views".into()))?;
            if receivers.iter().any(|r| requests.contains(r)) {
                slot.keyframe_pending = true;
            }
            let allowed = slot
                .last_keyframe_tick
                .is_none_or(|last| tick.saturating_sub(last) >= interval);
            if slot.keyframe_pending && !allowed {
                self.stats.keyframe_requests_deferred += 1;
            }
            let force = newcomer || (slot.keyframe_pending && allowed);
            jobs.push(ViewJob {
                slot,
                panes,
                contents,
                force,
                drawn: 0,
                result: None,
            });
        }
        let scaled = self.compositor.scaled();
        let mut workers = vec![(); threads];
        super::parallel::run(
            &mut workers,
            &mut jobs,
            |job| {
                let (w, h) = job.slot.class.size();
                u64::from(w) * u64::from(h)
            },
            |(), job| {
                job.drawn = job.slot.canvas.draw(job.panes, job.contents, scaled);
                job.result = Some(job.slot.encoder.encode(&job.slot.canvas.frame, job.force));
            },
        );

        // Bookkeeping in view order: the output does not depend on threads.
        let mut outputs = Vec::with_capacity(views.len());
        for (((key, receivers), job), (_, newcomer)) in views.into_iter().zip(jobs).zip(assignment)
        {
            let slot = job.slot;
            let panes = job.panes.len() as u64;
            self.stats.panes_drawn += job.drawn as u64;
            self.stats.panes_unchanged += panes.saturating_sub(job.drawn as u64);
            slot.receivers = receivers.iter().copied().collect();
            match job.result {
                None | Some(Err(_)) => {
                    self.stats.encode_errors += 1;
                    // Nobody got a picture: whoever arrives needs a keyframe.
                    slot.receivers.clear();
                }
                Some(Ok(encoded)) if encoded.annexb.is_empty() => {
                    self.stats.frames_skipped += 1;
                    if newcomer {
                        // The keyframe the newcomers need was skipped.
                        slot.receivers.clear();
                    }
                }
                Some(Ok(encoded)) => {
                    self.stats.frames_encoded += 1;
                    if encoded.keyframe {
                        self.stats.keyframes += 1;
                        if newcomer {
                            self.stats.switch_keyframes += 1;
                        }
                        slot.last_keyframe_tick = Some(tick);
                        slot.keyframe_pending = false;
                    }
                    outputs.push(ViewOutput {
                        key,
                        encoded,
                        receivers,
                        tick,
                    });
                }
            }
        }
        Ok(outputs)
    }
}

/// One view's composition and encode, run on some worker thread.
struct ViewJob<'s, 'l, 'a> {
    slot: &'s mut EncoderSlot,
    panes: &'l [Rect],
    contents: &'l [PaneContent<'a>],
    force: bool,
    /// Panes drawn (the rest were unchanged).
    drawn: usize,
    result: Option<Result<EncodedFrame, Error>>,
}

/// What `occupant`'s pane shows at `tick`: a free function so that it can
/// borrow the sources while the compositor is borrowed mutably.
fn pane_content(
    sources: &BTreeMap<ParticipantId, Source>,
    tick: u64,
    freeze_timeout_ticks: u64,
    occupant: Option<ParticipantId>,
) -> PaneContent<'_> {
    let Some(id) = occupant else {
        return PaneContent::Empty;
    };
    let Some(source) = sources.get(&id) else {
        return PaneContent::Empty;
    };
    let frozen = tick.saturating_sub(source.last_frame_tick) > freeze_timeout_ticks;
    match &source.frame {
        Some(frame) if !source.video_muted && !frozen => PaneContent::Video {
            source: id,
            seq: source.seq,
            frame,
            name: &source.name,
        },
        _ => PaneContent::NameTile { name: &source.name },
    }
}

/// What a presentation pane shows: its picture, or a tile before the first.
fn presentation_content(presentation: Option<&Presentation>) -> PaneContent<'_> {
    match presentation {
        Some(Presentation {
            frame: Some(frame),
            seq,
        }) => PaneContent::Presentation { seq: *seq, frame },
        Some(Presentation { frame: None, .. }) => PaneContent::NameTile {
            name: PRESENTATION_TILE,
        },
        None => PaneContent::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::codec::VideoDecoder;
    use crate::video::compose::NAME_TILE_RGB;
    use crate::video::frame::{Rect, Rgb};

    const RED: ParticipantId = ParticipantId(1);
    const GREEN: ParticipantId = ParticipantId(2);
    const BLUE: ParticipantId = ParticipantId(3);
    const YELLOW: ParticipantId = ParticipantId(4);
    const ONLOOKER: ParticipantId = ParticipantId(100);

    fn colour_of(id: ParticipantId) -> Rgb {
        match id.0 {
            1 => Rgb::RED,
            2 => Rgb::GREEN,
            3 => Rgb::BLUE,
            4 => Rgb::YELLOW,
            n => Rgb((n * 40) as u8, (n * 90) as u8, (n * 20) as u8),
        }
    }

    /// `n` participants 1..=n, each sending its solid colour at 320x180.
    fn mixer_with(n: u64) -> VideoMixer {
        let mut m = VideoMixer::new(VideoConfig::default()).unwrap();
        for i in 1..=n {
            let id = ParticipantId(i);
            m.add_participant(id, &format!("P{i}")).unwrap();
        }
        push_all(&mut m, n);
        m
    }

    fn push_all(m: &mut VideoMixer, n: u64) {
        for i in 1..=n {
            let id = ParticipantId(i);
            m.push_source_frame(id, I420Frame::solid(320, 180, colour_of(id)).unwrap())
                .unwrap();
        }
    }

    fn settings(layout: Layout, class: ResolutionClass) -> ReceiverSettings {
        ReceiverSettings {
            layout: LayoutChoice::Fixed(layout),
            class,
            presentation_in_layout: false,
        }
    }

    /// Runs `ticks` ticks (re-sending the sources each time) and returns the
    /// last decoded picture of `receiver`'s stream.
    fn watch(m: &mut VideoMixer, n: u64, receiver: ParticipantId, ticks: usize) -> I420Frame {
        let mut dec = VideoDecoder::new().unwrap();
        let mut last = None;
        for _ in 0..ticks {
            push_all(m, n);
            for out in m.tick().unwrap() {
                if out.receivers.contains(&receiver) {
                    last = dec.decode(&out.encoded.annexb).unwrap().or(last);
                }
            }
        }
        last.expect("receiver got a picture")
    }

    fn pane_colour(frame: &I420Frame, layout: Layout, pane: usize) -> Rgb {
        let panes = layout.panes(frame.width(), frame.height());
        frame.average_rgb_in(panes[pane].centre(0.5))
    }

    const TOLERANCE: u8 = 30;

    #[test]
    fn video_2x2_four_colours_survive_encode_and_decode() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN, BLUE, YELLOW]);
        m.set_receiver(ONLOOKER, settings(Layout::Grid2x2, ResolutionClass::Sd360));
        let pic = watch(&mut m, 4, ONLOOKER, 5);
        assert_eq!((pic.width(), pic.height()), (640, 360));
        for (pane, id) in [RED, GREEN, BLUE, YELLOW].into_iter().enumerate() {
            let got = pane_colour(&pic, Layout::Grid2x2, pane);
            assert!(
                got.distance(colour_of(id)) <= TOLERANCE,
                "pane {pane}: {got:?}"
            );
        }
    }

    #[test]
    fn video_nobody_sees_themselves() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN, BLUE, YELLOW]);
        for id in [RED, GREEN, BLUE, YELLOW] {
            m.set_receiver(id, settings(Layout::Grid2x2, ResolutionClass::Sd360));
        }
        let pic = watch(&mut m, 4, RED, 5);
        let seen: Vec<Rgb> = (0..4)
            .map(|p| pane_colour(&pic, Layout::Grid2x2, p))
            .collect();
        assert!(seen.iter().all(|c| c.distance(Rgb::RED) > 100), "{seen:?}");
        // The speaker sees the previous speaker where they would be.
        assert!(seen[0].distance(Rgb::GREEN) <= TOLERANCE, "{seen:?}");
        assert!(seen[1].distance(Rgb::BLUE) <= TOLERANCE, "{seen:?}");
        assert!(seen[2].distance(Rgb::YELLOW) <= TOLERANCE, "{seen:?}");
        assert!(seen[3].distance(Rgb::BLACK) <= TOLERANCE, "{seen:?}");
    }

    #[test]
    fn video_equal_settings_share_one_encoder() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN]);
        for i in 100..110 {
            m.set_receiver(
                ParticipantId(i),
                settings(Layout::Grid2x2, ResolutionClass::Low180),
            );
        }
        let out = m.tick().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].receivers.len(), 10);
        assert_eq!(m.stats().encoders, 1);
        // Another class is another view.
        m.set_receiver(
            ParticipantId(200),
            settings(Layout::Grid2x2, ResolutionClass::Sd360),
        );
        m.tick().unwrap();
        assert_eq!(m.stats().encoders, 2);
        // Participants as receivers: a 2x2 of 4 shows everyone else, so the
        // four each see something different from the onlookers.
        for id in [RED, GREEN, BLUE, YELLOW] {
            m.set_receiver(id, settings(Layout::Grid2x2, ResolutionClass::Low180));
        }
        m.tick().unwrap();
        assert_eq!(m.stats().encoders, 2 + 4);
    }

    #[test]
    fn video_sources_are_asked_for_their_largest_pane() {
        let n = 10;
        let mut m = mixer_with(n);
        let order: Vec<ParticipantId> = (1..=n).map(ParticipantId).collect();
        m.set_speaker_order(&order);
        for i in 1..=n {
            m.set_receiver(
                ParticipantId(i),
                settings(Layout::OnePlus7, ResolutionClass::Hd720),
            );
        }
        m.tick().unwrap();
        let asked: BTreeMap<ParticipantId, ResolutionClass> =
            m.take_source_class_requests().into_iter().collect();
        // The speaker fills everyone's 960x540 pane, and the previous
        // speaker the speaker's own; the rest only ever get 320x180.
        assert_eq!(asked[&ParticipantId(1)], ResolutionClass::Hd720);
        assert_eq!(asked[&ParticipantId(2)], ResolutionClass::Hd720);
        for i in 3..=9 {
            assert_eq!(
                asked[&ParticipantId(i)],
                ResolutionClass::Low180,
                "source {i}"
            );
        }
        assert!(!asked.contains_key(&ParticipantId(10)), "nobody shows 10");
        // Nothing changed: nothing to ask again.
        m.tick().unwrap();
        assert!(m.take_source_class_requests().is_empty());
        // Participant 5 speaks: it moves up, 2 moves down to a small pane.
        let mut order = order.clone();
        order.retain(|&p| p != ParticipantId(5));
        order.insert(0, ParticipantId(5));
        m.set_speaker_order(&order);
        m.tick().unwrap();
        let asked: BTreeMap<ParticipantId, ResolutionClass> =
            m.take_source_class_requests().into_iter().collect();
        assert_eq!(asked.get(&ParticipantId(5)), Some(&ResolutionClass::Hd720));
        assert_eq!(asked.get(&ParticipantId(2)), Some(&ResolutionClass::Low180));
        assert_eq!(
            m.source_class(ParticipantId(1)),
            Some(ResolutionClass::Hd720)
        );
    }

    #[test]
    fn video_a_cascade_link_sees_local_sources_only() {
        let mut m = mixer_with(4);
        // 3 and 4 came over the link; 4 speaks, then 1.
        m.set_source_remote(ParticipantId(3), true);
        m.set_source_remote(ParticipantId(4), true);
        let link = ParticipantId(9);
        m.set_receiver(link, settings(Layout::Grid1x1, ResolutionClass::Low180));
        m.set_receiver_link(link, true);
        m.set_receiver(
            ParticipantId(1),
            settings(Layout::Grid2x2, ResolutionClass::Low180),
        );
        for (order, want) in [([4, 1, 2, 3], 1), ([2, 4, 1, 3], 2)] {
            m.set_speaker_order(&order.map(ParticipantId));
            m.tick().unwrap();
            let views = m.views();
            let (key, _) = views
                .iter()
                .find(|(_, rxs)| rxs.contains(&link))
                .expect("the link's view");
            // The link shows the loudest local speaker, never a remote one.
            assert_eq!(key.occupants, vec![Some(ParticipantId(want))]);
            // Local receivers still see the remote people.
            let (local, _) = views
                .iter()
                .find(|(_, rxs)| rxs.contains(&ParticipantId(1)))
                .expect("1's view");
            assert!(local.occupants.contains(&Some(ParticipantId(4))));
        }
    }

    #[test]
    fn video_a_ranked_link_shows_the_next_local_speaker() {
        let mut m = mixer_with(4);
        m.set_source_remote(ParticipantId(4), true);
        let (first, second) = (ParticipantId(8), ParticipantId(9));
        for (link, rank) in [(first, 0), (second, 1)] {
            m.set_receiver(link, settings(Layout::Grid1x1, ResolutionClass::Low180));
            m.set_receiver_link(link, true);
            m.set_link_rank(link, rank);
        }
        for (order, want) in [([4, 2, 1, 3], (2, 1)), ([3, 4, 2, 1], (3, 2))] {
            m.set_speaker_order(&order.map(ParticipantId));
            m.tick().unwrap();
            let views = m.views();
            let shown = |link| {
                views
                    .iter()
                    .find(|(_, rxs)| rxs.contains(&link))
                    .map(|(k, _)| k.occupants.clone())
                    .expect("the link's view")
            };
            assert_eq!(shown(first), vec![Some(ParticipantId(want.0))]);
            assert_eq!(shown(second), vec![Some(ParticipantId(want.1))]);
        }
    }

    #[test]
    fn video_encoders_bounded_by_visible_speakers() {
        let n = 20;
        let mut m = mixer_with(n);
        let order: Vec<ParticipantId> = (1..=n).rev().map(ParticipantId).collect();
        m.set_speaker_order(&order);
        for i in 1..=n {
            m.set_receiver(
                ParticipantId(i),
                settings(Layout::OnePlus7, ResolutionClass::Low180),
            );
        }
        m.tick().unwrap();
        let visible = Layout::OnePlus7.pane_count();
        // The 8 shown each see the 9th instead of themselves, everyone else
        // shares a view: 8 + 1.
        assert_eq!(m.stats().encoders, visible + 1);
    }

    #[test]
    fn video_1plus5_speaker_in_large_pane() {
        let mut m = mixer_with(4);
        m.set_receiver(ONLOOKER, settings(Layout::OnePlus5, ResolutionClass::Sd360));
        m.set_speaker_order(&[BLUE, RED]);
        let mut dec = VideoDecoder::new().unwrap();
        let mut run = |m: &mut VideoMixer| {
            let mut last = None;
            for _ in 0..3 {
                push_all(m, 4);
                for out in m.tick().unwrap() {
                    last = dec.decode(&out.encoded.annexb).unwrap().or(last);
                }
            }
            last.unwrap()
        };
        let pic = run(&mut m);
        assert!(pane_colour(&pic, Layout::OnePlus5, 0).distance(Rgb::BLUE) <= TOLERANCE);
        // Unknown ids in the order are ignored; participants missing from it
        // fill the small panes.
        assert!(pane_colour(&pic, Layout::OnePlus5, 2).distance(Rgb::GREEN) <= TOLERANCE);
        // The speaker changes: the same stream, without a keyframe, now
        // shows them big.
        m.set_speaker_order(&[YELLOW, ParticipantId(77), BLUE, RED]);
        let keyframes = m.stats().keyframes;
        let pic = run(&mut m);
        assert_eq!(
            m.stats().keyframes,
            keyframes,
            "an onlooker needs no keyframe"
        );
        assert!(pane_colour(&pic, Layout::OnePlus5, 0).distance(Rgb::YELLOW) <= TOLERANCE);
        assert!(pane_colour(&pic, Layout::OnePlus5, 1).distance(Rgb::BLUE) <= TOLERANCE);
    }

    #[test]
    fn video_frozen_source_becomes_name_tile() {
        let mut m = VideoMixer::new(VideoConfig {
            freeze_timeout_ticks: 5,
            ..VideoConfig::default()
        })
        .unwrap();
        m.add_participant(RED, "Red").unwrap();
        m.add_participant(GREEN, "Green").unwrap();
        m.set_speaker_order(&[RED, GREEN]);
        m.set_receiver(ONLOOKER, settings(Layout::Grid2x2, ResolutionClass::Sd360));
        let mut dec = VideoDecoder::new().unwrap();
        let mut pictures = Vec::new();
        for t in 0..12 {
            // Green keeps sending; red sends one picture and stops.
            if t == 0 {
                m.push_source_frame(RED, I420Frame::solid(320, 180, Rgb::RED).unwrap())
                    .unwrap();
            }
            m.push_source_frame(GREEN, I420Frame::solid(320, 180, Rgb::GREEN).unwrap())
                .unwrap();
            for out in m.tick().unwrap() {
                if let Some(p) = dec.decode(&out.encoded.annexb).unwrap() {
                    pictures.push(p);
                }
            }
        }
        let red_at = |p: &I420Frame| pane_colour(p, Layout::Grid2x2, 0);
        // Still red within the timeout...
        assert!(red_at(&pictures[3]).distance(Rgb::RED) <= TOLERANCE);
        // ...a name tile after it, while green stays live.
        let last = pictures.last().unwrap();
        let tile = last.average_rgb_in(Layout::Grid2x2.panes(640, 360)[0]);
        assert!(tile.distance(NAME_TILE_RGB) <= 40, "{tile:?}");
        assert!(red_at(last).distance(Rgb::RED) > 100);
        assert!(pane_colour(last, Layout::Grid2x2, 1).distance(Rgb::GREEN) <= TOLERANCE);
        // Muting shows the tile too.
        m.set_video_muted(GREEN, true).unwrap();
        m.push_source_frame(GREEN, I420Frame::solid(320, 180, Rgb::GREEN).unwrap())
            .unwrap();
        for out in m.tick().unwrap() {
            if let Some(p) = dec.decode(&out.encoded.annexb).unwrap() {
                let green_pane = Layout::Grid2x2.panes(640, 360)[1];
                assert!(p.average_rgb_in(green_pane).distance(NAME_TILE_RGB) <= 40);
            }
        }
    }

    #[test]
    fn video_keyframe_requests_are_shared_and_rate_limited() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN, BLUE, YELLOW]);
        for i in 100..103 {
            m.set_receiver(
                ParticipantId(i),
                settings(Layout::Grid2x2, ResolutionClass::Low180),
            );
        }
        let first = m.tick().unwrap();
        assert!(
            first[0].encoded.keyframe,
            "a new view starts with a keyframe"
        );
        for _ in 0..20 {
            assert!(!m.tick().unwrap()[0].encoded.keyframe);
        }
        // Two receivers ask at once: one keyframe serves both.
        m.request_keyframe(ParticipantId(100)).unwrap();
        m.request_keyframe(ParticipantId(101)).unwrap();
        let out = m.tick().unwrap();
        assert!(out[0].encoded.keyframe);
        assert_eq!(m.stats().keyframes, 2);
        // Asked again right away: deferred to the interval, then served.
        m.request_keyframe(ParticipantId(102)).unwrap();
        let interval = m.config().keyframe_min_interval_ticks;
        let mut waited = 0;
        loop {
            waited += 1;
            if m.tick().unwrap()[0].encoded.keyframe {
                break;
            }
            assert!(waited <= interval, "keyframe never came");
        }
        assert_eq!(waited, interval);
        assert_eq!(m.stats().keyframes, 3);
        assert!(m.request_keyframe(ParticipantId(999)).is_err());
    }

    #[test]
    fn video_receiver_moving_to_another_encoder_gets_a_keyframe() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN, BLUE, YELLOW]);
        for id in [RED, GREEN, BLUE, YELLOW] {
            m.set_receiver(id, settings(Layout::Grid1x1, ResolutionClass::Low180));
        }
        m.set_receiver(ONLOOKER, settings(Layout::Grid1x1, ResolutionClass::Low180));
        for _ in 0..4 {
            m.tick().unwrap();
        }
        // 1x1: red sees green, everyone else sees red: 2 views.
        assert_eq!(m.stats().encoders, 2);
        let before = m.stats().switch_keyframes;
        // Green speaks: green sees red, everyone else (red now too) sees
        // green. Red moved onto the big view's encoder: one keyframe there,
        // which every receiver of that view decodes.
        m.set_speaker_order(&[GREEN, RED, BLUE, YELLOW]);
        let out = m.tick().unwrap();
        let big = out
            .iter()
            .find(|o| o.receivers.contains(&ONLOOKER))
            .unwrap();
        assert!(big.receivers.contains(&RED));
        assert!(big.encoded.keyframe);
        let small = out.iter().find(|o| o.receivers == vec![GREEN]).unwrap();
        assert!(small.encoded.keyframe);
        assert_eq!(m.stats().switch_keyframes - before, 2);
        // Nothing moves next tick: no keyframes.
        assert!(m.tick().unwrap().iter().all(|o| !o.encoded.keyframe));
    }

    /// A 20-party 1+7 conference at 180p, run for `ticks` with the speaker
    /// changing halfway: every output, in order.
    fn run_conference(threads: usize, ticks: u64) -> Vec<(ViewKey, bool, Vec<u8>)> {
        let mut m = VideoMixer::new(VideoConfig {
            threads,
            ..VideoConfig::default()
        })
        .unwrap();
        let n = 20;
        for i in 1..=n {
            m.add_participant(ParticipantId(i), &format!("P{i}"))
                .unwrap();
            m.set_receiver(
                ParticipantId(i),
                settings(Layout::OnePlus7, ResolutionClass::Low180),
            );
        }
        let mut order: Vec<ParticipantId> = (1..=n).map(ParticipantId).collect();
        m.set_speaker_order(&order);
        let mut out = Vec::new();
        for t in 0..ticks {
            if t == ticks / 2 {
                order.swap(0, 3);
                m.set_speaker_order(&order);
            }
            for i in 1..=n {
                let mut f = I420Frame::solid(320, 180, colour_of(ParticipantId(i))).unwrap();
                f.fill_rect(Rect::new((t * 8 % 300) as u32, 40, 20, 20), Rgb::WHITE);
                m.push_source_frame(ParticipantId(i), f).unwrap();
            }
            for o in m.tick().unwrap() {
                out.push((o.key, o.encoded.keyframe, o.encoded.annexb));
            }
        }
        out
    }

    #[test]
    fn video_threads_do_not_change_the_output() {
        let one = run_conference(1, 6);
        assert!(!one.is_empty());
        for threads in [2, 3, 8] {
            assert!(
                run_conference(threads, 6) == one,
                "{threads} threads differ from 1"
            );
        }
    }

    #[test]
    fn video_unchanged_panes_are_not_redrawn() {
        let mut m = mixer_with(4);
        m.set_speaker_order(&[RED, GREEN, BLUE, YELLOW]);
        m.set_receiver(ONLOOKER, settings(Layout::Grid2x2, ResolutionClass::Sd360));
        let mut dec = VideoDecoder::new().unwrap();
        let mut last = None;
        let mut tick = |m: &mut VideoMixer| {
            for out in m.tick().unwrap() {
                last = dec.decode(&out.encoded.annexb).unwrap().or(last.take());
            }
            last.clone().unwrap()
        };
        tick(&mut m);
        assert_eq!(m.stats().panes_drawn, 4);
        // Only green sends a new picture (blue this time): one pane drawn,
        // and still a picture out every tick.
        let before = m.stats();
        m.push_source_frame(GREEN, I420Frame::solid(320, 180, Rgb::BLUE).unwrap())
            .unwrap();
        let pic = tick(&mut m);
        let after = m.stats();
        assert_eq!(after.panes_drawn - before.panes_drawn, 1);
        assert_eq!(after.panes_unchanged - before.panes_unchanged, 3);
        assert_eq!(after.frames_encoded - before.frames_encoded, 1);
        assert!(pane_colour(&pic, Layout::Grid2x2, 1).distance(Rgb::BLUE) <= TOLERANCE);
        assert!(pane_colour(&pic, Layout::Grid2x2, 0).distance(Rgb::RED) <= TOLERANCE);
        // Nothing new at all: nothing drawn, the same picture encoded again.
        let before = m.stats();
        tick(&mut m);
        let after = m.stats();
        assert_eq!(after.panes_drawn, before.panes_drawn);
        assert_eq!(after.frames_encoded - before.frames_encoded, 1);
        // The speaker order changes: the panes whose occupant changed are
        // drawn, and show the right people.
        m.set_speaker_order(&[YELLOW, RED, BLUE, GREEN]);
        let before = m.stats();
        let pic = tick(&mut m);
        let after = m.stats();
        // Everyone but BLUE (still third) moves.
        assert_eq!(after.panes_drawn - before.panes_drawn, 3);
        assert!(pane_colour(&pic, Layout::Grid2x2, 0).distance(Rgb::YELLOW) <= TOLERANCE);
        assert!(pane_colour(&pic, Layout::Grid2x2, 1).distance(Rgb::RED) <= TOLERANCE);
        assert!(pane_colour(&pic, Layout::Grid2x2, 2).distance(Rgb::BLUE) <= TOLERANCE);
        // (GREEN's latest picture is blue.)
        assert!(pane_colour(&pic, Layout::Grid2x2, 3).distance(Rgb::BLUE) <= TOLERANCE);
        // A participant re-added under the same id is drawn afresh.
        m.remove_participant(RED).unwrap();
        m.add_participant(RED, "Again").unwrap();
        m.push_source_frame(RED, I420Frame::solid(320, 180, Rgb::WHITE).unwrap())
            .unwrap();
        let pic = tick(&mut m);
        assert!(pane_colour(&pic, Layout::Grid2x2, 1).distance(Rgb::WHITE) <= TOLERANCE);
    }

    /// The presentation's colour in the tests below: no participant's.
    const SLIDE: Rgb = Rgb(255, 0, 255);
    const ROOM: ParticipantId = ParticipantId(101);

    fn presenting(layout: LayoutChoice) -> ReceiverSettings {
        ReceiverSettings {
            layout,
            class: ResolutionClass::Low180,
            presentation_in_layout: true,
        }
    }

    /// One decoder per receiver and its latest picture.
    type Screens = BTreeMap<ParticipantId, (VideoDecoder, Option<I420Frame>)>;

    fn screens(receivers: &[ParticipantId]) -> Screens {
        receivers
            .iter()
            .map(|&r| (r, (VideoDecoder::new().unwrap(), None)))
            .collect()
    }

    /// Runs `ticks` ticks, re-sending the `n` sources each time, decoding
    /// every receiver's stream with its own decoder.
    fn run_screens(m: &mut VideoMixer, n: u64, screens: &mut Screens, ticks: usize) {
        for _ in 0..ticks {
            push_all(m, n);
            for out in m.tick().unwrap() {
                for rx in &out.receivers {
                    if let Some((dec, last)) = screens.get_mut(rx)
                        && let Some(pic) = dec.decode(&out.encoded.annexb).unwrap()
                    {
                        *last = Some(pic);
                    }
                }
            }
        }
    }

    fn screen(screens: &Screens, rx: ParticipantId) -> &I420Frame {
        screens[&rx].1.as_ref().expect("receiver got a picture")
    }

    /// Whether any 16x16 block of the picture is `colour`.
    fn shows_anywhere(pic: &I420Frame, colour: Rgb) -> bool {
        (0..pic.height() / 16)
            .flat_map(|r| (0..pic.width() / 16).map(move |c| Rect::new(c * 16, r * 16, 16, 16)))
            .any(|block| pic.average_rgb_in(block).distance(colour) <= TOLERANCE)
    }

    fn assert_panes(pic: &I420Frame, layout: Layout, want: &[Rgb]) {
        for (pane, &colour) in want.iter().enumerate() {
            let got = pane_colour(pic, layout, pane);
            assert!(
                got.distance(colour) <= TOLERANCE,
                "{layout} pane {pane}: {got:?}, want {colour:?}"
            );
        }
    }

    #[test]
    fn video_presentation_in_the_layout_of_receivers_that_want_it() {
        let mut m = mixer_with(3);
        m.set_speaker_order(&[RED, GREEN, BLUE]);
        m.set_receiver(ROOM, presenting(LayoutChoice::Auto));
        m.set_receiver(
            ONLOOKER,
            ReceiverSettings {
                presentation_in_layout: false,
                ..presenting(LayoutChoice::Auto)
            },
        );
        let mut screens = screens(&[ROOM, ONLOOKER]);
        run_screens(&mut m, 3, &mut screens, 1);
        // No presentation: the flag makes no difference, one view for both.
        assert_eq!(m.stats().views, 1);
        assert!(!m.presentation_visible());

        // A 4:3 slide comes in once and stays.
        m.set_presentation(true);
        assert!(m.presentation_visible());
        m.push_presentation_frame(I420Frame::solid(640, 480, SLIDE).unwrap())
            .unwrap();
        run_screens(&mut m, 3, &mut screens, 3);
        assert_eq!(m.stats().views, 2);
        let room = screen(&screens, ROOM);
        // Slides in the large pane of a 1+5, people in the small ones.
        let black = Rgb::BLACK;
        assert_panes(
            room,
            Layout::OnePlus5,
            &[SLIDE, Rgb::RED, Rgb::GREEN, Rgb::BLUE, black, black],
        );
        // Fitted, not cropped: the 212x120 pane has a 160x120 slide and
        // black bars of 26 pixels left and right.
        let large = Layout::OnePlus5.panes(320, 180)[0];
        assert_eq!(large, Rect::new(0, 0, 212, 120));
        for bar in [Rect::new(2, 10, 16, 100), Rect::new(194, 10, 16, 100)] {
            let got = room.average_rgb_in(bar);
            assert!(got.distance(black) <= TOLERANCE, "bar {bar:?}: {got:?}");
        }
        assert!(shows_anywhere(room, SLIDE));
        // The other receiver sees what it saw before, and no slide.
        let onlooker = screen(&screens, ONLOOKER);
        assert_panes(
            onlooker,
            Layout::Grid2x2,
            &[Rgb::RED, Rgb::GREEN, Rgb::BLUE, black],
        );
        assert!(!shows_anywhere(onlooker, SLIDE));

        // The presentation ends: people only, in one shared view again.
        m.set_presentation(false);
        assert!(!m.presentation_visible());
        run_screens(&mut m, 3, &mut screens, 3);
        assert_eq!(m.stats().views, 1);
        for rx in [ROOM, ONLOOKER] {
            let pic = screen(&screens, rx);
            assert_panes(
                pic,
                Layout::Grid2x2,
                &[Rgb::RED, Rgb::GREEN, Rgb::BLUE, black],
            );
            assert!(!shows_anywhere(pic, SLIDE), "{rx:?}");
        }

        // Its picture went with it, and one that arrives while it is off is
        // dropped: the next presentation starts with a tile, not old slides.
        m.push_presentation_frame(I420Frame::solid(640, 480, SLIDE).unwrap())
            .unwrap();
        m.set_presentation(true);
        run_screens(&mut m, 3, &mut screens, 2);
        let room = screen(&screens, ROOM);
        let tile = room.average_rgb_in(large);
        assert!(tile.distance(NAME_TILE_RGB) <= 40, "{tile:?}");
        assert!(!shows_anywhere(room, SLIDE));

        // Only receivers without the flag left: nobody needs the slides.
        m.remove_receiver(ROOM).unwrap();
        assert!(!m.presentation_visible());
    }

    #[test]
    fn video_new_slide_redraws_only_its_pane() {
        let mut m = mixer_with(3);
        m.set_speaker_order(&[RED, GREEN, BLUE]);
        m.set_receiver(ROOM, presenting(LayoutChoice::Fixed(Layout::Grid2x2)));
        m.set_presentation(true);
        m.push_presentation_frame(I420Frame::solid(320, 180, SLIDE).unwrap())
            .unwrap();
        let mut screens = screens(&[ROOM]);
        run_screens(&mut m, 3, &mut screens, 2);
        // A fixed grid: the slide takes the first pane, people the rest.
        assert_panes(
            screen(&screens, ROOM),
            Layout::Grid2x2,
            &[SLIDE, Rgb::RED, Rgb::GREEN, Rgb::BLUE],
        );
        // The people send nothing new; the next slide does.
        let before = m.stats();
        m.push_presentation_frame(I420Frame::solid(1280, 720, Rgb::WHITE).unwrap())
            .unwrap();
        let out = m.tick().unwrap();
        let after = m.stats();
        assert_eq!(after.panes_drawn - before.panes_drawn, 1);
        assert_eq!(after.panes_unchanged - before.panes_unchanged, 3);
        let (dec, last) = screens.get_mut(&ROOM).unwrap();
        *last = dec.decode(&out[0].encoded.annexb).unwrap().or(last.take());
        assert_panes(
            screen(&screens, ROOM),
            Layout::Grid2x2,
            &[Rgb::WHITE, Rgb::RED, Rgb::GREEN, Rgb::BLUE],
        );
        // Nothing new: nothing drawn.
        let before = m.stats();
        m.tick().unwrap();
        assert_eq!(m.stats().panes_drawn, before.panes_drawn);
    }

    #[test]
    fn video_presentation_takes_pane_0_of_every_layout() {
        let n = 9;
        let mut m = mixer_with(n);
        let order: Vec<ParticipantId> = (1..=n).map(ParticipantId).collect();
        m.set_speaker_order(&order);
        m.set_presentation(true);
        let expect = |layout: Layout, people: &[u64]| {
            let mut occupants = vec![None];
            occupants.extend(people.iter().map(|&i| Some(ParticipantId(i))));
            occupants.resize(layout.pane_count(), None);
            occupants
        };
        for (viewer, choice, layout, people) in [
            // An onlooker on auto with 9 others: 1+21.
            (
                100,
                LayoutChoice::Auto,
                Layout::OnePlus21,
                &[1, 2, 3, 4, 5, 6, 7, 8, 9][..],
            ),
            // The speaker among them sees the rest, with the next speaker
            // first after the slides.
            (
                1,
                LayoutChoice::Auto,
                Layout::OnePlus21,
                &[2, 3, 4, 5, 6, 7, 8, 9],
            ),
            // A fixed large-pane layout: the slides take the large pane.
            (
                101,
                Layout::OnePlus7.into(),
                Layout::OnePlus7,
                &[1, 2, 3, 4, 5, 6, 7],
            ),
            // Two large panes: slides and the active speaker side by side.
            (
                102,
                Layout::TwoPlus8.into(),
                Layout::TwoPlus8,
                &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            ),
            // A grid: its first pane.
            (
                103,
                Layout::Grid3x3.into(),
                Layout::Grid3x3,
                &[1, 2, 3, 4, 5, 6, 7, 8],
            ),
            // One pane: the slides alone.
            (104, Layout::Grid1x1.into(), Layout::Grid1x1, &[]),
        ] {
            let viewer = ParticipantId(viewer);
            m.set_receiver(viewer, presenting(choice));
            let views = m.views();
            let (key, _) = views
                .iter()
                .find(|(_, rxs)| rxs.contains(&viewer))
                .expect("a view");
            assert!(key.presentation, "{viewer:?}");
            assert_eq!(key.layout, layout, "{viewer:?}");
            assert_eq!(key.occupants, expect(layout, people), "{viewer:?}");
            m.remove_receiver(viewer).unwrap();
        }
        // Auto by head count: 1+5 up to 5 others, 1+7 up to 7, then 1+21.
        for (others, layout) in [
            (3, Layout::OnePlus5),
            (5, Layout::OnePlus5),
            (6, Layout::OnePlus7),
            (7, Layout::OnePlus7),
            (8, Layout::OnePlus21),
        ] {
            let mut m = mixer_with(others);
            m.set_presentation(true);
            m.set_receiver(ROOM, presenting(LayoutChoice::Auto));
            let views = m.views();
            assert_eq!(
                views.keys().next().map(|k| k.layout),
                Some(layout),
                "{others}"
            );
        }
        // The slides' pane is nobody's: the speaker goes to a small pane
        // and asks its sender for no more than that.
        let mut m = mixer_with(3);
        m.set_speaker_order(&[RED, GREEN, BLUE]);
        m.set_presentation(true);
        m.set_receiver(
            ROOM,
            ReceiverSettings {
                class: ResolutionClass::Hd720,
                ..presenting(Layout::OnePlus5.into())
            },
        );
        m.tick().unwrap();
        assert_eq!(m.source_class(RED), Some(ResolutionClass::Sd360));
        assert_eq!(
            m.visible_sources().iter().copied().collect::<Vec<_>>(),
            vec![RED, GREEN, BLUE]
        );
    }

    #[test]
    fn video_unknown_participants_are_errors() {
        let mut m = mixer_with(1);
        assert!(matches!(
            m.push_source_frame(ParticipantId(9), I420Frame::black(2, 2).unwrap()),
            Err(Error::UnknownParticipant(_))
        ));
        assert!(matches!(
            m.add_participant(RED, "again"),
            Err(Error::DuplicateParticipant(_))
        ));
        assert!(m.remove_participant(ParticipantId(9)).is_err());
        m.remove_participant(RED).unwrap();
        assert!(m.tick().unwrap().is_empty(), "no receivers, no output");
        let _ = Rect::new(0, 0, 0, 0);
    }
}
