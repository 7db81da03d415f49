//! Video: continuous-presence layouts over H.264, encoded once per view.
//!
//! Data flow per output frame (the bridge calls [`VideoMixer::tick`] at the
//! output frame rate): each leg's H.264 access units are decoded with a
//! [`VideoDecoder`] and handed in with [`VideoMixer::push_source_frame`];
//! the bridge keeps the speaker order up to date from the audio side. On
//! `tick` the mixer works out, for every receiver, which layout and which
//! occupants it should see ([`layout::assign`]), groups receivers with the
//! same [`ViewKey`], composes each distinct view once ([`compose`]) and
//! encodes it once ([`codec`]). The output names the receivers of every
//! encoded frame; the bridge packetizes it once per receiver.
//!
//! - [`frame`]: I420 pictures, rectangles, colour conversion.
//! - [`codec`]: OpenH264 encoder/decoder wrappers (Constrained Baseline).
//! - [`layout`]: the layouts, their panes, who goes where.
//! - [`compose`]: scaling sources into panes, labels, name tiles.
//! - [`view`]: the sans-IO [`VideoMixer`].
//! - [`simulcast`]: one source as 720p/360p/180p layers for an SFU
//!   ([`SimulcastEncoder`]).
//!
//! Like the audio side, nothing here reads a clock: time is the tick count.

pub mod codec;
pub mod compose;
pub mod font;
pub mod frame;
pub mod layout;
pub mod simulcast;
pub mod view;

pub use codec::{EncodedFrame, EncoderSettings, VideoDecoder, VideoEncoder};
pub use frame::{I420Frame, Rect, Rgb};
pub use layout::{Layout, LayoutChoice, assign};
pub use simulcast::{LayerOutput, LayerStats, SimulcastConfig, SimulcastEncoder, SimulcastLayer};
pub use view::{
    ReceiverSettings, ResolutionClass, VideoConfig, VideoMixer, VideoStats, ViewKey, ViewOutput,
};
