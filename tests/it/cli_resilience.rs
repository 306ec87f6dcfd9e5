//! Sessions that survive: the real `postern` binary against `postern emulator` with faults
//! that break the data channel. Websockets closed every N messages during a 64 MiB forward
//! (sha256 identical) and during a command printing numbered lines (exact sequence); a
//! stalled websocket found by keepalive; an idle forward kept open past the service's idle
//! timeout; one TCP connection across the service's websocket recycles; resume after the
//! credentials of StartSession expired; the give-up limit. Every run ends with zero emulator
//! violations.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;

use crate::support::aws::credentials_env;
use crate::support::data::{numbered, random_bytes};
use crate::support::emulator::{EmulatorProcess, role_arn};
use crate::support::forward::Forward;
use crate::support::net::{TcpServer, echo_round_trip};
use crate::support::process::{base_command, exit_within, run, text};

const LIMIT: Duration = Duration::from_secs(120);

fn reconnected(stderr: &str) -> usize {
    stderr.matches("reconnected after").count()
}

#[test]
fn exec_output_is_exact_across_a_websocket_closed_every_150_messages() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--close-every", "150"]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "seq 1 40000"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert!(text(&out.stdout) == numbered(40000), "output differs");
    assert!(reconnected(&stderr) >= 3, "stderr {stderr}");
    assert!(stderr.contains("connection lost ("), "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_64_mib_forward_is_byte_identical_across_a_websocket_closed_every_4000_messages() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--close-every", "4000"]);
    let server = TcpServer::echo();
    let echo = server.port;
    let spec = format!("0:{echo}");
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    let data = random_bytes(64 * 1024 * 1024, 9);
    echo_round_trip(&fw.local(), &data);
    let stderr = fw.stop_ok();
    assert!(reconnected(&stderr) >= 10, "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_stalled_websocket_is_found_by_keepalive_and_resumed() {
    // The emulator stops reading and writing the websocket (kept open, as a sleeping laptop's
    // or a dead NAT's connection is) after 300 messages, inside the first `seq` (about 450
    // messages of 1 KiB chunks and acks). The client has nothing in flight and can only tell
    // by its keepalive pings going unanswered.
    let emu = EmulatorProcess::start(&["--no-pacing", "--stall-after", "300"]);
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--keepalive",
            "300ms",
            "--",
            "seq 1 40000; sleep 1; seq 40001 80000",
        ]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert!(text(&out.stdout) == numbered(80000), "output differs");
    assert!(
        stderr.contains("answered no keepalive ping"),
        "stderr {stderr}"
    );
    assert_eq!(reconnected(&stderr), 1, "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_idle_forward_outlives_the_services_idle_timeout_with_keepalive() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--idle-timeout", "1s"]);
    let server = TcpServer::echo();
    let echo = server.port;
    let spec = format!("0:{echo}");
    // With pings: no connection at all for 4 idle-timeouts, and nothing breaks.
    let fw = Forward::start(
        &emu,
        &[&emu.instance, "-L", &spec, "--keepalive", "300ms"],
        1,
    );
    // The idle time is what this test is about: no condition to wait for, only the clock.
    thread::sleep(Duration::from_secs(4));
    echo_round_trip(&fw.local(), &random_bytes(256 * 1024, 1));
    let stderr = fw.stop_ok();
    assert!(!stderr.contains("connection lost"), "stderr {stderr}");
    // Without pings the emulator's idle timeout really closes the websocket; postern resumes.
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--keepalive", "0s"], 1);
    // Idle past the idle timeout (the subject again), so that the emulator closes the websocket.
    thread::sleep(Duration::from_secs(3));
    echo_round_trip(&fw.local(), &random_bytes(256 * 1024, 2));
    let stderr = fw.stop_ok();
    assert!(stderr.contains("connection lost"), "stderr {stderr}");
    assert!(reconnected(&stderr) >= 1, "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn one_tcp_connection_outlives_the_services_websocket_recycles() {
    // The service recycles every websocket after 700 ms (an hour, scaled down). One TCP
    // connection through the forward trades a numbered message every 50 ms for 3 s, idle in
    // between: it spans four recycles and sees every echo, in order, with no byte lost.
    let emu = EmulatorProcess::start(&["--no-pacing", "--recycle-after", "700ms"]);
    let server = TcpServer::echo();
    let echo = server.port;
    let spec = format!("0:{echo}");
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec], 1);
    let mut conn = TcpStream::connect(fw.local()).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let begin = Instant::now();
    let mut round = 0u32;
    while begin.elapsed() < Duration::from_secs(3) {
        let message = format!("message {round:05}\n");
        conn.write_all(message.as_bytes()).unwrap();
        let mut back = vec![0u8; message.len()];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(back, message.as_bytes(), "round {round}");
        round += 1;
        // The connection's idle gaps between messages are the subject: the recycles fall in
        // them as well as in transfers.
        thread::sleep(Duration::from_millis(50));
    }
    conn.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing more: {rest:?}");
    let stderr = fw.stop_ok();
    assert!(reconnected(&stderr) >= 3, "stderr {stderr}");
    assert!(round >= 20, "only {round} rounds");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn resume_works_after_the_credentials_of_start_session_expired() {
    // Assumed-role credentials that live 2 s. The websocket closes every 60 messages (1 KiB
    // chunks and their acks): the first close comes after the command slept 3 s, once the
    // credentials of StartSession have expired.
    let emu = EmulatorProcess::start(&[
        "--no-pacing",
        "--credential-lifetime",
        "2s",
        "--close-every",
        "60",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (config, credentials) = role_profile(&emu, dir.path());
    let mut cmd = base_command();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .args(["--profile", "short", "exec", &emu.instance, "--"])
        .arg("sleep 3; seq 1 20000");
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert!(text(&out.stdout) == numbered(20000), "output differs");
    assert!(reconnected(&stderr) >= 1, "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn static_credentials_that_expired_make_resume_give_up_with_a_clear_error() {
    let emu = EmulatorProcess::start(&[
        "--no-pacing",
        "--credential-lifetime",
        "2s",
        "--close-every",
        "60",
    ]);
    // One set of assumed credentials used as static ones: nothing can refresh them.
    let keys = assume_role_keys(&emu);
    let mut cmd = emu.command(&[
        "exec",
        &emu.instance,
        "--reconnect-attempts",
        "2",
        "--",
        "sleep 3; seq 1 20000",
    ]);
    credentials_env(&mut cmd, &keys);
    let out = run(cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(254), "stderr {stderr}");
    assert!(
        stderr.contains("gave up reconnecting after 2 attempts"),
        "stderr {stderr}"
    );
    assert!(stderr.contains("ExpiredTokenException"), "stderr {stderr}");
    assert!(
        !stderr.contains(keys.secret_access_key())
            && !stderr.contains(keys.session_token().expect("a session token")),
        "a secret leaked"
    );
}

#[test]
fn reconnecting_gives_up_after_the_limit_with_exit_254() {
    let emu = EmulatorProcess::start(&[]);
    let mut child = emu
        .command(&[
            "exec",
            &emu.instance,
            "--reconnect-attempts",
            "3",
            "--",
            "echo started; sleep 30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "started\n");
    // The service disappears without a word: every ResumeSession fails to connect.
    emu.kill();
    let begin = Instant::now();
    let status = exit_within(&mut child, LIMIT).and_then(|s| s.code());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status, Some(254), "stderr {stderr}");
    assert!(
        stderr.contains("gave up reconnecting after 3 attempts"),
        "stderr {stderr}"
    );
    assert!(
        stderr.contains("reconnecting (attempt 2"),
        "stderr {stderr}"
    );
    assert!(stderr.contains("hint:"), "stderr {stderr}");
    assert!(begin.elapsed() < Duration::from_secs(30));
}

/// An AWS config with profile `short` assuming PosternAccess from static base keys, all at
/// the emulator; returns (config file, credentials file).
fn role_profile(
    emu: &EmulatorProcess,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("config");
    let credentials = dir.join("credentials");
    std::fs::write(
        &config,
        format!(
            "[profile short]\nrole_arn = {}\nsource_profile = \
             base\nrole_session_name = resilience-test\nregion = us-east-1\nendpoint_url = {}\n\n\
             [profile base]\nregion = us-east-1\nendpoint_url = {}\n",
            role_arn(&emu.management_account, "PosternAccess"),
            emu.endpoint,
            emu.endpoint
        ),
    )
    .unwrap();
    std::fs::write(&credentials, format!("[base]\n{}", emu.credentials_ini())).unwrap();
    (config, credentials)
}

/// AssumeRole of the builtin fleet's PosternAccess through the emulator's STS.
fn assume_role_keys(emu: &EmulatorProcess) -> Credentials {
    emu.assume_role(&role_arn(&emu.management_account, "PosternAccess"))
}
