//! Which container a cgroup path belongs to, for every common runtime and both
//! cgroup drivers (cgroupfs and systemd), cgroup v1 and v2 path forms alike.
//!
//! The path comes from the kernel (the task's cgroup on the default hierarchy,
//! read in BPF): no runtime socket, no /proc.

use serde::{Deserialize, Serialize};

/// The runtime that made a container, as far as its cgroup path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A container whose cgroup path names no runtime (plain runc/crun with a
    /// cgroupsPath of its own); recognised by its own pid namespace.
    Runc,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Runc => "runc",
        }
    }
}

/// Kubernetes QoS class of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// A Kubernetes pod, from the kubepods hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pod {
    /// The pod's uid, with dashes (as the API shows it).
    pub uid: String,
    pub qos: Qos,
}

/// A container as its cgroup path names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The container id (64 hex digits for docker, containerd under Kubernetes,
    /// CRI-O and podman; any name for ctr and plain runc).
    pub id: String,
    /// The containerd namespace, for containerd's own cgroupfs paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

impl ContainerRef {
    /// The id as shown: 12 characters of a runtime's 64-hex-digit id (as `docker
    /// ps` shows it), else the whole id (a name given to ctr or runc).
    pub fn short_id(&self) -> &str {
        if is_hex_id(&self.id) { &self.id[..12] } else { &self.id }
    }
}

/// A runtime's 64-hex-digit container id (Docker, containerd under Kubernetes,
/// CRI-O, podman).
pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `prefix-<64 hex>.scope` -> the id.
fn scope_id<'a>(component: &'a str, prefix: &str) -> Option<&'a str> {
    let id = component.strip_prefix(prefix)?.strip_suffix(".scope")?;
    is_hex_id(id).then_some(id)
}

/// The pod of a kubepods path, if any: cgroupfs `/kubepods[/<qos>]/pod<uid>/...`
/// or systemd `/kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid>.slice/...`.
fn pod_of(components: &[&str]) -> Option<Pod> {
    // Usually at the root; under the runtime's own unit on some nodes (kind:
    // `/system.slice/containerd.service/kubepods-...-pod<uid>.slice:cri-containerd:<id>`).
    let root = components.iter().position(|c| c.starts_with("kubepods"))?;
    let components = &components[root..];
    for c in components {
        // systemd driver with the `slice:prefix:name` form folded into one name.
        let c = &c.split(':').next().unwrap_or(c);
        // cgroupfs
        if let Some(uid) = c.strip_prefix("pod") {
            let qos = components
                .iter()
                .find_map(|q| match *q {
                    "burstable" => Some(Qos::Burstable),
                    "besteffort" => Some(Qos::BestEffort),
                    _ => None,
                })
                .unwrap_or(Qos::Guaranteed);
            return Some(Pod { uid: uid.to_string(), qos });
        }
        // systemd: kubepods-burstable-pod<uid_with_underscores>.slice
        if let Some(rest) = c.strip_suffix(".slice")
            && rest.starts_with("kubepods")
            && let Some(at) = rest.find("-pod")
        {
            let qos = match &rest[..at] {
                "kubepods-burstable" => Qos::Burstable,
                "kubepods-besteffort" => Qos::BestEffort,
                _ => Qos::Guaranteed,
            };
            return Some(Pod { uid: rest[at + 4..].replace('_', "-"), qos });
        }
    }
    None
}

