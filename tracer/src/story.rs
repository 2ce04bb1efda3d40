//! Container starts and stops told as stories, from the lifecycle events alone.
//!
//! A start is the runtime chain seen from the kernel: the shim spawned
//! (`containerd-shim-runc-v2 -id <id>`), the OCI runtime's `create` (or `run`),
//! its `init` re-exec, the container's pid 1 born in a new pid namespace, the
//! move into the container's cgroup, the runtime's `start`, the entrypoint's
//! exec, and the first children and threads of the entrypoint. Every stage has
//! its time since the first one. A stop is the exit of the container's pid 1
//! with its status, then the last process gone and the shim's exit.
//!
//! Processes are tied to a start by descent: the shim and the runtime are
//! recognised by their exec (file name and argv give the container id), and what
//! they fork belongs to the same start until the story is told.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    container::{self, ContainerRef},
    containers::Enricher,
    engine::{Engine, Update},
    event::{Body, Event, ExitStatus},
    tracker::Cgroups,
};

/// How long after the entrypoint's exec a start is told (its first children and
/// threads come in this window), and after the init's exit a stop is.
pub const SETTLE_NS: u64 = 1_000_000_000;
/// A start chain that never reached an entrypoint is forgotten after this.
const ABANDON_NS: u64 = 60_000_000_000;

/// One step of a container start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The runtime shim was exec'd for this container.
    Shim,
    /// The OCI runtime's `create` (or `run`) was exec'd.
    Create,
    /// The runtime's `init` (the future pid 1, still runtime code) was exec'd.
    Init,
    /// The container's pid 1 was born in a new pid namespace.
    Namespaces,
    /// The init was moved into the container's cgroup.
    Cgroup,
    /// The OCI runtime's `start` was exec'd.
    Start,
    /// The entrypoint's exec: the container runs its own program from here on.
    Entrypoint,
    /// The first process the container forked after the entrypoint's exec.
    FirstChild,
    /// The first thread created in the container after the entrypoint's exec.
    FirstThread,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Shim => "shim",
            Stage::Create => "create",
            Stage::Init => "init",
            Stage::Namespaces => "namespaces",
            Stage::Cgroup => "cgroup",
            Stage::Start => "start",
            Stage::Entrypoint => "entrypoint",
            Stage::FirstChild => "first_child",
            Stage::FirstThread => "first_thread",
        }
    }
}

/// One stage as it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub stage: Stage,
    pub ts_ns: u64,
    /// Since the story's first stage, ns.
    pub since_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// What happened: the command line exec'd, the cgroup entered, ...
    pub detail: String,
}

/// The container a story is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    pub runtime: container::Runtime,
    pub id: String,
    pub short_id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<container::Pod>,
    pub cgroup: Option<String>,
}

/// A container start, told once the entrypoint has run for [`SETTLE_NS`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartStory {
    pub container: Subject,
    /// The first stage's time.
    pub ts_ns: u64,
    pub steps: Vec<Step>,
    /// From the first stage to the entrypoint's exec, ns.
    pub to_entrypoint_ns: Option<u64>,
    /// The container's pid 1: on the host and inside.
    pub init_pid: Option<u32>,
    pub init_ns_pid: Option<u32>,
    /// Processes and threads the container created in the settle window.
    pub forks: u32,
    pub threads: u32,
}

/// A container stop: its pid 1 exited.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StopStory {
    pub container: Subject,
    pub ts_ns: u64,
    pub init_pid: u32,
    pub status: ExitStatus,
    /// How long the init ran, ns.
    pub lifetime_ns: u64,
    /// Other processes of the container that ended after the init, and when the
    /// last one did (since the init's exit, ns).
    pub others_exited: u32,
    pub last_exit_ns: Option<u64>,
    /// The shim's exit, since the init's exit, ns.
    pub shim_exit_ns: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Story {
    ContainerStart(StartStory),
    ContainerStop(StopStory),
}

/// A start being followed.
#[derive(Debug, Default)]
struct Chain {
    steps: Vec<Step>,
    first_ts: u64,
    /// The container's cgroup, once known.
    cgroup_id: Option<u64>,
    container: Option<ContainerRef>,
    cgroup_path: Option<String>,
    entry_ts: Option<u64>,
    init_pid: Option<u32>,
    init_ns_pid: Option<u32>,
    forks: u32,
    threads: u32,
}

