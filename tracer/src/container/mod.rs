//! Everything about containers, from kernel data alone (no runtime socket, no
//! /proc). Where each concern lives:
//!
//! - `paths.rs`: the cgroup path rules of each runtime (Docker, containerd,
//!   CRI-O, podman, Kubernetes pods, runc/crun systemd scopes), and
//!   [`plain`], a path that names no runtime.
//! - `cgroups.rs`: the cgroup table ([`Cgroups`]) the tracker keeps: each
//!   cgroup id's path and the container that path names.
//! - `attribution.rs`: the one rule set saying which container a process or
//!   cgroup is in ([`Attribution`], [`cgroup_container`]): the runtime from the
//!   path, plain runc/crun by a pid namespace of its own, `nsenter`/setns joins.
//! - `names.rs`: names and images from the runtimes' state on disk
//!   ([`Enricher`]) and the one cache in front of it ([`NameCache`]).
//! - `list.rs`: the rows of `tracer containers` ([`list`], [`ContainerView`]).
//!
//! The views are elsewhere on purpose: `render/containers.rs` shows containers
//! (labels, JSON), `cmd/containers.rs` is the command, `story/` tells starts
//! and stops, `events/select.rs` narrows an event stream to one container.

pub mod attribution;
pub mod cgroups;
pub mod list;
pub mod names;
pub mod paths;

pub use attribution::{Attribution, cgroup_container};
pub use cgroups::{CgroupInfo, Cgroups};
pub use list::{ContainerView, list};
pub use names::{Enricher, NameCache, REFRESH_FOUND, RETRY_MISSING, STORAGE_ROOT};
pub use paths::{ContainerRef, Pod, Qos, Runtime, from_cgroup_path, is_hex_id, plain};

/// A container as the views and the list show it: what its cgroup path names,
/// with the name and image its runtime's state gives. The views call it `Known`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub container: ContainerRef,
    /// Name and image, from the runtime's state on disk when readable.
    pub name: Option<String>,
    pub image: Option<String>,
}

impl Container {
    /// The id as shown: 12 characters for a runtime's 64-hex-digit ids, else the
    /// whole id (a name given to ctr or runc).
    pub fn display_id(&self) -> &str {
        self.container.short_id()
    }

    /// The name when known, else the id as shown.
    pub fn short_name(&self) -> &str {
        self.name.as_deref().filter(|n| !n.is_empty()).unwrap_or_else(|| self.display_id())
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
}
