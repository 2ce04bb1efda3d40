//! Reads the ring buffer from tokio and hands decoded events on in batches.
//!
//! One task owns the ring buffer. On each wake-up it drains every record, decodes
//! it (a malformed record is counted and skipped) and sends the batch down a
//! bounded channel. A consumer that falls behind makes this task wait, the ring
//! buffer fill and the kernel side count what it could not write: loss is never
//! silent, and it is reported in the same stream, in order, as [`Message::Lost`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::LostCounter;
use crate::events::{CgroupPath, Event, Record};

/// What the reader sends.
#[derive(Debug)]
pub enum Message {
    /// Events in ring buffer order.
    Events(Vec<Event>),
    /// Paths of cgroups seen for the first time (sent before the events of the
    /// same drain, which may name them).
    Cgroups(Vec<CgroupPath>),
    /// The kernel side could not write some records: `total` lost since start.
    Lost { total: u64 },
}

/// Counters kept by the reader, readable from anywhere.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub malformed: AtomicU64,
    pub lost: AtomicU64,
    /// Bytes that were waiting in the ring buffer at the last reading.
    pub fill: AtomicU64,
}

/// Largest batch sent at once: 64 events of 200 bytes stay within the
/// allocator's small size classes (a batch is allocated per drain and freed by
/// the consumer; large ones cost an extent each), and hand the engine work often.
const BATCH: usize = 64;
/// How often the lost counter is read.
const LOST_POLL: Duration = Duration::from_millis(100);
/// How soon the ring buffer is drained again after a drain that found records
/// (the kernel side wakes the reader only once much is waiting): events reach
/// the tree within a few ms under load.
const DRAIN_BUSY: Duration = Duration::from_millis(2);
/// The longest wait between drains when nothing comes: each empty drain doubles
/// the wait up to this. An idle host costs a handful of wake-ups a second (each
/// is tens of µs of CPU on a virtual machine), and a lone event waits at most this.
const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Starts the reader task. It ends when the receiver is dropped.
pub fn spawn(
    ring: RingBuf<MapData>,
    lost: LostCounter,
    tx: mpsc::Sender<Message>,
    stats: Arc<ReaderStats>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("watching the ring buffer: {e}"))?;
    let mut cadence = Cadence::new(DRAIN_BUSY).map_err(|e| anyhow::anyhow!("creating the drain timer: {e}"))?;
    Ok(tokio::spawn(async move {
        let mut last_lost = 0u64;
        let mut last_lost_check = tokio::time::Instant::now();
        let mut wait = DRAIN_BUSY;
        loop {
            // The kernel side wakes us only once enough data waits (or never, at
            // low rates): the timer drains what trickles in.
            cadence.set(wait);
            tokio::select! {
                guard = fd.readable_mut() => match guard {
                    Ok(mut g) => g.clear_ready(),
                    Err(_) => return,
                },
                r = cadence.tick() => if let Err(e) = r {
                    log::error!("the ring buffer's drain timer failed: {e}; events stop here");
                    return;
                }
            }
            let ring = fd.get_mut();
            let mut batch = Vec::with_capacity(BATCH);
            let mut cgroups = Vec::new();
            let mut records = 0u64;
            while let Some(item) = ring.next() {
                records += 1;
                match Record::decode(&item) {
                    Ok(Record::Event(ev)) => batch.push(ev),
                    Ok(Record::Cgroup(c)) => cgroups.push(c),
                    Err(e) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        log::warn!("malformed ring buffer record skipped: {e}");
                    }
                }
                if batch.len() >= BATCH {
                    drop(item);
                    if !cgroups.is_empty() && tx.send(Message::Cgroups(std::mem::take(&mut cgroups))).await.is_err() {
                        return;
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Message::Events(full)).await.is_err() {
                        return;
                    }
                }
            }
            stats.records.fetch_add(records, Ordering::Relaxed);
            wait = if records > 0 { DRAIN_BUSY } else { (wait * 2).min(DRAIN_IDLE) };
            if !cgroups.is_empty() && tx.send(Message::Cgroups(cgroups)).await.is_err() {
                return;
            }
            if !batch.is_empty() && tx.send(Message::Events(batch)).await.is_err() {
                return;
            }
            if last_lost_check.elapsed() >= LOST_POLL {
                last_lost_check = tokio::time::Instant::now();
                let total = lost.get();
                stats.fill.store(lost.fill(), Ordering::Relaxed);
                if total != last_lost {
                    last_lost = total;
                    stats.lost.store(total, Ordering::Relaxed);
                    if tx.send(Message::Lost { total }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }))
}

/// When the ring buffer is drained: a periodic timerfd, not a tokio sleep.
///
/// Written on a timerfd by hand because a tokio timer re-armed for a deadline
/// earlier than the runtime's next wake-up (a drain is due sooner than any other
/// timer) makes the runtime wake its own driver through its eventfd: a write and
/// an extra `epoll_wait` on every drain, hundreds of times a second under load.
/// A periodic timerfd is one readable descriptor and one read per drain, and is
/// re-armed only when the period changes.
struct Cadence {
    fd: AsyncFd<Timer>,
    period: Duration,
}

/// The timerfd as tokio takes it.
struct Timer(TimerFd);

impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl Cadence {
    fn new(period: Duration) -> std::io::Result<Cadence> {
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
        timer.set(Expiration::Interval(TimeSpec::from_duration(period)), TimerSetTimeFlags::empty())?;
        // SAFETY: the Timer owns its descriptor for as long as the AsyncFd owns the Timer.
        let fd = unsafe { AsyncFd::register(Timer(timer)) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Cadence { fd, period })
    }

    /// Drains every `period` from now on (re-armed only if it changed).
    fn set(&mut self, period: Duration) {
        if period != self.period {
            let every = Expiration::Interval(TimeSpec::from_duration(period));
            match self.fd.get_ref().0.set(every, TimerSetTimeFlags::empty()) {
                Ok(()) => self.period = period,
                Err(e) => log::warn!("re-arming the drain timer: {e}"),
            }
        }
    }

    /// Waits for the next period (or returns at once if one passed unseen).
    async fn tick(&mut self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match nix::unistd::read(&guard.get_inner().0, &mut expirations) {
                // Read and cleared in one go: the next expiration is a new edge,
                // and readiness that came after this guard is not cleared.
                Ok(_) => {
                    guard.clear_ready();
                    return Ok(());
                }
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Forwards the kernel side's aya-log messages to the `log` facade (shown with RUST_LOG).
pub fn spawn_kernel_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        log::debug!("no tokio runtime: kernel-side log messages are not read");
        return;
    };
    handle.spawn(async move {
        // SAFETY: the logger owns its ring buffer fd for as long as the AsyncFd owns the logger.
        let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
            return;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
