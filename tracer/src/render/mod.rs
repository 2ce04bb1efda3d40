//! Text and JSON views of the engine's model for `tracer ps`. Pure functions: no
//! I/O, no clock reads; the caller passes the times and the local time zone, and
//! the containers (see [`containers`]). Times are formatted by [`crate::clock`].
//!
//! - [`forest_in`]: `ps afxuww`-like: `USER PID NSPID PPID NLWP START [TIME] [RSS]
//!   COMMAND`, children indented under their parent with `\_ ` as `ps f` does. A
//!   process whose container is not its parent's starts a container's subtree: a
//!   header row (`[docker 1a2b3c4d5e6f web-a busybox:1]`, `[host]` back out of
//!   one) goes before it, at its place in the tree.
//! - [`threads_in`]: `ps -eLf`-like: `UID PID NSPID PPID LWP NSLWP NLWP STIME CMD`, one
//!   line per thread.
//! - [`json_in`]: `{"degraded": bool, "lost": n, "processes": [...]}`: a flat list of
//!   processes in forest order (a parent before its children, `depth` 0 for a
//!   root), each with every field (`container` too), its children's pids and a
//!   `threads` array. The tree is rebuilt from `ppid`/`parent_start_ns` (or
//!   `children`).
//!
//! NSPID is the pid inside the process's own pid namespace, `-` for a process in
//! the host's (that of the kernel threads). With [`Grouping::by_container`] only
//! processes in containers are listed, one header per container (by the start of
//! its oldest process) followed by its processes' forest.
//!
//! Order: roots, and the children of each process, by pid then start time.
//! Exited processes still in the model (the linger, or exited ancestors of live
//! ones) show with `<exited: STATUS>` after their command.

pub mod containers;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::engine::{Engine, Process};
use crate::events::ProcRef;
use crate::{clock, escape};
pub use containers::{Containers, Known, NameCache};

/// What the caller knows of time and memory, for START, TIME and RSS.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Wall-clock time of boot, ns since the epoch: CLOCK_REALTIME - CLOCK_BOOTTIME.
    pub boot_epoch_ns: i128,
    /// The local time zone START is shown in ([`clock::local_zone`]); each time
    /// with the offset of its own moment (summer time or not).
    pub tz: TimeZone,
    /// The boot clock now, ns: START shows HH:MM for processes started today,
    /// `MonDD` for earlier ones this year, else the year (as ps does).
    pub now_ns: u64,
    /// Bytes per page, for RSS (shown in KiB).
    pub page_size: u64,
    /// Show exited processes still in the model.
    pub show_exited: bool,
}

impl RenderOptions {
    /// Times and sizes read from this machine now (what the daemon and `ps` render
    /// with).
    pub fn local(show_exited: bool) -> RenderOptions {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        RenderOptions {
            boot_epoch_ns: clock::boot_epoch_ns(),
            tz: clock::local_zone(),
            now_ns: clock::boot_now_ns(),
            page_size: if page > 0 { page as u64 } else { 4096 },
            show_exited,
        }
    }
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { boot_epoch_ns: 0, tz: TimeZone::UTC, now_ns: 0, page_size: 4096, show_exited: true }
    }
}

/// Which processes to show. All set conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// This process (live, else the latest exited one) and all its descendants.
    pub pid: Option<u32>,
    /// Processes whose comm (the leader thread's) matches this glob.
    pub comm: Option<crate::events::select::CommGlob>,
    /// Processes of this user: a user name, or a uid in decimal.
    pub user: Option<String>,
}

impl Filter {
    fn matches(&self, p: &Process) -> bool {
        if let Some(c) = &self.comm
            && !c.matches(&p.comm)
        {
            return false;
        }
        if let Some(u) = &self.user
            && p.user.as_deref() != Some(u.as_str())
            && u.parse::<u32>().ok() != Some(p.uid)
        {
            return false;
        }
        true
    }
}

/// Processes listed by container (`tracer ps -C`, `--container`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grouping {
    /// Only processes in containers, grouped by container.
    pub by_container: bool,
    /// Only the containers this names (short id, id prefix or name); implies
    /// `by_container`.
    pub container: Option<String>,
}

impl Grouping {
    fn active(&self) -> bool {
        self.by_container || self.container.is_some()
    }
}

/// One process to show, its depth in the shown forest, and its children in the
/// model (alive or exited, by pid), shown or not.
#[derive(Clone, Debug)]
pub struct Row<'a> {
    pub process: &'a Process,
    pub depth: usize,
    pub children: Vec<ProcRef>,
}

