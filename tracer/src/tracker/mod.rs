//! The tracker: a [`Session`] feeding an [`Engine`]. It builds the start-up tree
//! from a task iterator walk merged with the events that raced with it, applies
//! every event after that, and repairs the tree with a new walk whenever the
//! kernel reports lost records.

pub mod session;

use session::Session;

use std::time::Duration;

use anyhow::Result;

use crate::{
    bpf::{Options, reader::Message},
    clock,
    engine::{Engine, EngineConfig, Update},
};

/// The cgroup table lives with the rest of the container code; this path stays for
/// the files that import it from here.
pub use crate::container::cgroups::{CgroupInfo, Cgroups};

/// Least time between two repair walks while records keep being lost.
const REPAIR_BACKOFF: Duration = Duration::from_millis(250);

/// How often cgroups no process uses any more are pruned (see [`Cgroups::prune`]):
/// `TRACER_CGROUP_PRUNE_MS` overrides it (tests).
const CGROUP_PRUNE: Duration = Duration::from_secs(60);

/// How often held exits and lingering processes are looked at when idle (each
/// event looks at them too, so under load this never waits).
const TICK: Duration = Duration::from_millis(250);

/// What the tracker has to do next (see [`Tracker::next_input`]).
#[derive(Debug)]
pub enum Next {
    Message(Option<Message>),
    Tick,
    /// Records were lost during the last walk: walk again.
    Repair,
}

/// What one [`Tracker::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Events were applied (their updates are in `out`).
    Applied,
    /// The kernel lost `lost` records (`total` in all); a repair walk followed and
    /// its updates are in `out`.
    Lost { lost: u64, total: u64, ts_ns: u64 },
    /// The event stream ended.
    Ended,
}

pub struct Tracker {
    session: Session,
    pub engine: Engine,
    /// Cgroups by id: their path and the container it names, if any.
    pub cgroups: Cgroups,
    tick: tokio::time::Interval,
    lost_seen: u64,
    /// Records were lost during the last walk: walk again.
    repair_due: bool,
    last_walk: tokio::time::Instant,
    ringbuf_bytes: u32,
    last_prune: tokio::time::Instant,
    prune_every: Duration,
}

