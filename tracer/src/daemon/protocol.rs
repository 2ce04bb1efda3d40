//! The daemon's protocol (version 1): JSON lines over a Unix stream socket.
//! The full description is in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// Protocol version; bumped on incompatible changes.
pub const PROTOCOL: u32 = 1;
/// Longest request line accepted, bytes.
pub const MAX_REQUEST: usize = 1 << 20;
/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/tracer/tracer.sock";

/// One request line.
#[derive(Debug, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Version,
    Stats,
    Snapshot {
        #[serde(default)]
        format: SnapshotFormat,
        #[serde(default)]
        filter: Filter,
        #[serde(default)]
        show_exited: bool,
        /// Only processes in containers, grouped by container (`tracer ps -C`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_container: bool,
    },
    Subscribe {
        #[serde(default)]
        format: LineFormat,
        #[serde(default)]
        filter: Filter,
    },
    Containers,
}

/// How a snapshot comes back.
#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotFormat {
    /// `{"ok":true,"snapshot":{...}}`, the tree as `tracer ps --json` prints it.
    #[default]
    Json,
    /// `{"ok":true,"text":"..."}`, as `tracer ps` prints it.
    Forest,
    /// `{"ok":true,"text":"..."}`, as `tracer ps -L` prints it.
    Threads,
}

/// How streamed events come.
#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// `{"event":{...}}`: the object `tracer events --json` prints.
    #[default]
    Json,
    /// `{"kind":"fork","text":"..."}`: the line `tracer events` prints.
    Text,
}

/// Which processes (and events) a request is about. All set conditions hold.
#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// This process and its descendants. Subscriptions follow the live process
    /// with this pid when they start (by its start time): a later process that
    /// reuses the pid is not followed; none with it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Comm: a shell glob (`*`, `?`, `[...]`, `{a,b}`); without those, the exact comm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// User name or uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only events of these kinds (subscriptions only; empty: all). Names as in
    /// the events' `kind` field; `lost` and `missed` lines always come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Only processes of the containers this names: short id, id prefix or name
    /// (snapshots: grouped by container as with `by_container`; subscriptions: the
    /// events of their processes, or their stories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Snapshots: a `pid` no live process has is an error (as `ps -p` fails),
    /// rather than an empty tree. `tracer ps --pid` asks for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pid_must_live: bool,
    /// Leave out thread creations and exits (subscriptions only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_threads: bool,
    /// Leave out kernel threads' events (subscriptions only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_kthreads: bool,
    /// Container start and stop stories instead of events (subscriptions only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub containers: bool,
}

/// Parses one request line, with an error message fit to send back.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    serde_json::from_str(text.trim()).map_err(|e| format!("bad request: {e}"))
}

/// `{"ok":false,"error":...}` as a line.
pub fn error_line(msg: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({"ok": false, "error": msg})).unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_verb() {
        assert_eq!(parse(br#"{"verb":"version"}"#), Ok(Request::Version));
        assert_eq!(parse(br#"{"verb":"stats"}"#), Ok(Request::Stats));
        assert_eq!(
            parse(br#"{"verb":"snapshot","format":"forest","filter":{"pid":1}}"#),
            Ok(Request::Snapshot {
                format: SnapshotFormat::Forest,
                filter: Filter { pid: Some(1), ..Filter::default() },
                show_exited: false,
                by_container: false,
            })
        );
        assert_eq!(
            parse(br#"{"verb":"snapshot","by_container":true,"filter":{"container":"web"}}"#),
            Ok(Request::Snapshot {
                format: SnapshotFormat::Json,
                filter: Filter { container: Some("web".into()), ..Filter::default() },
                show_exited: false,
                by_container: true,
            })
        );
        // What older daemons know: a plain snapshot request names no new field.
        let plain = Request::Snapshot {
            format: SnapshotFormat::Forest,
            filter: Filter::default(),
            show_exited: false,
            by_container: false,
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap_or_default(),
            r#"{"verb":"snapshot","format":"forest","filter":{},"show_exited":false}"#
        );
        assert_eq!(
            parse(br#"{"verb":"subscribe"}"#),
            Ok(Request::Subscribe { format: LineFormat::Json, filter: Filter::default() })
        );
        assert_eq!(parse(br#"{"verb":"containers"}"#), Ok(Request::Containers));
    }

    #[test]
    fn rejects_bad_requests() {
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"verb":"reboot"}"#).unwrap_err().contains("unknown variant"));
        assert!(parse(br#"{"verb":"snapshot","bogus":1}"#).is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
        let e = error_line("x");
        assert_eq!(e.last(), Some(&b'\n'));
    }
}