/// The whole model's parent -> children map, built in one pass (the engine's own
/// index lists live children only).
fn adjacency(engine: &Engine) -> HashMap<ProcRef, Vec<&Process>> {
    let mut kids: HashMap<ProcRef, Vec<&Process>> = HashMap::new();
    for p in engine.processes() {
        if let Some(pr) = p.parent().filter(|&pr| pr != p.id())
            && engine.get(pr).is_some()
        {
            kids.entry(pr).or_default().push(p);
        }
    }
    for v in kids.values_mut() {
        v.sort_by_key(|c| (c.pid, c.start_ns));
    }
    kids
}

/// The processes `filter` selects, in forest order (pre-order, children by pid).
/// A selected process whose parent is not selected is a root of the shown forest.
pub fn select<'a>(engine: &'a Engine, filter: &Filter, opts: &RenderOptions) -> Vec<Row<'a>> {
    select_where(engine, filter, opts, |_| true, |_| ())
}

/// As [`select`], of the processes `extra` also keeps; a process whose `group` is
/// not its parent's is a root too.
fn select_where<'a, K: PartialEq>(
    engine: &'a Engine,
    filter: &Filter,
    opts: &RenderOptions,
    extra: impl Fn(&Process) -> bool,
    group: impl Fn(&Process) -> K,
) -> Vec<Row<'a>> {
    let kids = adjacency(engine);
    let no_kids: Vec<&Process> = Vec::new();
    let kids_of = |p: &Process| kids.get(&p.id()).unwrap_or(&no_kids);
    let keep = |p: &Process| (opts.show_exited || p.is_alive()) && filter.matches(p) && extra(p);
    let mut chosen: Vec<&Process> = match filter.pid {
        Some(pid) => {
            let mut v = Vec::new();
            if let Some(top) = engine.process(pid) {
                let mut stack = vec![top];
                let mut seen = HashSet::new();
                while let Some(p) = stack.pop() {
                    if seen.insert(p.id()) {
                        v.push(p);
                        stack.extend(kids_of(p).iter().copied());
                    }
                }
            }
            v.retain(|p| keep(p));
            v
        }
        None => engine.processes().filter(|p| keep(p)).collect(),
    };
    chosen.sort_by_key(|p| (p.pid, p.start_ns));
    let ids: HashSet<ProcRef> = chosen.iter().map(|p| p.id()).collect();
    let is_root = |p: &Process| {
        p.parent().is_none_or(|r| {
            r == p.id() || !ids.contains(&r) || engine.get(r).is_none_or(|parent| group(parent) != group(p))
        })
    };

    let mut rows = Vec::with_capacity(chosen.len());
    let mut done: HashSet<ProcRef> = HashSet::with_capacity(chosen.len());
    let mut walk = |root: &'a Process, rows: &mut Vec<Row<'a>>| {
        let mut stack = vec![(root, 0usize)];
        while let Some((p, depth)) = stack.pop() {
            if !done.insert(p.id()) {
                continue;
            }
            let all = kids_of(p);
            rows.push(Row { process: p, depth, children: all.iter().map(|c| c.id()).collect() });
            let g = group(p);
            stack.extend(all.iter().rev().filter(|c| ids.contains(&c.id()) && group(c) == g).map(|&c| (c, depth + 1)));
        }
    };
    for p in chosen.iter().filter(|p| is_root(p)) {
        walk(p, &mut rows);
    }
    // Anything left sits on a parent cycle (only inconsistent input can make one).
    for p in &chosen {
        walk(p, &mut rows);
    }
    rows
}

/// A line of a view: a process, or the header of the container (None: the host)
/// whose subtree starts below it, at that depth.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Header { container: Option<&'a Known>, depth: usize },
    Proc(Row<'a>),
}

fn container_id(k: Option<&Known>) -> Option<&str> {
    k.map(|k| k.container.id.as_str())
}

