//! `postern doctor`'s output as the tests read it.

/// The line of check `name` (`PASS  name: …`, `FAIL  name: …`); panics, showing the output,
/// when there is none.
pub(crate) fn check_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}:")))
        })
        .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"))
}
