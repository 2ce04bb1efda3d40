//! The state of the `tracer watch` screen: the row list (rebuilt from the engine
//! only when the model changed), the selection, the filter, expanded processes,
//! and the thread spawn rates counted from the engine's updates. No I/O and no
//! clock reads: callers pass the boot-clock time.

use std::collections::VecDeque;
use std::sync::Arc;

use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::filter::Filter;
use crate::engine::{Engine, FxHashMap, FxHashSet, ProcState, Process, Update};
use crate::events::{Argv, Body, Comm, ProcRef};
use crate::render::{Containers, Known};

pub const SEC: u64 = 1_000_000_000;
/// How long new processes and threads stay highlighted, ns.
pub const NEW_FOR_NS: u64 = 2 * SEC;
/// Thread spawns are counted in buckets of this many ns...
const SPAWN_BUCKET_NS: u64 = SEC / 2;
/// ... over this many buckets (the rate's window: 5 s).
const SPAWN_BUCKETS: u64 = 10;
/// The window of the spawn rate, ns.
pub const SPAWN_WINDOW_NS: u64 = SPAWN_BUCKET_NS * SPAWN_BUCKETS;
/// The window of the events/s rate, ns.
const EVENTS_WINDOW_NS: u64 = 2 * SEC;

/// Thread creations of one process in the last [`SPAWN_WINDOW_NS`].
#[derive(Clone, Debug, Default)]
struct Spawns {
    /// Index (ts / bucket width) of the newest bucket.
    newest: u64,
    counts: [u32; SPAWN_BUCKETS as usize],
}

impl Spawns {
    fn add(&mut self, ts_ns: u64) {
        let b = ts_ns / SPAWN_BUCKET_NS;
        if b > self.newest {
            let shift = (b - self.newest).min(SPAWN_BUCKETS);
            for i in 1..=shift {
                self.counts[((self.newest + i) % SPAWN_BUCKETS) as usize] = 0;
            }
            self.newest = b;
        } else if b + SPAWN_BUCKETS <= self.newest {
            return;
        }
        let c = &mut self.counts[(b % SPAWN_BUCKETS) as usize];
        *c = c.saturating_add(1);
    }

    /// Spawns in the window that ends at `now_ns`.
    fn count(&self, now_ns: u64) -> u32 {
        let nb = now_ns / SPAWN_BUCKET_NS;
        (0..SPAWN_BUCKETS)
            .filter_map(|i| self.newest.checked_sub(i))
            .filter(|&j| j + SPAWN_BUCKETS > nb)
            .map(|j| self.counts[(j % SPAWN_BUCKETS) as usize])
            .sum()
    }
}

/// What identifies a row across rebuilds (the selection follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKey {
    /// A container's group, by [`group_key`].
    Group(u64),
    Proc(ProcRef),
    Thread(ProcRef, u32),
}

/// The key of a container's group row: a hash of its id (FNV-1a), 0 for the
/// processes in no container.
pub fn group_key(container: Option<&Known>) -> u64 {
    let Some(k) = container else { return 0 };
    let h =
        k.container.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    h.max(1)
}

/// A process as shown: what drawing needs, copied (cheaply: shared strings and
/// bytes) at the rebuild so that a paused screen stays as it was.
#[derive(Clone, Debug)]
pub struct ProcRow {
    pub id: ProcRef,
    pub ppid: u32,
    pub uid: u32,
    pub user: Option<Arc<str>>,
    pub nlwp: usize,
    pub comm: Comm,
    pub argv: Argv,
    pub kthread: bool,
    pub cgroup_id: u64,
    /// Its container, if it is in one.
    pub container: Option<Arc<Known>>,
    pub state: ProcState,
    /// Threads created in the last [`SPAWN_WINDOW_NS`].
    pub spawns: u32,
    pub depth: usize,
    /// Its end was not seen (the daemon's snapshot said it exited without a status).
    pub exit_unknown: bool,
}

#[derive(Clone, Debug)]
pub struct ThreadRow {
    pub proc: ProcRef,
    pub tid: u32,
    pub comm: Comm,
    pub start_ns: u64,
    /// Depth of its process.
    pub depth: usize,
}

#[derive(Clone, Debug)]
pub enum Row {
    /// The header of the processes of one container (None: those in none).
    Group {
        key: u64,
        container: Option<Arc<Known>>,
        processes: usize,
    },
    Proc(ProcRow),
    Thread(ThreadRow),
}

impl Row {
    pub fn key(&self) -> RowKey {
        match self {
            Row::Group { key, .. } => RowKey::Group(*key),
            Row::Proc(p) => RowKey::Proc(p.id),
            Row::Thread(t) => RowKey::Thread(t.proc, t.tid),
        }
    }
}