impl Chain {
    fn has(&self, stage: Stage) -> bool {
        self.steps.iter().any(|s| s.stage == stage)
    }

    fn step(&mut self, stage: Stage, ev: &Event, detail: String) {
        if self.has(stage) {
            return;
        }
        if self.steps.is_empty() {
            self.first_ts = ev.ts_ns;
        }
        self.steps.push(Step {
            stage,
            ts_ns: ev.ts_ns,
            since_ns: ev.ts_ns.saturating_sub(self.first_ts),
            pid: ev.task.pid,
            comm: ev.task.comm.to_string(),
            detail,
        });
    }
}

/// A stop being followed.
#[derive(Debug)]
struct Stopping {
    container: ContainerRef,
    cgroup_path: Option<String>,
    cgroup_id: u64,
    ts_ns: u64,
    init_pid: u32,
    status: ExitStatus,
    lifetime_ns: u64,
    others_exited: u32,
    last_exit_ns: Option<u64>,
    shim_exit_ns: Option<u64>,
}

/// Builds stories from the engine's updates.
#[derive(Debug, Default)]
pub struct Stories {
    enrich: Enricher,
    /// Names and images found for containers, kept for their stop (the runtime
    /// may remove its state as the container goes).
    names: HashMap<String, (Option<String>, Option<String>)>,
    /// Starts being followed, by container id (as the runtime's argv names it).
    chains: HashMap<String, Chain>,
    /// Processes (pid) that belong to a start chain or are a container's shim.
    members: HashMap<u32, String>,
    /// Shims by pid: their container id.
    shims: HashMap<u32, String>,
    /// Stops being followed, by container id.
    stopping: HashMap<String, Stopping>,
}

/// The base name of a path.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_runtime(file: &str) -> bool {
    matches!(base(file), "runc" | "crun" | "youki" | "runc-dmz") || is_shim(file)
}

fn is_shim(file: &str) -> bool {
    base(file).starts_with("containerd-shim")
}

/// The container id a shim's argv names (`-id <id>`).
fn shim_id(args: &[String]) -> Option<String> {
    let at = args.iter().position(|a| a == "-id" || a == "--id")?;
    args.get(at + 1).cloned()
}

/// The OCI runtime's subcommand and the container id it acts on: `runc [global
/// flags] create [flags] <id>`; the id is the last argument.
fn runtime_command(args: &[String]) -> Option<(&str, String)> {
    let sub = args.iter().skip(1).find(|a| matches!(a.as_str(), "create" | "run" | "start"))?;
    let id = args.last().filter(|a| !a.starts_with('-') && *a != sub)?;
    Some((sub.as_str(), id.clone()))
}

impl Stories {
    /// Stories with names and images from `enrich`.
    pub fn new(enrich: Enricher) -> Stories {
        Stories { enrich, ..Stories::default() }
    }

    /// The container as a story names it: name and image looked up once.
    fn subject(&mut self, c: &ContainerRef, cgroup: Option<String>) -> Subject {
        let (name, image) = match self.names.get(&c.id) {
            Some((n, i)) if n.is_some() || i.is_some() => (n.clone(), i.clone()),
            _ => {
                let found = self.enrich.lookup(c);
                self.names.insert(c.id.clone(), found.clone());
                found
            }
        };
        Subject {
            runtime: c.runtime,
            id: c.id.clone(),
            short_id: c.short_id().to_string(),
            name,
            image,
            pod: c.pod.clone(),
            cgroup,
        }
    }

    /// The container a task's cgroup makes it part of, and that cgroup's path:
    /// a runtime-named cgroup, or (plain runc/crun) a cgroup named by the chain.
    fn container_of(
        &mut self,
        engine: &Engine,
        cgroups: &Cgroups,
        ev: &Event,
        chain_id: Option<&str>,
    ) -> Option<(ContainerRef, String)> {
        let info = cgroups.get(ev.task.cgroup_id)?;
        if let Some(c) = &info.container {
            return Some((c.clone(), info.path.clone()));
        }
        let plain = container::plain(&info.path)?;
        if chain_id == Some(plain.id.as_str()) {
            return Some((plain, info.path.clone()));
        }
        // Without a runtime's word for it: pid 1 of a pid namespace of its own, in a
        // cgroup no host process shares (as `Attribution` has it).
        let host = engine.host_pidns()?;
        let id = ev.task.cgroup_id;
        let own = ev.task.ns_pid == 1
            && ev.task.pidns != host
            && !engine.live_processes().any(|p| p.cgroup_id == id && p.pidns == host);
        own.then(|| (plain, info.path.clone()))
    }