/// The container a cgroup path (as `/proc/<pid>/cgroup` shows it, leading `/`)
/// belongs to, if it names one. The innermost container wins (docker in docker).
pub fn from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let pod = pod_of(&components);
    let mk = |runtime, id: &str, namespace: Option<&str>| ContainerRef {
        runtime,
        id: id.to_string(),
        namespace: namespace.map(str::to_string),
        pod: pod.clone(),
    };
    for (i, c) in components.iter().enumerate().rev() {
        // `<slice>:<prefix>:<id>` as one name (containerd's systemd driver on some nodes)
        if let Some((prefix, id)) = c.rsplit_once(':')
            && is_hex_id(id)
        {
            let runtime = match prefix.rsplit(':').next() {
                Some("cri-containerd") => Runtime::Containerd,
                Some("crio") => Runtime::CriO,
                Some("docker") => Runtime::Docker,
                _ => continue,
            };
            let ns = (runtime == Runtime::Containerd).then_some("k8s.io");
            return Some(mk(runtime, id, ns));
        }
        // systemd driver scopes
        if let Some(id) = scope_id(c, "docker-") {
            return Some(mk(Runtime::Docker, id, None));
        }
        if let Some(id) = scope_id(c, "cri-containerd-") {
            return Some(mk(Runtime::Containerd, id, Some("k8s.io")));
        }
        if let Some(id) = scope_id(c, "crio-") {
            return Some(mk(Runtime::CriO, id, None));
        }
        if let Some(id) = scope_id(c, "libpod-") {
            return Some(mk(Runtime::Podman, id, None));
        }
        // runc/crun with the systemd driver and the default `system.slice:runc:<id>`
        if let Some(id) =
            c.strip_prefix("runc-").or_else(|| c.strip_prefix("crun-")).and_then(|r| r.strip_suffix(".scope"))
            && !id.is_empty()
        {
            return Some(mk(Runtime::Runc, id, None));
        }
        // cgroupfs driver directories
        let parent = if i > 0 { components[i - 1] } else { "" };
        if is_hex_id(c) {
            match parent {
                "docker" => return Some(mk(Runtime::Docker, c, None)),
                "libpod_parent" => return Some(mk(Runtime::Podman, c, None)),
                _ => {}
            }
        }
        if let Some(id) = c.strip_prefix("libpod-")
            && is_hex_id(id)
        {
            return Some(mk(Runtime::Podman, id, None));
        }
        if let Some(id) = c.strip_prefix("crio-")
            && is_hex_id(id)
        {
            return Some(mk(Runtime::CriO, id, None));
        }
        // Kubernetes cgroupfs: /kubepods[/<qos>]/pod<uid>/<container id>
        if pod.is_some() && parent.starts_with("pod") && is_hex_id(c) {
            return Some(mk(Runtime::Containerd, c, Some("k8s.io")));
        }
        // containerd's own namespaces (ctr): /<namespace>/<id>
        if i == 1 && matches!(parent, "default" | "k8s.io" | "moby" | "buildkit") {
            return Some(mk(Runtime::Containerd, c, Some(parent)));
        }
    }
    None
}

