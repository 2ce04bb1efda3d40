//! User names for output: the system's user table, looked up without the engine.
//!
//! The event lines (text and JSON) name each event's user by uid, far from the
//! engine. They read the same table the engine does, [`UserTable::system`]
//! (`/etc/passwd`, read once and kept; see [`crate::engine::UserTable`]), so a
//! lookup here is one hash probe and never a file read.

use std::borrow::Cow;

use crate::engine::UserTable;

/// The user name of `uid`, or the number when the system's passwd names none.
pub fn name(uid: u32) -> Cow<'static, str> {
    match UserTable::system().get(uid) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(uid.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_named() {
        assert_eq!(super::name(0), "root");
    }

    #[test]
    fn a_uid_without_a_name_is_its_number() {
        // (uid_t)-1 is no one's: setuid and chown take it to mean "unchanged".
        assert_eq!(super::name(u32::MAX), "4294967295");
    }
}
