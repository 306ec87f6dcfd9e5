//! Real OpenSSH over postern: a throwaway sshd on a loopback port (host key and authorized key
//! generated in a temp dir, bounded lifetime), reached through the emulator with
//! `ssh -o ProxyCommand='postern ssh-proxy %h %p'`: `echo ok`, then an scp of 5 MiB compared
//! byte for byte. Also `ssh-proxy` on its own (only stream bytes on stdout, quiet exit at end
//! of input, an agent too old for the TerminateSession flag) and `ssh-config` (with and without
//! `--push-key`). Missing tools fail with a clear message.

use std::process::Command;
use std::time::Duration;

use crate::support::data::random_bytes;
use crate::support::emulator::EmulatorProcess;
use crate::support::net::TcpServer;
use crate::support::process::{base_command, history_records, postern, run, run_echo, text};
use crate::support::sshd::Sshd;

const LIMIT: Duration = Duration::from_secs(90);
/// Built-in instance whose agent is 2.3.672.0: SSH sessions, but no TerminateSession flag.
const ANCIENT: &str = "i-03c5e7a9b1d3f5a7c";

#[test]
fn ssh_and_scp_through_postern_reach_a_real_sshd() {
    let sshd = Sshd::start();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let proxy = format!(
        "env AWS_ENDPOINT_URL={} {} ssh-proxy %h %p",
        emu.endpoint,
        postern()
    );
    let ssh_options = sshd.client_options(&proxy);

    let mut ssh = base_command();
    emu.credentials_env(&mut ssh);
    ssh.arg("-c").arg(format!(
        "exec ssh {ssh_options} -p {} {} echo ok",
        sshd.port, emu.instance
    ));
    let out = run(shell(ssh), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ssh stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "ok\n");

    let source = sshd.dir.join("upload.bin");
    let data = random_bytes(5 * 1024 * 1024, 13);
    std::fs::write(&source, &data).unwrap();
    let copy = sshd.dir.join("copy.bin");
    let mut scp = base_command();
    emu.credentials_env(&mut scp);
    scp.arg("-c").arg(format!(
        "exec scp {ssh_options} -P {} {} {}:{}",
        sshd.port,
        source.display(),
        emu.instance,
        copy.display()
    ));
    let out = run(shell(scp), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scp stderr: {}",
        text(&out.stderr)
    );
    let copied = std::fs::read(&copy).expect("scp wrote the copy");
    assert!(copied == data, "copy differs: {} bytes", copied.len());
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn ssh_proxy_writes_only_stream_bytes_and_exits_quietly_at_end_of_input() {
    let echo = TcpServer::echo();
    // By id, by the id of an agent too old for mux, and by Name tag (resolved through the index).
    for instance in [None, Some(ANCIENT), Some("web-1")] {
        let emu = EmulatorProcess::start(&["--no-pacing"]);
        let target = instance.unwrap_or(&emu.instance).to_owned();
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let port = echo.port.to_string();
        // Input stays open until the whole echo is back, as ssh keeps it; then end of input
        // ends the session.
        let out = run_echo(
            emu.command(&["ssh-proxy", &format!("{target}.postern"), &port]),
            &input,
            LIMIT,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{target}: {}",
            text(&out.stderr)
        );
        // The echo, whole, and nothing else.
        assert!(
            out.stdout == input,
            "{target}: stdout is not the echo ({} bytes of {})",
            out.stdout.len(),
            input.len()
        );
        assert_eq!(text(&out.stderr), "", "{target}: nothing on stderr");
        assert_eq!(emu.stop(), Vec::<String>::new(), "{target}: violations");
    }
}

#[test]
fn postern_ssh_hands_its_reason_to_the_proxy_it_runs() {
    let echo = TcpServer::echo();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    // The "ssh": expands the ProxyCommand's tokens as ssh does (%h, %p, %%) and runs it with
    // its own standard streams, as ssh runs a ProxyCommand; the destination is the last word.
    let script = dir.path().join("fake-ssh");
    std::fs::write(&script, FAKE_SSH.replace("PORT", &echo.port.to_string())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // `%` in the reason: ssh would read a lone `%` as a token.
    let reason = "INC-9 at 100% (ssh)";
    let script = script.display().to_string();
    let mut ssh = emu.command(&[
        "ssh",
        "--reason",
        reason,
        "--ssh-program",
        &script,
        &emu.instance,
    ]);
    ssh.env("POSTERN_HISTORY_FILE", &history);
    let input = b"through the proxy\n".repeat(1000);
    let out = run_echo(ssh, &input, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stdout == input,
        "stdout is not the echo ({} bytes of {})",
        out.stdout.len(),
        input.len()
    );
    assert_eq!(text(&out.stderr), "", "nothing on stderr");

    let records = history_records(&history, &[], LIMIT);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["kind"], "ssh");
    assert_eq!(records[0]["target"], emu.instance.as_str());
    assert_eq!(records[0]["reason"], reason);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn ssh_config_prints_a_host_block_with_postern_as_proxy() {
    let out = run(base_command_with(&["ssh-config"]), LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let config = text(&out.stdout);
    assert!(config.contains("Host *.postern\n"), "{config}");
    assert!(
        config.contains(&format!(
            "    ProxyCommand '{}' ssh-proxy %h %p\n",
            postern()
        )),
        "{config}"
    );
    assert!(!config.contains("--push-key"), "{config}");
    assert!(!config.contains("User "), "{config}");
}

#[test]
fn ssh_config_push_key_proxies_with_a_key_pushed_for_the_remote_user() {
    let out = run(base_command_with(&["ssh-config", "--push-key"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    assert!(config.contains("Host *.postern\n"), "{config}");
    // `%r`: ssh's remote user, for whom the key is pushed; ec2-user unless USER@ is given.
    assert!(
        config.contains(&format!(
            "    ProxyCommand '{}' ssh-proxy --push-key -l %r %h %p\n",
            postern()
        )),
        "{config}"
    );
    assert!(config.contains("    User ec2-user\n"), "{config}");
    assert!(config.contains("SSH_AUTH_SOCK"), "{config}");
}

/// An "ssh" that runs its `-o ProxyCommand=…` with ssh's token expansion (`%h` the last
/// argument, `%p` PORT, `%%` a `%`) and its own standard streams.
const FAKE_SSH: &str = r#"#!/bin/sh
proxy=
for arg; do
    case "$arg" in ProxyCommand=*) proxy="${arg#ProxyCommand=}" ;; esac
    host="$arg"
done
cmd=$(printf '%s' "$proxy" | sed -e 's/%%/\x01/g' -e "s/%h/$host/g" -e 's/%p/PORT/g' -e 's/\x01/%/g')
exec sh -c "$cmd"
"#;

fn base_command_with(args: &[&str]) -> Command {
    let mut cmd = base_command();
    cmd.args(args);
    cmd
}

/// Turns a `postern`-based command (dummy AWS environment) into `sh -c …` with that environment.
fn shell(cmd: Command) -> Command {
    let mut sh = Command::new("sh");
    sh.env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            sh.env(key, value);
        }
    }
    sh.args(cmd.get_args());
    sh
}