/// The counters the header shows, from the engine (or the daemon).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Live threads, leaders included.
    pub tasks: u64,
    /// Live processes.
    pub processes: u64,
    /// Events applied so far (start-up walk left out): the events/s rate comes from it.
    pub events_total: u64,
    pub lost: u64,
    pub degraded: bool,
}

impl Counters {
    pub fn of(engine: &Engine) -> Counters {
        let s = engine.stats();
        Counters {
            tasks: s.threads as u64,
            processes: s.processes as u64,
            events_total: s.applied.total().saturating_sub(s.applied.get(tracer_abi::Kind::Snapshot)),
            lost: s.lost,
            degraded: s.degraded,
        }
    }
}

/// The header's numbers at the last rebuild.
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    pub counters: Counters,
    pub events_per_s: u64,
    /// Process rows shown, and processes in the model (alive or exited).
    pub shown: usize,
    pub total: usize,
}

/// Settings fixed at start.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// NO_COLOR: no colours, only markers and text attributes.
    pub no_color: bool,
    /// Where the tree comes from, when not this process's engine (shown in the status line).
    pub source_note: Option<String>,
}

/// What the caller should do after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Draw again (the rows are as they were).
    Redraw,
    /// Rebuild the rows from the model, then draw.
    Rebuild,
    Quit,
}

/// The screen's state. See the module documentation.
pub struct View {
    pub(super) cfg: Config,
    pub(super) filter_text: String,
    filter: Filter,
    /// The filter prompt's text while it is open.
    pub(super) prompt: Option<String>,
    expanded: FxHashSet<ProcRef>,
    pub(super) grouped: bool,
    pub(super) paused: bool,
    pub(super) help: bool,
    pub(super) rows: Vec<Row>,
    pub(super) header: Header,
    selected: Option<RowKey>,
    pub(super) sel: usize,
    pub(super) offset: usize,
    /// Rows that fit on the screen (from the last draw).
    pub(super) page: usize,
    spawns: FxHashMap<ProcRef, Spawns>,
    samples: VecDeque<(u64, u64)>,
    /// The time of the last rebuild: ages and highlights are as of then.
    pub(super) now: u64,
    /// Exited processes whose exit status is unknown (daemon snapshots).
    pub unknown_exits: FxHashSet<ProcRef>,
    /// The latest container start or stop, and until when (boot clock) it shows.
    pub(super) news: Option<(String, u64)>,
}

/// How long a container start or stop shows in the status line.
pub const NEWS_NS: u64 = 15_000_000_000;

impl View {
    /// Shows `text` (a container start or stop) in the status line for [`NEWS_NS`]
    /// from `now_ns`.
    pub fn note(&mut self, text: String, now_ns: u64) {
        self.news = Some((text, now_ns + NEWS_NS));
    }

