//! Strings from AWS or an instance never drive the terminal from an error: the real binary
//! against an emulator whose instances are named with escape sequences; stderr shows them
//! escaped, with no ESC or BEL byte.

use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(60);

/// Two managed nodes (their names come from SSM's JSON, which can carry an ESC) with the same
/// name: a terminal title change, a BEL, a colour and a screen clear.
const EVIL_TWINS: &str = r#"
[[instances]]
id = "mi-0e0e0e0e0e0e0e0e0"
name = "evil\u001b]0;pwned\u0007\u001b[31m\u001b[2J-1"
private_ip = "10.10.9.9"
platform = "Linux"

[[instances]]
id = "mi-0f0f0f0f0f0f0f0f0"
name = "evil\u001b]0;pwned\u0007\u001b[31m\u001b[2J-1"
private_ip = "10.10.9.10"
platform = "Linux"
"#;
const EVIL_NAME: &str = "evil\x1b]0;pwned\x07\x1b[31m\x1b[2J-1";
const EVIL_SHOWN: &str = r"evil\x1b]0;pwned\x07\x1b[31m\x1b[2J-1";

#[test]
fn an_ambiguous_target_lists_hostile_names_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, EVIL_TWINS).expect("write the fleet");
    let emu = EmulatorProcess::start(&["--fleet", fleet.to_str().expect("UTF-8 path")]);
    let mut cmd = emu.command(&["exec", EVIL_NAME, "--", "true"]);
    cmd.env("POSTERN_CACHE_DIR", dir.path().join("cache"));
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(244), "{stderr}");
    // The target as typed and both candidates' names, escaped.
    assert!(
        stderr.starts_with(&format!("error: `{EVIL_SHOWN}` matches 2 instances:\n")),
        "{stderr}"
    );
    assert_eq!(stderr.matches(EVIL_SHOWN).count(), 3, "{stderr}");
    assert!(stderr.contains("mi-0e0e0e0e0e0e0e0e0"), "{stderr}");
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "a control byte reached stderr: {stderr:?}"
    );
}
