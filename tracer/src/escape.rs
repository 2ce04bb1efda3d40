//! Text from the traced world, made safe to print on a terminal.
//!
//! tracer runs as root and shows what unprivileged processes choose: comm, argv,
//! exe and file names, cgroup paths, container names and images, user names. A
//! process that names itself `\x1b]52;c;...\x07` would otherwise write to the
//! clipboard of whoever reads `tracer ps`; one with `\n` in its argv would forge
//! lines. Every text view routes such strings through this module (JSON needs
//! nothing: serde escapes control characters there, and keeps the exact string).
//!
//! The rules, one escape per byte so that nothing is lost and the output reads
//! back unambiguously:
//!
//! - `\` becomes `\\`; newline, tab and carriage return become `\n`, `\t`, `\r`;
//! - every other control character, C0 (below 0x20), DEL (0x7f) and C1 (U+0080 to
//!   U+009F, which some terminals obey as CSI, OSC and the like), becomes its
//!   UTF-8 bytes as `\xNN` (`\x1b`, `\x7f`, `\xc2\x9b`);
//! - so do the line and paragraph separators (U+2028, U+2029) and the bidi
//!   embedding, override and isolate controls (U+202A to U+202E, U+2066 to
//!   U+2069), which reorder or break what is shown around them;
//! - bytes that are not valid UTF-8 (where the raw bytes are at hand: comm, argv)
//!   become `\xNN`;
//! - everything else, printable UTF-8 included, is kept as it is.
//!
//! Written by hand: the escapers of the standard library (`escape_debug`,
//! `escape_default`) also escape quotes and use `\u{..}`, which loses the byte
//! view, and know nothing of invalid UTF-8; no crate does this small thing better.

use std::borrow::Cow;

use crate::events::Argv;

/// Whether `c` is shown escaped.
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `\xNN`.
fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c => {
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                push_hex(out, b);
            }
        }
    }
}

/// Appends `s`, escaped; runs of characters that need nothing are copied whole.
pub fn push(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if needs_escape(c) {
            out.push_str(&s[start..i]);
            push_escaped_char(out, c);
            start = i + c.len_utf8();
        }
    }
    out.push_str(&s[start..]);
}

/// Appends raw bytes, escaped: valid UTF-8 as [`push`] does, every byte of an
/// invalid sequence as `\xNN`.
pub fn push_bytes(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        push(out, chunk.valid());
        for &b in chunk.invalid() {
            push_hex(out, b);
        }
    }
}

/// Appends a command line as ps shows it: the arguments joined by spaces, each
/// escaped from its raw bytes.
pub fn push_argv(out: &mut String, argv: &Argv) {
    let raw = argv.raw.strip_suffix(b"\0").unwrap_or(&argv.raw);
    if raw.is_empty() {
        return;
    }
    for (i, arg) in raw.split(|&b| b == 0).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_bytes(out, arg);
    }
}

/// `s` escaped: borrowed, without allocating, when nothing needs escaping.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    push(&mut out, s);
    Cow::Owned(out)
}