    pub fn new(cfg: Config, filter: &str) -> View {
        let filter_text = filter.trim().to_string();
        View {
            cfg,
            filter: Filter::parse(&filter_text),
            filter_text,
            prompt: None,
            expanded: FxHashSet::default(),
            grouped: false,
            paused: false,
            help: false,
            rows: Vec::new(),
            header: Header::default(),
            selected: None,
            sel: 0,
            offset: 0,
            page: 20,
            spawns: FxHashMap::default(),
            samples: VecDeque::new(),
            now: 0,
            unknown_exits: FxHashSet::default(),
            news: None,
        }
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn selected(&self) -> Option<RowKey> {
        self.selected
    }

    /// Takes note of one engine update (thread spawns, dropped processes).
    pub fn observe(&mut self, u: &Update) {
        match u {
            Update::Event(ev) => {
                if let Body::Clone { .. } = ev.body {
                    let r = ProcRef { pid: ev.task.pid, start_ns: ev.task.proc_start_ns };
                    self.spawn(r, ev.ts_ns);
                }
            }
            Update::Dropped { proc } => {
                self.spawns.remove(proc);
                self.expanded.remove(proc);
            }
            _ => {}
        }
    }

    /// Counts a thread creation in process `r` at `ts_ns`.
    pub fn spawn(&mut self, r: ProcRef, ts_ns: u64) {
        self.spawns.entry(r).or_default().add(ts_ns);
    }

    fn set_filter(&mut self, text: String) {
        self.filter = Filter::parse(&text);
        self.filter_text = text;
    }

    /// Rebuilds the rows from the model (processes in the containers `cx` says),
    /// keeping the selection on its process.
    pub fn rebuild(&mut self, engine: &Engine, cx: &Containers, counters: Counters, now: u64) {
        self.now = now;
        self.samples.push_back((now, counters.events_total));
        while self.samples.len() > 2 && self.samples[1].0.saturating_add(EVENTS_WINDOW_NS) <= now {
            self.samples.pop_front();
        }
        let events_per_s = match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 >= t0 + SEC / 5 => {
                (u128::from(n1.saturating_sub(n0)) * u128::from(SEC) / u128::from(t1 - t0)) as u64
            }
            _ => 0,
        };
        self.spawns.retain(|_, s| s.count(now) > 0);
        self.expanded.retain(|r| engine.get(*r).is_some());

        let anchor = self.filter.pid.map(|pid| engine.process(pid).map(Process::id));
        let mut chosen: Vec<&Process> = engine
            .processes()
            .filter(|p| {
                self.filter.matches(p, cx.of(p).map(|k| &**k))
                    && match anchor {
                        None => true,
                        Some(None) => false,
                        Some(Some(a)) => p.id() == a || engine.descends_from(p, a),
                    }
            })
            .collect();
        chosen.sort_unstable_by_key(|p| (p.pid, p.start_ns));

        let mut rows = Vec::with_capacity(chosen.len() + 8);
        if self.grouped {
            // The processes in no container first, then each container's, by name.
            let mut groups: FxHashMap<u64, (Option<&Arc<Known>>, Vec<&Process>)> = FxHashMap::default();
            for p in chosen.iter().copied() {
                let k = cx.of(p);
                groups.entry(group_key(k.map(|k| &**k))).or_insert((k, Vec::new())).1.push(p);
            }
            let mut groups: Vec<_> = groups.into_iter().collect();
            groups.sort_by(|a, b| {
                let order = |g: &(u64, (Option<&Arc<Known>>, Vec<&Process>))| {
                    g.1.0.map(|k| (k.short_name().to_string(), k.container.id.clone()))
                };
                order(a).cmp(&order(b))
            });
            for (key, (container, members)) in groups {
                rows.push(Row::Group { key, container: container.cloned(), processes: members.len() });
                self.forest(&members, cx, &mut rows);
            }
        } else {
            self.forest(&chosen, cx, &mut rows);
        }
        self.header = Header { counters, events_per_s, shown: chosen.len(), total: engine.len() };
        self.set_rows(rows);
    }

    /// Appends `members` (sorted by pid, start) as a forest: a member whose parent is
    /// not a member is a root.
    fn forest(&self, members: &[&Process], cx: &Containers, rows: &mut Vec<Row>) {
        let ids: FxHashSet<ProcRef> = members.iter().map(|p| p.id()).collect();
        let mut kids: FxHashMap<ProcRef, Vec<&Process>> = FxHashMap::default();
        let mut roots = Vec::new();
        for &p in members {
            match p.parent().filter(|&r| r != p.id() && ids.contains(&r)) {
                Some(r) => kids.entry(r).or_default().push(p),
                None => roots.push(p),
            }
        }
        let mut done: FxHashSet<ProcRef> = FxHashSet::default();
        let mut stack: Vec<(&Process, usize)> = Vec::new();
        // After the roots, anything left sits on a parent cycle (inconsistent input).
        for &top in roots.iter().chain(members.iter()) {
            stack.push((top, 0));
            while let Some((p, depth)) = stack.pop() {
                if !done.insert(p.id()) {
                    continue;
                }
                self.push_process(p, depth, cx, rows);
                if let Some(ks) = kids.get(&p.id()) {
                    stack.extend(ks.iter().rev().map(|&k| (k, depth + 1)));
                }
            }
        }
    }

    fn push_process(&self, p: &Process, depth: usize, cx: &Containers, rows: &mut Vec<Row>) {
        let id = p.id();
        rows.push(Row::Proc(ProcRow {
            id,
            ppid: p.ppid,
            uid: p.uid,
            user: p.user.clone(),
            nlwp: p.nlwp(),
            comm: p.comm,
            argv: p.argv.clone(),
            kthread: p.kthread,
            cgroup_id: p.cgroup_id,
            container: cx.of(p).cloned(),
            state: p.state,
            spawns: self.spawns.get(&id).map_or(0, |s| s.count(self.now)),
            depth,
            exit_unknown: !p.is_alive() && self.unknown_exits.contains(&id),
        }));
        if self.expanded.contains(&id) {
            let mut ths: Vec<_> = p.threads.iter().collect();
            ths.sort_unstable_by_key(|t| (t.tid != p.pid, t.tid));
            rows.extend(
                ths.into_iter().map(|t| {
                    Row::Thread(ThreadRow { proc: id, tid: t.tid, comm: t.comm, start_ns: t.start_ns, depth })
                }),
            );
        }
    }

