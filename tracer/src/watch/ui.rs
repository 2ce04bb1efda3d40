//! Drawing the `tracer watch` screen: two header lines, the column titles, then
//! the visible rows only (however many rows there are).
//!
//! ```text
//! tracer watch  tasks 9  processes 3  threads 6  events/s 12  lost 0
//! (after `tracer watch`: `PAUSED` and `DEGRADED, repairing` when so)
//! 3 of 3 processes  ? help  / filter  q quit
//!   USER         PID    PPID  THR   SPAWN    AGE CONTAINER    COMMAND
//!   root           1       0    1              5s -            init
//! + alice        100       1    4  +0.6/s     1s -             \_ httpd -k start
//! ```

use std::fmt::Write as _;

use ratatui::{
    Frame,
    buffer::Buffer,
    layout::{Position, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph},
};

use super::filter::NO_CONTAINER;
use super::view::{NEW_FOR_NS, ProcRow, Row, SEC, SPAWN_WINDOW_NS, ThreadRow, View};
use crate::engine::ProcState;
use crate::escape;
use crate::events::signal_name;

/// Lines above the rows.
pub const TOP: u16 = 3;

/// The column titles (after the one-character marker and a space), laid out as
/// [`row_text`] lays out a process.
pub fn columns() -> String {
    format!(
        "{:<8} {:>7} {:>7} {:>4} {:>7} {:>6} {:<12} {}",
        "USER", "PID", "PPID", "THR", "SPAWN", "AGE", "CONTAINER", "COMMAND"
    )
}

const HELP: &[&str] = &[
    "tracer watch: the live process tree, from kernel events",
    "",
    "Up/Down j/k  move          PgUp/PgDn  page     Home/End  first/last",
    "Enter/Space  show or hide the threads of the selected process",
    "/            filter: text in comm or command line, pid:N (subtree),",
    "             user:NAME, container:ID (short id, id prefix, name, or -",
    "             for none); Enter keeps it, Esc clears it",
    "Esc          clear the filter",
    "c            group by container (runtime, short id, name)",
    "p            pause the screen (events are still applied)",
    "?            this help         q, Ctrl-C  quit",
    "",
    "+ (green)  new in the last 2 s     x (red)  exited, shown for 2 s",
    "THR  threads now    SPAWN  threads created per second (last 5 s)",
    "tasks = processes + threads beyond each process's main thread",
];

/// Age as `42s`, `5m03`, `3h07`, `12d03`.
pub fn age(ns: u64) -> String {
    let s = ns / SEC;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}", s / 60, s % 60),
        3600..172_800 => format!("{}h{:02}", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}", s / 86_400, s % 86_400 / 3600),
    }
}

/// Threads created per second over the spawn window, `+0.8/s` or `+12/s`; empty
/// when none.
pub fn spawn_rate(count: u32) -> String {
    if count == 0 {
        return String::new();
    }
    let rate = f64::from(count) * SEC as f64 / SPAWN_WINDOW_NS as f64;
    if rate >= 9.95 { format!("+{rate:.0}/s") } else { format!("+{rate:.1}/s") }
}

/// USER as ps shows it: the name (escaped, then cut to 8 with a `+`), else the uid.
fn user(p: &ProcRow) -> String {
    let u = match &p.user {
        Some(u) => escape::text(u).into_owned(),
        None => p.uid.to_string(),
    };
    if u.chars().count() > 8 { format!("{}+", u.chars().take(7).collect::<String>()) } else { u }
}

/// How an exited process ended: `exit 3`, `SIGKILL`, `SIGSEGV core`, `gone`.
pub fn exit_label(p: &ProcRow) -> String {
    let ProcState::Exited { status, .. } = p.state else { return String::new() };
    match status {
        Some(_) if p.exit_unknown => "gone".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) if s.core_dumped() => format!("{} core", signal_name(sig)),
            (None, Some(sig)) => signal_name(sig).to_string(),
            (None, None) => format!("status {:#x}", s.raw),
        },
        None => "gone".to_string(),
    }
}

