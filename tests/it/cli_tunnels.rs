//! `postern up` / `status` / `down` against `postern emulator`, through the real binary: two
//! tunnels from one `up` (sha256-checked echoes through both, counters in `status`, one
//! stopped while the other keeps serving), a local port in use (fails before any AWS call,
//! nothing left running), a supervisor killed with SIGKILL (status shows it gone and cleans
//! it), and a tunnel carried across the emulator's websocket closes (`--close-every`). Every
//! run ends with zero emulator violations, and no supervisor outlives its test ([`Tunnels`]
//! kills any left in its `Drop`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use postern::tunnel::Registry;

use crate::support::data::random_bytes;
use crate::support::emulator::EmulatorProcess;
use crate::support::home::Home;
use crate::support::net::{TcpServer, echo_round_trip};
use crate::support::poll::poll;
use crate::support::process::{run, signal, text};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn tunnels_up_status_and_down_with_two_tunnels() {
    let (emu, log, _dir) = emulator_with_log(&[]);
    let echo = TcpServer::echo();
    let config = format!(
        "[tunnels.app]\ntarget = \"{0}\"\nforward = [\"0:{1}\"]\nreason = \"tunnel test\"\n\n\
         [tunnels.db]\ntarget = \"{0}\"\nforward = [\"0:127.0.0.1:{1}\"]\nsocks = [\"0\"]\n",
        emu.instance, echo.port
    );
    let tunnels = Tunnels::new(&emu, &config);
    let out = tunnels.run(&["up", "app", "db", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ready = tunnels.ready(&out);
    assert_eq!(ready.len(), 3, "{ready:?}");
    let app = local_of(&ready, "app", true);
    let db = local_of(&ready, "db", true);
    let socks = local_of(&ready, "db", false);
    assert_eq!(ready[0]["target"], emu.instance.as_str());
    echo_round_trip(&app, &random_bytes(1024 * 1024, 1));
    echo_round_trip(&db, &random_bytes(512 * 1024, 2));
    assert!(
        TcpStream::connect(&socks).is_ok(),
        "the SOCKS listener accepts"
    );

    // The counters reach the state files within a refresh or two.
    let status = poll(LIMIT, || {
        let status = tunnels.status();
        let done = status.iter().all(|s| {
            s["running"] == true
                && s["state"] == "ready"
                && s["bytes_down"].as_u64().unwrap_or(0) >= 512 * 1024
        });
        (status.len() == 2 && done).then_some(status)
    });
    assert_eq!(status[0]["name"], "app");
    assert_eq!(status[0]["sessions"], 1);
    assert!(status[0]["bytes_up"].as_u64().unwrap() >= 1024 * 1024);
    assert_eq!(status[1]["listeners"].as_array().unwrap().len(), 2);
    let state_file = tunnels.state_dir().join("tunnels/app.json");
    assert_eq!(mode(&state_file), 0o600);
    assert_eq!(mode(&tunnels.state_dir().join("tunnels")), 0o700);
    let human = tunnels.run(&["status"]);
    let human = text(&human.stdout);
    assert!(
        human.contains(&format!("app  ready  {} (us-east-1)", emu.instance)),
        "{human}"
    );
    assert!(
        human.contains(&format!("  {app} -> localhost:{}", echo.port)),
        "{human}"
    );

    // One tunnel goes down, the other keeps serving.
    let out = tunnels.run(&["down", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "app: stopped\n");
    assert!(
        TcpStream::connect(&app).is_err(),
        "app's listener is closed"
    );
    echo_round_trip(&db, &random_bytes(256 * 1024, 3));
    let status = tunnels.status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["name"], "db");

    let out = tunnels.run(&["down", "--all"]);
    assert_eq!(text(&out.stdout), "db: stopped\n", "{}", text(&out.stderr));
    assert_eq!(
        text(&tunnels.run(&["status"]).stdout),
        "no tunnels are up\n"
    );
    tunnels.assert_none_running();
    // Both sessions were ended.
    poll(LIMIT, || (count(&log, "session ended") >= 2).then_some(()));
    // The reason went to StartSession: the emulator logs it with each session of app (a
    // port forward), and none with db's (to a remote host), which has no reason configured.
    let started: Vec<String> = read(&log)
        .lines()
        .filter(|l| l.contains("session started"))
        .map(str::to_owned)
        .collect();
    let remote = "document=AWS-StartPortForwardingSessionToRemoteHost";
    let (db_sessions, app_sessions): (Vec<&String>, Vec<&String>) =
        started.iter().partition(|l| l.contains(remote));
    assert!(!app_sessions.is_empty(), "{started:?}");
    assert!(!db_sessions.is_empty(), "{started:?}");
    for line in &app_sessions {
        assert!(
            line.contains("document=AWS-StartPortForwardingSession")
                && line.contains("reason=\"tunnel test\""),
            "{line}"
        );
    }
    for line in &db_sessions {
        assert!(!line.contains("reason="), "{line}");
    }
    drop(tunnels);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn tunnels_a_port_in_use_fails_before_any_aws_call() {
    let (emu, log, _dir) = emulator_with_log(&[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "[tunnels.free]\ntarget = \"{0}\"\nforward = [\"0:22\"]\n\n\
         [tunnels.busy]\ntarget = \"{0}\"\nforward = [\"{port}:22\"]\n",
        emu.instance
    );
    let tunnels = Tunnels::new(&emu, &config);
    let out = tunnels.run(&["up", "free", "busy"]);
    assert_eq!(out.status.code(), Some(249), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: tunnel busy ({}): could not listen on 127.0.0.1:{port}\nCaused by:\n  \
             Address already in use (os error 98)\nhint: another program listens on \
             127.0.0.1:{port}; pick another LOCAL port, or 0 for a free one\n",
            tunnels.home.path().join("config.toml").display()
        )
    );
    assert!(out.stdout.is_empty());
    assert_eq!(count(&log, "session started"), 0, "{}", read(&log));
    assert_eq!(
        text(&tunnels.run(&["status"]).stdout),
        "no tunnels are up\n"
    );
    tunnels.assert_none_running();
    // An unknown name is a configuration error naming the defined ones.
    let out = tunnels.run(&["up", "nope"]);
    assert_eq!(out.status.code(), Some(240), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("hint: the tunnels defined are: busy, free"),
        "{}",
        text(&out.stderr)
    );
    drop(tunnels);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn tunnels_a_killed_supervisor_is_shown_gone_and_cleaned() {
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let echo = TcpServer::echo();
    let config = format!(
        "[tunnels.app]\ntarget = \"{}\"\nforward = [\"0:{}\"]\n",
        emu.instance, echo.port
    );
    let tunnels = Tunnels::new(&emu, &config);
    let out = tunnels.run(&["up", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ready = tunnels.ready(&out);
    let pid = ready[0]["pid"].as_u64().unwrap() as u32;
    echo_round_trip(&local_of(&ready, "app", true), &random_bytes(64 * 1024, 4));
    let out = tunnels.run(&["up", "app"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "already up: {}",
        text(&out.stderr)
    );

    signal(pid, Signal::SIGKILL);
    poll(LIMIT, || (!alive(pid)).then_some(()));
    let out = tunnels.run(&["status"]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "app  gone  {} (us-east-1): its supervisor (pid {pid}) is no longer running; its \
             state was removed\n",
            emu.instance
        )
    );
    assert_eq!(
        text(&tunnels.run(&["status"]).stdout),
        "no tunnels are up\n"
    );
    // The name is free again.
    let out = tunnels.run(&["up", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = tunnels.run(&["down", "app"]);
    assert_eq!(text(&out.stdout), "app: stopped\n", "{}", text(&out.stderr));
    tunnels.assert_none_running();
    drop(tunnels);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn tunnels_carry_data_across_websocket_closes_and_count_reconnects() {
    let emu = EmulatorProcess::start(&["--no-pacing", "--close-every", "300"]);
    let echo = TcpServer::echo();
    let config = format!(
        "[tunnels.app]\ntarget = \"{}\"\nforward = [\"0:{}\"]\n",
        emu.instance, echo.port
    );
    let tunnels = Tunnels::new(&emu, &config);
    let out = tunnels.run(&["up", "app", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let app = local_of(&tunnels.ready(&out), "app", true);
    echo_round_trip(&app, &random_bytes(2 * 1024 * 1024, 5));
    let status = poll(LIMIT, || {
        let status = tunnels.status();
        let s = status.first()?;
        (s["state"] == "ready" && s["reconnects"].as_u64().unwrap_or(0) >= 1).then(|| s.clone())
    });
    assert_eq!(status["running"], true);
    assert!(status["bytes_down"].as_u64().unwrap() >= 2 * 1024 * 1024);
    let out = tunnels.run(&["down", "app"]);
    assert_eq!(text(&out.stdout), "app: stopped\n", "{}", text(&out.stderr));
    tunnels.assert_none_running();
    drop(tunnels);
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// A scratch home with a tunnels configuration, against one emulator; kills any supervisor
/// still holding one of its tunnels when dropped.
struct Tunnels<'a> {
    home: Home,
    emu: &'a EmulatorProcess,
}

impl<'a> Tunnels<'a> {
    fn new(emu: &'a EmulatorProcess, config: &str) -> Self {
        Self {
            home: Home::new(Some(config)),
            emu,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.home.path().join("state")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.home.command();
        self.emu.credentials_env(&mut command);
        command
            .env("AWS_ENDPOINT_URL", &self.emu.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("POSTERN_STATE_DIR", self.state_dir())
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), LIMIT * 2)
    }

    /// `up --json`'s lines.
    fn ready(&self, out: &Output) -> Vec<serde_json::Value> {
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON ready line"))
            .collect()
    }

    /// `status --json`'s objects.
    fn status(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        self.ready(&out)
    }

    fn registry(&self) -> Registry {
        Registry::new(&self.state_dir())
    }

    /// No tunnel is held, and the tunnels directory holds no state.
    fn assert_none_running(&self) {
        let registry = self.registry();
        assert_eq!(registry.names(), Vec::<String>::new());
        let left: Vec<_> = std::fs::read_dir(registry.dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            left,
            Vec::<String>::new(),
            "files left in the tunnels directory"
        );
    }
}

impl Drop for Tunnels<'_> {
    fn drop(&mut self) {
        let registry = self.registry();
        for name in registry.names() {
            if let Some(record) = registry.read(&name)
                && registry.is_held(&name)
            {
                signal(record.pid, Signal::SIGKILL);
            }
        }
    }
}

/// The local address of `tunnel`'s forward (`forward`) or SOCKS listener in `up --json`.
fn local_of(ready: &[serde_json::Value], tunnel: &str, forward: bool) -> String {
    ready
        .iter()
        .find(|r| r["tunnel"] == tunnel && r["remote"].is_string() == forward)
        .and_then(|r| r["local"].as_str())
        .unwrap_or_else(|| panic!("no listener of {tunnel} in {ready:?}"))
        .to_owned()
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// An emulator logging at info level to a file (its sessions).
fn emulator_with_log(extra: &[&str]) -> (EmulatorProcess, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("emulator.log");
    let path = log.to_str().expect("UTF-8 temp path").to_owned();
    let mut args = vec!["--no-pacing", "--log-file", &path, "-v"];
    args.extend_from_slice(extra);
    let emu = EmulatorProcess::start(&args);
    (emu, log, dir)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn count(log: &Path, needle: &str) -> usize {
    read(log).lines().filter(|l| l.contains(needle)).count()
}
