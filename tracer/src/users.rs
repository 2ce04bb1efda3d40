//! User names for output: the system's user table, looked up without the engine.
//!
//! The event lines (text and JSON) name each event's user by uid, far from the
//! engine. They read the same table the engine does, [`UserTable::system`] (NSS,
//! each uid asked once and kept; see [`crate::engine::UserTable`]), so a lookup
//! here is one hash probe under a lock that no lookup holds while it waits.

use std::{fmt, sync::Arc};

use crate::engine::UserTable;

/// A user as the output shows it: the name, or the uid when it has none (as ps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserName {
    Name(Arc<str>),
    Uid(u32),
}

impl UserName {
    /// Calls `f` with the name as text (a uid is formatted on the stack).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            UserName::Name(n) => f(n),
            UserName::Uid(u) => f(itoa::Buffer::new().format(*u)),
        }
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`: the text lines give the column a width.
        match self {
            UserName::Name(n) => f.pad(n),
            UserName::Uid(u) => f.pad(&u.to_string()),
        }
    }
}

impl serde::Serialize for UserName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UserName::Name(n) => s.serialize_str(n),
            UserName::Uid(u) => s.collect_str(u),
        }
    }
}

/// The user name of `uid`, or the number when the system names none.
pub fn name(uid: u32) -> UserName {
    match UserTable::system().name(uid) {
        Some(n) => UserName::Name(n),
        None => UserName::Uid(uid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_named() {
        // The first lookup may outlast its wait on a busy machine: then the next.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while name(0) == UserName::Uid(0) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(name(0).to_string(), "root");
        assert_eq!(serde_json::to_string(&name(0)).ok().as_deref(), Some("\"root\""));
    }

    #[test]
    fn a_uid_without_a_name_is_its_number() {
        // (uid_t)-1 is no one's: setuid and chown take it to mean "unchanged".
        assert_eq!(name(u32::MAX), UserName::Uid(u32::MAX));
        assert_eq!(format!("{:<12}|", name(u32::MAX)), "4294967295  |");
        assert_eq!(serde_json::to_string(&name(u32::MAX)).ok().as_deref(), Some("\"4294967295\""));
    }
}
