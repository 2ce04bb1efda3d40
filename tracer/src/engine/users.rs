//! User names for uids, from `/etc/passwd`, read once and cached.

use std::path::PathBuf;
use std::sync::Arc;

use super::hash::FxHashMap;

/// The uid -> user name table. Loaded lazily, at the first lookup, from the
/// passwd file it was made for (never from /proc); a uid the file does not name
/// (a container's user, say) has no name.
#[derive(Debug, Default)]
pub struct UserTable {
    path: Option<PathBuf>,
    loaded: bool,
    names: FxHashMap<u32, Arc<str>>,
}

impl UserTable {
    /// A table that reads `path` at its first lookup (None: no names at all).
    pub fn from_path(path: Option<PathBuf>) -> UserTable {
        UserTable { path, loaded: false, names: FxHashMap::default() }
    }

    /// A table parsed from the text of a passwd file (`name:pw:uid:...` lines).
    pub fn from_passwd(text: &str) -> UserTable {
        let mut u = UserTable { path: None, loaded: true, names: FxHashMap::default() };
        u.parse(text);
        u
    }

    fn parse(&mut self, text: &str) {
        for (uid, name) in crate::users::passwd_entries(text) {
            self.names.entry(uid).or_insert_with(|| Arc::from(name));
        }
    }

    fn load(&mut self) {
        self.loaded = true;
        if let Some(path) = &self.path {
            match std::fs::read(path) {
                Ok(bytes) => self.parse(&String::from_utf8_lossy(&bytes)),
                Err(e) => log::debug!("no user names: reading {}: {e}", path.display()),
            }
        }
    }

    /// The user name of `uid`, if the passwd file names it.
    pub fn name(&mut self, uid: u32) -> Option<Arc<str>> {
        if !self.loaded {
            self.load();
        }
        self.names.get(&uid).cloned()
    }

    /// Forgets the table; the next lookup reads the file again.
    pub fn reload(&mut self) {
        self.loaded = false;
        self.names.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let mut u = UserTable::from_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\nalias:x:1000:1:dup\nnobody:x:65534:65534::/:/usr/sbin/nologin\n",
        );
        assert_eq!(u.name(0).as_deref(), Some("root"));
        assert_eq!(u.name(1000).as_deref(), Some("alice"));
        assert_eq!(u.name(65534).as_deref(), Some("nobody"));
        assert_eq!(u.name(7), None);
    }

    #[test]
    fn missing_file_gives_no_names() {
        let mut u = UserTable::from_path(Some(PathBuf::from("/nonexistent/passwd")));
        assert_eq!(u.name(0), None);
    }
}