/// The lines of a view, in order: the forest with a header before each process
/// whose container is not its parent's (in the shown forest), or with
/// [`Grouping`], each container's header and then its forest.
pub fn layout<'a>(
    engine: &'a Engine,
    cx: &'a Containers,
    filter: &Filter,
    grouping: &Grouping,
    opts: &RenderOptions,
) -> Vec<Item<'a>> {
    let of = |p: &Process| cx.of(p).map(|k| &**k);
    if !grouping.active() {
        let rows = select(engine, filter, opts);
        let mut items = Vec::with_capacity(rows.len() + 8);
        // The container of the last row at each depth: a row's parent is the last
        // one above it, one level up.
        let mut stack: Vec<Option<&Known>> = Vec::new();
        for r in rows {
            let mine = of(r.process);
            stack.truncate(r.depth);
            let parent = if r.depth == 0 { None } else { stack.last().copied().flatten() };
            if container_id(mine) != container_id(parent) {
                items.push(Item::Header { container: mine, depth: r.depth });
            }
            while stack.len() < r.depth {
                stack.push(None);
            }
            stack.push(mine);
            items.push(Item::Proc(r));
        }
        return items;
    }
    let wanted = |p: &Process| match (of(p), &grouping.container) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(k), Some(q)) => k.matches(q),
    };
    let rows = select_where(engine, filter, opts, wanted, |p| container_id(of(p)));
    // Each root's subtree is in one container: gather them by container, in order.
    let mut groups: HashMap<&str, (&Known, u64, Vec<Row<'a>>)> = HashMap::new();
    for r in rows {
        let Some(k) = of(r.process) else { continue };
        let g = groups.entry(k.container.id.as_str()).or_insert((k, u64::MAX, Vec::new()));
        g.1 = g.1.min(r.process.start_ns);
        g.2.push(r);
    }
    let mut groups: Vec<_> = groups.into_values().collect();
    groups.sort_by(|a, b| (a.1, &a.0.container.id).cmp(&(b.1, &b.0.container.id)));
    let mut items = Vec::new();
    for (k, _, rows) in groups {
        items.push(Item::Header { container: Some(k), depth: 0 });
        items.extend(rows.into_iter().map(Item::Proc));
    }
    items
}

/// The pid inside the process's own pid namespace, None in the host's (or when
/// unknown).
pub fn ns_pid(p: &Process, host_pidns: Option<u32>) -> Option<u32> {
    let host = match host_pidns {
        Some(h) => p.pidns == h,
        // No kernel thread known: a pid that is the same inside is taken as the host's.
        None => p.ns_pid == p.pid,
    };
    (!host && p.ns_pid != 0).then_some(p.ns_pid)
}

fn ns_pid_cell(p: &Process, host_pidns: Option<u32>) -> String {
    ns_pid(p, host_pidns).map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// The text of a container header row: `[docker 1a2b3c4d5e6f web-a busybox:1]`, or
/// `[host]` (escaped, as [`Known::label`] is).
pub fn header_label(container: Option<&Known>) -> String {
    match container {
        Some(k) => format!("[{}]", k.label()),
        None => "[host]".to_string(),
    }
}

/// The tree prefix of a process at `depth`: `    ` per level above the first, then ` \_ `.
fn tree_prefix(depth: usize) -> String {
    if depth == 0 {
        return String::new();
    }
    let mut s = "    ".repeat(depth - 1);
    s.push_str(" \\_ ");
    s
}

/// A header at `depth`: its `[` under the `\` of the processes at that depth.
fn header_cell(container: Option<&Known>, depth: usize) -> String {
    let mut s = if depth == 0 { String::new() } else { format!("{} ", "    ".repeat(depth - 1)) };
    s.push_str(&header_label(container));
    s
}

/// The command as ps shows it: argv joined by spaces, or `[comm]` for a kernel
/// thread or a process without a readable argv. Exact, for JSON; the text views
/// use [`push_command`].
pub fn command(p: &Process) -> String {
    if p.kthread || p.argv.is_empty() { format!("[{}]", p.comm) } else { p.argv.joined() }
}

/// Appends [`command`], escaped for a terminal (see [`escape`]).
pub fn push_command(out: &mut String, p: &Process) {
    if p.kthread || p.argv.is_empty() {
        out.push('[');
        escape::push_bytes(out, p.comm.as_bytes());
        out.push(']');
    } else {
        escape::push_argv(out, &p.argv);
    }
}

/// USER, escaped.
fn user(p: &Process) -> Cow<'_, str> {
    match &p.user {
        Some(u) => escape::text(u),
        None => Cow::Owned(p.uid.to_string()),
    }
}

fn exited_suffix(p: &Process) -> String {
    match (p.is_alive(), p.exit_status()) {
        (true, _) => String::new(),
        (false, Some(s)) => format!(" <exited: {s}>"),
        (false, None) => " <exited>".to_string(),
    }
}

