//! The audit trail end to end: session commands against the emulator append JSON lines (kind,
//! identity, account, region, target, session ids, reason, duration, exit status; 0600, no
//! secret) to POSTERN_HISTORY_FILE, and `postern history` shows them.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::process::{base_command, history_records, run, text};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn sessions_are_recorded_and_shown() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("state").join("history.jsonl");
    let with_history = |args: &[&str]| {
        let mut cmd = emu.command(args);
        cmd.env("POSTERN_HISTORY_FILE", &history);
        cmd
    };
    let out = run(
        with_history(&["exec", &emu.instance, "--reason", "INC-7", "--", "exit 3"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = run(with_history(&["exec", &emu.instance, "--", "true"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A session that never starts is recorded too, with its exit code.
    let out = run(
        with_history(&["exec", "i-00000000000000000", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(250), "{}", text(&out.stderr));

    let mode = std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&history).unwrap();
    assert!(
        !stored.contains(emu.credentials.secret_access_key()),
        "{stored}"
    );
    assert!(!stored.to_lowercase().contains("token"), "{stored}");

    let records = history_records(&history, &["--limit", "3"], LIMIT);
    assert_eq!(records.len(), 3, "{records:?}");
    let first = &records[0];
    assert_eq!(first["kind"], "exec");
    assert_eq!(first["target"], emu.instance.as_str());
    assert_eq!(first["reason"], "INC-7");
    assert_eq!(first["exit_status"], 3);
    assert_eq!(first["region"], "us-east-1");
    assert_eq!(first["document"], "AWS-StartInteractiveCommand");
    assert!(
        first["identity"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(":user/postern-emulator")),
        "{first}"
    );
    assert!(
        first["account"].as_str().is_some_and(|a| a.len() == 12),
        "{first}"
    );
    assert_eq!(
        first["session_ids"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    assert!(first["duration_ms"].as_u64().is_some(), "{first}");
    assert_eq!(records[1]["exit_status"], 0);
    assert_ne!(records[0]["session_ids"], records[1]["session_ids"]);
    assert_eq!(records[2]["exit_status"], 250);
    assert_eq!(records[2]["session_ids"], serde_json::json!([]));

    let mut table = base_command();
    table
        .env("POSTERN_HISTORY_FILE", &history)
        .args(["history", "--limit", "2"]);
    let out = run(table, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(lines[0].starts_with("TIME "), "{shown}");
    assert!(
        lines[1].contains(" exec ") && lines[1].contains(&emu.instance),
        "{shown}"
    );
    assert!(lines[2].contains(" 250 "), "{shown}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_empty_history_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut show = base_command();
    show.env("POSTERN_STATE_DIR", dir.path()).arg("history");
    let out = run(show, LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "postern: no sessions recorded yet in {}\n",
            dir.path().join("history.jsonl").display()
        )
    );
}
