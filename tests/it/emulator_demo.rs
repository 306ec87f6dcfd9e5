//! `postern demo` through the real binary, in a hostile environment (the user's AWS settings
//! point nowhere): the product's own listing, a shell on a member account's instance reached
//! with the account's role, the product's guardrail on a production instance, and no file left
//! behind, also when the demo is stopped with SIGTERM.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_emulator::Fleet;

use crate::support::process::{
    exit_within, lines, postern, process_state, run_with_input, signal, text, wait_for_line,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `postern demo ARGS` with `stdin` written to it, HOME and TMPDIR in `root`, and the
/// user's AWS variables set to values that must not be used.
fn demo(root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let output = run_with_input(demo_command(root, args), stdin, LIMIT);
    assert_left_nothing(root);
    output
}

/// `postern demo ARGS` with HOME and TMPDIR in `root`, and the user's AWS variables set to
/// values that must not be used.
fn demo_command(root: &Path, args: &[&str]) -> Command {
    let home = root.join("home");
    let tmp = root.join("tmp");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        "[default]\nregion = nowhere-1\ncredential_process = false\n",
    )
    .unwrap();
    let mut command = Command::new(postern());
    command
        .arg("demo")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("AWS_PROFILE", "does-not-exist")
        .env("AWS_ACCESS_KEY_ID", "AKIDUSERSREALKEY")
        .env("AWS_SECRET_ACCESS_KEY", "users-real-secret")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("POSTERN_CONFIG", home.join("users-postern.toml"));
    command
}

/// The demo left no temporary file and wrote nothing into HOME.
fn assert_left_nothing(root: &Path) {
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "temporary files left behind"
    );
    let home_files: Vec<_> = std::fs::read_dir(root.join("home"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(home_files, [".aws"], "the demo wrote into HOME");
}

#[test]
fn demo_list_shows_every_online_instance_of_every_account() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(root.path(), &["--list"], b"");
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let fleet = Fleet::sample();
    for instance in fleet.instances.iter().filter(|i| i.is_connected()) {
        assert!(
            stdout.contains(&instance.id),
            "{} ({}) missing from:\n{stdout}\nstderr: {stderr}",
            instance.name,
            instance.id
        );
    }
    for account in &fleet.accounts {
        assert!(stdout.contains(&account.alias), "{stdout}");
    }
    let banner: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("a local demo"))
        .collect();
    assert_eq!(banner.len(), 1, "stderr: {stderr}");
    assert!(banner[0].contains("every session runs on this machine"));
    // No log lines at the default verbosity (the SDK's INFO lines once leaked through).
    assert!(
        !stderr.contains(" INFO ") && !stderr.contains(" DEBUG "),
        "stderr: {stderr}"
    );
}

#[test]
fn demo_opens_a_shell_on_a_member_account_instance() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(
        root.path(),
        &["--select", "orders-api-dev-1"],
        b"echo demo-$((6*7))\nexit\n",
    );
    // The command ran on this machine, through a session only the dev account's role could
    // start (the demo's base keys act in the management account).
    assert_the_command_ran(&output);
}

#[test]
fn demo_keeps_the_production_guardrail() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(
        root.path(),
        &["--select", "orders-api-prod-1"],
        b"echo demo-$((6*7))\nexit\n",
    );
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "stderr: {stderr}");
    assert!(!stdout.contains("demo-42"), "stdout: {stdout}");
    assert!(
        stderr.contains("acme-prod") && stderr.contains("confirmation"),
        "stderr: {stderr}"
    );
}

#[test]
fn demo_passes_yes_on_to_confirm_a_production_instance() {
    let root = tempfile::tempdir().unwrap();
    let output = demo(
        root.path(),
        &["--select", "orders-api-prod-1", "--yes"],
        b"echo demo-$((6*7))\nexit\n",
    );
    assert_the_command_ran(&output);
}

/// The demo's shell ran `echo demo-$((6*7))` and the demo exited 0.
#[track_caller]
fn assert_the_command_ran(output: &Output) {
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stdout.contains("demo-42"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(output.status.success(), "stderr: {stderr}");
}

#[test]
fn sigterm_stops_the_demo_and_its_shell_and_removes_its_private_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut demo = demo_command(root.path(), &["--select", "orders-api-dev-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn postern demo");
    let stdout = lines(demo.stdout.take().expect("piped stdout"));
    let mut stdin = demo.stdin.take().expect("piped stdin");
    stdin.write_all(b"echo ready-$((6*7))\n").unwrap();
    wait_for_line(&stdout, "ready-42", LIMIT);
    // While it runs: one directory, private, holding the emulator's keys.
    let dirs: Vec<_> = std::fs::read_dir(root.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let mode = std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dirs[0].display());
    let shell: u32 = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", demo.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the demo's postern shell")
        .parse()
        .unwrap();
    signal(demo.id(), Signal::SIGTERM);
    let status = exit_within(&mut demo, LIMIT).expect("the demo stops after SIGTERM");
    // The shell's own answer to SIGTERM (128 + 15), passed on by the demo.
    assert_eq!(status.code(), Some(143));
    assert_eq!(process_state(shell), None, "the demo's shell outlived it");
    drop(stdin);
    assert_left_nothing(root.path());
}
