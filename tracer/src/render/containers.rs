//! What the views show of containers: which container each process is in (from
//! [`Attribution`], kernel data only), with the name and image the runtime's
//! on-disk state gives, and a cache of those lookups for the long-running views
//! (the daemon, `tracer watch`) so that no frame reads files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::container::{ContainerRef, Pod, Qos, Runtime, is_hex_id};
use crate::containers::{Attribution, Enricher};
use crate::engine::{Engine, Process};
use crate::tracker::Cgroups;

/// A container as the views show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub container: ContainerRef,
    /// Name and image, from the runtime's state on disk when readable.
    pub name: Option<String>,
    pub image: Option<String>,
}

impl Known {
    /// The id as shown: 12 characters for a runtime's 64-hex-digit ids, else the
    /// whole id (a name given to ctr or runc).
    pub fn display_id(&self) -> &str {
        self.container.short_id()
    }

    /// The name when known, else the id as shown.
    pub fn short_name(&self) -> &str {
        self.name.as_deref().filter(|n| !n.is_empty()).unwrap_or_else(|| self.display_id())
    }

    /// `docker 1a2b3c4d5e6f web-a tracer-it-busybox:1`, then `pod UID` or `ns NAMESPACE`
    /// when there is one.
    pub fn label(&self) -> String {
        let c = &self.container;
        let mut s = format!("{} {}", c.runtime.name(), self.display_id());
        for part in [&self.name, &self.image].into_iter().flatten().filter(|p| !p.is_empty()) {
            s.push(' ');
            s.push_str(part);
        }
        if let Some(p) = &c.pod {
            s.push_str(" pod ");
            s.push_str(&p.uid);
        } else if let Some(ns) = &c.namespace {
            s.push_str(" ns ");
            s.push_str(ns);
        }
        s
    }

    /// Whether `q` names this container: its short id, a prefix of its id (at least
    /// one character), or its name.
    pub fn matches(&self, q: &str) -> bool {
        let q = q.trim();
        if q.is_empty() {
            return false;
        }
        let id = &self.container.id;
        let lower = q.to_ascii_lowercase();
        id.starts_with(q)
            || (is_hex_id(id) && id.starts_with(&lower))
            || self.name.as_deref().is_some_and(|n| n == q || n == q.trim_start_matches('/'))
    }

    /// The JSON object of `tracer ps --json`'s `container` field.
    pub fn to_json(&self) -> Value {
        let c = &self.container;
        json!({
            "runtime": c.runtime,
            "id": c.id,
            "short_id": c.short_id(),
            "name": self.name,
            "image": self.image,
            "pod": c.pod,
            "namespace": c.namespace,
        })
    }

    /// Reads back what [`Known::to_json`] wrote (a daemon's snapshot). None when it is
    /// not such an object (null: no container).
    pub fn from_json(v: &Value) -> Option<Known> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let runtime = match v.get("runtime")?.as_str()? {
            "docker" => Runtime::Docker,
            "containerd" => Runtime::Containerd,
            "cri-o" => Runtime::CriO,
            "podman" => Runtime::Podman,
            "runc" => Runtime::Runc,
            _ => return None,
        };
        let id = s("id").filter(|id| !id.is_empty())?;
        let pod = v.get("pod").filter(|p| p.is_object()).and_then(|p| {
            let uid = p.get("uid")?.as_str()?.to_string();
            let qos = match p.get("qos").and_then(Value::as_str) {
                Some("burstable") => Qos::Burstable,
                Some("besteffort") => Qos::BestEffort,
                _ => Qos::Guaranteed,
            };
            Some(Pod { uid, qos })
        });
        let container = ContainerRef { runtime, id, namespace: s("namespace"), pod };
        Some(Known { container, name: s("name"), image: s("image") })
    }
}

/// Which container each process is in, by cgroup id, with names and images.
#[derive(Clone, Debug, Default)]
pub struct Containers {
    by_cgroup: HashMap<u64, Arc<Known>>,
}