    /// Follows one update (after the engine applied it).
    pub fn update(&mut self, engine: &Engine, cgroups: &Cgroups, u: &Update) {
        let Update::Event(ev) = u else { return };
        match &ev.body {
            Body::Exec { filename, argv, .. } => {
                // Only the runtime's execs and those of processes that may be a
                // container's pid 1 matter: the rest cost one look-up, not an argv copy.
                let relevant = ev.task.ns_pid == 1
                    || filename == "/proc/self/exe"
                    || (!self.members.is_empty() && self.members.contains_key(&ev.task.pid))
                    || is_runtime(filename);
                if relevant {
                    let args: Vec<String> = argv.args().map(|a| a.into_owned()).collect();
                    self.on_exec(engine, cgroups, ev, filename, &args)
                }
            }
            Body::Fork { .. } | Body::Clone { .. } => self.on_fork(engine, cgroups, ev),
            Body::CgroupAttach { .. } => self.on_attach(engine, cgroups, ev),
            Body::ProcessExit { status, .. } => self.on_exit(engine, cgroups, ev, *status),
            _ => {}
        }
    }

    fn on_exec(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event, filename: &str, args: &[String]) {
        let pid = ev.task.pid;
        let cmdline = args.join(" ");
        if is_shim(filename) {
            // A shim run later to clean up (`delete`) starts no story.
            if let Some(id) = shim_id(args)
                && !args.iter().any(|a| a == "delete")
            {
                self.shims.insert(pid, id.clone());
                self.chains.entry(id.clone()).or_default().step(Stage::Shim, ev, cmdline);
                self.members.insert(pid, id);
            }
            return;
        }
        // The runtime re-execs itself as the container's init (`/proc/self/exe init`).
        if args.get(1).is_some_and(|a| a == "init")
            && args.len() == 2
            && (filename == "/proc/self/exe" || is_runtime(filename))
        {
            if let Some(id) = self.members.get(&pid).cloned()
                && let Some(c) = self.chains.get_mut(&id)
            {
                c.step(Stage::Init, ev, format!("{filename}: {cmdline}"));
            }
            return;
        }
        if is_runtime(filename) {
            if let Some((sub, id)) = runtime_command(args) {
                let stage = if sub == "start" { Stage::Start } else { Stage::Create };
                // A `start` of a container whose creation was not seen tells nothing.
                if stage == Stage::Create || self.chains.contains_key(&id) {
                    self.chains.entry(id.clone()).or_default().step(stage, ev, cmdline);
                }
                if stage == Stage::Create {
                    self.members.insert(pid, id);
                }
            }
            return;
        }
        // Any other program: the entrypoint, when a chain's process execs it from
        // inside the container.
        let chain_id = self.members.get(&pid).cloned();
        let Some((c, path)) = self.container_of(engine, cgroups, ev, chain_id.as_deref()) else { return };
        let id = match chain_id {
            Some(id) if self.chains.get(&id).is_some_and(|ch| ch.entry_ts.is_none()) => id,
            // Without a chain seen (a runtime this does not parse, or a start already
            // under way when tracing began): the exec of a container's pid 1.
            _ if ev.task.ns_pid == 1 && self.chains.get(&c.id).is_none_or(|ch| ch.entry_ts.is_none()) => c.id.clone(),
            _ => return,
        };
        let chain = self.chains.entry(id).or_default();
        let detail = format!("{filename}: {cmdline}");
        chain.step(Stage::Entrypoint, ev, detail);
        chain.entry_ts = Some(ev.ts_ns);
        chain.init_pid = Some(pid);
        chain.init_ns_pid = Some(ev.task.ns_pid);
        chain.cgroup_id = Some(ev.task.cgroup_id);
        chain.container = Some(c);
        chain.cgroup_path = Some(path);
    }

