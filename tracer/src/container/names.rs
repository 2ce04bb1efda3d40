//! Container names and images, read from the runtimes' own state on disk (never
//! a socket): Docker's `config.v2.json`, containers/storage's `containers.json`
//! for podman and CRI-O. [`Enricher`] reads; [`NameCache`] is the one cache in
//! front of it, the same code for every long-running user (the views of the
//! daemon and `tracer watch`, `events --container`, the stories), so that no
//! frame or event reads files. Each user still holds an instance of its own
//! (their owners build them); the one-shot `ps` and `containers` read directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{ContainerRef, Runtime};

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
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let Some(found) = parse_docker_config(&bytes) else { continue };
            return found;
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
                let Ok(bytes) = std::fs::read(e.path().join("containers.json")) else { continue };
                let Some(found) = parse_storage_containers(&bytes, &c.id) else { continue };
                return found;
            }
        }
        (None, None)
    }
}

/// (name, image) from the bytes of Docker's `config.v2.json`; `None` if they are not JSON.
pub fn parse_docker_config(bytes: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let v = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    let name = v.get("Name").and_then(|n| n.as_str()).map(|n| n.trim_start_matches('/').to_string());
    let image = v.pointer("/Config/Image").and_then(|n| n.as_str()).map(str::to_string);
    Some((name, image))
}

/// (name, image) of container `id` from the bytes of containers/storage's
/// `containers.json`; `None` if they are not a JSON array or `id` is not in it.
pub fn parse_storage_containers(bytes: &[u8], id: &str) -> Option<(Option<String>, Option<String>)> {
    let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(bytes) else { return None };
    let entry = list.iter().find(|x| x.get("id").and_then(|i| i.as_str()) == Some(id))?;
    let meta: serde_json::Value =
        entry.get("metadata").and_then(|m| m.as_str()).and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    let text_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let name = text_of(&meta, "metadata-name")
        .or_else(|| text_of(&meta, "name"))
        .or_else(|| entry.pointer("/names/0").and_then(|n| n.as_str()).map(str::to_string));
    let image = text_of(&meta, "image-name").or_else(|| text_of(entry, "image"));
    Some((name, image))
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

impl Default for NameCache {
    /// A cache in front of the default [`Enricher`].
    fn default() -> Self {
        NameCache::new(Enricher::default())
    }
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

    /// (name, image) of `c` for those that ask a few times per container and must
    /// keep what they found (the stories: a stopped container's state may be gone
    /// by its stop story): a name found is never read again, a missing one is read
    /// at every call (the runtime may not have written it yet).
    pub fn lookup_kept(&mut self, c: &ContainerRef) -> (Option<String>, Option<String>) {
        if let Some(e) = self.entries.get(&c.id)
            && (e.name.is_some() || e.image.is_some())
        {
            return (e.name.clone(), e.image.clone());
        }
        self.reads += 1;
        let (name, image) = self.enricher.lookup(c);
        self.entries.insert(c.id.clone(), Entry { name: name.clone(), image: image.clone(), read_at: Instant::now() });
        (name, image)
    }

    /// Forgets container `id` (it is gone).
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";

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