/// A container whose path names no runtime: the leaf of its cgroup path, for a
/// process that lives in a pid namespace of its own (plain runc or crun).
pub fn plain(path: &str) -> Option<ContainerRef> {
    let leaf = path.rsplit('/').find(|c| !c.is_empty())?;
    // systemd units are no container of their own (a runc systemd scope is named
    // by `from_cgroup_path`).
    if leaf.ends_with(".slice") || leaf.ends_with(".service") || leaf.ends_with(".scope") {
        return None;
    }
    Some(ContainerRef { runtime: Runtime::Runc, id: leaf.to_string(), namespace: None, pod: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";

    fn check(path: &str, runtime: Runtime, pod: Option<(&str, Qos)>) {
        let c = from_cgroup_path(&path.replace("{ID}", ID)).unwrap_or_else(|| panic!("{path}: no container"));
        assert_eq!(c.runtime, runtime, "{path}");
        assert_eq!(c.id, ID, "{path}");
        assert_eq!(c.pod.as_ref().map(|p| (p.uid.as_str(), p.qos)), pod, "{path}");
    }

    #[test]
    fn docker() {
        // cgroupfs driver, v1 controllers and v2 (this project's hybrid hosts show both)
        check("/docker/{ID}", Runtime::Docker, None);
        // systemd driver
        check("/system.slice/docker-{ID}.scope", Runtime::Docker, None);
        // docker in docker: the inner one
        let inner = "/docker/{ID}/docker/aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";
        let c = from_cgroup_path(&inner.replace("{ID}", ID)).expect("nested");
        assert!(c.id.starts_with("aaaabbbb"));
        assert_eq!(c.short_id(), "aaaabbbbcccc");
    }

    #[test]
    fn kubernetes() {
        let uid = "3f4c2b7a-1d2e-4f5a-9b8c-7d6e5f4a3b2c";
        let uid_ = uid.replace('-', "_");
        // systemd driver, the three QoS classes
        check(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{{ID}}.scope"
            ),
            Runtime::Containerd,
            Some((uid, Qos::Burstable)),
        );
        check(
            &format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{{ID}}.scope"),
            Runtime::CriO,
            Some((uid, Qos::BestEffort)),
        );
        check(
            &format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{{ID}}.scope"),
            Runtime::Docker,
            Some((uid, Qos::Guaranteed)),
        );
        // cgroupfs driver
        check(&format!("/kubepods/burstable/pod{uid}/{{ID}}"), Runtime::Containerd, Some((uid, Qos::Burstable)));
        check(&format!("/kubepods/pod{uid}/{{ID}}"), Runtime::Containerd, Some((uid, Qos::Guaranteed)));
        check(&format!("/kubepods/besteffort/pod{uid}/crio-{{ID}}"), Runtime::CriO, Some((uid, Qos::BestEffort)));
        // a pod's own cgroup is no container
        assert_eq!(from_cgroup_path(&format!("/kubepods/burstable/pod{uid}")), None);
    }

    #[test]
    fn podman_crio_containerd() {
        check("/machine.slice/libpod-{ID}.scope", Runtime::Podman, None);
        check("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", Runtime::Podman, None);
        check("/libpod_parent/libpod-{ID}", Runtime::Podman, None);
        check("/system.slice/crio-{ID}.scope", Runtime::CriO, None);
        let c = from_cgroup_path("/default/web").expect("ctr");
        assert_eq!((c.runtime, c.id.as_str(), c.namespace.as_deref()), (Runtime::Containerd, "web", Some("default")));
    }

    /// Paths as real hosts show them, in `/proc/<pid>/cgroup` (v2 `0::` lines and v1
    /// controller lines alike: the path part is the same form).
    #[test]
    fn table_of_real_paths() {
        let uid = "3f4c2b7a-1d2e-4f5a-9b8c-7d6e5f4a3b2c";
        let u_ = uid.replace('-', "_");
        use Qos::*;
        use Runtime::*;
        let table: &[(&str, Runtime, Option<Qos>)] = &[
            // Docker, cgroupfs driver: v1 `cpu,cpuacct:/docker/<id>` and v2 `0::/docker/<id>`
            ("/docker/{ID}", Docker, None),
            // Docker, systemd driver (v1 `name=systemd:` and v2)
            ("/system.slice/docker-{ID}.scope", Docker, None),
            // rootless Docker (v2, systemd driver, delegated user slice)
            ("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope", Docker, None),
            // Docker with a custom --cgroup-parent
            ("/ci-jobs/docker/{ID}", Docker, None),
            // containerd's own CLI (ctr) under its namespaces
            ("/default/{ID}", Containerd, None),
            ("/moby/{ID}", Containerd, None),
            // Kubernetes with containerd, systemd driver (v1 and v2)
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/cri-containerd-{ID}.scope",
                Containerd,
                Some(Burstable),
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice/cri-containerd-{ID}.scope",
                Containerd,
                Some(BestEffort),
            ),
            ("/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-{ID}.scope", Containerd, Some(Guaranteed)),
            // kind and other nodes where containerd keeps the `slice:prefix:id` form
            (
                "/system.slice/containerd.service/kubepods-burstable-pod{U_}.slice:cri-containerd:{ID}",
                Containerd,
                Some(Burstable),
            ),
            // Kubernetes, cgroupfs driver (v1 `memory:/kubepods/...` and v2)
            ("/kubepods/burstable/pod{UID}/{ID}", Containerd, Some(Burstable)),
            ("/kubepods/besteffort/pod{UID}/{ID}", Containerd, Some(BestEffort)),
            ("/kubepods/pod{UID}/{ID}", Containerd, Some(Guaranteed)),
            // CRI-O, systemd and cgroupfs drivers
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice/crio-{ID}.scope",
                CriO,
                Some(Burstable),
            ),
            ("/kubepods/besteffort/pod{UID}/crio-{ID}", CriO, Some(BestEffort)),
            ("/system.slice/crio-{ID}.scope", CriO, None),
            // podman: root (systemd), rootless, cgroupfs, and with a private cgroup namespace
            ("/machine.slice/libpod-{ID}.scope", Podman, None),
            ("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", Podman, None),
            ("/libpod_parent/libpod-{ID}", Podman, None),
            ("/machine.slice/libpod-{ID}.scope/container", Podman, None),
            // runc/crun with the systemd driver and their default unit names
            ("/system.slice/runc-{ID}.scope", Runc, None),
            ("/machine.slice/crun-{ID}.scope", Runc, None),
        ];
        for (path, runtime, qos) in table {
            let path = path.replace("{ID}", ID).replace("{UID}", uid).replace("{U_}", &u_);
            let c = from_cgroup_path(&path).unwrap_or_else(|| panic!("{path}: no container"));
            assert_eq!((c.runtime, c.id.as_str()), (*runtime, ID), "{path}");
            assert_eq!(c.pod.as_ref().map(|p| (p.uid.as_str(), p.qos)), qos.map(|q| (uid, q)), "{path}");
        }
        // The runtimes' own monitors and units are no container.
        for path in [
            "/system.slice/crio-conmon-{ID}.scope",
            "/machine.slice/libpod-conmon-{ID}.scope",
            "/system.slice/containerd.service",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice",
            "/system.slice/docker-{ID}.scope.d",
        ] {
            let path = path.replace("{ID}", ID).replace("{UID}", uid).replace("{U_}", &u_);
            assert_eq!(from_cgroup_path(&path), None, "{path}");
        }
    }

    #[test]
    fn not_containers() {
        for p in [
            "/",
            "/init.scope",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice/session-3.scope",
            "/docker",
            "/system.slice/docker.service",
            "/process_api/72b8f3478f46f3da5757ec60c731b15d",
        ] {
            assert_eq!(from_cgroup_path(p), None, "{p}");
        }
        assert_eq!(plain("/mybox").map(|c| c.id), Some("mybox".to_string()));
        let long = plain("/a-container-named-by-hand").expect("plain");
        assert_eq!(long.short_id(), "a-container-named-by-hand", "names are shown whole");
        assert_eq!(plain("/system.slice/ssh.service"), None);
        assert_eq!(plain("/"), None);
    }
}
