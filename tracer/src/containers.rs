//! The containers view: live processes grouped by the container their cgroup
//! names, as `docker ps` would list them, from kernel data only.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::{
    container::{self, ContainerRef, Runtime},
    engine::{Engine, Process},
    tracker::Cgroups,
};

/// Which container each live process belongs to, from kernel data alone: the
/// cgroup path when it names a runtime, else (plain runc/crun) a cgroup of its
/// own holding a pid namespace of its own. A process that entered a container's
/// pid namespace without its cgroup (a child of `nsenter --pid`, or of a setns
/// by hand) belongs to that container too.
#[derive(Debug, Default)]
pub struct Attribution {
    by_cgroup: HashMap<u64, ContainerRef>,
    paths: HashMap<u64, String>,
    /// Pid namespaces of containers (other than the host's), and their container.
    by_pidns: HashMap<u32, (ContainerRef, u64)>,
    host_pidns: Option<u32>,
}

impl Attribution {
    /// Builds the attribution for the engine's live processes.
    pub fn build(engine: &Engine, cgroups: &Cgroups) -> Attribution {
        let mut a = Attribution::default();
        let host_pidns = engine.host_pidns();
        // Cgroups that name no runtime but hold the init of another pid namespace,
        // and cgroups that hold any host process (not a container's own).
        let mut plain = HashSet::new();
        let mut shared = HashSet::new();
        for p in engine.live_processes() {
            let Some(info) = cgroups.get(p.cgroup_id) else { continue };
            if let Some(c) = &info.container {
                if let std::collections::hash_map::Entry::Vacant(e) = a.by_cgroup.entry(p.cgroup_id) {
                    e.insert(c.clone());
                    a.paths.insert(p.cgroup_id, info.path.clone());
                }
                continue;
            }
            match host_pidns {
                Some(host) if p.pidns != host => {
                    if p.ns_pid == 1 {
                        plain.insert(p.cgroup_id);
                    }
                }
                _ => {
                    shared.insert(p.cgroup_id);
                }
            }
        }
        for id in plain.difference(&shared) {
            let Some(info) = cgroups.get(*id) else { continue };
            if let Some(c) = container::plain(&info.path) {
                a.by_cgroup.insert(*id, c);
                a.paths.insert(*id, info.path.clone());
            }
        }
        // The pid namespace of each container's pid 1.
        if let Some(host) = host_pidns {
            for p in engine.live_processes() {
                if p.ns_pid == 1
                    && p.pidns != host
                    && let Some(c) = a.by_cgroup.get(&p.cgroup_id)
                {
                    a.by_pidns.entry(p.pidns).or_insert_with(|| (c.clone(), p.cgroup_id));
                }
            }
        }
        a.host_pidns = host_pidns;
        a
    }

    /// The container of a process, if it is in one.
    pub fn of(&self, p: &Process) -> Option<&ContainerRef> {
        self.by_cgroup.get(&p.cgroup_id).or_else(|| self.by_pidns_of(p).map(|(c, _)| c))
    }

    /// The container whose pid namespace a process is in (outside its cgroup).
    fn by_pidns_of(&self, p: &Process) -> Option<&(ContainerRef, u64)> {
        if self.by_pidns.is_empty() || Some(p.pidns) == self.host_pidns {
            return None;
        }
        self.by_pidns.get(&p.pidns)
    }

    /// The cgroup of the container a process belongs to (its own, or that of the
    /// container whose pid namespace it joined).
    pub fn cgroup_of(&self, p: &Process) -> Option<u64> {
        if self.by_cgroup.contains_key(&p.cgroup_id) {
            return Some(p.cgroup_id);
        }
        self.by_pidns_of(p).map(|(_, cg)| *cg)
    }

    /// The container of a cgroup, if it is one.
    pub fn of_cgroup(&self, cgroup_id: u64) -> Option<&ContainerRef> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// The cgroup path of a container's cgroup.
    pub fn path(&self, cgroup_id: u64) -> Option<&str> {
        self.paths.get(&cgroup_id).map(String::as_str)
    }
}

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