/// START of a process or thread, as ps shows it (see [`clock::start_in`]).
fn start_cell(opts: &RenderOptions, start_ns: u64) -> String {
    clock::start_in(&opts.tz, clock::wall(opts.boot_epoch_ns, start_ns), clock::wall(opts.boot_epoch_ns, opts.now_ns))
}

/// CPU time as ps u shows it: `M:SS`.
fn format_cpu(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Left- or right-aligned columns, widths fitted to the contents; the last
/// column is not padded.
struct Table {
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[(&str, bool)]) -> Table {
        Table {
            right: header.iter().map(|h| h.1).collect(),
            rows: vec![header.iter().map(|h| h.0.to_string()).collect()],
        }
    }

    /// A row with only its last column: a header line within the table.
    fn header_row(&mut self, last: String) {
        let mut cells = vec![String::new(); self.right.len() - 1];
        cells.push(last);
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let n = self.right.len();
        let mut width = vec![0usize; n];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n - 1) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                if i == n - 1 {
                    s.push_str(c);
                } else if self.right[i] {
                    let _ = write!(s, "{c:>w$}", w = width[i]);
                } else {
                    let _ = write!(s, "{c:<w$}", w = width[i]);
                }
            }
            s.push('\n');
        }
        s
    }
}

/// The `ps afxuww`-like forest, without container attribution (see [`forest_in`]).
pub fn forest(engine: &Engine, filter: &Filter, opts: &RenderOptions) -> String {
    forest_in(engine, &Containers::default(), filter, &Grouping::default(), opts)
}

/// The `ps afxuww`-like forest. TIME and RSS columns appear when some shown
/// process has them (from a task iterator walk); `-` where unknown.
pub fn forest_in(
    engine: &Engine,
    cx: &Containers,
    filter: &Filter,
    grouping: &Grouping,
    opts: &RenderOptions,
) -> String {
    let items = layout(engine, cx, filter, grouping, opts);
    let host = engine.host_pidns();
    let usage = items.iter().any(|i| matches!(i, Item::Proc(r) if r.process.usage.is_some()));
    let mut header =
        vec![("USER", false), ("PID", true), ("NSPID", true), ("PPID", true), ("NLWP", true), ("START", false)];
    if usage {
        header.extend([("TIME", true), ("RSS", true)]);
    }
    header.push(("COMMAND", false));
    let mut t = Table::new(&header);
    for item in &items {
        let r = match item {
            Item::Header { container, depth } => {
                t.header_row(header_cell(*container, *depth));
                continue;
            }
            Item::Proc(r) => r,
        };
        let p = r.process;
        let mut cells = vec![
            user(p).into_owned(),
            p.pid.to_string(),
            ns_pid_cell(p, host),
            p.ppid.to_string(),
            p.nlwp().to_string(),
            start_cell(opts, p.start_ns),
        ];
        if usage {
            match &p.usage {
                Some(u) => {
                    cells.push(format_cpu(u.utime_ns + u.stime_ns));
                    cells.push((u.rss_pages * opts.page_size / 1024).to_string());
                }
                None => cells.extend(["-".to_string(), "-".to_string()]),
            }
        }
        let mut cmd = tree_prefix(r.depth);
        push_command(&mut cmd, p);
        cmd.push_str(&exited_suffix(p));
        cells.push(cmd);
        t.rows.push(cells);
    }
    t.render()
}

/// The `ps -eLf`-like view, without container attribution (see [`threads_in`]).
pub fn threads(engine: &Engine, filter: &Filter, opts: &RenderOptions) -> String {
    threads_in(engine, &Containers::default(), filter, &Grouping::default(), opts)
}