impl Containers {
    /// The containers of the engine's processes; `names` gives a container's name
    /// and image (an [`Enricher`] lookup, or a [`NameCache`]).
    pub fn build(
        engine: &Engine,
        cgroups: &Cgroups,
        mut names: impl FnMut(&ContainerRef) -> (Option<String>, Option<String>),
    ) -> Containers {
        let attribution = Attribution::build(engine, cgroups);
        let mut cx = Containers::default();
        let mut by_id: HashMap<String, Arc<Known>> = HashMap::new();
        for p in engine.processes() {
            if cx.by_cgroup.contains_key(&p.cgroup_id) {
                continue;
            }
            let Some(c) = attribution.of(p) else { continue };
            let known = by_id
                .entry(c.id.clone())
                .or_insert_with(|| {
                    let (name, image) = names(c);
                    Arc::new(Known { container: c.clone(), name, image })
                })
                .clone();
            cx.by_cgroup.insert(p.cgroup_id, known);
        }
        cx
    }

    /// As [`Containers::build`], names from `cache`, which then forgets the
    /// containers that are gone.
    pub fn build_cached(engine: &Engine, cgroups: &Cgroups, cache: &mut NameCache) -> Containers {
        let now = Instant::now();
        let cx = Containers::build(engine, cgroups, |c| cache.lookup_at(c, now));
        let live: HashSet<&str> = cx.by_cgroup.values().map(|k| k.container.id.as_str()).collect();
        cache.retain(|id| live.contains(id));
        cx
    }

    /// Says that processes of cgroup `cgroup_id` are in this container.
    pub fn insert(&mut self, cgroup_id: u64, known: Arc<Known>) {
        self.by_cgroup.insert(cgroup_id, known);
    }

    /// The container of a process, if it is in one.
    pub fn of(&self, p: &Process) -> Option<&Arc<Known>> {
        self.by_cgroup.get(&p.cgroup_id)
    }

    pub fn of_cgroup(&self, cgroup_id: u64) -> Option<&Arc<Known>> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// Whether no process is in a container.
    pub fn is_empty(&self) -> bool {
        self.by_cgroup.is_empty()
    }
}

/// How long a container whose name could not be read waits before the next try.
pub const RETRY_MISSING: Duration = Duration::from_secs(5);
/// How long a name read stays (a container can be renamed).
pub const REFRESH_FOUND: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    name: Option<String>,
    image: Option<String>,
    read_at: Instant,
}

/// [`Enricher`] lookups, cached per container id: a name found is read again after
/// [`REFRESH_FOUND`], a missing one at most every [`RETRY_MISSING`].
#[derive(Debug)]
pub struct NameCache {
    enricher: Enricher,
    entries: HashMap<String, Entry>,
    /// Lookups that went to the enricher (for tests and stats).
    pub reads: u64,
}

impl NameCache {
    pub fn new(enricher: Enricher) -> NameCache {
        NameCache { enricher, entries: HashMap::new(), reads: 0 }
    }

    /// (name, image) of `c`, from the cache when fresh enough at `now`.
    pub fn lookup_at(&mut self, c: &ContainerRef, now: Instant) -> (Option<String>, Option<String>) {
        let stale = |e: &Entry| {
            let max = if e.name.is_some() || e.image.is_some() { REFRESH_FOUND } else { RETRY_MISSING };
            now.saturating_duration_since(e.read_at) >= max
        };
        if let Some(e) = self.entries.get(&c.id)
            && !stale(e)
        {
            return (e.name.clone(), e.image.clone());
        }
        self.reads += 1;
        let (name, image) = self.enricher.lookup(c);
        self.entries.insert(c.id.clone(), Entry { name: name.clone(), image: image.clone(), read_at: now });
        (name, image)
    }

    /// Keeps the entries of the container ids `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|id, _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