/// Names and images from the runtimes' own state on disk (never a socket).
#[derive(Clone, Debug)]
pub struct Enricher {
    /// Docker data roots to look in (`<root>/containers/<id>/config.v2.json`).
    pub docker_roots: Vec<std::path::PathBuf>,
    /// containers/storage roots, shared by podman and CRI-O
    /// (`<root>/<driver>-containers/containers.json`).
    pub storage_roots: Vec<std::path::PathBuf>,
}

/// Where containers/storage keeps its state when run as root.
pub const STORAGE_ROOT: &str = "/var/lib/containers/storage";

impl Default for Enricher {
    fn default() -> Self {
        Enricher { docker_roots: vec!["/var/lib/docker".into()], storage_roots: vec![STORAGE_ROOT.into()] }
    }
}

impl Enricher {
    /// One that reads nothing (tests, benchmarks).
    pub fn none() -> Enricher {
        Enricher { docker_roots: vec![], storage_roots: vec![] }
    }

    /// (name, image) of a container, when its runtime's state file is readable.
    pub fn lookup(&self, c: &ContainerRef) -> (Option<String>, Option<String>) {
        match c.runtime {
            Runtime::Docker => self.docker(c),
            Runtime::Podman | Runtime::CriO => self.storage(c),
            _ => (None, None),
        }
    }

    fn docker(&self, c: &ContainerRef) -> (Option<String>, Option<String>) {
        for root in &self.docker_roots {
            let path = root.join("containers").join(&c.id).join("config.v2.json");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let name = v.get("Name").and_then(|n| n.as_str()).map(|n| n.trim_start_matches('/').to_string());
            let image = v.pointer("/Config/Image").and_then(|n| n.as_str()).map(str::to_string);
            return (name, image);
        }
        (None, None)
    }

    /// From containers/storage's `containers.json`: podman's name and image name in
    /// each entry's `metadata` (a JSON string), CRI-O's container name in the pod
    /// spec (`metadata-name`) and image name; else the entry's first name and image id.
    fn storage(&self, c: &ContainerRef) -> (Option<String>, Option<String>) {
        for root in &self.storage_roots {
            let Ok(dir) = std::fs::read_dir(root) else { continue };
            for e in dir.flatten() {
                if !e.file_name().to_string_lossy().ends_with("-containers") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(e.path().join("containers.json")) else { continue };
                let Ok(serde_json::Value::Array(list)) = serde_json::from_str(&text) else { continue };
                let Some(entry) = list.iter().find(|x| x.get("id").and_then(|i| i.as_str()) == Some(c.id.as_str()))
                else {
                    continue;
                };
                let meta: serde_json::Value = entry
                    .get("metadata")
                    .and_then(|m| m.as_str())
                    .and_then(|m| serde_json::from_str(m).ok())
                    .unwrap_or_default();
                let text_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                let name = text_of(&meta, "metadata-name")
                    .or_else(|| text_of(&meta, "name"))
                    .or_else(|| entry.pointer("/names/0").and_then(|n| n.as_str()).map(str::to_string));
                let image = text_of(&meta, "image-name").or_else(|| text_of(entry, "image"));
                return (name, image);
            }
        }
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::testkit::*,
        event::{CgroupPath, TaskInfo},
    };

    const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";
    const HOST: u32 = 4026531836;

    fn task(pid: u32, ppid: u32, pidns: u32, ns_pid: u32, cgroup_id: u64) -> TaskInfo {
        let mut t = tk(pid, pid, ppid);
        (t.pidns, t.ns_pid, t.ns_tid, t.cgroup_id) = (pidns, ns_pid, ns_pid, cgroup_id);
        t
    }

