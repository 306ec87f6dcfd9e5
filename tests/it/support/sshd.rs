//! A throwaway sshd for tests that drive real OpenSSH: `sshd -D -e -f CONFIG` on a free
//! loopback port, host key and authorized key generated in a temp dir, killed on drop and by
//! its own `timeout` wrapper. Missing tools fail with a clear message.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::net::free_port;
use super::poll::try_poll;

/// A throwaway sshd: `sshd -D -e -f CONFIG` on a free loopback port, killed on drop and by its
/// own `timeout` wrapper.
pub(crate) struct Sshd {
    child: Child,
    /// The loopback port it listens on.
    pub(crate) port: u16,
    /// Its temp dir (keys, config; free for test files).
    pub(crate) dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd and waits (bounded) until it listens.
    pub(crate) fn start() -> Self {
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
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorize the client key");
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {dir}/host_key\nAuthorizedKeysFile \
             {dir}/authorized_keys\nPidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication \
             yes\nAllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
        std::fs::create_dir_all("/run/sshd").ok();
        let mut child = Command::new("timeout")
            .args(["120", "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        if try_poll(STARTUP, || TcpStream::connect(("127.0.0.1", port)).ok()).is_none() {
            let _ = child.kill();
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
            _temp: temp,
        }
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long sshd may take to listen.
const STARTUP: Duration = Duration::from_secs(20);
