//! The user table: uid -> user name, from a passwd file (never from /proc). The
//! only one in tracer.
//!
//! The engine names each process's user from it when the process appears; the
//! event output names each event's user through [`crate::users::name`]. Both
//! read the same table for `/etc/passwd` ([`UserTable::system`]): read once, at
//! its first lookup, and kept, so a lookup is one hash probe and never a file
//! read (the JSON output makes one per event). A uid the file does not name (a
//! container's user, say) has no name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use super::hash::FxHashMap;

/// The system's passwd file, whose table the whole process shares.
const SYSTEM_PASSWD: &str = "/etc/passwd";

/// uid -> user name from one passwd file, read at the first lookup. Clones share
/// the table (and its one read of the file).
#[derive(Clone, Debug, Default)]
pub struct UserTable(Arc<Table>);

#[derive(Debug, Default)]
struct Table {
    /// The file names come from; None: none (no names, or given as text).
    path: Option<PathBuf>,
    names: OnceLock<FxHashMap<u32, Arc<str>>>,
}

impl UserTable {
    /// The table of `path`, read at its first lookup (None: no names at all).
    /// For `/etc/passwd`, the process's shared table ([`UserTable::system`]).
    pub fn from_path(path: Option<PathBuf>) -> UserTable {
        match path {
            Some(p) if p == Path::new(SYSTEM_PASSWD) => UserTable::system().clone(),
            path => UserTable(Arc::new(Table { path, names: OnceLock::new() })),
        }
    }

    /// A table parsed from the text of a passwd file (`name:pw:uid:...` lines).
    pub fn from_passwd(text: &str) -> UserTable {
        UserTable(Arc::new(Table { path: None, names: OnceLock::from(parse(text)) }))
    }

    /// The table of `/etc/passwd`, shared by every engine and the output.
    pub fn system() -> &'static UserTable {
        static SYSTEM: LazyLock<UserTable> = LazyLock::new(|| {
            UserTable(Arc::new(Table { path: Some(PathBuf::from(SYSTEM_PASSWD)), names: OnceLock::new() }))
        });
        &SYSTEM
    }

    fn names(&self) -> &FxHashMap<u32, Arc<str>> {
        self.0.names.get_or_init(|| self.0.path.as_deref().map(read).unwrap_or_default())
    }

    /// The user name of `uid`, if the passwd file names it (shared, not copied:
    /// every process of a user holds the same name).
    pub fn name(&self, uid: u32) -> Option<Arc<str>> {
        self.names().get(&uid).cloned()
    }

    /// The user name of `uid`, borrowed from the table.
    pub fn get(&self, uid: u32) -> Option<&str> {
        self.names().get(&uid).map(|n| &**n)
    }

    /// The uid of a user name (the first line naming it, as for a uid).
    pub fn uid_of(&self, user: &str) -> Option<u32> {
        self.names().iter().filter(|(_, n)| &***n == user).map(|(u, _)| *u).min()
    }
}

/// The names of the passwd file at `path`; none when it cannot be read.
fn read(path: &Path) -> FxHashMap<u32, Arc<str>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(e) => {
            log::debug!("no user names: reading {}: {e}", path.display());
            FxHashMap::default()
        }
    }
}

/// uid -> name of a passwd file's text; of two lines with one uid, the first
/// (as getpwuid finds it).
fn parse(text: &str) -> FxHashMap<u32, Arc<str>> {
    let mut names = FxHashMap::default();
    for (uid, name) in passwd_entries(text) {
        names.entry(uid).or_insert_with(|| Arc::from(name));
    }
    names
}

/// The (uid, name) pairs of a passwd file's text (`name:pw:uid:...` lines), in
/// order; comments, blank and malformed lines left out. The one passwd parser.
fn passwd_entries(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let (Some(name), Some(_pw), Some(uid)) = (f.next(), f.next(), f.next()) else { return None };
        let uid = uid.parse::<u32>().ok()?;
        (!name.is_empty()).then_some((uid, name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let u = UserTable::from_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\nalias:x:1000:1:dup\nnobody:x:65534:65534::/:/usr/sbin/nologin\n:x:5:5::/:/bin/sh\nodd:x:notanumber:1::/:/bin/sh\n",
        );
        assert_eq!(u.name(0).as_deref(), Some("root"));
        assert_eq!(u.name(1000).as_deref(), Some("alice"));
        assert_eq!(u.get(65534), Some("nobody"));
        assert_eq!(u.name(5), None);
        assert_eq!(u.name(7), None);
        assert_eq!(u.uid_of("alice"), Some(1000));
        assert_eq!(u.uid_of("odd"), None);
    }

    #[test]
    fn missing_file_gives_no_names() {
        let u = UserTable::from_path(Some(PathBuf::from("/nonexistent/passwd")));
        assert_eq!(u.name(0), None);
        assert_eq!(UserTable::from_path(None).name(0), None);
        assert_eq!(UserTable::default().name(0), None);
    }

    #[test]
    fn the_system_passwd_is_one_shared_table() {
        let a = UserTable::from_path(Some(PathBuf::from(SYSTEM_PASSWD)));
        let b = UserTable::from_path(Some(PathBuf::from(SYSTEM_PASSWD)));
        assert!(Arc::ptr_eq(&a.0, &b.0) && Arc::ptr_eq(&a.0, &UserTable::system().0));
        assert_eq!(a.name(0).as_deref(), Some("root"));
        // The engine's copy of a name and the output's are the same allocation.
        let (x, y) = (a.name(0), UserTable::system().name(0));
        assert!(x.zip(y).is_some_and(|(x, y)| Arc::ptr_eq(&x, &y)));
    }
}