    #[test]
    fn attribution_by_cgroup_pid_namespace_and_own_cgroup() {
        let mut cgroups = Cgroups::default();
        let paths =
            [(1, "/"), (2, &*format!("/docker/{ID}")), (3, "/box"), (4, "/shared"), (5, "/system.slice/x.service")];
        cgroups
            .add(paths.iter().map(|(id, p)| CgroupPath { id: *id, path: p.to_string(), truncated: false }).collect());
        let mut e = Engine::new(cfg());
        let mut out = Vec::new();
        let mut kthreadd = task(2, 0, HOST, 2, 1);
        kthreadd.kthread = true;
        for t in [
            task(1, 0, HOST, 1, 1),
            kthreadd,
            // A docker container: pid 1 and a child, in its cgroup and pid namespace.
            task(100, 1, 900, 1, 2),
            task(101, 100, 900, 2, 2),
            // `nsenter --pid` into it: a child in its pid namespace, the host's cgroup.
            task(110, 1, HOST, 110, 1),
            task(111, 110, 900, 5, 1),
            // plain runc: a cgroup and pid namespace of its own.
            task(200, 1, 901, 1, 3),
            // a pid namespace in a cgroup shared with a host process: no container.
            task(300, 1, HOST, 300, 4),
            task(301, 300, 902, 1, 4),
            // a pid namespace in a systemd unit: no container.
            task(400, 1, 903, 1, 5),
        ] {
            e.apply(fork(MS, t), &mut out);
        }
        let a = Attribution::build(&e, &cgroups);
        let of = |pid| a.of(e.process(pid).expect("live")).map(|c| c.id.clone());
        assert_eq!(of(100).as_deref(), Some(ID));
        assert_eq!(of(101).as_deref(), Some(ID));
        assert_eq!(of(110), None, "nsenter itself stays on the host");
        assert_eq!(of(111).as_deref(), Some(ID), "a child in the container's pid namespace");
        assert_eq!(a.cgroup_of(e.process(111).expect("live")), Some(2));
        assert_eq!(of(200).as_deref(), Some("box"));
        assert_eq!(a.of(e.process(200).expect("live")).map(|c| c.runtime), Some(Runtime::Runc));
        for pid in [1, 2, 300, 301, 400] {
            assert_eq!(of(pid), None, "pid {pid}");
        }
        let list = list(&e, &cgroups, &Enricher::none());
        let docker = list.iter().find(|c| c.id == ID).expect("listed");
        assert_eq!((docker.init_pid, docker.pids.clone()), (100, vec![100, 101, 111]));
        assert_eq!(docker.cgroup, format!("/docker/{ID}"));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn names_from_containers_storage() {
        let root = std::env::temp_dir().join(format!("tracer-unit-storage-{}", std::process::id()));
        let dir = root.join("overlay-containers");
        std::fs::create_dir_all(&dir).expect("temp storage root");
        let podman = ID.replace('b', "c");
        let crio = ID.replace('b', "d");
        let list = serde_json::json!([
            {"id": podman, "names": ["web"], "image": "4ad3b2c1", "metadata":
                r#"{"image-name":"docker.io/library/nginx:latest","image-id":"4ad3b2c1","name":"web","created-at":1700000000}"#},
            {"id": crio, "names": ["k8s_app_pod-1_default_3f4c_0"], "image": "77aa", "metadata":
                r#"{"pod-name":"pod-1","pod-id":"3f4c","image-name":"registry.k8s.io/app:1","name":"k8s_app_pod-1_default_3f4c_0","metadata-name":"app"}"#},
            {"id": ID, "names": ["bare"], "image": "99ff"}
        ]);
        std::fs::write(dir.join("containers.json"), list.to_string()).expect("write containers.json");
        let e = Enricher { docker_roots: vec![], storage_roots: vec![root.clone()] };
        let c = |runtime, id: &str| ContainerRef { runtime, id: id.to_string(), namespace: None, pod: None };
        let s = |v: (Option<String>, Option<String>)| (v.0.unwrap_or_default(), v.1.unwrap_or_default());
        assert_eq!(s(e.lookup(&c(Runtime::Podman, &podman))), ("web".into(), "docker.io/library/nginx:latest".into()));
        assert_eq!(s(e.lookup(&c(Runtime::CriO, &crio))), ("app".into(), "registry.k8s.io/app:1".into()));
        assert_eq!(s(e.lookup(&c(Runtime::Podman, ID))), ("bare".into(), "99ff".into()));
        assert_eq!(e.lookup(&c(Runtime::Podman, "nothing")), (None, None));
        // Docker containers are not looked for there.
        assert_eq!(e.lookup(&c(Runtime::Docker, &podman)), (None, None));
        let _ = std::fs::remove_dir_all(&root);
    }
}