    fn on_fork(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event) {
        // Forks matter only while a start is being followed.
        if self.chains.is_empty() {
            return;
        }
        let thread = matches!(ev.body, Body::Clone { .. });
        let t = &ev.task;
        if !thread
            && let Some(id) = self.members.get(&t.ppid).cloned()
            && let Some(chain) = self.chains.get_mut(&id)
            && chain.entry_ts.is_none()
        {
            // A runtime process's child belongs to the same start. The first one
            // in a pid namespace other than its parent's is the container's pid 1.
            self.members.insert(t.pid, id.clone());
            let parent_ns = engine.process(t.ppid).map(|p| p.pidns);
            if parent_ns.is_some_and(|ns| ns != t.pidns) {
                let detail = format!("pid 1 of a new pid namespace ({}), {} on the host", t.pidns, t.pid);
                chain.step(Stage::Namespaces, ev, detail);
            }
            return;
        }
        // After the entrypoint: the container's first children and threads.
        let Some(info) = cgroups.get(t.cgroup_id) else { return };
        let Some(c) = &info.container else {
            self.count_plain(engine, cgroups, ev, thread);
            return;
        };
        if let Some(chain) = self.chains.get_mut(&c.id) {
            Self::count(chain, ev, thread);
        }
    }

    fn count_plain(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event, thread: bool) {
        if engine.host_pidns() == Some(ev.task.pidns) {
            return;
        }
        let Some(info) = cgroups.get(ev.task.cgroup_id) else { return };
        let Some(plain) = container::plain(&info.path) else { return };
        if let Some(chain) = self.chains.get_mut(&plain.id) {
            Self::count(chain, ev, thread);
        }
    }

    fn count(chain: &mut Chain, ev: &Event, thread: bool) {
        let Some(entry) = chain.entry_ts else { return };
        if ev.ts_ns < entry || ev.ts_ns > entry + SETTLE_NS || chain.cgroup_id != Some(ev.task.cgroup_id) {
            return;
        }
        if thread {
            chain.threads += 1;
            let detail = format!("thread {} of pid {}", ev.task.tid, ev.task.pid);
            chain.step(Stage::FirstThread, ev, detail);
        } else {
            chain.forks += 1;
            let detail = format!("pid {} ({} inside), child of {}", ev.task.pid, ev.task.ns_pid, ev.task.ppid);
            chain.step(Stage::FirstChild, ev, detail);
        }
    }

    fn on_attach(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event) {
        let Some(id) = self.members.get(&ev.task.pid).cloned() else { return };
        let Some((c, path)) = self.container_of(engine, cgroups, ev, Some(&id)) else { return };
        if c.id != id {
            return;
        }
        if let Some(chain) = self.chains.get_mut(&id) {
            chain.step(Stage::Cgroup, ev, format!("entered {path}"));
            chain.cgroup_id = Some(ev.task.cgroup_id);
            chain.container = Some(c);
            chain.cgroup_path = Some(path);
        }
    }

    fn on_exit(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event, status: ExitStatus) {
        let t = &ev.task;
        if t.ns_pid != 1 && self.members.is_empty() && self.shims.is_empty() && self.stopping.is_empty() {
            return;
        }
        self.members.remove(&t.pid);
        if let Some(id) = self.shims.remove(&t.pid)
            && let Some(s) = self.stopping.get_mut(&id)
        {
            s.shim_exit_ns = Some(ev.ts_ns.saturating_sub(s.ts_ns));
        }
        // Another process of a stopping container.
        if let Some(s) = self.stopping.values_mut().find(|s| s.cgroup_id == t.cgroup_id) {
            s.others_exited += 1;
            s.last_exit_ns = Some(ev.ts_ns.saturating_sub(s.ts_ns));
            return;
        }
        if t.ns_pid != 1 || engine.host_pidns() == Some(t.pidns) {
            return;
        }
        let Some((c, path)) = self.container_of(engine, cgroups, ev, None) else { return };
        // Names now: the runtime may remove its state before the story is told.
        let _ = self.subject(&c, None);
        self.stopping.insert(
            c.id.clone(),
            Stopping {
                container: c,
                cgroup_path: Some(path),
                cgroup_id: t.cgroup_id,
                ts_ns: ev.ts_ns,
                init_pid: t.pid,
                status,
                lifetime_ns: ev.ts_ns.saturating_sub(t.proc_start_ns),
                others_exited: 0,
                last_exit_ns: None,
                shim_exit_ns: None,
            },
        );
    }

