//! `postern doctor` against the emulator: a healthy target passes every needed check and exits
//! 0; an offline instance, an unknown instance and denied StartSession each fail on the right
//! line, with a hint, and exit with the documented code.

use std::time::Duration;

use crate::support::doctor::check_line as line;
use crate::support::emulator::EmulatorProcess;
use crate::support::process::{run, text};

const LIMIT: Duration = Duration::from_secs(60);
const ONLINE: &str = "i-0a1b2c3d4e5f60718";
const OFFLINE: &str = "i-0bbbbbbbbbbbbbbb1";
const OLD_AGENT: &str = "i-0ccccccccccccccc2";

fn fleet(dir: &std::path::Path) -> String {
    let path = dir.join("fleet.toml");
    std::fs::write(
        &path,
        format!(
            "[[instances]]\nid = \"{ONLINE}\"\nname = \"web-1\"\n\n[[instances]]\nid = \
             \"{OFFLINE}\"\nname = \"batch-1\"\nping_status = \"ConnectionLost\"\n\n\
             [[instances]]\nid = \"{OLD_AGENT}\"\nname = \"legacy-1\"\nagent_version = \
             \"3.0.161.0\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn a_healthy_target_passes() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path())]);
    let out = run(emu.command(&["doctor", ONLINE]), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // The probe's session was ended by the probe: nothing for the exit's clean-up.
    assert!(
        !text(&out.stderr).contains("left open"),
        "{}",
        text(&out.stderr)
    );
    for name in [
        "configuration",
        "network settings",
        "credentials",
        "endpoint",
        "clock",
        "instance",
        "agent features",
        "session permission",
        "kms",
    ] {
        assert!(
            line(&stdout, name).starts_with("PASS  "),
            "{name}:\n{stdout}"
        );
    }
    assert!(
        line(&stdout, "role assumption").starts_with("SKIP  "),
        "{stdout}"
    );
    assert!(
        line(&stdout, "credentials").contains(":user/postern-emulator"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "instance").contains("is Online")
            && line(&stdout, "instance").contains("3.3.0.0"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "session permission").contains("probed with a real session"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!("result: {ONLINE} is reachable\n")),
        "{stdout}"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_old_agent_warns_about_what_it_lacks_but_passes() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path())]);
    let out = run(emu.command(&["doctor", OLD_AGENT, "--no-probe"]), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let features = line(&stdout, "agent features");
    assert!(features.starts_with("WARN  "), "{stdout}");
    assert!(features.contains("multiplexed port forwarding"), "{stdout}");
    assert!(
        line(&stdout, "session permission").starts_with("SKIP  "),
        "{stdout}"
    );
}

#[test]
fn an_offline_instance_fails_with_250() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path())]);
    let out = run(emu.command(&["doctor", OFFLINE]), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(250), "{stdout}");
    let instance = line(&stdout, "instance");
    assert!(instance.starts_with("FAIL  "), "{stdout}");
    assert!(instance.contains("is ConnectionLost"), "{stdout}");
    assert!(
        stdout.contains("hint: start the instance if it is stopped"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "session permission").starts_with("SKIP  "),
        "{stdout}"
    );
    assert!(
        line(&stdout, "credentials").starts_with("PASS  "),
        "{stdout}"
    );
    assert!(
        stdout.contains("is not reachable: 1 check(s) failed (exit code 250)"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_instance_fails_with_250() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path())]);
    let out = run(emu.command(&["doctor", "i-0ddddddddddddddd3"]), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(250), "{stdout}");
    let instance = line(&stdout, "instance");
    assert!(
        instance.contains("is not registered with Systems Manager in account "),
        "{stdout}"
    );
}

#[test]
fn denied_start_session_fails_with_251() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&[
        "--fleet",
        &fleet(dir.path()),
        "--fail-start-session",
        "AccessDeniedException",
    ]);
    let out = run(emu.command(&["doctor", ONLINE]), LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(251), "{stdout}");
    let permission = line(&stdout, "session permission");
    assert!(permission.starts_with("FAIL  "), "{stdout}");
    assert!(permission.contains("AccessDeniedException"), "{stdout}");
    assert!(
        stdout.contains("hint: grant ssm:StartSession on"),
        "{stdout}"
    );
    assert!(line(&stdout, "instance").starts_with("PASS  "), "{stdout}");
}

#[test]
fn bad_credentials_fail_early_and_skip_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path())]);
    let mut cmd = emu.command(&["doctor", ONLINE]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd, LIMIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(248), "{stdout}");
    assert!(
        line(&stdout, "credentials").starts_with("FAIL  "),
        "{stdout}"
    );
    assert!(line(&stdout, "instance").starts_with("SKIP  "), "{stdout}");
}

#[test]
fn a_reader_that_stops_early_ends_it_quietly_with_141() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // Every API call takes 200 ms: the reader is gone long before the credentials line.
    let emu = EmulatorProcess::start(&["--fleet", &fleet(dir.path()), "--api-latency", "200ms"]);
    // `postern doctor ID --json | head -1`.
    let mut child = emu
        .command(&["doctor", ONLINE, "--json", "--no-probe"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    // The reader is gone now; the next line finds the pipe closed.
    let status = crate::support::process::exit_within(&mut child, LIMIT).expect("doctor exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert_eq!(stderr, "");
}
