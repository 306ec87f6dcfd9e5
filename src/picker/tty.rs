//! The terminal picker: a prompt and the best matches, drawn on stderr's alternate screen while
//! keys are read from stdin in raw mode (through [`TerminalGuard`], restored on drop).
//!
//! Our own small picker rather than skim: skim installs mimalloc as the global allocator (which
//! would change every RSS figure we measure), panics inside a current-thread runtime, and costs a
//! large dependency tree for one screen. Keys: text edits the query, Backspace, Ctrl-U clears,
//! Up/Down or Ctrl-P/Ctrl-N move, Enter chooses, Esc, Ctrl-C or Ctrl-G cancel.

use std::io::{self, Write as _};
use std::os::fd::AsRawFd as _;

use crate::picker::matcher::Matcher;
use crate::picker::rows::{Picker, Row};
use crate::term::{TerminalGuard, window_size};

/// The picker on the controlling terminal (stdin for keys, stderr for drawing).
#[derive(Debug, Default)]
pub struct TtyPicker;

/// A key the picker understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Char(char),
    Backspace,
    Clear,
    Up,
    Down,
    Enter,
    Cancel,
    Other,
}

impl Picker for TtyPicker {
    fn pick(&mut self, rows: &[Row], query: &str) -> io::Result<Option<usize>> {
        let _guard = TerminalGuard::enter()?;
        let mut screen = io::stderr().lock();
        screen.write_all(b"\x1b[?1049h")?;
        let result = run(rows, query, &mut screen);
        screen.write_all(b"\x1b[?1049l")?;
        screen.flush()?;
        result
    }
}

fn run(rows: &[Row], query: &str, screen: &mut impl io::Write) -> io::Result<Option<usize>> {
    let mut query = query.to_owned();
    let mut selected = 0usize;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let widths = column_widths(rows);
    let mut stdin = io::stdin().lock();
    loop {
        let ranked = Matcher::new(&query).rank(&texts);
        selected = selected.min(ranked.len().saturating_sub(1));
        // `window_size` gives (cols, rows).
        let (width, height) = window_size().map_or((100, 24), |(c, r)| (c as usize, r as usize));
        let frame = draw(rows, &ranked, &widths, &query, selected, height, width);
        screen.write_all(frame.as_bytes())?;
        screen.flush()?;
        match read_key(&mut stdin)? {
            Key::Char(c) => {
                query.push(c);
                selected = 0;
            }
            Key::Backspace => {
                query.pop();
                selected = 0;
            }
            Key::Clear => {
                query.clear();
                selected = 0;
            }
            Key::Up => selected = selected.saturating_sub(1),
            Key::Down => selected = (selected + 1).min(ranked.len().saturating_sub(1)),
            // Offline rows are not selectable for a session.
            Key::Enter => {
                if let Some(&i) = ranked.get(selected)
                    && rows[i].selectable
                {
                    return Ok(Some(i));
                }
            }
            Key::Cancel => return Ok(None),
            Key::Other => {}
        }
    }
}

/// One frame: the prompt, a count, then the best matches with the selected one reversed, prod
/// rows red, offline rows dim.
fn draw(
    rows: &[Row],
    ranked: &[usize],
    widths: &[usize],
    query: &str,
    selected: usize,
    height: usize,
    width: usize,
) -> String {
    let mut out = String::from("\x1b[H\x1b[2J");
    out.push_str(&format!("> {query}\r\n"));
    out.push_str(&format!(
        "\x1b[2m  {}/{} (enter: open, esc: cancel; offline rows cannot be opened)\x1b[0m\r\n",
        ranked.len(),
        rows.len()
    ));
    let visible = height.saturating_sub(3).max(1);
    let top = selected.saturating_sub(visible - 1);
    for (position, &i) in ranked.iter().enumerate().skip(top).take(visible) {
        let row = &rows[i];
        let mut line = String::new();
        for (column, w) in row.columns.iter().zip(widths) {
            line.push_str(&format!("{column:w$}  "));
        }
        let line: String = line
            .trim_end()
            .chars()
            .take(width.saturating_sub(2))
            .collect();
        let mut style = String::new();
        if position == selected {
            style.push_str("\x1b[7m");
        }
        if row.prod {
            style.push_str("\x1b[31m");
        }
        if !row.selectable {
            style.push_str("\x1b[2m");
        }
        let marker = if row.selectable { ' ' } else { '!' };
        out.push_str(&format!("{style}{marker} {line}\x1b[0m\r\n"));
    }
    // Put the cursor after the query.
    out.push_str(&format!("\x1b[1;{}H", query.chars().count() + 3));
    out
}