    /// The stories whose settle window is over at `now_ns` (boot clock), in time order.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Story>) {
        let start = out.len();
        let done: Vec<String> = self
            .chains
            .iter()
            .filter(|(_, c)| c.entry_ts.is_some_and(|t| now_ns >= t + SETTLE_NS) || now_ns >= c.first_ts + ABANDON_NS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(chain) = self.chains.remove(&id) else { continue };
            self.members.retain(|_, m| *m != id);
            let (Some(entry), Some(c)) = (chain.entry_ts, chain.container.clone()) else { continue };
            let mut steps = chain.steps;
            steps.sort_by_key(|s| (s.ts_ns, s.stage));
            out.push(Story::ContainerStart(StartStory {
                container: self.subject(&c, chain.cgroup_path),
                ts_ns: chain.first_ts,
                to_entrypoint_ns: Some(entry.saturating_sub(chain.first_ts)),
                steps,
                init_pid: chain.init_pid,
                init_ns_pid: chain.init_ns_pid,
                forks: chain.forks,
                threads: chain.threads,
            }));
        }
        let done: Vec<String> =
            self.stopping.iter().filter(|(_, s)| now_ns >= s.ts_ns + SETTLE_NS).map(|(id, _)| id.clone()).collect();
        for id in done {
            let Some(s) = self.stopping.remove(&id) else { continue };
            let container = self.subject(&s.container, s.cgroup_path);
            // A stopped container's names are not needed any more.
            self.names.remove(&id);
            out.push(Story::ContainerStop(StopStory {
                container,
                ts_ns: s.ts_ns,
                init_pid: s.init_pid,
                status: s.status,
                lifetime_ns: s.lifetime_ns,
                others_exited: s.others_exited,
                last_exit_ns: s.last_exit_ns,
                shim_exit_ns: s.shim_exit_ns,
            }));
        }
        out[start..].sort_by_key(Story::ts_ns);
    }
}

