//! `postern shell` end to end in a real terminal: tmux runs the real binary against the
//! emulator. Typing, resizing, Ctrl-C, the `~?` escape, `exit`, and the terminal restored
//! afterwards; zero protocol violations.

use std::process::Command;
use std::time::Duration;

use crate::support::emulator::EmulatorProcess;
use crate::support::poll::{poll, try_poll};
use crate::support::process::postern;
use crate::support::tmux::Tmux;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn interactive_shell_in_a_real_terminal() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("stty.before");
    let after = dir.path().join("stty.after");
    let status = dir.path().join("status");
    let script = dir.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "export {credentials} \
             AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true HOME=/nonexistent PS1='$ '\n\
             stty -a | sed 1d > {before}; stty -g >> {before}\n\
             AWS_ENDPOINT_URL={endpoint} {postern} shell {instance}\n\
             echo \"postern-exit=$?\" > {status}.tmp; mv {status}.tmp {status}\n\
             {{ stty -a | sed 1d; stty -g; }} > {after}.tmp; mv {after}.tmp {after}\n\
             exec sleep 60\n",
            before = before.display(),
            after = after.display(),
            status = status.display(),
            postern = postern(),
            endpoint = emu.endpoint,
            credentials = emu.credentials_exports(),
            instance = emu.instance,
        ),
    )
    .unwrap();
    let tmux = Tmux::new(dir.path());
    let command = format!("sh {}", script.display());
    tmux.start(100, 30, &command);

    // Typing reaches the shell and its output comes back.
    tmux.keys(&["echo hel''lo", "Enter"]);
    tmux.wait_for("\nhello", 1);

    // The size was right from the start, and follows a resize (SIGWINCH).
    tmux.keys(&["stty size", "Enter"]);
    tmux.wait_for("30 100", 1);
    tmux.run(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    try_poll(LIMIT, || {
        tmux.keys(&["stty size", "Enter"]);
        try_poll(Duration::from_secs(2), || {
            tmux.pane().contains("40 120").then_some(())
        })
    })
    .unwrap_or_else(|| panic!("size never became 40 120:\n{}", tmux.pane()));

    // Ctrl-C interrupts the remote command, not postern; the session survives.
    tmux.keys(&["sleep 100", "Enter"]);
    tmux.wait_for("sleep 100", 1);
    tmux.keys(&["C-c"]);
    tmux.wait_for("^C", 1);
    tmux.keys(&["echo sur''vived", "Enter"]);
    // The typed text never contains the word; only the remote echo's output does.
    tmux.wait_for("survived", 1);

    // `~?` after a newline shows the escape help locally.
    tmux.keys(&["Enter"]);
    tmux.keys(&["-l", "~?"]);
    tmux.wait_for("Supported escape sequences", 1);

    // `exit` ends postern with 0.
    tmux.keys(&["Enter"]);
    tmux.keys(&["exit", "Enter"]);
    let line = try_poll(LIMIT, || std::fs::read_to_string(&status).ok())
        .unwrap_or_else(|| panic!("postern did not exit:\n{}", tmux.pane()));
    assert_eq!(line.trim(), "postern-exit=0", "pane:\n{}", tmux.pane());

    // The terminal is exactly as before (the size line aside, which the resize changed).
    // The script writes the terminal's settings after postern exits.
    let after_text = poll(LIMIT, || {
        std::fs::read_to_string(&after)
            .ok()
            .filter(|t| t.lines().count() > 1)
    });
    assert_eq!(std::fs::read_to_string(&before).unwrap(), after_text);

    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn tilde_dot_closes_the_session() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    let script = dir.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "export {credentials} \
             AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true HOME=/nonexistent\n\
             AWS_ENDPOINT_URL={endpoint} {postern} shell {instance}\n\
             echo \"postern-exit=$?\" > {status}.tmp; mv {status}.tmp {status}\n\
             exec sleep 60\n",
            status = status.display(),
            postern = postern(),
            endpoint = emu.endpoint,
            credentials = emu.credentials_exports(),
            instance = emu.instance,
        ),
    )
    .unwrap();
    let tmux = Tmux::new(dir.path());
    let command = format!("sh {}", script.display());
    tmux.start(80, 24, &command);
    tmux.keys(&["echo rea''dy", "Enter"]);
    tmux.wait_for("\nready", 1);
    tmux.keys(&["-l", "~."]);
    let line = try_poll(LIMIT, || std::fs::read_to_string(&status).ok())
        .unwrap_or_else(|| panic!("postern did not exit:\n{}", tmux.pane()));
    assert_eq!(line.trim(), "postern-exit=0");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("stty.before");
    let after = dir.path().join("stty.after");
    let status = dir.path().join("status");
    let pid = dir.path().join("pid");
    let script = dir.path().join("run.sh");
    std::fs::write(
        &script,
        format!(
            "export {credentials} \
             AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true HOME=/nonexistent\n\
             stty -a > {before}; stty -g >> {before}\n\
             sh -c 'echo $$ > {pid}; AWS_ENDPOINT_URL={endpoint} exec {postern} shell {instance}'\n\
             echo \"postern-exit=$?\" > {status}.tmp; mv {status}.tmp {status}\n\
             {{ stty -a; stty -g; }} > {after}.tmp; mv {after}.tmp {after}\n\
             exec sleep 60\n",
            before = before.display(),
            after = after.display(),
            status = status.display(),
            pid = pid.display(),
            postern = postern(),
            endpoint = emu.endpoint,
            credentials = emu.credentials_exports(),
            instance = emu.instance,
        ),
    )
    .unwrap();
    let tmux = Tmux::new(dir.path());
    let command = format!("sh {}", script.display());
    tmux.start(80, 24, &command);
    tmux.keys(&["echo rea''dy", "Enter"]);
    tmux.wait_for("\nready", 1);
    let pid = std::fs::read_to_string(&pid).expect("pid file");
    let killed = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    let line = try_poll(LIMIT, || std::fs::read_to_string(&status).ok())
        .unwrap_or_else(|| panic!("postern did not exit:\n{}", tmux.pane()));
    assert_eq!(line.trim(), "postern-exit=143");
    // The script writes the terminal's settings after postern exits.
    let after_text = poll(LIMIT, || {
        std::fs::read_to_string(&after)
            .ok()
            .filter(|t| t.lines().count() > 1)
    });
    assert_eq!(std::fs::read_to_string(&before).unwrap(), after_text);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}
