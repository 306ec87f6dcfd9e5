//! `postern exec` against the emulator: exit statuses, byte-exact output, piped stdin, output
//! read late (nothing dropped and resent).

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use postern_protocol::session::CLIENT_REORDER_BYTES;

use crate::support::emulator::EmulatorProcess;
use crate::support::process::{exit_within, lines, run, run_with_input, text, wait_for_line};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn exits_with_the_remote_status() {
    let emu = EmulatorProcess::start(&[]);
    for (command, status) in [("true", 0), ("exit 3", 3), ("echo out; exit 42", 42)] {
        let out = run(emu.command(&["exec", &emu.instance, "--", command]), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{command}: stderr {}",
            text(&out.stderr)
        );
    }
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_remote_command_killed_by_a_signal_exits_128_plus_its_number() {
    let emu = EmulatorProcess::start(&[]);
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "kill -9 $$"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(137), "stderr {}", text(&out.stderr));
}

#[test]
fn output_is_byte_exact_and_the_marker_never_shows() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all-bytes.bin");
    // Every byte value, CR/LF and control characters included, repeated past several chunks,
    // and no trailing newline.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let command = format!("cat {}", file.display());
    let out = run(emu.command(&["exec", &emu.instance, "--", &command]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    assert!(
        out.stdout == data,
        "output differs: {} bytes vs {}",
        out.stdout.len(),
        data.len()
    );
    assert!(!text(&out.stdout).contains("postern-exit-"));
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn several_arguments_run_as_that_argv_and_one_as_a_command_line() {
    let emu = EmulatorProcess::start(&[]);
    // Several arguments: the remote runs exactly this argv (ssh would run `sh -c printf`).
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--",
            "printf",
            "%s|",
            "a",
            "b c",
            "$HOME",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a|b c|$HOME|");
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--",
            "sh",
            "-c",
            "printf abc; exit 7",
        ]),
        LIMIT,
    );
    assert_eq!(text(&out.stdout), "abc");
    assert_eq!(out.status.code(), Some(7), "stderr {}", text(&out.stderr));
    // One argument: a command line for the remote shell.
    let out = run(
        emu.command(&["exec", &emu.instance, "--", "printf '%s|' a 'b c'; exit 3"]),
        LIMIT,
    );
    assert_eq!(text(&out.stdout), "a|b c|");
    assert_eq!(out.status.code(), Some(3), "stderr {}", text(&out.stderr));
}

#[test]
fn piped_stdin_reaches_the_command_and_ends_with_eof() {
    let emu = EmulatorProcess::start(&[]);
    let out = run_with_input(
        emu.command(&["exec", &emu.instance, "--", "cat"]),
        b"first line\nsecond, unterminated",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first line\nsecond, unterminated");
}

#[test]
fn piped_binary_input_reaches_the_command_byte_for_byte() {
    let emu = EmulatorProcess::start(&[]);
    // Every byte value, and what a terminal acts on: Ctrl-C (would kill the command), Ctrl-D
    // (would end a read), CR LF (CR would become NL), Ctrl-S, DEL.
    let mut input: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    input.extend_from_slice(b"\x03\x04line\r\n\x13\x7f\x04");
    let out = run_with_input(
        emu.command(&["exec", &emu.instance, "--", "od -An -v -tx1 | tr -d ' \\n'"]),
        &input,
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    let expected: String = input.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        text(&out.stdout) == expected,
        "the command read other bytes"
    );
}

#[test]
fn a_command_that_stops_reading_ends_with_input_still_coming() {
    let emu = EmulatorProcess::start(&[]);
    let input: Vec<u8> = (1..=200_000)
        .flat_map(|n| format!("{n}\n").into_bytes())
        .collect();
    let out = run_with_input(
        emu.command(&["exec", &emu.instance, "--", "head -2; exit 3"]),
        &input,
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3), "stderr {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n2\n");
}