    /// Replaces the rows; the selected row keeps its place on the screen when it is
    /// still there, else the selection stays at the same index.
    fn set_rows(&mut self, rows: Vec<Row>) {
        let on_screen = self.sel.saturating_sub(self.offset);
        self.rows = rows;
        let found = self.selected.and_then(|k| {
            self.rows.iter().position(|r| r.key() == k).or_else(|| match k {
                RowKey::Thread(p, _) => self.rows.iter().position(|r| r.key() == RowKey::Proc(p)),
                _ => None,
            })
        });
        match found {
            Some(i) => {
                self.sel = i;
                self.offset = i.saturating_sub(on_screen);
            }
            None => self.sel = self.sel.min(self.rows.len().saturating_sub(1)),
        }
        self.selected = self.rows.get(self.sel).map(Row::key);
        self.clamp();
    }

    /// Keeps the selection on the screen, and the screen full when rows allow.
    pub(super) fn clamp(&mut self) {
        let page = self.page.max(1);
        let len = self.rows.len();
        self.sel = self.sel.min(len.saturating_sub(1));
        if self.offset + page > len {
            self.offset = len.saturating_sub(page);
        }
        if self.sel < self.offset {
            self.offset = self.sel;
        } else if self.sel >= self.offset + page {
            self.offset = self.sel + 1 - page;
        }
    }

    fn move_to(&mut self, i: isize) -> Action {
        if self.rows.is_empty() {
            return Action::None;
        }
        let i = i.clamp(0, self.rows.len() as isize - 1) as usize;
        self.sel = i;
        self.selected = Some(self.rows[i].key());
        self.clamp();
        Action::Redraw
    }

    fn move_by(&mut self, d: isize) -> Action {
        self.move_to(self.sel as isize + d)
    }

    /// Shows or hides the threads of the selected process.
    fn toggle_expand(&mut self) -> Action {
        match self.selected {
            Some(RowKey::Proc(r)) => {
                if !self.expanded.remove(&r) {
                    self.expanded.insert(r);
                }
                Action::Rebuild
            }
            Some(RowKey::Thread(r, _)) => {
                self.expanded.remove(&r);
                self.selected = Some(RowKey::Proc(r));
                Action::Rebuild
            }
            _ => Action::None,
        }
    }

    /// Handles a terminal event.
    pub fn input(&mut self, ev: &TermEvent) -> Action {
        match ev {
            TermEvent::Key(k) => self.key(*k),
            TermEvent::Resize(..) => Action::Redraw,
            _ => Action::None,
        }
    }

    /// Handles a key press.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(k.code, KeyCode::Char('c' | 'C')) {
            return Action::Quit;
        }
        if let Some(buf) = &mut self.prompt {
            return match k.code {
                KeyCode::Enter => {
                    self.prompt = None;
                    Action::Redraw
                }
                KeyCode::Esc => {
                    self.prompt = None;
                    self.set_filter(String::new());
                    Action::Rebuild
                }
                KeyCode::Backspace => {
                    buf.pop();
                    let t = buf.clone();
                    self.set_filter(t);
                    Action::Rebuild
                }
                KeyCode::Char('u') if ctrl => {
                    buf.clear();
                    self.set_filter(String::new());
                    Action::Rebuild
                }
                KeyCode::Char(c) if !ctrl && !c.is_control() => {
                    buf.push(c);
                    let t = buf.clone();
                    self.set_filter(t);
                    Action::Rebuild
                }
                _ => Action::None,
            };
        }
        if self.help {
            if k.code == KeyCode::Char('q') {
                return Action::Quit;
            }
            self.help = false;
            return Action::Redraw;
        }
        let page = self.page.max(1) as isize;
        match k.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(0),
            KeyCode::End | KeyCode::Char('G') => self.move_to(isize::MAX),
            KeyCode::Enter | KeyCode::Char(' ') => self.toggle_expand(),
            KeyCode::Char('/') => {
                self.prompt = Some(self.filter_text.clone());
                Action::Redraw
            }
            KeyCode::Esc if !self.filter_text.is_empty() => {
                self.set_filter(String::new());
                Action::Rebuild
            }
            KeyCode::Char('c') => {
                self.grouped = !self.grouped;
                Action::Rebuild
            }
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                if self.paused { Action::Redraw } else { Action::Rebuild }
            }
            KeyCode::Char('?') => {
                self.help = true;
                Action::Redraw
            }
            _ => Action::None,
        }
    }
}
