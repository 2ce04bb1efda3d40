//! A tracing session: the programs loaded and attached, the ring buffer read in a
//! task of its own, and task iterator walks merged with the live stream.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use tokio::sync::mpsc;

use crate::{
    bpf::{
        Kernel, Options,
        reader::{self, Message, ReaderStats},
    },
    clock,
    events::{CgroupPath, Event},
};

/// Batches buffered between the reader and the consumer.
const CHANNEL_BATCHES: usize = 1024;

pub struct Session {
    kernel: Kernel,
    pub rx: mpsc::Receiver<Message>,
    pub stats: Arc<ReaderStats>,
    _reader: tokio::task::JoinHandle<()>,
}

/// One task iterator walk and the live stream around it.
#[derive(Debug, Default)]
pub struct Walk {
    /// One snapshot event per task found.
    pub snapshot: Vec<Event>,
    /// Live events read while the walk ran (and up to its end).
    pub live: Vec<Event>,
    /// Cgroup paths: the walk's own and those of live events read meanwhile.
    pub cgroups: Vec<CgroupPath>,
    /// A new lost total reported meanwhile, if any.
    pub lost: Option<u64>,
    /// Boot-clock time when the walk started and ended.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Malformed iterator records skipped.
    pub malformed: u64,
}

impl Session {
    /// Loads and attaches the programs and starts reading. From here on no event
    /// is missed: they queue in the channel until the caller reads them.
    pub fn start(opts: &Options) -> Result<Session> {
        let mut kernel = Kernel::load(opts)?;
        let ring = kernel.take_ring_buffer()?;
        let lost = kernel.take_lost_counter()?;
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let stats = Arc::new(ReaderStats::default());
        let handle = reader::spawn(ring, lost, tx, stats.clone())?;
        Ok(Session { kernel, rx, stats, _reader: handle })
    }

    /// What this kernel let the programs do.
    pub fn features(&self) -> &crate::bpf::features::Features {
        &self.kernel.features
    }

    /// See [`Kernel::forget_cgroups`].
    pub fn forget_cgroups(&mut self, ids: &[u64]) -> Result<usize> {
        self.kernel.forget_cgroups(ids)
    }

    /// Walks all tasks with the BPF task iterator while the live stream keeps
    /// flowing, and returns both so that the caller can merge them by time.
    /// Live messages already queued before the walk are part of `live` too.
    pub async fn walk(&mut self) -> Result<Walk> {
        let start_ns = clock::boot_now_ns();
        let kernel = &mut self.kernel;
        let snap = tokio::task::block_in_place(|| kernel.snapshot())?;
        let end_ns = clock::boot_now_ns();
        let mut walk = Walk {
            snapshot: snap.events,
            cgroups: snap.cgroups,
            malformed: snap.malformed,
            start_ns,
            end_ns,
            ..Walk::default()
        };
        // Read the live stream up to the walk's end: records made during the walk
        // reach the channel within one drain period of the reader (10 ms). Stop at
        // the first event from after the walk, or when nothing comes for 30 ms.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while walk.live.last().is_none_or(|e| e.ts_ns < end_ns) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.min(Duration::from_millis(30)), self.rx.recv()).await {
                Ok(Some(Message::Events(evs))) => walk.live.extend(evs),
                Ok(Some(Message::Lost { total })) => walk.lost = Some(total),
                Ok(Some(Message::Cgroups(c))) => walk.cgroups.extend(c),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(walk)
    }
}
