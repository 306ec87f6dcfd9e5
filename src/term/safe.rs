//! Making strings that came from AWS or an instance safe to show: tags, names, computer names,
//! platform strings, CustomerMessage, close reasons, agent versions. Every control character
//! (C0, DEL, C1) and every bidirectional override is shown escaped, so only postern's own
//! colours and cursor movements ever reach the terminal.
//!
//! It must not be applied to session data: the shell's output goes to the terminal untouched.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` on one line with every control character escaped: `\t`, `\n`, `\r`, `\x1b`, `\u{9b}`
/// (C1), `\u{202e}` (bidirectional controls). Borrowed when nothing needed escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Like [`escape`], for several lines of text: newlines and tabs are kept, everything else is
/// escaped.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

fn escape_with(text: &str, keep_layout: bool) -> Cow<'_, str> {
    // Most text (names, ids, addresses) is printable ASCII: one pass over its bytes, which
    // the picker makes for every field of tens of thousands of rows before it draws.
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return Cow::Borrowed(text);
    }
    let unsafe_char = |c: char| needs_escape(c) && !(keep_layout && matches!(c, '\n' | '\t'));
    let Some(first) = text.find(unsafe_char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            // Writing to a String cannot fail.
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// C0 controls, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates
/// (which reorder what follows them on screen).
fn needs_escape(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("web-1 é ✓"), Cow::Borrowed("web-1 é ✓")));
    }

    #[test]
    fn escapes_c0_del_c1_and_bidi_controls() {
        assert_eq!(
            escape("a\x1b[31mred\x07\x7f\u{9b}2J\u{202e}z"),
            "a\\x1b[31mred\\x07\\x7f\\u{9b}2J\\u{202e}z"
        );
        assert_eq!(escape("a\tb\r\nc\0"), "a\\tb\\r\\nc\\x00");
    }

    #[test]
    fn escape_text_keeps_newlines_and_tabs_only() {
        assert_eq!(escape_text("one\n\ttwo\r\x1b"), "one\n\ttwo\\r\\x1b");
    }

    #[test]
    fn nothing_escaped_contains_a_control_character() {
        let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        assert!(!escape(&all).chars().any(needs_escape));
    }
}