#[test]
fn a_command_ends_while_its_piped_input_stays_open_and_idle() {
    let emu = EmulatorProcess::start(&[]);
    // `sleep 600 | postern exec … -- 'exit 6'`: the pipe stays open, nothing comes.
    let mut child = emu
        .command(&["exec", &emu.instance, "--", "exit 6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held_open = child.stdin.take();
    let status = exit_within(&mut child, LIMIT).expect("exec ends with its command");
    assert_eq!(status.code(), Some(6));
    drop(held_open);
}

#[test]
fn stdin_status_and_stderr_together() {
    let emu = EmulatorProcess::start(&[]);
    let out = run_with_input(
        emu.command(&["exec", &emu.instance, "--", "wc -l; echo oops >&2; exit 5"]),
        b"1\n2\n3\n",
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(5), "stderr {}", text(&out.stderr));
    // An interactive-command session has one PTY: the remote stderr arrives merged.
    assert_eq!(text(&out.stdout).replace(' ', ""), "3\noops\n");
}

#[test]
fn closed_stdout_exits_quietly() {
    let emu = EmulatorProcess::start(&[]);
    let mut cmd = emu.command(&["exec", &emu.instance, "--", "yes"]);
    cmd.stdout(Stdio::piped());
    cmd.stdin(Stdio::null());
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    use std::io::Read;
    let n = stdout.read(&mut buf).unwrap();
    assert!(n > 0);
    drop(stdout);
    let Some(status) = exit_within(&mut child, LIMIT) else {
        panic!("postern kept running after its stdout closed");
    };
    assert_eq!(status.code(), Some(141));
}

#[test]
fn the_exit_marker_secret_is_not_on_any_command_line() {
    let emu = EmulatorProcess::start(&[]);
    // The command's parent is the wrapper shell: its command line, as any local user of the
    // instance can read it in /proc, must not hold the marker's secret (32 hex digits).
    let out = run(
        emu.command(&[
            "exec",
            &emu.instance,
            "--",
            "tr '\\0' ' ' < /proc/$PPID/cmdline",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    let cmdline = text(&out.stdout);
    assert!(cmdline.contains("__postern_m"), "the wrapper: {cmdline}");
    let longest_hex_run = cmdline
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_hex_run < 32,
        "a secret on the command line: {cmdline}"
    );
}

#[test]
fn trace_logging_shows_no_secret() {
    let emu = EmulatorProcess::start(&[]);
    let mut command = emu.command(&["exec", &emu.instance, "--", "echo traced"]);
    command.env("POSTERN_LOG", "trace");
    let out = run(command, LIMIT);
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    let log = text(&out.stderr);
    // Trace really is on, for postern and the libraries alike.
    assert!(log.contains("TRACE"), "{}", &log[..log.len().min(2000)]);
    assert!(log.contains("StartSession"));
    let secret = emu.credentials.secret_access_key().to_owned();
    for leak in [
        secret.as_str(),
        "Signature=",
        "X-Amz-Security-Token",
        "TokenValue",
        // The StreamUrl's query (the path alone, with the session id, may be logged).
        "?role=",
    ] {
        assert!(!log.contains(leak), "the trace log shows `{leak}`");
    }
}

#[test]
fn a_log_written_to_a_pipe_has_no_colour_codes() {
    let emu = EmulatorProcess::start(&[]);
    let out = run(
        emu.command(&["-vv", "exec", &emu.instance, "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "stderr {}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("DEBUG"), "debug logging is on: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence in the log: {log:?}"
    );
}

#[test]
fn output_read_late_arrives_whole_with_nothing_dropped_or_resent() {
    // No agent pacing: the agent would send its whole 100,000-message window at once.
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    // Half as much again as the client keeps of data it cannot deliver yet: a postern that
    // kept taking data in while behind would have to drop some of it.
    let total: usize = CLIENT_REORDER_BYTES * 3 / 2;
    let command = format!("head -c {total} /dev/zero | tr '\\0' 'x'");
    let mut child = emu
        .command(&["-vv", "exec", &emu.instance, "--", &command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern exec");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    let mut first = vec![0u8; 64 * 1024];
    stdout.read_exact(&mut first).expect("the first bytes");
    // This reader pauses: postern falls behind and stops reading the session's data.
    let deadline = Instant::now() + LIMIT;
    let mut seen = wait_for_line(&stderr, "local output behind", LIMIT);
    // Until postern has nothing more to say for a second (bounded): what it would log now is
    // data taken in and dropped.
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(1)) {
        seen.push(line);
        assert!(
            Instant::now() < deadline,
            "postern kept logging: {:?}",
            seen.last()
        );
    }
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("the rest");
    let status = exit_within(&mut child, LIMIT).expect("exec ends");
    seen.extend(stderr.iter());
    assert_eq!(status.code(), Some(0), "{:?}", seen.last());
    assert_eq!(first.len() + rest.len(), total, "every byte arrives");
    assert!(
        first.iter().chain(&rest).all(|&b| b == b'x'),
        "only the command's bytes"
    );
    let dropped = seen
        .iter()
        .filter(|l| l.contains("beyond the reorder window"))
        .count();
    assert_eq!(dropped, 0, "postern dropped data it had read");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}
