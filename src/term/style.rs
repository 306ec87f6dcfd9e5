//! postern's own colours, through crossterm: the only escape sequences postern writes around
//! text (strings from AWS or an instance are escaped first, see [`crate::term::escape`]).

use std::io::IsTerminal;

use crossterm::style::{Attribute, Color, Stylize as _};

/// The colours postern uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Production: red and bold.
    Prod,
    /// Staging: yellow.
    Staging,
    /// Other environments: green.
    Other,
    /// Offline or secondary text: dim.
    Dim,
}

/// `text` in `colour` (SGR sequences from crossterm, reset at the end).
pub fn paint(text: &str, colour: Colour) -> String {
    let styled = match colour {
        Colour::Prod => text.with(Color::DarkRed).attribute(Attribute::Bold),
        Colour::Staging => text.with(Color::DarkYellow),
        Colour::Other => text.with(Color::DarkGreen),
        Colour::Dim => text.attribute(Attribute::Dim),
    };
    styled.to_string()
}

/// `text` in the `n`th colour of a cycle that tells neighbours apart (cyan, magenta, blue,
/// green, yellow and their bright variants; never red, which means production): one colour
/// per instance when several print at once.
pub fn paint_nth(text: &str, n: usize) -> String {
    text.with(CYCLE[n % CYCLE.len()]).to_string()
}

/// The colours of [`paint_nth`].
const CYCLE: [Color; 10] = [
    Color::DarkCyan,
    Color::DarkMagenta,
    Color::DarkBlue,
    Color::DarkGreen,
    Color::DarkYellow,
    Color::Cyan,
    Color::Magenta,
    Color::Blue,
    Color::Green,
    Color::Yellow,
];

/// Whether to colour what goes to `stream`: a terminal, and `NO_COLOR` unset.
pub fn colour_on(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_with_sgr_and_resets() {
        let red = paint("p", Colour::Prod);
        assert!(red.starts_with('\x1b') && red.contains('p') && red.ends_with("\x1b[0m"));
        assert_ne!(paint("s", Colour::Staging), paint("s", Colour::Other));
    }

    #[test]
    fn keeps_the_banner_colours_red_bold_yellow_green() {
        // The SGR parameters the guardrails banner always had: 1 bold, 31 red, 33 yellow,
        // 32 green (crossterm writes the dark ANSI colours as palette indices 1, 3, 2).
        let prod = paint("p", Colour::Prod);
        assert!(prod.contains("[1m") && prod.contains("5;1m"), "{prod:?}");
        assert!(paint("s", Colour::Staging).contains("5;3m"));
        assert!(paint("o", Colour::Other).contains("5;2m"));
    }
}
