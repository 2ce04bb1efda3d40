//! Key presses from the bytes a terminal sends in raw mode.
//!
//! `tracer watch` reads the terminal itself instead of through crossterm's event
//! reader: that reader spins on a terminal that hung up, can lose a key that
//! arrives with a resize, and `tracer watch` needs no more than the keys below.
//! Resizes come from SIGWINCH.
//!
//! Understood: printable characters (UTF-8), Enter, Backspace, Tab, Esc, Ctrl+letter,
//! the arrows, Home, End, PgUp, PgDn, Insert, Delete (CSI and SS3 forms, modifiers
//! ignored). Other escape sequences are dropped whole. An Esc that ends a read is
//! the Esc key (a terminal writes a sequence in one go).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Longest escape sequence kept while waiting for its end.
const MAX_PENDING: usize = 32;

/// Decodes key presses; an incomplete sequence at the end of a read waits for the next.
#[derive(Debug, Default)]
pub struct KeyParser {
    pending: Vec<u8>,
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// The key of `ESC [ params final`.
fn csi(params: &[u8], fin: u8) -> Option<KeyCode> {
    Some(match fin {
        b'Z' => KeyCode::BackTab,
        b'~' => {
            let first = params.split(|&b| b == b';').next().unwrap_or(&[]);
            match first {
                b"1" | b"7" => KeyCode::Home,
                b"2" => KeyCode::Insert,
                b"3" => KeyCode::Delete,
                b"4" | b"8" => KeyCode::End,
                b"5" => KeyCode::PageUp,
                b"6" => KeyCode::PageDown,
                _ => return None,
            }
        }
        // Arrows, Home and End: as after `ESC O`.
        c => return ss3(c),
    })
}

/// The key of `ESC O c`.
fn ss3(c: u8) -> Option<KeyCode> {
    Some(match c {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        _ => return None,
    })
}

impl KeyParser {
    /// The keys in `bytes` (after what an earlier read left incomplete).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<KeyEvent> {
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match b {
                0x1b => match buf.get(i + 1) {
                    None => {
                        out.push(key(KeyCode::Esc));
                        i += 1;
                    }
                    Some(b'[') => {
                        // Parameter and intermediate bytes, then the final byte.
                        let mut j = i + 2;
                        while j < buf.len() && (0x20..=0x3f).contains(&buf[j]) {
                            j += 1;
                        }
                        if j >= buf.len() {
                            if buf.len() - i <= MAX_PENDING {
                                self.pending = buf[i..].to_vec();
                            }
                            break;
                        }
                        out.extend(csi(&buf[i + 2..j], buf[j]).map(key));
                        i = j + 1;
                    }
                    Some(b'O') => match buf.get(i + 2) {
                        None => {
                            self.pending = buf[i..].to_vec();
                            break;
                        }
                        Some(&c) => {
                            out.extend(ss3(c).map(key));
                            i += 3;
                        }
                    },
                    // Esc, then the next byte on its own (Alt+key reads as Esc, key).
                    Some(_) => {
                        out.push(key(KeyCode::Esc));
                        i += 1;
                    }
                },
                b'\r' | b'\n' => {
                    out.push(key(KeyCode::Enter));
                    i += 1;
                }
                0x7f | 0x08 => {
                    out.push(key(KeyCode::Backspace));
                    i += 1;
                }
                b'\t' => {
                    out.push(key(KeyCode::Tab));
                    i += 1;
                }
                0x01..=0x1a => {
                    out.push(KeyEvent::new(KeyCode::Char(char::from(b - 1 + b'a')), KeyModifiers::CONTROL));
                    i += 1;
                }
                0x00 | 0x1c..=0x1f => i += 1,
                _ => {
                    let len = match b {
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf7 => 4,
                        _ => 1,
                    };
                    if i + len > buf.len() {
                        self.pending = buf[i..].to_vec();
                        break;
                    }
                    if let Ok(s) = std::str::from_utf8(&buf[i..i + len])
                        && let Some(c) = s.chars().next()
                    {
                        out.push(key(KeyCode::Char(c)));
                    }
                    i += len;
                }
            }
        }
        out
    }
}
