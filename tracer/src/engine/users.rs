//! The user table: uid -> user name, the only one in tracer (never from /proc).
//!
//! The engine names each process's user from it when the process appears (and
//! again after names change, see [`UserTable::generation`]); the event output
//! names each event's user through [`crate::users::name`]. Both read one shared
//! table, [`UserTable::system`], whose names come through NSS (getpwuid_r: files,
//! LDAP, SSSD, systemd's DynamicUser, as `ps` and `getent passwd` show them; the
//! static musl build's getpwuid_r reads `/etc/passwd` alone). A uid NSS does not
//! name (a container's user, say) has no name: the number is shown, as ps does.
//!
//! Lookups stay off the event path: a uid is asked of NSS once, in a thread of
//! its own, and the answer kept (a name for [`NAMED_TTL`], no name for
//! [`UNNAMED_TTL`], as nscd's defaults). The first lookup of a uid waits for the
//! answer at most [`LOOKUP_WAIT`] (files and SSSD's cache answer in microseconds,
//! so the bound only bites on a slow server, or a thread not run for long);
//! a slower answer (LDAP) lands later and bumps the generation, as does one that
//! renames a uid when its time is up, while the old name keeps being shown
//! meanwhile. So the event path never waits more than [`LOOKUP_WAIT`] once per
//! uid, and never for a uid it knows.
//!
//! Renames: `/etc/passwd` is looked at (stat: device, inode, size, mtime) at most
//! once a [`CHECK_EVERY`], from the lookups and the engine's tick. A stat is a
//! microsecond and needs no thread or file descriptor, where inotify would need
//! both and a watch on `/etc` (useradd replaces the file, so a watch on the file
//! itself dies with it). When it changed (useradd, usermod -l), every name is
//! asked again and the generation bumps, so the engine renames its processes.
//! Names NSS serves from elsewhere (LDAP) follow within their time to live.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use super::hash::FxHashMap;

/// The system's passwd file: the one `from_path` turns into the NSS table, and
/// the one whose changes renew its names.
const SYSTEM_PASSWD: &str = "/etc/passwd";
/// How often at most the watched passwd file is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a name from NSS is kept without the file changing (nscd: 600 s).
pub const NAMED_TTL: Duration = Duration::from_secs(600);
/// How long "no such user" is kept (nscd: 20 s): a DynamicUser's uid gets its
/// name when its service starts, with no change to any file.
pub const UNNAMED_TTL: Duration = Duration::from_secs(20);
/// How long the first lookup of a uid waits for NSS before showing the number.
pub const LOOKUP_WAIT: Duration = Duration::from_millis(200);
/// Lookups under way at most (a hung LDAP server holds a thread each).
const MAX_IN_FLIGHT: usize = 16;

/// A name lookup: Ok(None) when no user has the uid, Err when it could not tell.
pub type Lookup = fn(u32) -> Result<Option<String>, String>;

/// uid -> user name. Clones share the table and what it has looked up.
#[derive(Clone, Debug, Default)]
pub struct UserTable(Arc<Table>);

#[derive(Debug, Default)]
struct Table {
    source: Source,
    /// The file whose change renews the names (None: they never change).
    watch: Option<PathBuf>,
    state: Mutex<State>,
    /// Bumped whenever names may have changed.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
enum Source {
    /// No names at all.
    #[default]
    None,
    /// Names given as passwd text.
    Fixed(FxHashMap<u32, Arc<str>>),
    /// The passwd file `watch`, read at the first lookup after each change.
    File,
    /// Names asked of a function (NSS, or a test's), each in a thread.
    Lookup(Lookup),
}

#[derive(Debug, Default)]
struct State {
    /// What lookups answered, by uid.
    entries: FxHashMap<u32, Entry>,
    /// The `File` source's names (None: to read).
    file: Option<FxHashMap<u32, Arc<str>>>,
    /// The watched file as last seen, and when that was.
    stamp: Option<Stamp>,
    checked: Option<Instant>,
    in_flight: usize,
    /// A lookup was put off (too many under way): when they are all in, the
    /// generation moves, so that whoever keeps names asks for them again.
    deferred: bool,
}

#[derive(Debug)]
struct Entry {
    name: Option<Arc<str>>,
    /// Asked again from then on.
    until: Instant,
    /// A lookup is under way.
    pending: bool,
}

/// What says a file changed: useradd and usermod write a new file and rename it
/// over the old one (a new inode), an editor may write in place (size, mtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl UserTable {
    /// The table of `path`: for `/etc/passwd`, the shared NSS table
    /// ([`UserTable::system`]); another file is read itself (tests); None: no names.
    pub fn from_path(path: Option<PathBuf>) -> UserTable {
        match path {
            Some(p) if p == Path::new(SYSTEM_PASSWD) => UserTable::system().clone(),
            Some(p) => UserTable::new(Source::File, Some(p)),
            None => UserTable::default(),
        }
    }

