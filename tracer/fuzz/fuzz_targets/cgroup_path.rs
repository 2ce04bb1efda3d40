//! Cgroup paths (`from_cgroup_path`, `plain`): names chosen by whoever creates a
//! cgroup. Nothing panics; an id found is a part of one component of the path,
//! and the shown id and the query matching work on it. Input: the path, then
//! optionally a NUL and a query for `Container::matches`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::container::{Container, ContainerRef, from_cgroup_path, is_hex_id, plain};

fn check(path: &str, query: &str, c: ContainerRef) {
    assert!(!c.id.is_empty(), "empty id from {path:?}");
    assert!(path.split('/').any(|comp| comp.contains(c.id.as_str())), "id {:?} is in no component of {path:?}", c.id);
    if let Some(pod) = &c.pod {
        assert!(path.contains("kubepods"), "pod {pod:?} outside kubepods: {path:?}");
    }
    let short = c.short_id();
    assert!(c.id.starts_with(short));
    assert!(!is_hex_id(&c.id) || short.len() == 12);
    let id = c.id.clone();
    let k = Container { container: c, name: Some(query.to_string()), image: None };
    let _ = k.short_name();
    let _ = k.matches(query);
    if id.trim() == id {
        assert!(k.matches(&id), "container {id:?} does not match its own id");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('\0').unwrap_or((&text, ""));
    if let Some(c) = from_cgroup_path(path) {
        check(path, query, c);
    }
    if let Some(c) = plain(path) {
        let leaf = path.rsplit('/').find(|c| !c.is_empty());
        assert_eq!(leaf, Some(c.id.as_str()), "plain() id is not the leaf of {path:?}");
        check(path, query, c);
    }
});
