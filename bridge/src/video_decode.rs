//! H.264 decoding off the video thread: a few decode threads, each owning
//! the decoders of the sources assigned to it (a source always goes to the
//! same thread, so its pictures stay in order and its decoder keeps its
//! references). The video thread sends access units in and gets pictures
//! back through its own input channel, so it never waits on a decode.
//!
//! Why: a 720p decode takes a few milliseconds, and the sources people see
//! in a big conference (8 in 1+7) at 30 fps would otherwise take most of the
//! video thread's core on their own.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tandem_mixer::ParticipantId;
use tandem_mixer::video::{I420Frame, VideoDecoder};
use tracing::warn;

/// Access units queued per decode thread before new ones are dropped
/// (about a second of eight 30 fps sources).
const QUEUE: usize = 256;

pub enum DecodeJob {
    /// Decode one access unit (Annex B) of `participant`.
    Decode {
        participant: ParticipantId,
        data: Vec<u8>,
    },
    /// Forget `participant`'s decoder (nobody sees it, it left, or its
    /// stream broke: the next keyframe starts a fresh one).
    Reset { participant: ParticipantId },
}

/// What a decode thread hands back.
pub struct Decoded {
    pub participant: ParticipantId,
    /// `Ok(None)`: the decoder needs more data before it has a picture.
    pub result: Result<Option<I420Frame>, String>,
    pub took: Duration,
}

pub struct DecodePool {
    workers: Vec<SyncSender<DecodeJob>>,
}

impl DecodePool {
    /// `threads` decode threads whose results go to `results` as
    /// `wrap(Decoded)`; at least one.
    pub fn start<T: Send + 'static>(
        name: &str,
        threads: usize,
        results: SyncSender<T>,
        wrap: fn(Decoded) -> T,
    ) -> std::io::Result<DecodePool> {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = sync_channel(QUEUE);
            let results = results.clone();
            std::thread::Builder::new()
                .name(format!("{name}-dec{i}"))
                .spawn(move || run(rx, results, wrap))?;
            workers.push(tx);
        }
        Ok(DecodePool { workers })
    }

    /// The decode thread `participant` always uses.
    fn worker(&self, participant: ParticipantId) -> &SyncSender<DecodeJob> {
        &self.workers[(participant.0 as usize) % self.workers.len()]
    }

    /// Queues a job without waiting; false if that thread is too far behind
    /// (the caller counts a dropped picture and waits for a keyframe).
    pub fn submit(&self, job: DecodeJob) -> bool {
        let participant = match &job {
            DecodeJob::Decode { participant, .. } | DecodeJob::Reset { participant } => {
                *participant
            }
        };
        match self.worker(participant).try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn run<T>(jobs: Receiver<DecodeJob>, results: SyncSender<T>, wrap: fn(Decoded) -> T) {
    let mut decoders: HashMap<ParticipantId, VideoDecoder> = HashMap::new();
    // Ends when the pool (the video thread) is dropped.
    while let Ok(job) = jobs.recv() {
        match job {
            DecodeJob::Reset { participant } => {
                decoders.remove(&participant);
            }
            DecodeJob::Decode { participant, data } => {
                let decoder = match decoders.entry(participant) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => match VideoDecoder::new() {
                        Ok(d) => v.insert(d),
                        Err(e) => {
                            warn!(%e, "cannot create an H.264 decoder");
                            continue;
                        }
                    },
                };
                let started = Instant::now();
                let result = decoder.decode(&data).map_err(|e| e.to_string());
                if result.is_err() {
                    // Its references are suspect: start afresh at a keyframe.
                    decoders.remove(&participant);
                }
                let out = Decoded {
                    participant,
                    result,
                    took: started.elapsed(),
                };
                // The video thread's queue is bounded too; a picture it has
                // no room for is one it would have been too late to show.
                if let Err(TrySendError::Disconnected(_)) = results.try_send(wrap(out)) {
                    break;
                }
            }
        }
    }
}