    /// A table parsed from the text of a passwd file (`name:pw:uid:...` lines).
    pub fn from_passwd(text: &str) -> UserTable {
        UserTable::new(Source::Fixed(parse(text)), None)
    }

    /// Names from `lookup`, renewed when the file `watch` changes (tests give their
    /// own of both).
    pub fn from_lookup(lookup: Lookup, watch: Option<PathBuf>) -> UserTable {
        UserTable::new(Source::Lookup(lookup), watch)
    }

    /// The table of NSS, renewed when `/etc/passwd` changes, shared by every
    /// engine and the output.
    pub fn system() -> &'static UserTable {
        static SYSTEM: LazyLock<UserTable> =
            LazyLock::new(|| UserTable::from_lookup(nss_name, Some(PathBuf::from(SYSTEM_PASSWD))));
        &SYSTEM
    }

    fn new(source: Source, watch: Option<PathBuf>) -> UserTable {
        UserTable(Arc::new(Table { source, watch, ..Table::default() }))
    }

    /// The user name of `uid`, if it has one (shared, not copied: every process of
    /// a user holds the same name).
    pub fn name(&self, uid: u32) -> Option<Arc<str>> {
        self.name_at(uid, Instant::now())
    }

    /// Changes with every change of names (a renewal, a late answer): whoever keeps
    /// names asks for them again when it moves. Looks at the watched file (at most
    /// once a [`CHECK_EVERY`]).
    pub fn generation(&self) -> u64 {
        self.generation_at(Instant::now())
    }

    fn generation_at(&self, now: Instant) -> u64 {
        if self.0.watch.is_some() {
            self.0.check_file(&mut self.0.lock(), now);
        }
        self.0.generation.load(Ordering::Acquire)
    }

    fn name_at(&self, uid: u32, now: Instant) -> Option<Arc<str>> {
        let t = &self.0;
        let lookup = match &t.source {
            Source::None => return None,
            Source::Fixed(names) => return names.get(&uid).cloned(),
            Source::File => None,
            Source::Lookup(f) => Some(*f),
        };
        let mut st = t.lock();
        t.check_file(&mut st, now);
        let Some(lookup) = lookup else {
            let path = t.watch.as_deref();
            return st.file.get_or_insert_with(|| path.map(read).unwrap_or_default()).get(&uid).cloned();
        };
        match st.entries.get(&uid) {
            Some(e) if e.pending || now < e.until => e.name.clone(),
            known => {
                let stale = known.map(|e| e.name.clone());
                self.ask(st, uid, lookup, stale)
            }
        }
    }

    /// Looks `uid` up in a thread; `stale`: the name it had (Some(None): none),
    /// shown until the answer comes, else the answer is waited for a little.
    fn ask(
        &self,
        mut st: MutexGuard<'_, State>,
        uid: u32,
        lookup: Lookup,
        stale: Option<Option<Arc<str>>>,
    ) -> Option<Arc<str>> {
        if st.in_flight >= MAX_IN_FLIGHT {
            st.deferred = true;
            return stale.flatten();
        }
        st.in_flight += 1;
        let far = Instant::now() + NAMED_TTL;
        st.entries.entry(uid).or_insert(Entry { name: None, until: far, pending: true }).pending = true;
        drop(st);
        let (tx, rx) = mpsc::channel();
        let table = Arc::clone(&self.0);
        let spawned = std::thread::Builder::new().name("tracer-users".into()).spawn(move || {
            table.answer(uid, lookup(uid));
            let _ = tx.send(());
        });
        if let Err(e) = spawned {
            log::debug!("user name of uid {uid}: no thread to look it up: {e}");
            self.0.answer(uid, Err(e.to_string()));
            return stale.flatten();
        }
        if let Some(name) = stale {
            return name;
        }
        // Only the sender's drop or a timeout can end the wait: both leave the answer
        // (or its absence) in the table.
        let _ = rx.recv_timeout(LOOKUP_WAIT);
        self.0.lock().entries.get(&uid).and_then(|e| e.name.clone())
    }
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a lookup's answer; a failed one keeps the name there was.
    fn answer(&self, uid: u32, answer: Result<Option<String>, String>) {
        let now = Instant::now();
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        let e = st.entries.entry(uid).or_insert(Entry { name: None, until: now, pending: false });
        e.pending = false;
        let (name, ttl) = match answer {
            Ok(Some(n)) => (Some(Arc::from(n)), NAMED_TTL),
            Ok(None) => (None, UNNAMED_TTL),
            Err(err) => {
                log::debug!("user name of uid {uid}: {err}");
                (e.name.clone(), UNNAMED_TTL)
            }
        };
        e.until = now + ttl;
        let renamed = e.name != name;
        e.name = name;
        let retry = st.in_flight == 0 && std::mem::take(&mut st.deferred);
        if renamed || retry {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// At most once a [`CHECK_EVERY`]: when the watched file changed, every name
    /// is to be asked again, and the generation moves.
    fn check_file(&self, st: &mut State, now: Instant) {
        let Some(path) = &self.watch else { return };
        if st.checked.is_some_and(|t| now.saturating_duration_since(t) < CHECK_EVERY) {
            return;
        }
        let first = st.checked.is_none();
        st.checked = Some(now);
        let stamp = stamp(path);
        if stamp == st.stamp {
            return;
        }
        st.stamp = stamp;
        if first {
            return;
        }
        st.file = None;
        for e in st.entries.values_mut() {
            e.until = now;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The user name of `uid` through NSS (getpwuid_r).
fn nss_name(uid: u32) -> Result<Option<String>, String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).map(|u| u.map(|u| u.name)).map_err(|e| e.to_string())
}

/// The watched file's identity and size and time of change; None: none there.
fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
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

/// uid -> name of a passwd file's text (`name:pw:uid:...` lines); of two lines
/// with one uid, the first (as getpwuid finds it); comments, blank and malformed
/// lines left out.
fn parse(text: &str) -> FxHashMap<u32, Arc<str>> {
    let mut names = FxHashMap::default();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let mut f = line.split(':');
        let (Some(name), Some(_pw), Some(uid)) = (f.next(), f.next(), f.next()) else { continue };
        if let Ok(uid) = uid.parse::<u32>()
            && !name.is_empty()
        {
            names.entry(uid).or_insert_with(|| Arc::from(name));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use std::fs::{File, FileTimes};
    use std::sync::atomic::AtomicU32;
    use std::time::SystemTime;

    use super::*;

    /// A passwd file of the test's own, removed at the end.
    struct TempPasswd(PathBuf);

    impl TempPasswd {
        fn new(name: &str, text: &str) -> TempPasswd {
            let dir = std::env::temp_dir().join(format!("tracer-users-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let f = TempPasswd(dir.join("passwd"));
            f.write(text);
            f
        }
        /// Writes in place (the same inode), as an editor may.
        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).expect("the passwd file written");
        }
        fn mtime(&self) -> SystemTime {
            std::fs::metadata(&self.0).and_then(|m| m.modified()).expect("the passwd file's mtime")
        }
        fn set_mtime(&self, t: SystemTime) {
            let f = File::options().write(true).open(&self.0).expect("the passwd file opened");
            f.set_times(FileTimes::new().set_modified(t)).expect("the passwd file's mtime set");
        }
    }

    impl Drop for TempPasswd {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Waits until no lookup is under way (the threads answer, or a test hangs).
    fn settle(t: &UserTable) {
        let until = Instant::now() + Duration::from_secs(30);
        while t.0.lock().in_flight > 0 {
            assert!(Instant::now() < until, "a lookup never answered");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn parses_passwd_lines() {
        let u = UserTable::from_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\nalias:x:1000:1:dup\nnobody:x:65534:65534::/:/usr/sbin/nologin\n:x:5:5::/:/bin/sh\nodd:x:notanumber:1::/:/bin/sh\n",
        );
        assert_eq!(u.name(0).as_deref(), Some("root"));
        assert_eq!(u.name(1000).as_deref(), Some("alice"));
        assert_eq!(u.name(65534).as_deref(), Some("nobody"));
        assert_eq!(u.name(5), None);
        assert_eq!(u.name(7), None);
    }

    #[test]
    fn missing_file_gives_no_names() {
        let u = UserTable::from_path(Some(PathBuf::from("/nonexistent/passwd")));
        assert_eq!(u.name(0), None);
        assert_eq!(UserTable::from_path(None).name(0), None);
        assert_eq!(UserTable::default().name(0), None);
    }

    #[test]
    fn the_system_table_is_shared_and_asks_nss_once() {
        let a = UserTable::from_path(Some(PathBuf::from(SYSTEM_PASSWD)));
        assert!(Arc::ptr_eq(&a.0, &UserTable::system().0));
        settle(&a);
        let x = a.name(0);
        settle(&a);
        assert_eq!(x.as_deref(), Some("root"));
        // The engine's copy of a name and the output's are the same allocation.
        let y = UserTable::system().name(0);
        assert!(x.zip(y).is_some_and(|(x, y)| Arc::ptr_eq(&x, &y)));
    }

    #[test]
    fn a_changed_file_is_read_again_at_most_once_a_second() {
        let f = TempPasswd::new("file", "alice:x:1000:1000::/:/bin/sh\n");
        let u = UserTable::from_path(Some(f.0.clone()));
        let t0 = Instant::now();
        assert_eq!(u.name_at(1000, t0).as_deref(), Some("alice"));
        let g0 = u.generation_at(t0);
        // Renamed in place, same size, the mtime put back: nothing says it changed.
        let m0 = f.mtime();
        f.write("bobby:x:1000:1000::/:/bin/sh\n");
        f.set_mtime(m0);
        assert_eq!(u.name_at(1000, t0 + 2 * CHECK_EVERY).as_deref(), Some("alice"));
        assert_eq!(u.generation_at(t0 + 2 * CHECK_EVERY), g0);
        // A newer mtime does, but only at the next look, a second after the last.
        f.set_mtime(m0 + Duration::from_secs(1));
        assert_eq!(u.name_at(1000, t0 + 2 * CHECK_EVERY + CHECK_EVERY / 2).as_deref(), Some("alice"));
        assert_eq!(u.name_at(1000, t0 + 3 * CHECK_EVERY).as_deref(), Some("bobby"));
        assert_eq!(u.generation_at(t0 + 3 * CHECK_EVERY), g0 + 1);
        // A file replaced (a new inode, as useradd and usermod do).
        let next = f.0.with_extension("new");
        std::fs::write(&next, "carol:x:1000:1000::/:/bin/sh\n").expect("the new passwd file written");
        std::fs::rename(&next, &f.0).expect("the new passwd file renamed over the old");
        assert_eq!(u.name_at(1000, t0 + 4 * CHECK_EVERY).as_deref(), Some("carol"));
        assert_eq!(u.generation_at(t0 + 4 * CHECK_EVERY), g0 + 2);
    }

    /// Whether the blocked lookups may answer.
    static GATE: (Mutex<bool>, std::sync::Condvar) = (Mutex::new(false), std::sync::Condvar::new());

    /// A lookup that answers `user-UID` once the gate opens (a hung server till then).
    fn gated_lookup(uid: u32) -> Result<Option<String>, String> {
        let mut open = GATE.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = GATE.1.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        Ok(Some(format!("user-{uid}")))
    }

    #[test]
    fn a_lookup_put_off_by_a_hung_server_is_asked_for_once_the_others_answer() {
        let f = TempPasswd::new("gated", "root:x:0:0::/:/bin/sh\n");
        let u = UserTable::from_lookup(gated_lookup, Some(f.0.clone()));
        let gate = |open: bool| {
            *GATE.0.lock().unwrap_or_else(|e| e.into_inner()) = open;
            GATE.1.notify_all();
        };
        let uids = 0..=MAX_IN_FLIGHT as u32;
        gate(true);
        let t0 = Instant::now();
        for uid in uids.clone() {
            let _ = u.name_at(uid, t0);
            settle(&u);
            assert_eq!(u.name_at(uid, t0), Some(Arc::from(format!("user-{uid}"))));
        }
        // The file changes and the server hangs: every name is asked again, the
        // old ones shown meanwhile, and one past the limit is put off.
        gate(false);
        f.set_mtime(f.mtime() + Duration::from_secs(1));
        let t1 = t0 + CHECK_EVERY;
        let g0 = u.generation_at(t1);
        for uid in uids.clone() {
            assert_eq!(u.name_at(uid, t1), Some(Arc::from(format!("user-{uid}"))));
        }
        assert_eq!(u.0.lock().in_flight, MAX_IN_FLIGHT);
        // The answers change no name, yet the generation moves once they are in,
        // so that whoever keeps names asks again, and the one put off is asked.
        gate(true);
        settle(&u);
        assert!(u.generation_at(t1) > g0, "the put-off lookup would wait for a change");
        let still_to_ask = u.0.lock().entries.values().filter(|e| e.until <= t1).count();
        assert_eq!(still_to_ask, 1, "the one put off is still to ask");
        let _ = u.name_at(MAX_IN_FLIGHT as u32, t1);
        settle(&u);
        assert_eq!(u.0.lock().entries.values().filter(|e| e.until <= t1).count(), 0);
    }

    /// The names the lookup of the next test serves, and how often it was asked.
    static LOOKUP_NAMES: Mutex<Vec<(u32, &str)>> = Mutex::new(Vec::new());
    static LOOKUPS: AtomicU32 = AtomicU32::new(0);

    fn test_lookup(uid: u32) -> Result<Option<String>, String> {
        LOOKUPS.fetch_add(1, Ordering::SeqCst);
        let names = LOOKUP_NAMES.lock().unwrap_or_else(|e| e.into_inner());
        Ok(names.iter().find(|(u, _)| *u == uid).map(|(_, n)| n.to_string()))
    }

    fn serve(names: &[(u32, &'static str)]) {
        *LOOKUP_NAMES.lock().unwrap_or_else(|e| e.into_inner()) = names.to_vec();
    }

    #[test]
    fn lookups_are_cached_per_uid_and_renewed_when_the_file_changes() {
        let f = TempPasswd::new("lookup", "root:x:0:0::/:/bin/sh\n");
        let u = UserTable::from_lookup(test_lookup, Some(f.0.clone()));
        serve(&[(1000, "alice")]);
        let t0 = Instant::now();
        let ask = |uid, at| {
            let _ = u.name_at(uid, at);
            settle(&u);
            u.name_at(uid, at)
        };
        assert_eq!(ask(1000, t0).as_deref(), Some("alice"));
        assert_eq!(ask(2000, t0), None, "a uid without a name");
        let calls = LOOKUPS.load(Ordering::SeqCst);
        assert_eq!(calls, 2);
        for _ in 0..100 {
            assert_eq!(u.name_at(1000, t0).as_deref(), Some("alice"));
            assert_eq!(u.name_at(2000, t0), None);
        }
        assert_eq!(LOOKUPS.load(Ordering::SeqCst), calls, "once per uid");
        // usermod -l: NSS has the new name, the file a new mtime; a second on, the
        // generation moves, the old name shows until the new one is in.
        serve(&[(1000, "bobby")]);
        let g0 = u.generation_at(t0);
        f.set_mtime(f.mtime() + Duration::from_secs(1));
        let t1 = t0 + CHECK_EVERY;
        assert!(u.generation_at(t1) > g0);
        assert_eq!(u.name_at(1000, t1).as_deref(), Some("alice"));
        settle(&u);
        let g1 = u.generation_at(t1);
        assert_eq!(u.name_at(1000, t1).as_deref(), Some("bobby"));
        // A DynamicUser's uid gets a name with no change to the file: seen once
        // "no such user" is over.
        assert_eq!(ask(2000, t1), None);
        serve(&[(1000, "bobby"), (2000, "dyn-svc")]);
        assert_eq!(u.name_at(2000, t1), None);
        assert_eq!(ask(2000, t1 + UNNAMED_TTL + CHECK_EVERY).as_deref(), Some("dyn-svc"));
        assert!(u.generation_at(t1 + UNNAMED_TTL + CHECK_EVERY) > g1);
    }
}