/// The COMMAND cell of a process: the tree prefix (`\_ ` as ps f draws it), the exit
/// label of an exited one, then argv (or `[comm]`), escaped (see [`escape`]).
pub fn command(p: &ProcRow) -> String {
    let mut s = String::new();
    if p.depth > 0 {
        s.push_str(&"    ".repeat(p.depth - 1));
        s.push_str(" \\_ ");
    }
    if !p.state.eq(&ProcState::Alive) {
        let _ = write!(s, "<{}> ", exit_label(p));
    }
    if p.kthread || p.argv.is_empty() {
        s.push('[');
        escape::push_bytes(&mut s, p.comm.as_bytes());
        s.push(']');
    } else {
        escape::push_argv(&mut s, &p.argv);
    }
    s
}

/// CONTAINER: the container's name, else its short id (cut to 12 with a `+`); `-`
/// for none.
pub fn container(p: &ProcRow) -> String {
    match &p.container {
        None => NO_CONTAINER.to_string(),
        Some(k) => {
            let n = escape::text(k.short_name());
            if n.chars().count() > 12 { format!("{}+", n.chars().take(11).collect::<String>()) } else { n.into_owned() }
        }
    }
}

/// The text of a row (without its marker).
pub fn row_text(row: &Row, now: u64) -> String {
    match row {
        Row::Group { container, processes, .. } => {
            let n = if *processes == 1 { "process" } else { "processes" };
            match container {
                Some(k) => format!("{}: {processes} {n}", k.label()),
                None => format!("no container: {processes} {n}"),
            }
        }
        Row::Proc(p) => format!(
            "{:<8} {:>7} {:>7} {:>4} {:>7} {:>6} {:<12} {}",
            user(p),
            p.id.pid,
            p.ppid,
            p.nlwp,
            spawn_rate(p.spawns),
            age(now.saturating_sub(p.id.start_ns)),
            container(p),
            command(p)
        ),
        Row::Thread(t) => thread_text(t, now),
    }
}

fn thread_text(t: &ThreadRow, now: u64) -> String {
    format!(
        "{:<8} {:>7} {:>7} {:>4} {:>7} {:>6} {:<12} {}  · {}",
        "",
        t.tid,
        t.proc.pid,
        "",
        "",
        age(now.saturating_sub(t.start_ns)),
        "",
        "    ".repeat(t.depth),
        escape::bytes(t.comm.as_bytes())
    )
}

/// How a row looks: its marker (`+` new, `x` exited) and style.
fn row_look(view: &View, row: &Row) -> (char, Style) {
    let color = !view.cfg.no_color;
    let now = view.now;
    let new = Style::default().fg(if color { Color::Green } else { Color::Reset });
    match row {
        Row::Group { .. } => {
            let s = Style::default().add_modifier(Modifier::BOLD);
            (' ', if color { s.fg(Color::Cyan) } else { s })
        }
        Row::Proc(p) if p.state != ProcState::Alive => {
            let s = Style::default().add_modifier(Modifier::DIM);
            ('x', if color { s.fg(Color::Red) } else { s })
        }
        Row::Proc(p) if now.saturating_sub(p.id.start_ns) < NEW_FOR_NS => {
            ('+', if color { new } else { Style::default() })
        }
        Row::Thread(t) if now.saturating_sub(t.start_ns) < NEW_FOR_NS => {
            ('+', if color { new } else { Style::default() })
        }
        _ => (' ', Style::default()),
    }
}

impl View {
    /// Draws the whole screen.
    pub fn draw(&mut self, f: &mut Frame) {
        let area = f.area();
        self.page = usize::from(area.height.saturating_sub(TOP)).max(1);
        self.clamp();
        let buf = f.buffer_mut();
        self.draw_header(area, buf);
        let cursor = self.draw_status(area, buf);
        self.draw_rows(area, buf);
        if self.help {
            self.draw_help(area, f);
        }
        if let Some(c) = cursor {
            f.set_cursor_position(c);
        }
    }

