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
//!
//! This file holds the story types and the state machine that builds them
//! ([`Stories::update`] for each engine update, [`Stories::tick`] to tell those
//! whose settle window is over); `text.rs` their headline and text.

#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    container::{self, ContainerRef, Enricher, NameCache},
    engine::{Engine, Update},
    events::{Body, Event, ExitStatus},
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
    /// Names and images found for containers (the shared cache), kept for their
    /// stop: the runtime may remove its state as the container goes.
    names: NameCache,
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
        Stories { names: NameCache::new(enrich), ..Stories::default() }
    }

    /// The container as a story names it: name and image looked up once.
    fn subject(&mut self, c: &ContainerRef, cgroup: Option<String>) -> Subject {
        let (name, image) = self.names.lookup_kept(c);
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
        // Without a runtime's word for it, the shared rule (pid 1 of a pid namespace
        // of its own, in a cgroup no host process shares), told by this task itself:
        // a story is about the container's pid 1.
        let host = engine.host_pidns()?;
        if ev.task.ns_pid != 1 || ev.task.pidns == host {
            return None;
        }
        let c = container::cgroup_container(engine, cgroups, ev.task.cgroup_id, Some(&ev.task))?;
        Some((c, info.path.clone()))
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

    /// An exec the stories care about: a shim's, the OCI runtime's (its `init`
    /// re-exec too), or maybe a container's entrypoint.
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
        self.on_entrypoint(engine, cgroups, ev, filename, &cmdline);
    }

    /// The exec of any other program: the entrypoint, when a chain's process
    /// execs it from inside the container.
    fn on_entrypoint(&mut self, engine: &Engine, cgroups: &Cgroups, ev: &Event, filename: &str, cmdline: &str) {
        let pid = ev.task.pid;
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
            self.names.forget(&id);
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
}