/// One line per live thread, like `ps -eLf`: processes by pid, the leader first
/// and then the other threads by tid (with [`Grouping`], by pid within each
/// container, after its header). STIME is the thread's start.
pub fn threads_in(
    engine: &Engine,
    cx: &Containers,
    filter: &Filter,
    grouping: &Grouping,
    opts: &RenderOptions,
) -> String {
    let host = engine.host_pidns();
    let mut items = layout(engine, cx, filter, grouping, opts);
    if grouping.active() {
        // By pid within each group (a header and the processes up to the next).
        let mut start = 0;
        while start < items.len() {
            let end = items[start + 1..]
                .iter()
                .position(|i| matches!(i, Item::Header { .. }))
                .map_or(items.len(), |n| start + 1 + n);
            items[start + 1..end].sort_by_key(|i| match i {
                Item::Proc(r) => (r.process.pid, r.process.start_ns),
                Item::Header { .. } => (0, 0),
            });
            start = end;
        }
    } else {
        items.retain(|i| matches!(i, Item::Proc(_)));
        items.sort_by_key(|i| match i {
            Item::Proc(r) => (r.process.pid, r.process.start_ns),
            Item::Header { .. } => (0, 0),
        });
    }
    let mut t = Table::new(&[
        ("UID", false),
        ("PID", true),
        ("NSPID", true),
        ("PPID", true),
        ("LWP", true),
        ("NSLWP", true),
        ("NLWP", true),
        ("STIME", false),
        ("CMD", false),
    ]);
    for item in &items {
        let p = match item {
            Item::Header { container, .. } => {
                t.header_row(header_label(*container));
                continue;
            }
            Item::Proc(r) => r.process,
        };
        let mut ths: Vec<_> = p.threads.iter().collect();
        ths.sort_by_key(|th| (th.tid != p.pid, th.tid));
        let mut cmd = String::new();
        push_command(&mut cmd, p);
        let nspid = ns_pid_cell(p, host);
        for th in ths {
            t.rows.push(vec![
                user(p).into_owned(),
                p.pid.to_string(),
                nspid.clone(),
                p.ppid.to_string(),
                th.tid.to_string(),
                if nspid == "-" { "-".to_string() } else { th.ns_tid.to_string() },
                p.nlwp().to_string(),
                start_cell(opts, th.start_ns),
                cmd.clone(),
            ]);
        }
    }
    t.render()
}

/// One process as JSON, every field, with its container.
pub fn process_json_in(row: &Row<'_>, container: Option<&Known>, opts: &RenderOptions) -> Value {
    let (p, depth) = (row.process, row.depth);
    let mut ths: Vec<_> = p.threads.iter().collect();
    ths.sort_by_key(|th| (th.tid != p.pid, th.tid));
    let kids = &row.children;
    json!({
        "pid": p.pid,
        "start_ns": p.start_ns,
        "start_time": clock::format_rfc3339(opts.boot_epoch_ns, p.start_ns),
        "ppid": p.ppid,
        "parent_start_ns": p.parent_start_ns,
        "spawned_by": (p.spawned_by.pid != 0).then_some(p.spawned_by),
        "uid": p.uid,
        "gid": p.gid,
        "user": p.user.as_deref(),
        "comm": p.comm,
        "exe": p.exe.as_deref(),
        "argv": p.argv,
        "argv_truncated": p.argv.truncated,
        "argv_unreadable": p.argv.unreadable,
        "command": command(p),
        "cgroup_id": p.cgroup_id,
        "pidns": p.pidns,
        "mntns": p.mntns,
        "ns_pid": p.ns_pid,
        "container": container.map(Known::to_json),
        "kthread": p.kthread,
        "origin": p.origin,
        "state": if p.is_alive() { "alive" } else { "exited" },
        "exit": p.exit_status(),
        "exited_at_ns": p.exited_at(),
        "utime_ns": p.usage.as_ref().map(|u| u.utime_ns),
        "stime_ns": p.usage.as_ref().map(|u| u.stime_ns),
        "rss_pages": p.usage.as_ref().map(|u| u.rss_pages),
        "nlwp": p.nlwp(),
        "depth": depth,
        "children": kids.iter().map(|c| c.pid).collect::<Vec<_>>(),
        "threads": ths.iter().map(|th| json!({"tid": th.tid, "ns_tid": th.ns_tid, "comm": th.comm, "start_ns": th.start_ns})).collect::<Vec<_>>(),
    })
}

/// The selected processes as JSON, without container attribution (see [`json_in`]).
pub fn json(engine: &Engine, filter: &Filter, opts: &RenderOptions) -> Value {
    json_in(engine, &Containers::default(), filter, &Grouping::default(), opts)
}

/// The selected processes as JSON (see the module documentation); with
/// [`Grouping`], those in containers, container by container.
pub fn json_in(engine: &Engine, cx: &Containers, filter: &Filter, grouping: &Grouping, opts: &RenderOptions) -> Value {
    let items = layout(engine, cx, filter, grouping, opts);
    let processes: Vec<Value> = items
        .iter()
        .filter_map(|i| match i {
            Item::Proc(r) => Some(process_json_in(r, cx.of(r.process).map(|k| &**k), opts)),
            Item::Header { .. } => None,
        })
        .collect();
    json!({
        "degraded": engine.degraded(),
        "lost": engine.lost(),
        "processes": processes,
    })
}