impl Story {
    /// `container_start` or `container_stop`, as the JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Story::ContainerStart(_) => "container_start",
            Story::ContainerStop(_) => "container_stop",
        }
    }

    /// The container it is about.
    pub fn subject(&self) -> &Subject {
        match self {
            Story::ContainerStart(s) => &s.container,
            Story::ContainerStop(s) => &s.container,
        }
    }

    pub fn ts_ns(&self) -> u64 {
        match self {
            Story::ContainerStart(s) => s.ts_ns,
            Story::ContainerStop(s) => s.ts_ns,
        }
    }

    /// One short line: what happened to which container, and the gist.
    pub fn headline(&self) -> String {
        let who = |c: &Subject| {
            let name = c.name.as_deref().unwrap_or(&c.short_id);
            format!("{} {name}", c.runtime.name())
        };
        match self {
            Story::ContainerStart(s) => {
                let mut h = format!("container started: {}", who(&s.container));
                if let Some(t) = s.to_entrypoint_ns {
                    h.push_str(&format!(", entrypoint after {}", ms(t)));
                }
                if let Some(p) = s.init_pid {
                    h.push_str(&format!(", init pid {p}"));
                }
                h
            }
            Story::ContainerStop(s) => {
                format!("container stopped: {}, init pid {} {}", who(&s.container), s.init_pid, s.status)
            }
        }
    }

    /// The story as text: a headline, then one line per stage.
    pub fn text(&self, boot_epoch_ns: i128) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let who = |c: &Subject| {
            let mut s = format!("{} {}", c.runtime.name(), c.short_id);
            if let Some(n) = &c.name {
                let _ = write!(s, " {n}");
            }
            if let Some(i) = &c.image {
                let _ = write!(s, " ({i})");
            }
            s
        };
        match self {
            Story::ContainerStart(s) => {
                let _ = write!(
                    out,
                    "{} container start  {}",
                    crate::clock::format_time_ms(boot_epoch_ns, s.ts_ns),
                    who(&s.container)
                );
                if let Some(t) = s.to_entrypoint_ns {
                    let _ = write!(out, ": entrypoint after {}", ms(t));
                }
                if let (Some(p), Some(n)) = (s.init_pid, s.init_ns_pid) {
                    let _ = write!(out, ", init pid {p} ({n} inside)");
                }
                let _ = write!(out, ", {} forks and {} threads in its first second", s.forks, s.threads);
                for st in &s.steps {
                    let _ = write!(
                        out,
                        "\n  {:>10}  {:<12} pid {:<7} {:<16} {}",
                        format!("+{}", ms(st.since_ns)),
                        st.stage.name(),
                        st.pid,
                        st.comm,
                        st.detail.replace(['\n', '\t'], " ")
                    );
                }
            }
            Story::ContainerStop(s) => {
                let _ = write!(
                    out,
                    "{} container stop   {}: init pid {} {} after {}",
                    crate::clock::format_time_ms(boot_epoch_ns, s.ts_ns),
                    who(&s.container),
                    s.init_pid,
                    s.status,
                    secs(s.lifetime_ns)
                );
                if let Some(t) = s.last_exit_ns {
                    let _ = write!(out, "; {} other processes ended, the last +{}", s.others_exited, ms(t));
                }
                if let Some(t) = s.shim_exit_ns {
                    let _ = write!(out, "; shim exited +{}", ms(t));
                }
            }
        }
        out
    }
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn secs(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::testkit::*,
        event::{CgroupPath, Comm, TaskInfo},
    };

    const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";
    const HOST: u32 = 4026531836;
    const NEW: u32 = 4026532180;
    const CG: u64 = 500;

    struct W {
        e: Engine,
        cg: Cgroups,
        s: Stories,
        out: Vec<Update>,
    }

    impl W {
        fn new(container_path: &str) -> W {
            let mut cg = Cgroups::default();
            cg.add(vec![
                CgroupPath { id: 7, path: "/".into(), truncated: false },
                CgroupPath { id: CG, path: container_path.into(), truncated: false },
            ]);
            let mut w = W { e: Engine::new(cfg()), cg, s: Stories::new(Enricher::none()), out: Vec::new() };
            let mut kthreadd = tk(2, 2, 0);
            kthreadd.kthread = true;
            w.apply(vec![fork(MS, tk(1, 1, 0)), fork(MS, kthreadd), fork(MS, tk(100, 100, 1))]);
            w
        }

        fn apply(&mut self, evs: Vec<Event>) {
            for ev in evs {
                self.e.apply(ev, &mut self.out);
                for u in self.out.drain(..) {
                    self.s.update(&self.e, &self.cg, &u);
                }
            }
        }

        fn tick(&mut self, now: u64) -> Vec<Story> {
            // Held process exits come out on the engine's tick.
            self.e.tick(now, &mut self.out);
            for u in self.out.drain(..) {
                self.s.update(&self.e, &self.cg, &u);
            }
            let mut v = Vec::new();
            self.s.tick(now, &mut v);
            v
        }
    }

    fn task(pid: u32, ppid: u32, pidns: u32, ns_pid: u32, cgroup_id: u64, comm: &str) -> TaskInfo {
        let mut t = tk(pid, pid, ppid);
        (t.pidns, t.ns_pid, t.ns_tid, t.cgroup_id, t.comm) =
            (pidns, ns_pid, ns_pid, cgroup_id, Comm::from_str_lossy(comm));
        t
    }

    fn spawn(ts: u64, pid: u32, ppid: u32, file: &str, args: &[&str]) -> Vec<Event> {
        let t = task(pid, ppid, HOST, pid, 7, "x");
        vec![fork(ts, t), exec(ts + 1, t, pid, file, args)]
    }

    #[test]
    fn docker_start_and_stop() {
        let mut w = W::new(&format!("/docker/{ID}"));
        let shim = "/usr/bin/containerd-shim-runc-v2";
        w.apply(spawn(10 * MS, 200, 100, shim, &["containerd-shim-runc-v2", "-namespace", "moby", "-id", ID, "start"]));
        w.apply(spawn(11 * MS, 201, 200, shim, &["containerd-shim-runc-v2", "-namespace", "moby", "-id", ID]));
        w.apply(spawn(20 * MS, 210, 201, "/usr/sbin/runc", &["runc", "--root", "/r", "create", "--bundle", "/b", ID]));
        w.apply(spawn(30 * MS, 211, 210, "/proc/self/exe", &["runc", "init"]));
        w.apply(vec![attach(40 * MS, task(211, 210, HOST, 211, 7, "runc:[0:PARENT]"), CG)]);
        // runc's stage children: both with runc create as parent (CLONE_PARENT); the
        // second is pid 1 of the new pid namespace.
        w.apply(vec![fork(41 * MS, task(212, 210, HOST, 212, CG, "runc:[1:CHILD]"))]);
        w.apply(vec![fork(42 * MS, task(213, 210, NEW, 1, CG, "runc:[1:CHILD]"))]);
        w.apply(spawn(150 * MS, 220, 201, "/usr/sbin/runc", &["runc", "--root", "/r", "start", ID]));
        let init = task(213, 210, NEW, 1, CG, "httpd");
        w.apply(vec![exec(160 * MS, init, 213, "/bin/httpd", &["httpd", "-f", "-p", "80"])]);
        w.apply(vec![fork(161 * MS, task(230, 213, NEW, 2, CG, "httpd"))]);
        let mut th = task(230, 213, NEW, 2, CG, "httpd");
        (th.tid, th.ns_tid, th.start_ns) = (231, 3, 231_000);
        w.apply(vec![clone(162 * MS, th)]);
        assert!(w.tick(160 * MS + SETTLE_NS - 1).is_empty(), "told before the settle time");
        let told = w.tick(160 * MS + SETTLE_NS);
        let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
        let stages: Vec<Stage> = s.steps.iter().map(|s| s.stage).collect();
        assert_eq!(
            stages,
            [
                Stage::Shim,
                Stage::Create,
                Stage::Init,
                Stage::Cgroup,
                Stage::Namespaces,
                Stage::Start,
                Stage::Entrypoint,
                Stage::FirstChild,
                Stage::FirstThread
            ]
        );
        assert_eq!(s.steps[0].ts_ns, 10 * MS + 1, "the shim's exec starts the story");
        assert_eq!(s.to_entrypoint_ns, Some(150 * MS - 1));
        assert_eq!((s.init_pid, s.init_ns_pid), (Some(213), Some(1)));
        assert_eq!((s.forks, s.threads), (1, 1));
        assert_eq!((s.container.runtime, s.container.id.as_str()), (container::Runtime::Docker, ID));
        assert!(s.steps.windows(2).all(|p| p[0].since_ns <= p[1].since_ns));
        let text = told[0].text(0);
        assert!(text.contains("container start  docker b8cee460296f"), "{text}");
        assert!(text.contains("entrypoint after 150.0 ms"), "{text}");

        // The stop: pid 1 killed, then the rest of the namespace, then the shim.
        w.apply(vec![pexit_signal(5 * SEC, init, 9)]);
        w.apply(vec![pexit_signal(5 * SEC + MS, task(230, 213, NEW, 2, CG, "httpd"), 9)]);
        w.apply(vec![pexit(5 * SEC + 10 * MS, task(201, 200, HOST, 201, 7, "containerd-shim"), 0, None)]);
        let told = w.tick(6 * SEC);
        let [Story::ContainerStop(s)] = told.as_slice() else { panic!("one stop: {told:#?}") };
        assert_eq!(s.init_pid, 213);
        assert_eq!(s.status.signal(), Some(9));
        assert_eq!((s.others_exited, s.last_exit_ns, s.shim_exit_ns), (1, Some(MS), Some(10 * MS)));
        assert!(told[0].text(0).contains("killed by SIGKILL"), "{}", told[0].text(0));
        assert!(w.s.chains.is_empty() && w.s.stopping.is_empty() && w.s.names.is_empty());
    }

    #[test]
    fn plain_runc_run() {
        let mut w = W::new("/box");
        w.apply(spawn(10 * MS, 210, 100, "/usr/sbin/runc", &["runc", "run", "-d", "--bundle", "/b", "box"]));
        w.apply(spawn(20 * MS, 211, 210, "/proc/self/exe", &["runc", "init"]));
        w.apply(vec![attach(25 * MS, task(211, 210, HOST, 211, 7, "runc:[0:PARENT]"), CG)]);
        w.apply(vec![fork(30 * MS, task(213, 210, NEW, 1, CG, "runc:[1:CHILD]"))]);
        w.apply(vec![exec(50 * MS, task(213, 210, NEW, 1, CG, "sleep"), 213, "/bin/sleep", &["sleep", "300"])]);
        let told = w.tick(SEC + 50 * MS);
        let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
        assert_eq!((s.container.runtime, s.container.id.as_str()), (container::Runtime::Runc, "box"));
        assert_eq!(s.container.cgroup.as_deref(), Some("/box"));
        let stages: Vec<Stage> = s.steps.iter().map(|s| s.stage).collect();
        assert_eq!(stages, [Stage::Create, Stage::Init, Stage::Cgroup, Stage::Namespaces, Stage::Entrypoint]);
    }

    #[test]
    fn a_host_process_in_a_new_pid_namespace_is_no_container() {
        let mut w = W::new("/docker/x");
        // unshare --pid --fork in the root cgroup: pid 1 of a new namespace, no container cgroup.
        w.apply(spawn(10 * MS, 300, 100, "/usr/bin/unshare", &["unshare", "--pid", "--fork", "sleep", "1"]));
        w.apply(vec![fork(11 * MS, task(301, 300, NEW, 1, 7, "unshare"))]);
        w.apply(vec![exec(12 * MS, task(301, 300, NEW, 1, 7, "sleep"), 301, "/bin/sleep", &["sleep", "1"])]);
        w.apply(vec![pexit(SEC, task(301, 300, NEW, 1, 7, "sleep"), 0, None)]);
        assert!(w.tick(10 * SEC).is_empty());
    }

    #[test]
    fn a_pid_namespace_in_a_shared_cgroup_is_no_container() {
        let mut w = W::new("/docker/x");
        w.cg.add(vec![CgroupPath { id: 8, path: "/jobs".into(), truncated: false }]);
        // A host process in /jobs, and `unshare --pid --fork` run there.
        w.apply(vec![fork(5 * MS, task(290, 100, HOST, 290, 8, "worker"))]);
        w.apply(spawn(10 * MS, 300, 100, "/usr/bin/unshare", &["unshare", "--pid", "--fork", "sleep", "1"]));
        w.apply(vec![fork(11 * MS, task(301, 300, NEW, 1, 8, "unshare"))]);
        w.apply(vec![exec(12 * MS, task(301, 300, NEW, 1, 8, "sleep"), 301, "/bin/sleep", &["sleep", "1"])]);
        w.apply(vec![pexit(SEC, task(301, 300, NEW, 1, 8, "sleep"), 0, None)]);
        assert!(w.tick(10 * SEC).is_empty());
        // Alone in a cgroup of its own, the same is a (plain runc-like) container.
        w.cg.add(vec![CgroupPath { id: 9, path: "/box".into(), truncated: false }]);
        w.apply(vec![fork(11 * SEC, task(401, 300, NEW, 1, 9, "unshare"))]);
        w.apply(vec![exec(11 * SEC, task(401, 300, NEW, 1, 9, "sleep"), 401, "/bin/sleep", &["sleep", "1"])]);
        let told = w.tick(13 * SEC);
        let [Story::ContainerStart(s)] = told.as_slice() else { panic!("one start: {told:#?}") };
        assert_eq!(s.container.id, "box");
    }

    #[test]
    fn runtime_argv() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            runtime_command(&a(&["runc", "--root", "/r", "create", "--bundle", "/b", "x1"])),
            Some(("create", "x1".into()))
        );
        assert_eq!(runtime_command(&a(&["runc", "start", "x1"])), Some(("start", "x1".into())));
        assert_eq!(runtime_command(&a(&["runc", "exec", "-d", "x1", "sh"])), None);
        assert_eq!(runtime_command(&a(&["runc", "create"])), None);
        assert_eq!(
            shim_id(&a(&["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc", "start"])),
            Some("abc".into())
        );
        assert_eq!(shim_id(&a(&["containerd-shim-runc-v2", "-id"])), None);
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// What the daemon sends is what a client reads back (the watch's news).
    #[test]
    fn stories_round_trip_through_json() {
        let subject = Subject {
            runtime: container::Runtime::Docker,
            id: "1a2b".into(),
            short_id: "1a2b".into(),
            name: Some("web-a".into()),
            image: None,
            pod: None,
            cgroup: Some("/docker/1a2b".into()),
        };
        let stop = Story::ContainerStop(StopStory {
            container: subject.clone(),
            ts_ns: 5,
            init_pid: 950,
            status: ExitStatus { raw: 9 },
            lifetime_ns: 2_000_000_000,
            others_exited: 1,
            last_exit_ns: Some(100),
            shim_exit_ns: None,
        });
        let mut v = serde_json::to_value(&stop).expect("serialize");
        v["time"] = "2026-11-27T02:00:00Z".into();
        let back: Story = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back.headline(), "container stopped: docker web-a, init pid 950 killed by SIGKILL");
        assert_eq!(back.headline(), stop.headline());
        let start = Story::ContainerStart(StartStory {
            container: Subject { name: None, ..subject },
            ts_ns: 1,
            steps: vec![],
            to_entrypoint_ns: Some(133_500_000),
            init_pid: Some(950),
            init_ns_pid: Some(1),
            forks: 0,
            threads: 0,
        });
        let back: Story = serde_json::from_value(serde_json::to_value(&start).expect("ser")).expect("de");
        assert_eq!(back.headline(), "container started: docker 1a2b, entrypoint after 133.5 ms, init pid 950");
    }
}
