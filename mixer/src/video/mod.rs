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
//! encoded frame; the bridge packetizes it once per receiver. The views of
//! a tick are independent: with [`VideoConfig::threads`] above 1 they are
//! composed and encoded on that many scoped threads, and `tick` returns
//! when all are done, in the same order and with the same bytes as on one
//! thread.
//!
//! - [`frame`]: I420 pictures, rectangles, colour conversion.
//! - [`codec`]: OpenH264 encoder/decoder wrappers (Constrained Baseline).
//! - [`layout`]: the layouts, their panes, who goes where.
//! - [`scale`]: crop-to-fill scaling of I420 pictures.
//! - [`compose`]: sources into panes, labels, name tiles; a presentation
//!   fitted into its pane.
//! - [`view`]: the sans-IO [`VideoMixer`].
//! - `parallel`: the deterministic split of a tick's jobs over threads.
//! - [`simulcast`]: one source as 720p/360p/180p layers for an SFU
//!   ([`SimulcastEncoder`]).
//!
//! Like the audio side, nothing here reads a clock: time is the tick count.

pub mod codec;
pub mod compose;
pub mod font;
pub mod frame;
pub mod layout;
mod parallel;
pub mod scale;
pub mod simulcast;
pub mod view;

pub use codec::{
    DecodeJob, EncodedFrame, EncoderSettings, VideoDecoder, VideoEncoder, decode_many,
};
pub use frame::{I420Frame, Rect, Rgb};
pub use layout::{Layout, LayoutChoice, assign};
pub use scale::Scaler;
pub use simulcast::{LayerOutput, LayerStats, SimulcastConfig, SimulcastEncoder, SimulcastLayer};
pub use view::{
    ReceiverSettings, ResolutionClass, VideoConfig, VideoMixer, VideoStats, ViewKey, ViewOutput,
    default_threads,
};
