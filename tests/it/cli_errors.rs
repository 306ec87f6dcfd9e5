//! Error paths of the real binary: message text (what, target, cause, hint) and exit code.

use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::net::free_port;
use crate::support::process::{base_command, run, text};

const LIMIT: Duration = Duration::from_secs(60);
const INSTANCE: &str = "i-0a1b2c3d4e5f60718";

#[test]
fn target_not_connected() {
    let emu = EmulatorProcess::start(&["--fail-start-session", "TargetNotConnected"]);
    let out = run(emu.command(&["shell", INSTANCE]), LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(250), "stderr {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: could not start a session ({INSTANCE} in us-east-1, endpoint {})\n\
             Caused by:\n  StartSession failed: TargetNotConnected: ",
            emu.endpoint
        )),
        "{stderr}"
    );
    assert!(stderr.contains("(request id "), "{stderr}");
    assert!(
        stderr.contains("\nhint: check that the instance exists"),
        "{stderr}"
    );
}

#[test]
fn unknown_instance_is_not_connected() {
    let emu = EmulatorProcess::start(&[]);
    let out = run(
        emu.command(&["exec", "i-0123456789abcdef0", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(250), "stderr {}", text(&out.stderr));
}

#[test]
fn access_denied_names_the_missing_action() {
    let emu = EmulatorProcess::start(&["--fail-start-session", "AccessDeniedException"]);
    let out = run(emu.command(&["exec", INSTANCE, "--", "true"]), LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(251), "stderr {stderr}");
    assert!(
        stderr.contains("StartSession failed: AccessDeniedException"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the caller needs IAM permission for ssm:StartSession"),
        "{stderr}"
    );
}

#[test]
fn unreachable_endpoint() {
    // A port that was free a moment ago: connections are refused.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut cmd = base_command();
    cmd.args(["--endpoint-url", &endpoint, "exec", INSTANCE, "--", "true"]);
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(252), "stderr {stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert!(stderr.contains("hint: check the network"), "{stderr}");
}

#[test]
fn endpoint_from_the_per_service_environment_variable() {
    let emu = EmulatorProcess::start(&[]);
    let mut cmd = base_command();
    emu.credentials_env(&mut cmd);
    cmd.env("AWS_ENDPOINT_URL_SSM", &emu.endpoint)
        .args(["exec", INSTANCE, "--", "exit 7"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(7), "stderr {}", text(&out.stderr));
}

#[test]
fn no_region() {
    let mut cmd = base_command();
    cmd.env_remove("AWS_REGION")
        .args(["--endpoint-url", "http://127.0.0.1:9", "shell", INSTANCE]);
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(248), "stderr {stderr}");
    assert!(stderr.contains("no region is configured"), "{stderr}");
    assert!(stderr.contains("hint: pass --region"), "{stderr}");
}

#[test]
fn a_name_that_matches_no_instance_exits_244() {
    let emu = EmulatorProcess::start(&[]);
    let cache = tempfile::tempdir().expect("temp dir");
    let mut cmd = emu.command(&["shell", "no-such-host"]);
    cmd.env("POSTERN_CACHE_DIR", cache.path());
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(244), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: no instance matches `no-such-host` (profile default, endpoint {})\nhint: give an \
             instance id, a Name tag, NAME@ACCOUNT-ALIAS, a private IP or DNS name; `postern \
             list QUERY` shows what the index holds\n",
            emu.endpoint
        )
    );
}

#[test]
fn exec_without_a_command_is_a_usage_error() {
    let mut cmd = base_command();
    cmd.args(["exec", INSTANCE]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_plain_http_endpoint_off_this_machine_is_refused_before_any_request() {
    for (variable, value) in [
        ("AWS_ENDPOINT_URL", "http://10.0.0.5:4566"),
        ("AWS_ENDPOINT_URL_STS", "http://sts.example.com"),
    ] {
        let mut cmd = base_command();
        cmd.env(variable, value)
            .args(["exec", INSTANCE, "--", "true"]);
        let out = run(cmd, LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(248), "{variable}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the endpoint {value} is plain http:// to another machine"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("hint: fix --endpoint-url"), "{stderr}");
    }
}

#[test]
fn no_secret_reaches_stderr_even_verbose() {
    let emu = EmulatorProcess::start(&[]);
    let cmd = emu.command(&["-vvv", "exec", INSTANCE, "--", "true"]);
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    // The check below means something only if -vvv logged: it did, at trace level.
    assert!(stderr.contains("TRACE"), "-vvv logged nothing: {stderr}");
    assert!(!stderr.contains(emu.credentials.secret_access_key()));
    assert!(!stderr.contains("TokenValue\":\""), "token leaked");
    assert!(
        !stderr.contains("role=publish_subscribe"),
        "stream URL query leaked"
    );
}

#[test]
fn handshake_timeout() {
    // Every agent message is held back longer than we are willing to wait.
    let emu = EmulatorProcess::start(&["--delay", "5s"]);
    let out = run(
        emu.command(&["exec", "--handshake-timeout", "1s", INSTANCE, "--", "true"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(253), "stderr {stderr}");
    assert!(
        stderr.starts_with("error: the session did not start ("),
        "{stderr}"
    );
    assert!(
        stderr.contains("Caused by:\n  the agent did not start the session within 1s"),
        "{stderr}"
    );
}

#[test]
fn connection_lost() {
    // The service drops the websocket once mid-session: postern resumes it (ResumeSession and a
    // new websocket), says so on stderr, and the command's output arrives whole, in order.
    let emu = EmulatorProcess::start(&["--close-after", "6"]);
    let out = run(
        emu.command(&[
            "exec",
            INSTANCE,
            "--",
            "for i in 1 2 3 4 5 6 7 8 9; do echo $i; sleep 0.05; done",
        ]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert_eq!(
        text(&out.stdout),
        "1\n2\n3\n4\n5\n6\n7\n8\n9\n",
        "stderr {stderr}"
    );
    assert!(stderr.contains("connection lost"), "{stderr}");
    assert!(stderr.contains("reconnected after"), "{stderr}");
}

#[test]
fn endpoint_url_is_ssm_s_endpoint_only() {
    // As `aws ssm --endpoint-url`: SSM's calls go there, EC2's (the listing) follow
    // AWS_ENDPOINT_URL, here a port where nothing listens.
    let emu = EmulatorProcess::start(&[]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cache = tempfile::tempdir().expect("temp dir");
    let command = |args: &[&str]| {
        let mut cmd = base_command();
        emu.credentials_env(&mut cmd);
        cmd.env("AWS_ENDPOINT_URL", &dead)
            .env("POSTERN_CACHE_DIR", cache.path())
            .args(["--endpoint-url", &emu.endpoint])
            .args(args);
        run(cmd, LIMIT)
    };

    let session = command(&["exec", INSTANCE, "--", "exit 7"]);
    assert_eq!(
        session.status.code(),
        Some(7),
        "StartSession reached the emulator: {}",
        text(&session.stderr)
    );

    let listing = command(&["list", "--refresh", "--json"]);
    let stderr = text(&listing.stderr);
    assert_ne!(
        listing.status.code(),
        Some(0),
        "EC2 must not reach --endpoint-url: {stderr}"
    );
    assert!(stderr.contains("DescribeInstances"), "{stderr}");
    assert!(
        !text(&listing.stdout).contains(INSTANCE),
        "{}",
        text(&listing.stdout)
    );
}

/// `postern ARGS` with every service sent to `endpoint` and a cache of its own.
fn listing_command(
    endpoint: &str,
    cache: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = base_command();
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("POSTERN_CACHE_DIR", cache)
        .args(args);
    cmd
}

#[test]
fn a_listing_refused_everywhere_is_an_unreachable_endpoint() {
    let cache = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: every scope's call is refused.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let out = run(listing_command(&endpoint, cache.path(), &["list"]), LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(252), "stderr {stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains("hint: check the network"), "{stderr}");
}

#[test]
fn a_listing_whose_credentials_are_refused_is_a_credentials_error() {
    let emu = EmulatorProcess::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    // base_command's keys are not the emulator's: EC2 answers AuthFailure. A name goes through
    // the same listing as `list` does.
    for args in [&["list"][..], &["exec", "web-1", "--", "true"]] {
        let out = run(listing_command(&emu.endpoint, cache.path(), args), LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(248), "{args:?}: {stderr}");
        assert!(stderr.contains("AuthFailure"), "{stderr}");
        assert!(stderr.contains("hint: check the credentials"), "{stderr}");
    }
}

#[test]
fn a_listing_with_no_credentials_is_a_credentials_error_on_readable_lines() {
    let emu = EmulatorProcess::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = listing_command(&emu.endpoint, cache.path(), &["list"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(248), "stderr {stderr}");
    assert!(stderr.contains("hint: check the credentials"), "{stderr}");
    // The SDK's account of each credential provider it tried, one per line, not `\n`s.
    assert!(stderr.contains("\n  Environment: "), "{stderr}");
    assert!(!stderr.contains("\\n"), "{stderr}");
}
