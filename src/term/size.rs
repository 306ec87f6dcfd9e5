//! Terminal facts: the window size and whether a descriptor is a terminal.

use std::os::fd::RawFd;

/// The window size of the first of stdin, stdout, stderr that is a terminal, as
/// `(cols, rows)`; `None` when none is (or the size reads as zero).
pub fn window_size() -> Option<(u16, u16)> {
    [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO]
        .into_iter()
        .find_map(size_of)
}

/// Whether the user can be asked (a picker, a confirmation): stdin and stderr are terminals.
pub fn interactive() -> bool {
    use std::os::fd::AsRawFd as _;
    is_terminal(std::io::stdin().as_raw_fd()) && is_terminal(std::io::stderr().as_raw_fd())
}

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty accepts any integer and only inspects it.
    unsafe { libc::isatty(fd) == 1 }
}

fn size_of(fd: RawFd) -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}