    /// `tracer watch  [PAUSED  ][DEGRADED, repairing  ]tasks ...`: the states first,
    /// so that a narrow screen shows them.
    fn draw_header(&self, area: Rect, buf: &mut Buffer) {
        if area.height == 0 {
            return;
        }
        let h = &self.header;
        let c = &h.counters;
        let color = !self.cfg.no_color;
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let flag = Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        let mut spans = vec![Span::styled("tracer watch  ", bold)];
        if self.paused {
            spans.push(Span::styled("PAUSED", if color { flag.fg(Color::Yellow) } else { flag }));
            spans.push(Span::raw("  "));
        }
        if c.degraded {
            spans.push(Span::styled("DEGRADED, repairing", if color { flag.fg(Color::Red) } else { flag }));
            spans.push(Span::raw("  "));
        }
        let text = format!(
            "tasks {}  processes {}  threads {}  events/s {}  lost {}",
            c.tasks,
            c.processes,
            c.tasks.saturating_sub(c.processes),
            h.events_per_s,
            c.lost
        );
        spans.push(Span::styled(text, bold));
        buf.set_line(area.x, area.y, &Line::from(spans), area.width);
    }

    /// The status line, or the filter prompt (then returns where the cursor goes).
    fn draw_status(&self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        if area.height < 2 {
            return None;
        }
        let y = area.y + 1;
        if let Some(p) = &self.prompt {
            let text = format!("/{p}");
            let (x, _) = buf.set_stringn(area.x, y, &text, usize::from(area.width), Style::default());
            let hint = "   (Enter: keep, Esc: clear)";
            let rest = usize::from((area.x + area.width).saturating_sub(x));
            buf.set_stringn(x, y, hint, rest, Style::default().add_modifier(Modifier::DIM));
            return Some(Position { x: x.min(area.x + area.width.saturating_sub(1)), y });
        }
        let h = &self.header;
        let mut text = format!("{} of {} processes", h.shown, h.total);
        if !self.filter_text.is_empty() {
            let _ = write!(text, "  filter: {}", self.filter_text);
        }
        if self.grouped {
            text.push_str("  grouped by container");
        }
        let end = area.x + area.width;
        let (mut x, _) = buf.set_stringn(area.x, y, &text, usize::from(area.width), Style::default());
        // The latest container start or stop, while it is news, before the hints.
        if let Some((news, until)) = &self.news
            && self.now < *until
        {
            let style = if self.cfg.no_color {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            };
            let rest = usize::from(end.saturating_sub(x));
            (x, _) = buf.set_stringn(x, y, format!("  {news}"), rest, style);
        }
        let mut hints = String::new();
        if let Some(n) = &self.cfg.source_note {
            let _ = write!(hints, "  {n}");
        }
        hints.push_str("  ? help  / filter  q quit");
        buf.set_stringn(x, y, &hints, usize::from(end.saturating_sub(x)), Style::default());
        None
    }

    fn draw_rows(&self, area: Rect, buf: &mut Buffer) {
        if area.height < TOP {
            return;
        }
        let w = usize::from(area.width);
        let titles = format!("  {}", columns());
        let title_style = Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        buf.set_stringn(area.x, area.y + 2, &titles, w, title_style);
        let visible = self.rows.iter().enumerate().skip(self.offset).take(self.page);
        for (line, (i, row)) in visible.enumerate() {
            let y = area.y + TOP + line as u16;
            if y >= area.y + area.height {
                break;
            }
            let (marker, mut style) = row_look(self, row);
            if i == self.sel {
                style = style.add_modifier(Modifier::REVERSED);
                buf.set_style(Rect { x: area.x, y, width: area.width, height: 1 }, style);
            }
            let text = format!("{marker} {}", row_text(row, self.now));
            buf.set_stringn(area.x, y, &text, w, style);
        }
        if self.rows.is_empty() && area.height > TOP {
            let msg = if self.filter_text.is_empty() { "(no processes)" } else { "(no process matches the filter)" };
            buf.set_stringn(area.x + 2, area.y + TOP, msg, w.saturating_sub(2), Style::default());
        }
    }

    fn draw_help(&self, area: Rect, f: &mut Frame) {
        let w = (HELP.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 4).min(area.width);
        let h = (HELP.len() as u16 + 2).min(area.height);
        let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
        f.render_widget(Clear, r);
        let text: Vec<Line> = HELP.iter().map(|l| Line::raw(*l)).collect();
        f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" help ")), r);
    }
}
