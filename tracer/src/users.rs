//! User names from /etc/passwd (never from /proc), cached.

use std::{collections::HashMap, sync::OnceLock};

/// uid -> user name, read once from /etc/passwd.
fn table() -> &'static HashMap<u32, Box<str>> {
    static TABLE: OnceLock<HashMap<u32, Box<str>>> = OnceLock::new();
    TABLE.get_or_init(|| std::fs::read_to_string("/etc/passwd").map(|s| parse_passwd(&s)).unwrap_or_default())
}

fn parse_passwd(text: &str) -> HashMap<u32, Box<str>> {
    let mut map = HashMap::new();
    for (uid, name) in passwd_entries(text) {
        map.entry(uid).or_insert_with(|| name.into());
    }
    map
}

/// The (uid, name) pairs of a passwd file's text (`name:pw:uid:...` lines), in
/// order; comments, blank and malformed lines left out. The one passwd parser.
pub fn passwd_entries(text: &str) -> impl Iterator<Item = (u32, &str)> {
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

/// The user name of `uid`, or the number when it has none.
pub fn name(uid: u32) -> std::borrow::Cow<'static, str> {
    match table().get(&uid) {
        Some(n) => std::borrow::Cow::Borrowed(n),
        None => std::borrow::Cow::Owned(uid.to_string()),
    }
}

/// The uid of a user name (or a numeric string).
pub fn uid_of(user: &str) -> Option<u32> {
    user.parse().ok().or_else(|| table().iter().find(|(_, n)| &***n == user).map(|(u, _)| *u))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_passwd_lines() {
        let t =
            super::parse_passwd("root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbad\n");
        assert_eq!(t.get(&33).map(|s| &**s), Some("www-data"));
        assert_eq!(t.get(&0).map(|s| &**s), Some("root"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn root_is_named() {
        assert_eq!(super::name(0), "root");
        assert_eq!(super::uid_of("root"), Some(0));
        assert_eq!(super::uid_of("4242"), Some(4242));
    }
}