impl Tracker {
    /// Loads the programs, walks the tasks, and builds the tree. The walk's own
    /// updates (one snapshot event per task, and the live events that raced with
    /// it) go to `out`.
    pub async fn start(opts: &Options, cfg: EngineConfig, out: &mut Vec<Update>) -> Result<Tracker> {
        let session = Session::start(opts)?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut t = Tracker {
            session,
            engine: Engine::new(cfg),
            cgroups: Cgroups::default(),
            tick,
            lost_seen: 0,
            repair_due: false,
            last_walk: tokio::time::Instant::now(),
            ringbuf_bytes: opts.ringbuf_bytes,
            last_prune: tokio::time::Instant::now(),
            prune_every: std::env::var("TRACER_CGROUP_PRUNE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(CGROUP_PRUNE, Duration::from_millis),
        };
        t.walk(out).await?;
        Ok(t)
    }

    /// A task iterator walk merged into the model, then reconciled with it: what
    /// the model has alive that started before the walk and that the walk did not
    /// find has ended unseen (a lost exit, or on the first walk, a task that began
    /// and ended while the programs were being attached).
    async fn walk(&mut self, out: &mut Vec<Update>) -> Result<()> {
        let lost_at_start = self.session.stats.lost.load(std::sync::atomic::Ordering::Relaxed);
        let walk = self.session.walk().await?;
        self.last_walk = tokio::time::Instant::now();
        if let Some(total) = walk.lost {
            // Records were lost while this walk ran: it may not make up for them
            // all, so another walk follows (see `step`).
            self.repair_due = total > lost_at_start;
            self.lost_seen = self.lost_seen.max(total);
            self.engine.set_lost(total);
        } else {
            self.repair_due = false;
        }
        self.cgroups.add(walk.cgroups);
        let mut live = walk.live;
        for ev in &mut live {
            self.cgroups.name_move(ev);
        }
        let seen = self.engine.apply_snapshot(walk.snapshot, live, out);
        self.engine.reconcile(&seen, walk.start_ns, lost_at_start, out);
        Ok(())
    }

    /// Waits for events (or the next tick) and applies them. Not cancel-safe (it
    /// may be in a repair walk): in a `select!`, use [`Tracker::next_input`] and
    /// [`Tracker::handle`] instead.
    pub async fn step(&mut self, out: &mut Vec<Update>) -> Result<Outcome> {
        let input = self.next_input().await;
        self.handle(input, out).await
    }

    /// Waits for the next thing to do. Cancel-safe: nothing is consumed unless it
    /// returns.
    pub async fn next_input(&mut self) -> Next {
        if self.repair_due && self.last_walk.elapsed() >= REPAIR_BACKOFF {
            return Next::Repair;
        }
        tokio::select! {
            msg = self.session.rx.recv() => Next::Message(msg),
            _ = self.tick.tick() => Next::Tick,
        }
    }

    /// Applies what [`Tracker::next_input`] returned. Must run to completion.
    pub async fn handle(&mut self, input: Next, out: &mut Vec<Update>) -> Result<Outcome> {
        match input {
            Next::Repair => {
                log::info!("records were lost during the last repair walk; walking again");
                self.walk(out).await?;
                Ok(Outcome::Applied)
            }
            Next::Tick => {
                self.engine.tick(clock::boot_now_ns(), out);
                if self.last_prune.elapsed() >= self.prune_every {
                    self.last_prune = tokio::time::Instant::now();
                    self.prune_cgroups();
                }
                Ok(Outcome::Applied)
            }
            Next::Message(None) => Ok(Outcome::Ended),
            Next::Message(Some(Message::Events(evs))) => {
                for ev in evs {
                    self.apply(ev, out);
                }
                Ok(Outcome::Applied)
            }
            Next::Message(Some(Message::Cgroups(c))) => {
                self.cgroups.add(c);
                Ok(Outcome::Applied)
            }
            Next::Message(Some(Message::Lost { total })) => {
                let lost = total.saturating_sub(self.lost_seen);
                self.lost_seen = total;
                self.engine.set_lost(total);
                let ts_ns = clock::boot_now_ns();
                log::warn!("{lost} events lost (ring buffer full); repairing the tree with a task iterator walk");
                self.walk(out).await?;
                Ok(Outcome::Lost { lost, total, ts_ns })
            }
        }
    }

    /// Before stopping: waits for the reader to drain what the kernel side has
    /// written so far, applies it, and releases held process exits.
    pub async fn finish(&mut self, out: &mut Vec<Update>) {
        // The reader drains the ring buffer at least every 10 ms.
        tokio::time::sleep(Duration::from_millis(30)).await;
        while let Ok(msg) = self.session.rx.try_recv() {
            match msg {
                Message::Events(evs) => {
                    for ev in evs {
                        self.apply(ev, out);
                    }
                }
                Message::Cgroups(c) => self.cgroups.add(c),
                Message::Lost { total } => {
                    self.lost_seen = total;
                    self.engine.set_lost(total);
                }
            }
        }
        // Release every held exit: nothing more will come for them.
        self.engine.tick(u64::MAX / 2, out);
    }

    /// Drops the cgroups no process in the model uses (see [`Cgroups::prune`]).
    fn prune_cgroups(&mut self) {
        let used: std::collections::HashSet<u64> = self.engine.processes().map(|p| p.cgroup_id).collect();
        let forget = self.cgroups.prune(&used);
        if forget.is_empty() {
            return;
        }
        match self.session.forget_cgroups(&forget) {
            Ok(n) => log::debug!("{} unused cgroups forgotten ({n} in the kernel's map)", forget.len()),
            Err(e) => log::warn!("forgetting {} unused cgroups in the kernel's map: {e:#}", forget.len()),
        }
    }

    /// Applies one live event, with the path of the cgroup a cgroup move went to.
    fn apply(&mut self, mut ev: crate::events::Event, out: &mut Vec<Update>) {
        self.cgroups.name_move(&mut ev);
        self.engine.apply(ev, out);
    }

    /// The ring buffer's size.
    /// What this kernel let the programs do.
    pub fn features(&self) -> &crate::bpf::features::Features {
        self.session.features()
    }

    pub fn ringbuf_bytes(&self) -> u32 {
        self.ringbuf_bytes
    }

    /// Counters of the ring buffer reader.
    pub fn reader_stats(&self) -> &crate::bpf::reader::ReaderStats {
        &self.session.stats
    }
}

/// The default engine settings for the commands.
pub fn engine_config() -> EngineConfig {
    EngineConfig::default()
}
