//! What the views show of containers: which container each process is in (from
//! the shared [`Attribution`], kernel data only) with its name and image, and how
//! a container is labelled and written as JSON. Rendering only: the rules, the
//! name cache and the `Container` type itself are in `crate::container`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::container::{Attribution, Cgroups, ContainerRef, Pod, Qos, Runtime};
use crate::engine::{Engine, Process};
use crate::escape;

/// The views' name for the one container type (kept so their imports need nothing).
pub use crate::container::Container as Known;
/// The name cache moved to `container/names.rs`; these paths stay for the views.
pub use crate::container::{NameCache, REFRESH_FOUND, RETRY_MISSING};

/// How the views show a container (its identity is in `container/mod.rs`).
impl Known {
    /// `docker 1a2b3c4d5e6f web-a tracer-it-busybox:1`, then `pod UID` or `ns NAMESPACE`
    /// when there is one; for a text view, so each part is escaped (see [`escape`]):
    /// ids, names and images come from cgroup paths and runtimes' files.
    pub fn label(&self) -> String {
        let c = &self.container;
        let mut s = String::with_capacity(64);
        s.push_str(c.runtime.name());
        s.push(' ');
        escape::push(&mut s, self.display_id());
        for part in [&self.name, &self.image].into_iter().flatten().filter(|p| !p.is_empty()) {
            s.push(' ');
            escape::push(&mut s, part);
        }
        if let Some(p) = &c.pod {
            s.push_str(" pod ");
            escape::push(&mut s, &p.uid);
        } else if let Some(ns) = &c.namespace {
            s.push_str(" ns ");
            escape::push(&mut s, ns);
        }
        s
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
