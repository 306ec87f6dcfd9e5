//! A throwaway sshd for tests that drive real OpenSSH: `sshd -D -e -f CONFIG` on a free
//! loopback port, host key and authorized key generated in a temp dir, stopped with its own
//! `timeout` wrapper on drop, and by that wrapper otherwise. Missing tools fail with a clear message.
//!
//! [`Sshd::start_with_pushed_keys`] authorizes no key file at all: only the keys EC2 Instance
//! Connect pushed to the emulator in the last 60 seconds, read by an AuthorizedKeysCommand
//! (curl of the emulator's active-keys GET), as an instance's eic_curl_authorized_keys does.

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::net::free_port;
use super::poll::try_poll;
use super::process::stop_group;

/// A throwaway sshd: `sshd -D -e -f CONFIG` on a free loopback port, killed on drop and by its
/// own `timeout` wrapper.
pub(crate) struct Sshd {
    child: Child,
    /// The loopback port it listens on.
    pub(crate) port: u16,
    /// Its temp dir (keys, config; free for test files).
    pub(crate) dir: PathBuf,
    /// The emulator's active-keys URL with `%u` for the user, with
    /// [`Sshd::start_with_pushed_keys`].
    keys_url: Option<String>,
    _temp: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd authorizing `client_key` (in [`Sshd::dir`]) and waits (bounded) until it
    /// listens.
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts sshd authorizing only the keys pushed to the emulator at `endpoint` for
    /// `instance` in the last 60 seconds (no authorized_keys file).
    pub(crate) fn start_with_pushed_keys(endpoint: &str, instance: &str) -> Self {
        Self::start_with(Some((endpoint, instance)))
    }

    fn start_with(pushed_keys: Option<(&str, &str)>) -> Self {
        for tool in [
            "/usr/sbin/sshd",
            "/usr/bin/ssh",
            "/usr/bin/ssh-keygen",
            "/usr/bin/scp",
        ] {
            assert!(
                Path::new(tool).exists(),
                "{tool} not found: install openssh-server and openssh-client (`.ci/run` does)"
            );
        }
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        // sshd refuses group- or world-writable directories on the key paths.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod the temp dir");
        for (key, kind) in [("host_key", "ed25519"), ("client_key", "ed25519")] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        }
        let port = free_port();
        let user = login_user();
        let (authorization, keys_url) = match pushed_keys {
            None => {
                std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
                    .expect("authorize the client key");
                (
                    format!("AuthorizedKeysFile {}/authorized_keys\n", dir.display()),
                    None,
                )
            }
            Some((endpoint, instance)) => {
                let url = active_keys_url(endpoint, instance);
                let authorization = format!(
                    "AuthorizedKeysFile none\nAuthorizedKeysCommand {CURL} -sf {url}\n\
                     AuthorizedKeysCommandUser {user}\n"
                );
                (authorization, Some(url))
            }
        };
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {dir}/host_key\n{authorization}\
             PidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication \
             yes\nAllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
        std::fs::create_dir_all("/run/sshd").ok();
        // A group of its own: Drop stops the watchdog and sshd together.
        let mut child = Command::new("timeout")
            .args(["120", "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start sshd");
        if try_poll(STARTUP, || TcpStream::connect(("127.0.0.1", port)).ok()).is_none() {
            stop_group(&mut child);
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("sshd did not listen on 127.0.0.1:{port}: {err}");
        }
        Self {
            child,
            port,
            dir,
            keys_url,
            _temp: temp,
        }
    }

    /// What the AuthorizedKeysCommand prints for `user` (as sshd runs it).
    pub(crate) fn authorized_keys_for(&self, user: &str) -> String {
        let url = self.keys_url.as_ref().expect("started with pushed keys");
        let out = Command::new(CURL)
            .args(["-sf", &url.replace("%u", user)])
            .output()
            .expect("run the AuthorizedKeysCommand");
        String::from_utf8(out.stdout).expect("keys are text")
    }

    /// ssh options: our key, no known_hosts, the proxy.
    pub(crate) fn client_options(&self, proxy: &str) -> String {
        format!(
            "-F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o \
             StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o \
             ProxyCommand='{proxy}'",
            key = self.dir.join("client_key").display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// The user sshd lets in (the test's own: sshd cannot switch to another without root).
pub(crate) fn login_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".to_owned())
}

/// The emulator's active-keys URL for `instance`, with sshd's `%u` token for the user. sshd
/// runs an AuthorizedKeysCommand only when the program and every directory above it belong to
/// root and are not group- or world-writable, which rules out a script in a temp dir under
/// /tmp (a clone's target dir may well be there): curl itself is the command, the URL its
/// argument, as an instance's eic_curl_authorized_keys fetches IMDS.
fn active_keys_url(endpoint: &str, instance: &str) -> String {
    assert!(
        Path::new(CURL).exists(),
        "{CURL} not found: the pushed-keys sshd's AuthorizedKeysCommand needs curl"
    );
    postern_emulator::active_keys_url(endpoint, instance, "USER").replace("/USER/", "/%u/")
}

/// The HTTP client the AuthorizedKeysCommand runs.
const CURL: &str = "/usr/bin/curl";

/// How long sshd may take to listen.
const STARTUP: Duration = Duration::from_secs(20);

/// A throwaway `ssh-agent -D -a SOCKET`, killed on drop and by its own `timeout` wrapper.
pub(crate) struct SshAgent {
    child: Child,
    /// Its socket, for SSH_AUTH_SOCK.
    pub(crate) socket: PathBuf,
    _temp: tempfile::TempDir,
}

impl SshAgent {
    /// Starts the agent and waits (bounded) for its socket.
    pub(crate) fn start() -> Self {
        assert!(
            Path::new("/usr/bin/ssh-agent").exists(),
            "/usr/bin/ssh-agent not found: install openssh-client"
        );
        let temp = tempfile::tempdir().expect("temp dir");
        let socket = temp.path().join("agent.sock");
        let mut child = Command::new("timeout")
            .args(["120", "/usr/bin/ssh-agent", "-D", "-a"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start ssh-agent");
        if try_poll(STARTUP, || socket.exists().then_some(())).is_none() {
            stop_group(&mut child);
            panic!("ssh-agent made no socket at {}", socket.display());
        }
        Self {
            child,
            socket,
            _temp: temp,
        }
    }

    /// `ssh-add -l`: the keys it holds (fingerprint, comment, type), or its "no identities".
    pub(crate) fn list(&self) -> String {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("run ssh-add -l");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}