fn column_widths(rows: &[Row]) -> Vec<usize> {
    let mut widths = Vec::new();
    for row in rows {
        for (i, column) in row.columns.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(column.chars().count());
        }
    }
    widths
}

fn read_key(input: &mut impl io::Read) -> io::Result<Key> {
    let mut byte = [0u8; 1];
    if input.read(&mut byte)? == 0 {
        return Ok(Key::Cancel);
    }
    Ok(match byte[0] {
        b'\r' | b'\n' => Key::Enter,
        0x7f | 0x08 => Key::Backspace,
        0x15 => Key::Clear,
        0x03 | 0x07 | 0x04 => Key::Cancel,
        0x10 => Key::Up,
        0x0e => Key::Down,
        0x1b => {
            if !ready(io::stdin().as_raw_fd(), ESCAPE_WAIT_MS) {
                return Ok(Key::Cancel);
            }
            let mut seq = [0u8; 2];
            input.read_exact(&mut seq)?;
            match seq {
                [b'[' | b'O', b'A'] => Key::Up,
                [b'[' | b'O', b'B'] => Key::Down,
                _ => Key::Other,
            }
        }
        b if (0x20..0x7f).contains(&b) => Key::Char(b as char),
        first if first >= 0xc0 => {
            // A UTF-8 sequence: read its continuation bytes.
            let len = if first >= 0xf0 {
                4
            } else if first >= 0xe0 {
                3
            } else {
                2
            };
            let mut buf = [first, 0, 0, 0];
            input.read_exact(&mut buf[1..len])?;
            std::str::from_utf8(&buf[..len])
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(Key::Other, Key::Char)
        }
        _ => Key::Other,
    })
}

/// Whether `fd` has input within `ms` milliseconds (to tell a lone Esc from an arrow key).
fn ready(fd: i32, ms: i32) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, ms) > 0 }
}

const ESCAPE_WAIT_MS: i32 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, selectable: bool, prod: bool) -> Row {
        Row {
            columns: vec!["acct".into(), name.into()],
            text: format!("acct {name}"),
            selectable,
            prod,
        }
    }

    #[test]
    fn reads_keys() {
        let key = |bytes: &[u8]| read_key(&mut &bytes[..]).unwrap();
        assert_eq!(key(b"a"), Key::Char('a'));
        assert_eq!(key(b"\r"), Key::Enter);
        assert_eq!(key(b"\x7f"), Key::Backspace);
        assert_eq!(key(b"\x03"), Key::Cancel);
        assert_eq!(key(b"\x10"), Key::Up);
        assert_eq!(key("é".as_bytes()), Key::Char('é'));
        assert_eq!(key(b""), Key::Cancel);
    }

    #[test]
    fn draws_matches_with_selection_prod_and_offline_styles() {
        let rows = [
            row("web-1", true, true),
            row("web-2", false, false),
            row("db", true, false),
        ];
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let ranked = Matcher::new("web").rank(&texts);
        let frame = draw(&rows, &ranked, &column_widths(&rows), "web", 0, 24, 80);
        assert!(frame.contains("> web\r\n"));
        assert!(frame.contains("2/3"));
        assert!(
            frame.contains("\x1b[7m\x1b[31m  acct  web-1\x1b[0m"),
            "{frame:?}"
        );
        assert!(frame.contains("\x1b[2m! acct  web-2\x1b[0m"), "{frame:?}");
        assert!(!frame.contains(" db"));
    }
}
