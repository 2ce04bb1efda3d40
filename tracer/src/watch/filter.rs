//! The `/` filter of `tracer watch`: free text matched (case-insensitively) in a
//! process's comm or command line, and `pid:N` (that process and its descendants),
//! `user:NAME` (name or uid) and `container:ID` (a container's short id, id prefix
//! or name; `-`: in no container) terms. All given conditions hold.

use crate::engine::Process;
use crate::render::Known;

/// The container column's text for a process in no container.
pub const NO_CONTAINER: &str = "-";

/// A parsed filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Free text, ASCII-lowercased (words joined by single spaces).
    pub text: Vec<u8>,
    pub pid: Option<u32>,
    pub user: Option<String>,
    pub container: Option<String>,
}

impl Filter {
    /// Parses `apache2 pid:12 user:www-data container:abc`. A term whose value does
    /// not parse (`pid:x`) is taken as text.
    pub fn parse(s: &str) -> Filter {
        let mut f = Filter::default();
        let mut words: Vec<&str> = Vec::new();
        for w in s.split_whitespace() {
            if let Some(v) = w.strip_prefix("pid:")
                && let Ok(pid) = v.parse::<u32>()
            {
                f.pid = Some(pid);
            } else if let Some(v) = w.strip_prefix("user:").filter(|v| !v.is_empty()) {
                f.user = Some(v.to_string());
            } else if let Some(v) = w.strip_prefix("container:").filter(|v| !v.is_empty()) {
                f.container = Some(v.to_string());
            } else {
                words.push(w);
            }
        }
        f.text = words.join(" ").to_ascii_lowercase().into_bytes();
        f
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `p`, in `container`, passes the text, user and container conditions
    /// (`pid` is the caller's: it needs the tree).
    pub fn matches(&self, p: &Process, container: Option<&Known>) -> bool {
        if !self.text.is_empty() && !contains_ci(p.comm.as_bytes(), &self.text) && !contains_ci(&p.argv.raw, &self.text)
        {
            return false;
        }
        if let Some(u) = &self.user
            && p.user.as_deref() != Some(u.as_str())
            && u.parse::<u32>().ok() != Some(p.uid)
        {
            return false;
        }
        if let Some(q) = &self.container {
            let ok = match container {
                None => q == NO_CONTAINER,
                Some(k) => k.matches(q),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Whether `needle` (lowercase) occurs in `hay`, ASCII case-insensitively, NULs in
/// `hay` (argv separators) read as spaces.
pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let norm = |b: u8| if b == 0 { b' ' } else { b.to_ascii_lowercase() };
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w.iter().zip(needle).all(|(&a, &b)| norm(a) == b))
}
