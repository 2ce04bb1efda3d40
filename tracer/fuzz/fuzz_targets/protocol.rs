//! The daemon's request lines (`tracer::daemon::protocol::parse`), the bytes any
//! local client may send. Nothing panics; a parsed request written back parses
//! to the same request; an error goes back as one JSON line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::daemon::protocol::{error_line, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&req).expect("a request serializes");
            assert_eq!(parse(&line).as_ref(), Ok(&req), "{} does not round-trip", String::from_utf8_lossy(&line));
        }
        Err(msg) => {
            let line = error_line(&msg);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "error reply is not one line");
            assert!(line.ends_with(b"\n"));
            let v: serde_json::Value = serde_json::from_slice(&line).expect("error reply is JSON");
            assert_eq!(v["error"].as_str(), Some(msg.as_str()));
        }
    }
});
