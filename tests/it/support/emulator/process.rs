//! `postern emulator` as a child process on loopback (port 0), for the tests that run the real
//! binary against it: started with a bounded lifetime and a violations log, stopped on drop.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use aws_credential_types::Credentials;

use crate::support::aws::{credentials_env, sdk_config, static_credentials, sts_credentials};
use crate::support::process::{base_command, exit_within, lines, postern, terminate};

/// A `postern emulator` process, stopped (SIGTERM) on drop.
pub(crate) struct EmulatorProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) endpoint: String,
    /// KMS's own endpoint, with `--separate-kms-endpoint`.
    pub(crate) kms_endpoint: Option<String>,
    /// The instance with a current agent.
    pub(crate) instance: String,
    /// The fleet's management account, where the base credentials act.
    pub(crate) management_account: String,
    /// The emulator's base credentials for this run, from its ready line: the only long-term
    /// keys it accepts.
    pub(crate) credentials: Credentials,
    /// Where the emulator logs client violations.
    violations_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EmulatorProcess {
    /// Starts `postern emulator` with `extra` flags and waits (bounded) for its ready line.
    pub(crate) fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Starts it as [`EmulatorProcess::start`] does with `env` set for it, and so for the
    /// commands its sessions run on the "instance".
    pub(crate) fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_for(LIFETIME, extra, env)
    }

    /// Starts it as [`EmulatorProcess::start_with_env`] does, to stop by itself after
    /// `lifetime` (its `--exit-after`, for example `3s`).
    pub(crate) fn start_for(lifetime: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let violations_log = dir.path().join("violations.jsonl");
        let mut child = Command::new(postern())
            .envs(env.iter().copied())
            .arg("emulator")
            .args(["--exit-after", lifetime, "--violations-log"])
            .arg(&violations_log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postern emulator");
        let stdout = lines(child.stdout.take().expect("piped stdout"));
        let line = match stdout.recv_timeout(READY_LIMIT) {
            Ok(line) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("emulator gave no ready line ({other:?}); stderr: {err}");
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        let field = |name: &str| {
            ready[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in the ready line"))
                .to_owned()
        };
        Self {
            credentials: static_credentials(&field("access_key_id"), &field("secret_access_key")),
            child,
            endpoint: ready["endpoint"].as_str().expect("endpoint").to_owned(),
            kms_endpoint: ready["kms_endpoint"].as_str().map(str::to_owned),
            instance: ready["instances"][0]
                .as_str()
                .expect("an instance")
                .to_owned(),
            management_account: field("management_account"),
            violations_log,
            _dir: dir,
        }
    }

    /// A `postern` command against this emulator, signing with its base credentials.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = base_command();
        self.credentials_env(&mut cmd);
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint).args(args);
        cmd
    }

    /// Sets the emulator's base credentials as the AWS environment of `command`.
    pub(crate) fn credentials_env(&self, command: &mut Command) {
        credentials_env(command, &self.credentials);
    }

    /// `AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…`, for a shell script's `export`.
    pub(crate) fn credentials_exports(&self) -> String {
        format!(
            "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
            self.credentials.access_key_id(),
            self.credentials.secret_access_key()
        )
    }

    /// AssumeRole of `role_arn` with the base credentials (the real SDK, signed): the
    /// temporary credentials the emulator issued.
    pub(crate) fn assume_role(&self, role_arn: &str) -> Credentials {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let config = sdk_config(&self.endpoint, "us-east-1", self.credentials.clone());
            let request = aws_sdk_sts::Client::new(&config)
                .assume_role()
                .role_arn(role_arn)
                .role_session_name("postern-test")
                .send();
            let output = tokio::time::timeout(READY_LIMIT, request)
                .await
                .expect("AssumeRole answers in time")
                .expect("AssumeRole succeeds");
            sts_credentials(output.credentials.expect("credentials"))
        })
    }

    /// The base credentials as the keys of an AWS credentials-file section.
    pub(crate) fn credentials_ini(&self) -> String {
        format!(
            "aws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.credentials.access_key_id(),
            self.credentials.secret_access_key()
        )
    }

    /// The client violations logged so far, one JSON line each.
    pub(crate) fn violations(&self) -> Vec<String> {
        read_violations(&self.violations_log)
    }

    /// Stops the emulator and returns the violations it logged (one JSON line each).
    pub(crate) fn stop(mut self) -> Vec<String> {
        terminate(&mut self.child);
        read_violations(&self.violations_log)
    }

    /// Waits (bounded by `limit`) for the emulator to end by itself; its exit status and
    /// stderr, or None (the emulator then killed) when it did not end in time.
    pub(crate) fn wait_for_exit(mut self, limit: Duration) -> Option<(ExitStatus, String)> {
        let status = exit_within(&mut self.child, limit)?;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("the emulator's stderr");
        }
        Some((status, stderr))
    }

    /// Kills the emulator with SIGKILL: the service vanishes without closing anything, as a
    /// network outage looks from the client.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// How long a test's emulator lives at most (its `--exit-after`).
const LIFETIME: &str = "120s";

/// How long the emulator may take to print its ready line.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The violations log's lines. The emulator creates the file when it starts: a log that cannot
/// be read is a broken test set-up, never "no violations".
fn read_violations(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the emulator's violations log {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}
