//! KMS-encrypted sessions (SPEC.md §7): the real `postern` binary against `postern emulator
//! --session-kms-key`, whose agent asks for encryption and whose KMS endpoint issues and
//! decrypts the data key. Shell and exec output arrive intact; a tampered message or a wrong
//! key closes the session with a clear error (exit 243) and never prints undecryptable bytes;
//! port sessions stay unencrypted.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::data::numbered;
use crate::support::emulator::EmulatorProcess;
use crate::support::forward::Forward;
use crate::support::net::TcpServer;
use crate::support::process::{run, run_with_input, text};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "alias/session-manager";
const BANNER: &str = "This session is encrypted using AWS KMS.";

#[test]
fn exec_output_is_exact_in_an_encrypted_session() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--session-kms-key", KEY]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "seq 1 20000; exit 7"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "stderr {stderr}");
    assert!(text(&out.stdout) == numbered(20000), "output differs");
    assert!(stderr.contains(BANNER), "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_encrypted_shell_runs_piped_input_and_exits() {
    let emu = EmulatorProcess::start(&["--session-kms-key", KEY]);
    let out = run_with_input(
        emu.command(&["shell", &emu.instance]),
        b"echo encrypted-$((6 * 7))\nexit 3\n",
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert!(
        text(&out.stdout).contains("encrypted-42"),
        "stdout {}",
        text(&out.stdout)
    );
    assert!(stderr.contains(BANNER), "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_encrypted_session_survives_websocket_drops() {
    let emu = EmulatorProcess::start(&[
        "--no-pacing",
        "--session-kms-key",
        KEY,
        "--close-every",
        "200",
    ]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "seq 1 20000"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr {stderr}");
    assert!(text(&out.stdout) == numbered(20000), "output differs");
    assert!(stderr.contains("reconnected after"), "stderr {stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_tampered_message_closes_the_session_without_printing_garbage() {
    let emu = EmulatorProcess::start(&[
        "--no-pacing",
        "--session-kms-key",
        KEY,
        "--tamper-output",
        "30",
    ]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "seq 1 20000"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(243), "stderr {stderr}");
    assert!(stderr.contains("did not decrypt"), "stderr {stderr}");
    assert!(stderr.contains("hint:"), "stderr {stderr}");
    // What came before the tampered message was printed, and is an exact prefix of the real
    // output: nothing undecryptable, nothing after it.
    let stdout = text(&out.stdout);
    assert!(
        !stdout.is_empty(),
        "nothing printed before the tampered message"
    );
    assert!(
        numbered(20000).starts_with(&stdout),
        "stdout is not a prefix"
    );
    assert!(stdout.len() < numbered(20000).len());
}

#[test]
fn a_wrong_data_key_fails_the_handshake_clearly() {
    let emu = EmulatorProcess::start(&["--session-kms-key", KEY, "--kms-wrong-key"]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "echo never"]),
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(243), "stderr {stderr}");
    assert!(stderr.contains("encryption challenge"), "stderr {stderr}");
    assert!(out.stdout.is_empty(), "stdout {}", text(&out.stdout));
}

#[test]
fn port_sessions_are_never_encrypted() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--session-kms-key", KEY]);
    let server = TcpServer::source(b"hello from the instance\n".to_vec());
    let spec = format!("0:{}", server.port);
    let fw = Forward::start(&emu, &[&emu.instance, "-L", &spec, "--json"], 1);
    assert_eq!(fw.ready.len(), 1, "a JSON ready line: {:?}", fw.lines);
    let mut conn = TcpStream::connect(fw.local()).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = vec![0u8; 24];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(got, b"hello from the instance\n");
    drop(fw);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}
