//! Terminal facts: the window size and whether the user can be asked.

use std::io::{self, IsTerminal as _};

/// The window size as `(cols, rows)` when one of stdin, stdout, stderr is a terminal (crossterm
/// asks the controlling terminal); `None` otherwise, or when the size reads as zero.
pub fn window_size() -> Option<(u16, u16)> {
    // Off a terminal crossterm would fall back to running `tput`: never on the session path.
    let any = io::stdin().is_terminal() || io::stdout().is_terminal() || io::stderr().is_terminal();
    if !any {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .filter(|&(cols, rows)| cols > 0 && rows > 0)
}

/// Whether the user can be asked (a picker, a confirmation): stdin and stderr are terminals.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}
