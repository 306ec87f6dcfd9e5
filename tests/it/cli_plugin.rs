//! postern as `session-manager-plugin` under the real AWS CLI (`aws ssm start-session
//! --endpoint-url <emulator>`): the link made by `postern install-plugin` first on PATH, then a
//! shell with scripted input, a port forward (AWS-StartPortForwardingSession, sha256-checked
//! echo) ended by Ctrl-C as a terminal sends it (SIGINT to the process group, which the CLI
//! ignores), a second Ctrl-C that stops waiting for the wind-down, and ssh with `ProxyCommand="aws ssm start-session --document-name
//! AWS-StartSSHSession …"` against a loopback sshd. Also the plugin's own argument contract.
//!
//! The AWS CLI comes from POSTERN_TEST_AWS_CLI, which `scripts/test` sets to the venv it
//! creates; without it the tests fail and say how to create it.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::data::random_bytes;
use crate::support::emulator::EmulatorProcess;
use crate::support::net::{TcpServer, echo_round_trip};
use crate::support::poll::poll;
use crate::support::process::{killpg, lines, postern, run, run_with_input, text};
use crate::support::sshd::Sshd;

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn plugin_contract_answers_like_the_official_plugin() {
    let bin = PluginDir::new();
    let plugin = bin.dir.join("session-manager-plugin");
    let out = run(Command::new(&plugin), LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a \
         session.\n\n"
    );
    let mut version = Command::new(&plugin);
    version.arg("--version");
    let out = run(version, LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "1.2.764.0\n");
    let mut via_subcommand = Command::new(postern());
    via_subcommand.args(["plugin", "--version"]);
    assert_eq!(text(&run(via_subcommand, LIMIT).stdout), "1.2.764.0\n");
    let mut unknown = Command::new(&plugin);
    unknown.arg("hello");
    let out = run(unknown, LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "\nUnknown operation hello. \nUse session-manager-plugin --version to check the \
         version.\n\n"
    );
    // A StartSession response given alone is not repeated: it holds the session token.
    let mut response_alone = Command::new(&plugin);
    response_alone.arg(r#"{"SessionId":"s-1","TokenValue":"tok-secret","StreamUrl":"wss://h/x"}"#);
    let out = run(response_alone, LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("Unknown operation (a StartSession response, not shown)."),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("tok-secret"));
    // The environment form without the variable: a clear error, not a panic.
    let mut missing = Command::new(&plugin);
    missing.env_remove("AWS_SSM_START_SESSION_RESPONSE").args([
        "AWS_SSM_START_SESSION_RESPONSE",
        "us-east-1",
        "StartSession",
        "",
        r#"{"Target":"i-0a1b2c3d4e5f60718"}"#,
        "http://127.0.0.1:9",
    ]);
    let out = run(missing, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: session-manager-plugin could not start the session\nCaused by:\n  the \
         environment variable AWS_SSM_START_SESSION_RESPONSE holding the StartSession response \
         is not set\nhint: this argument form is for the AWS CLI, which sets the variable; run \
         the session through `aws ssm start-session`\n"
    );
}

#[test]
fn aws_cli_shell_session_runs_through_postern_with_the_response_in_the_environment() {
    let aws = aws_cli();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let bin = PluginDir::new();
    // A wrapper records argv[1] (the response, or the variable's name) and runs postern as
    // `postern plugin`.
    let argv1 = bin.dir.join("argv1.txt");
    let wrapper = bin.dir.join("wrapped").join("session-manager-plugin");
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{}'\nexec '{}' plugin \"$@\"\n",
            argv1.display(),
            postern()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (plugin_dir, label) in [
        (bin.dir.clone(), "link"),
        (wrapper.parent().unwrap().to_path_buf(), "wrapper"),
    ] {
        let history = bin.dir.join(format!("history-{label}.jsonl"));
        let mut cmd = aws_command(&aws, &plugin_dir, &emu);
        cmd.env("POSTERN_HISTORY_FILE", &history).args([
            "ssm",
            "start-session",
            "--target",
            &emu.instance,
            "--reason",
            "plugin test",
        ]);
        let out = run_with_input(cmd, b"echo plugin-$((6 * 7))\nexit 0\n", LIMIT);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{label}: stdout {stdout}\nstderr {}",
            text(&out.stderr)
        );
        assert!(stdout.contains("plugin-42"), "{label}: {stdout}");
        assert!(
            stdout.starts_with("\nStarting session with SessionId: "),
            "{label}: {stdout}"
        );
        assert!(
            stdout.contains("\n\nExiting session with sessionId: "),
            "{label}: {stdout}"
        );
        // The audit trail names the session the CLI started, never its token.
        let record = std::fs::read_to_string(&history).expect("history written");
        let line: serde_json::Value = serde_json::from_str(record.lines().last().unwrap()).unwrap();
        assert_eq!(line["kind"], "plugin", "{record}");
        assert_eq!(line["target"], emu.instance.as_str(), "{record}");
        assert_eq!(line["reason"], "plugin test", "{record}");
        assert_eq!(line["exit_status"], 0, "{record}");
        let identity = line["identity"].as_str().unwrap_or_default();
        assert!(
            identity.starts_with("arn:aws:iam::") && identity.ends_with(":user/postern-emulator"),
            "{record}"
        );
        assert!(
            identity.contains(line["account"].as_str().unwrap()),
            "{record}"
        );
        let session = line["session_ids"][0].as_str().unwrap();
        assert!(stdout.contains(session), "{label}: {stdout}");
        assert!(!record.to_lowercase().contains("token"), "{record}");
    }
    // Version above 1.2.497.0: the CLI passed the response through the environment.
    assert_eq!(
        std::fs::read_to_string(&argv1).unwrap(),
        "AWS_SSM_START_SESSION_RESPONSE\n"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn an_encrypted_aws_cli_shell_asks_kms_at_kms_s_endpoint_not_at_ssm_s() {
    // As in AWS, the endpoint the CLI hands over (argv[6], SSM's) serves no KMS call: the data
    // key must come from KMS's own endpoint (AWS_ENDPOINT_URL_KMS here).
    let aws = aws_cli();
    let emu = EmulatorProcess::start(&[
        "--no-pacing",
        "--session-kms-key",
        "alias/session-manager",
        "--separate-kms-endpoint",
    ]);
    let kms_endpoint = emu
        .kms_endpoint
        .clone()
        .expect("the ready line names KMS's endpoint");
    let bin = PluginDir::new();
    let start = |kms: &str| {
        let mut cmd = aws_command(&aws, &bin.dir, &emu);
        cmd.env("AWS_ENDPOINT_URL_KMS", kms);
        cmd.args(["ssm", "start-session", "--target", &emu.instance]);
        run_with_input(cmd, b"echo kms-$((6 * 7))\nexit 0\n", LIMIT)
    };

    let out = start(&kms_endpoint);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout {stdout}\nstderr {}",
        text(&out.stderr)
    );
    // The agent asked for encryption (--session-kms-key): no data key, no shell.
    assert!(stdout.contains("kms-42"), "{stdout}");
    assert_eq!(emu.violations(), Vec::<String>::new(), "violations");

    // Control: KMS sent to SSM's endpoint is refused there, and the session fails.
    let out = start(&emu.endpoint);
    assert_ne!(out.status.code(), Some(0), "stdout {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("GenerateDataKey"), "{stderr}");
    let violations = emu.stop();
    assert!(
        violations.iter().any(|v| v.contains("wrong_endpoint")),
        "the emulator saw KMS at SSM's endpoint: {violations:?}"
    );
}

#[test]
fn a_production_instance_of_the_index_gets_a_warning_in_plugin_mode() {
    let aws = aws_cli();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let bin = PluginDir::new();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let session = |env: &str| {
        let config = home.path().join(format!("config-{env}.toml"));
        std::fs::write(
            &config,
            format!(
                "role = \"PosternAccess\"\nregions = [\"us-east-1\"]\n\n[[accounts]]\n\
                 id = \"{}\"\nalias = \"emu-{env}\"\nenv = \"{env}\"\n",
                emu.management_account
            ),
        )
        .unwrap();
        // The index, as `postern list` caches it.
        let mut list = emu.command(&["list", "--refresh", "--region", "us-east-1"]);
        list.env("POSTERN_CONFIG", &config)
            .env("POSTERN_CACHE_DIR", &cache);
        let listed = run(list, LIMIT);
        assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
        assert!(
            text(&listed.stdout).contains(&emu.instance),
            "{}",
            text(&listed.stdout)
        );

        let mut cmd = aws_command(&aws, &bin.dir, &emu);
        cmd.env("POSTERN_CONFIG", &config)
            .env("POSTERN_CACHE_DIR", &cache)
            .args(["ssm", "start-session", "--target", &emu.instance]);
        let out = run_with_input(cmd, b"exit 0\n", LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stderr)
    };

    let stderr = session("prod");
    assert!(
        stderr.contains(&format!(
            "postern: warning: {} is a production instance (account emu-prod, environment prod)",
            emu.instance
        )),
        "{stderr}"
    );
    let stderr = session("dev");
    assert!(!stderr.contains("production"), "{stderr}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn aws_cli_port_forward_carries_data_and_stops_on_ctrl_c() {
    let aws = aws_cli();
    let server = TcpServer::echo();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let bin = PluginDir::new();
    let forward = AwsPortForward::start(&aws, &bin, &emu, server.port);
    for round in 0..2 {
        echo_round_trip(
            &format!("127.0.0.1:{}", forward.port),
            &random_bytes(2 * 1024 * 1024, round),
        );
    }
    assert_eq!(
        forward
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .as_deref(),
        Some("Waiting for connections...")
    );
    // Ctrl-C on a terminal: SIGINT to the foreground group. The CLI ignores it, the plugin
    // (which started with SIGINT ignored) must still act on it.
    forward.ctrl_c();
    let (status, rest, stderr) = forward.finish();
    assert_eq!(status.code(), Some(0), "stderr {stderr}, stdout {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l == "Terminate signal received, exiting."),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("Connection accepted for session [")),
        "{rest:?}"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_second_ctrl_c_under_the_aws_cli_leaves_at_once_and_ends_the_session() {
    let aws = aws_cli();
    let server = TcpServer::echo();
    // The websocket goes silent after the handshake (see cancelled_starts' test of the same):
    // the agent never answers the TerminateSession flag, and the polite end would wait it out
    // (2 s) and then call TerminateSession itself (1 s, as every API call): the window for the
    // second Ctrl-C. The AWS CLI does not end the session for us.
    let emu = EmulatorProcess::start(&["--no-pacing", "--stall-after", "5", "--api-latency", "1s"]);
    let bin = PluginDir::new();
    let forward = AwsPortForward::start(&aws, &bin, &emu, server.port);
    forward.ctrl_c();
    forward.stdout_line("Terminate signal received, exiting.");
    forward.ctrl_c();
    let (status, rest, stderr) = forward.finish();
    assert_eq!(status.code(), Some(0), "stderr {stderr}, stdout {rest:?}");
    // The exit sweep ended the AWS CLI's session, which the aborted wind-down left open.
    assert!(
        stderr.contains("ended 1 session left open by the stopped command"),
        "stderr {stderr}, stdout {rest:?}"
    );
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

#[test]
fn a_window_resize_while_the_aws_cli_session_opens_does_not_end_the_forward() {
    let aws = aws_cli();
    let server = TcpServer::echo();
    // Every message of the emulator held 1 s: the handshake takes that long at least.
    let emu = EmulatorProcess::start(&["--no-pacing", "--delay", "1s"]);
    let bin = PluginDir::new();
    let log = bin.dir.join("plugin.log");
    let mut forward = AwsPortForward::spawn(
        &aws,
        &bin,
        &emu,
        server.port,
        &[
            ("POSTERN_LOG", Path::new("debug")),
            ("POSTERN_LOG_FILE", &log),
        ],
    );
    // The data channel is opening: the signal handlers are in place, the handshake is not done.
    poll(LIMIT, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("opening data channel"))
    });
    for _ in 0..3 {
        forward.signal(Signal::SIGWINCH);
    }
    forward.wait_until_listening();
    echo_round_trip(
        &format!("127.0.0.1:{}", forward.port),
        &random_bytes(64 * 1024, 7),
    );
    forward.ctrl_c();
    let (status, rest, stderr) = forward.finish();
    assert_eq!(status.code(), Some(0), "stderr {stderr}, stdout {rest:?}");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// `aws ssm start-session` of a port forward to `port` on the emulator's instance, through
/// postern as the plugin, in a process group of its own (so that a terminal's Ctrl-C can be
/// imitated: SIGINT to the group); started until its `Port … opened` line.
struct AwsPortForward {
    child: std::process::Child,
    stdout: mpsc::Receiver<String>,
    /// The local port the plugin listens on, once it does.
    port: u16,
    _watchdog: Watchdog,
}

impl AwsPortForward {
    fn start(aws: &Path, bin: &PluginDir, emu: &EmulatorProcess, port: u16) -> Self {
        let mut forward = Self::spawn(aws, bin, emu, port, &[]);
        forward.wait_until_listening();
        forward
    }

    /// Starts it with `env` added, without waiting.
    fn spawn(
        aws: &Path,
        bin: &PluginDir,
        emu: &EmulatorProcess,
        port: u16,
        env: &[(&str, &Path)],
    ) -> Self {
        let mut cmd = aws_command(aws, &bin.dir, emu);
        let parameters = format!(r#"{{"portNumber":["{port}"],"localPortNumber":["0"]}}"#);
        cmd.args([
            "ssm",
            "start-session",
            "--target",
            &emu.instance,
            "--document-name",
            "AWS-StartPortForwardingSession",
            "--parameters",
            &parameters,
        ])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut child = cmd.spawn().expect("spawn aws");
        let watchdog = Watchdog::new(child.id(), LIMIT);
        let stdout = lines(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            port: 0,
            _watchdog: watchdog,
        }
    }

    /// Waits (bounded) for the `Port … opened` line and takes the port from it.
    fn wait_until_listening(&mut self) {
        let mut seen = Vec::new();
        self.port = loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `Port … opened` line; stdout so far: {seen:?}"));
            seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("Port ") {
                break rest.split(' ').next().unwrap().parse().unwrap();
            }
        };
        assert!(
            seen[0].is_empty() && seen[1].starts_with("Starting session with SessionId: "),
            "{seen:?}"
        );
    }

    /// Sends `signal` to the process group.
    fn signal(&self, signal: Signal) {
        killpg(self.child.id(), signal).expect("signal to the process group");
    }

    /// SIGINT to the process group, as a terminal's Ctrl-C.
    fn ctrl_c(&self) {
        self.signal(Signal::SIGINT);
    }

    /// Waits (bounded) for the stdout line `wanted`.
    fn stdout_line(&self, wanted: &str) {
        let mut seen = Vec::new();
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no stdout line {wanted:?}; got {seen:?}"));
            if line == wanted {
                return;
            }
            seen.push(line);
        }
    }

    /// Waits for the exit; the status, the rest of stdout and all of stderr.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let status = self.child.wait().unwrap();
        // The reader thread ends with the process's stdout: this drains what is left.
        let rest: Vec<String> = self.stdout.iter().collect();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, rest, stderr)
    }
}

#[test]
fn ssh_with_an_aws_cli_proxy_command_reaches_a_real_sshd_through_postern() {
    let aws = aws_cli();
    let sshd = Sshd::start();
    let emu = EmulatorProcess::start(&["--no-pacing"]);
    let bin = PluginDir::new();
    let proxy = format!(
        "{} ssm start-session --endpoint-url {} --region us-east-1 --target %h --document-name \
         AWS-StartSSHSession --parameters portNumber=%p",
        aws.display(),
        emu.endpoint
    );
    let mut ssh = Command::new("sh");
    ssh.env_clear()
        .envs(aws_env(&bin.dir, &emu))
        .arg("-c")
        .arg(format!(
            "exec ssh {} -p {} {} 'echo over-ssh; exit 3'",
            sshd.client_options(&proxy),
            sshd.port,
            emu.instance
        ));
    let out = run(ssh, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ssh stdout {}, stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "over-ssh\n");
    assert_eq!(emu.stop(), Vec::<String>::new(), "violations");
}

/// A temp dir holding `session-manager-plugin`, linked by `postern install-plugin`.
struct PluginDir {
    dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl PluginDir {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("bin");
        let mut install = Command::new(postern());
        install
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .arg("install-plugin")
            .arg(&dir);
        let out = run(install, LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(
            said.contains(&format!("{} is on PATH", dir.display())),
            "{said}"
        );
        let link = dir.join("session-manager-plugin");
        assert_eq!(
            std::fs::read_link(&link).unwrap().canonicalize().unwrap(),
            Path::new(postern()).canonicalize().unwrap()
        );
        Self { dir, _temp: temp }
    }
}

/// The AWS CLI to test with.
fn aws_cli() -> PathBuf {
    let candidate = std::env::var_os("POSTERN_TEST_AWS_CLI")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_default();
    assert!(
        candidate.is_file(),
        "the AWS CLI for these tests is missing (POSTERN_TEST_AWS_CLI={:?}): run the tests with \
         `scripts/test` (it makes a pinned awscli venv and sets POSTERN_TEST_AWS_CLI), or point \
         POSTERN_TEST_AWS_CLI at an `aws` executable",
        candidate.display()
    );
    candidate
}

/// `aws` against the emulator, with [`aws_env`].
fn aws_command(aws: &Path, plugin_dir: &Path, emu: &EmulatorProcess) -> Command {
    let mut cmd = Command::new(aws);
    cmd.env_clear().envs(aws_env(plugin_dir, emu)).args([
        "--endpoint-url",
        &emu.endpoint,
        "--region",
        "us-east-1",
    ]);
    cmd
}

/// The AWS CLI's environment: the emulator's base credentials, no config files, `plugin_dir`
/// first on PATH.
fn aws_env(plugin_dir: &Path, emu: &EmulatorProcess) -> Vec<(String, String)> {
    [
        ("PATH", format!("{}:/usr/bin:/bin", plugin_dir.display())),
        ("HOME", "/nonexistent".to_owned()),
        (
            "AWS_ACCESS_KEY_ID",
            emu.credentials.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            emu.credentials.secret_access_key().to_owned(),
        ),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        // Where the plugin's audit record looks the caller up (argv[6] is SSM's endpoint).
        ("AWS_ENDPOINT_URL_STS", emu.endpoint.clone()),
        (
            "POSTERN_HISTORY_FILE",
            plugin_dir.join("history.jsonl").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Kills a process group when a test overruns.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    fn new(pgid: u32, limit: Duration) -> Self {
        let (done, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        });
        Self { done: Some(done) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}
