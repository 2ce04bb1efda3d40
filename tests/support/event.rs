//! The events of `tracer events --json`, parsed, and ways to pick them out for assertions.

use std::fmt;

use serde_json::Value;

/// One JSON line of `tracer events --json`, parsed, with the line itself for messages.
#[derive(Clone, Debug)]
pub struct Event {
    pub v: Value,
    pub line: String,
}

impl Event {
    /// A field, or a panic naming the field and showing the line.
    pub fn get(&self, key: &str) -> &Value {
        self.v.get(key).unwrap_or_else(|| panic!("event has no field `{key}`: {}", self.line))
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.get(key).as_u64().unwrap_or_else(|| panic!("field `{key}` is not an unsigned integer: {}", self.line))
    }

    pub fn u32(&self, key: &str) -> u32 {
        u32::try_from(self.u64(key)).unwrap_or_else(|_| panic!("field `{key}` is over u32: {}", self.line))
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key).as_bool().unwrap_or_else(|| panic!("field `{key}` is not a boolean: {}", self.line))
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key).as_str().unwrap_or_else(|| panic!("field `{key}` is not a string: {}", self.line))
    }

    pub fn kind(&self) -> &str {
        self.str("kind")
    }

    pub fn pid(&self) -> u32 {
        self.u32("pid")
    }

    pub fn tid(&self) -> u32 {
        self.u32("tid")
    }

    pub fn ppid(&self) -> u32 {
        self.u32("ppid")
    }

    pub fn ts(&self) -> u64 {
        self.u64("ts_ns")
    }

    /// `argv` of an exec event.
    pub fn argv(&self) -> Vec<String> {
        let a = self.get("argv").as_array().unwrap_or_else(|| panic!("`argv` is not an array: {}", self.line));
        a.iter()
            .map(|s| s.as_str().unwrap_or_else(|| panic!("`argv` holds a non-string: {}", self.line)).to_string())
            .collect()
    }

    /// `status` of an exit or thread_exit event.
    pub fn status(&self) -> &Value {
        let s = self.get("status");
        assert!(s.is_object(), "`status` is not an object: {}", self.line);
        s
    }

    /// `status.code`: Some(code) after exit(), None when killed by a signal.
    pub fn exit_code(&self) -> Option<i64> {
        let c = self.status().get("code").unwrap_or_else(|| panic!("`status` has no `code`: {}", self.line));
        if c.is_null() { None } else { Some(c.as_i64().unwrap_or_else(|| panic!("bad `status.code`: {}", self.line))) }
    }

    /// `status.signal`, e.g. "SIGKILL", or None.
    pub fn exit_signal(&self) -> Option<String> {
        let s = self.status().get("signal").unwrap_or_else(|| panic!("`status` has no `signal`: {}", self.line));
        if s.is_null() {
            None
        } else {
            Some(s.as_str().unwrap_or_else(|| panic!("bad `status.signal`: {}", self.line)).to_string())
        }
    }

    pub fn is(&self, kind: &str) -> bool {
        self.v.get("kind").and_then(Value::as_str) == Some(kind)
    }

    /// Whether this event is about process `pid` (lost records have no pid).
    pub fn of(&self, pid: u32) -> bool {
        self.v.get("pid").and_then(Value::as_u64) == Some(u64::from(pid))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// The events of process `pid`, ordered by ts_ns.
pub fn of_pid(events: &[Event], pid: u32) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().filter(|e| e.of(pid)).collect();
    v.sort_by_key(|e| e.ts());
    v
}

/// The events of any of `pids`, ordered by ts_ns.
#[allow(dead_code)] // no test uses it today
pub fn of_pids<'a>(events: &'a [Event], pids: &[u32]) -> Vec<&'a Event> {
    let mut v: Vec<&Event> = events.iter().filter(|e| pids.iter().any(|p| e.of(*p))).collect();
    v.sort_by_key(|e| e.ts());
    v
}

/// Those of `events` of this kind.
pub fn kind<'a>(events: &[&'a Event], kind: &str) -> Vec<&'a Event> {
    events.iter().copied().filter(|e| e.is(kind)).collect()
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[&Event]) -> Vec<String> {
    events.iter().map(|e| e.kind().to_string()).collect()
}

/// Events as their JSON lines, one per line, for assertion messages (the first 400).
pub fn dump<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    const MAX: usize = 400;
    let mut s = String::new();
    let mut n = 0;
    for e in events {
        if n < MAX {
            s.push_str("    ");
            s.push_str(&e.line);
            s.push('\n');
        }
        n += 1;
    }
    if n > MAX {
        s.push_str(&format!("    ... and {} more\n", n - MAX));
    }
    if n == 0 {
        s.push_str("    (no events)\n");
    }
    s
}

/// Whether a process exit of `pid` is among `events`.
pub fn has_exit(events: &[Event], pid: u32) -> bool {
    events.iter().any(|e| e.is("exit") && e.of(pid))
}

/// Whether an exec of `pid` is among `events`.
pub fn has_exec(events: &[Event], pid: u32) -> bool {
    events.iter().any(|e| e.is("exec") && e.of(pid))
}