/// Raw bytes escaped: borrowed when they are UTF-8 that needs no escaping.
pub fn bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => text(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 16);
            push_bytes(&mut out, b);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        push(&mut out, s);
        out
    }

    fn esc_bytes(b: &[u8]) -> String {
        let mut out = String::new();
        push_bytes(&mut out, b);
        out
    }

    /// No character a terminal would obey: C0, DEL, C1.
    fn inert(s: &str) -> bool {
        s.bytes().all(|b| b >= 0x20 && b != 0x7f) && !s.chars().any(|c| c.is_control())
    }

    #[test]
    fn plain_text_is_unchanged_and_borrowed() {
        for s in ["", "bash", "/usr/bin/python3 -m http.server 8080", "héllo wörld", "日本語 ✓ 🚀", "a/b c=d %s {}"]
        {
            assert_eq!(esc(s), s);
            assert!(matches!(text(s), Cow::Borrowed(_)), "{s:?} allocated");
            assert!(matches!(bytes(s.as_bytes()), Cow::Borrowed(_)), "{s:?} allocated");
        }
    }

    #[test]
    fn newline_tab_and_carriage_return_are_named() {
        assert_eq!(esc("a\nb\tc\rd"), "a\\nb\\tc\\rd");
    }

    #[test]
    fn other_c0_controls_and_del_are_hex() {
        assert_eq!(esc("\0\u{1}\u{7}\u{8}\u{b}\u{c}\u{1f}\u{7f}"), "\\x00\\x01\\x07\\x08\\x0b\\x0c\\x1f\\x7f");
    }

    #[test]
    fn terminal_sequences_are_inert() {
        let cases = [
            ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),                     // CSI: clear screen
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),           // CSI: SGR colour
            ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),               // OSC 0: window title, BEL
            ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),           // OSC 52: clipboard
            ("\x1b]8;;http://x\x1b\\", "\\x1b]8;;http://x\\x1b\\\\"), // OSC 8 ended by ST
            ("\x1bP1$r\x1b\\", "\\x1bP1$r\\x1b\\\\"),                 // DCS
        ];
        for (raw, want) in cases {
            let got = esc(raw);
            assert_eq!(got, want, "{raw:?}");
            assert!(inert(&got), "{got:?}");
        }
    }

    #[test]
    fn c1_controls_are_their_utf8_bytes() {
        // U+009B is CSI and U+009D is OSC on terminals that take 8-bit controls.
        assert_eq!(
            esc("\u{80}a\u{9b}2J\u{9d}0;t\u{9c}\u{9f}"),
            "\\xc2\\x80a\\xc2\\x9b2J\\xc2\\x9d0;t\\xc2\\x9c\\xc2\\x9f"
        );
        // U+00A0 (no-break space) and after are printable.
        assert_eq!(esc("\u{a0}é"), "\u{a0}é");
    }

    #[test]
    fn separators_and_bidi_controls_are_hex() {
        assert_eq!(esc("a\u{2028}b\u{2029}"), "a\\xe2\\x80\\xa8b\\xe2\\x80\\xa9");
        assert_eq!(esc("x\u{202e}gpj.exe"), "x\\xe2\\x80\\xaegpj.exe");
        assert_eq!(esc("\u{2066}\u{2069}"), "\\xe2\\x81\\xa6\\xe2\\x81\\xa9");
    }

    #[test]
    fn backslash_is_doubled_so_the_output_is_unambiguous() {
        assert_eq!(esc("C:\\x1b"), "C:\\\\x1b");
        assert_ne!(esc("\\x1b"), esc("\x1b"));
        assert_eq!(esc("\\"), "\\\\");
    }

    #[test]
    fn invalid_utf8_is_hex_and_valid_parts_are_kept() {
        assert_eq!(esc_bytes(b"ok\xff\xfe"), "ok\\xff\\xfe");
        assert_eq!(esc_bytes(b"\xc3(caf\xc3\xa9"), "\\xc3(café");
        // An 8-bit C1 byte on its own is invalid UTF-8: hex too.
        assert_eq!(esc_bytes(b"\x9b2J"), "\\x9b2J");
        assert_eq!(bytes(b"a\x80\x1b"), "a\\x80\\x1b");
        assert!(inert(&esc_bytes(b"\x1b\x9b\x9d\xc2\x9b\x7f")));
    }

    #[test]
    fn argv_is_joined_by_spaces_each_argument_escaped() {
        let argv = |raw: &'static [u8]| Argv { raw: ::bytes::Bytes::from_static(raw), ..Argv::default() };
        let mut out = String::new();
        push_argv(&mut out, &argv(b"sh\0-c\0printf '\x1b]0;t\x07'\0"));
        assert_eq!(out, "sh -c printf '\\x1b]0;t\\x07'");
        out.clear();
        push_argv(&mut out, &argv(b"a\xff\0b\nc"));
        assert_eq!(out, "a\\xff b\\nc");
        out.clear();
        push_argv(&mut out, &argv(b""));
        assert_eq!(out, "");
        // Same shape as Argv::joined for plain arguments.
        let a = argv(b"/bin/sleep\x00600\x00\x00x\x00");
        out.clear();
        push_argv(&mut out, &a);
        assert_eq!(out, a.joined());
    }

    #[test]
    fn text_allocates_only_when_it_escapes() {
        assert!(matches!(text("a\u{1b}"), Cow::Owned(_)));
        assert_eq!(text("a\u{1b}"), "a\\x1b");
        assert!(matches!(bytes(b"a\xff"), Cow::Owned(_)));
    }
}
