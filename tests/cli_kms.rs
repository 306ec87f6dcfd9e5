//! KMS-encrypted sessions (SPEC.md §7): the real `postern` binary against `postern emulator
//! --session-kms-key`, whose agent asks for encryption and whose KMS endpoint issues and
//! decrypts the data key. Shell and exec output arrive intact; a tampered message or a wrong
//! key closes the session with a clear error (exit 243) and never prints undecryptable bytes;
//! port sessions stay unencrypted.

mod cli_util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use cli_util::{Emulator, run, run_with_input, text};

const LIMIT: Duration = Duration::from_secs(60);
const KEY: &str = "alias/session-manager";
const BANNER: &str = "This session is encrypted using AWS KMS.";

fn numbered(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

#[test]
fn exec_output_is_exact_in_an_encrypted_session() {
    let emu = Emulator::start(&["--no-pacing", "--session-kms-key", KEY]);
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
    let emu = Emulator::start(&["--session-kms-key", KEY]);
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
    let emu = Emulator::start(&[
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
    let emu = Emulator::start(&[
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
    // Whatever was printed is an exact prefix of the real output: nothing undecryptable.
    let stdout = text(&out.stdout);
    assert!(
        numbered(20000).starts_with(&stdout),
        "stdout is not a prefix"
    );
    assert!(stdout.len() < numbered(20000).len());
}

#[test]
fn a_wrong_data_key_fails_the_handshake_clearly() {
    let emu = Emulator::start(&["--session-kms-key", KEY, "--kms-wrong-key"]);
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
    let emu = Emulator::start(&["--no-pacing", "--session-kms-key", KEY]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.write_all(b"hello from the instance\n");
        }
    });
    let mut child = emu
        .command(&[
            "forward",
            &emu.instance,
            "-L",
            &format!("0:{port}"),
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let ready: serde_json::Value = serde_json::from_slice(&line).expect("ready line");
    let mut conn = TcpStream::connect(ready["local"].as_str().unwrap()).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = vec![0u8; 24];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(got, b"hello from the instance\n");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}
