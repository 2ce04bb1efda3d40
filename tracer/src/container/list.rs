//! The data of the `tracer containers` list (and the daemon's `containers`
//! request): one row per container with live processes, built from the shared
//! [`Attribution`] and named by an [`Enricher`]. Rendering is `cmd/containers.rs`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Attribution, ContainerRef, Enricher, Runtime, cgroups::Cgroups};
use crate::engine::{Engine, Process};

/// One container, seen from the kernel's side.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerView {
    pub id: String,
    pub short_id: String,
    pub runtime: Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::container::Pod>,
    /// Name and image, from the runtime's on-disk state when readable.
    pub name: Option<String>,
    pub image: Option<String>,
    pub cgroup: String,
    /// The container's init: pid on the host and inside its pid namespace.
    pub init_pid: u32,
    pub init_ns_pid: u32,
    /// Boot-clock start of the init process, ns.
    pub started_ns: u64,
    pub processes: usize,
    pub threads: usize,
    pub state: &'static str,
    pub pids: Vec<u32>,
}

/// The containers with live processes, by start time.
pub fn list(engine: &Engine, cgroups: &Cgroups, enrich: &Enricher) -> Vec<ContainerView> {
    let attribution = Attribution::build(engine, cgroups);
    let mut groups: BTreeMap<String, (ContainerRef, String, Vec<&Process>)> = BTreeMap::new();
    for p in engine.live_processes() {
        let Some(c) = attribution.of(p) else { continue };
        let path = attribution.cgroup_of(p).and_then(|cg| attribution.path(cg)).unwrap_or_default();
        groups.entry(c.id.clone()).or_insert_with(|| (c.clone(), path.to_string(), Vec::new())).2.push(p);
    }
    let mut out: Vec<ContainerView> = groups
        .into_values()
        .map(|(c, cgroup, mut procs)| {
            procs.sort_by_key(|p| (p.start_ns, p.pid));
            // The init: pid 1 of the container's own pid namespace, else the oldest.
            let init = procs.iter().find(|p| p.ns_pid == 1).copied().unwrap_or(procs[0]);
            let (name, image) = enrich.lookup(&c);
            ContainerView {
                short_id: c.short_id().to_string(),
                id: c.id.clone(),
                runtime: c.runtime,
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                name,
                image,
                cgroup,
                init_pid: init.pid,
                init_ns_pid: init.ns_pid,
                started_ns: init.start_ns,
                processes: procs.len(),
                threads: procs.iter().map(|p| p.nlwp()).sum(),
                state: "running",
                pids: procs.iter().map(|p| p.pid).collect(),
            }
        })
        .collect();
    out.sort_by_key(|c| (c.started_ns, c.id.clone()));
    out
}
