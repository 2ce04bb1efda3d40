//! The runtimes' state files tracer reads for names and images: Docker's
//! `config.v2.json` (`parse_docker_config`) and containers/storage's
//! `containers.json` (`parse_storage_containers`). Nothing panics; a Docker name
//! has its leading `/` taken off; an entry is found only for an id that is there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::container::names::{parse_docker_config, parse_storage_containers};

/// The id the seeds' entries carry.
const ID: &str = "b8cee460296f05db19c53a4579370efd43b7dce54573a11b29fb0076218f979c";

fuzz_target!(|data: &[u8]| {
    if let Some((Some(name), _)) = parse_docker_config(data) {
        assert!(!name.starts_with('/'), "docker name {name:?} keeps its slash");
    }
    for id in [ID, "a", ""] {
        if parse_storage_containers(data, id).is_some() {
            let v: serde_json::Value = serde_json::from_slice(data).expect("found in JSON");
            let found = v.as_array().is_some_and(|l| l.iter().any(|e| e["id"].as_str() == Some(id)));
            assert!(found, "an entry for {id:?} that is not there");
        }
    }
});
