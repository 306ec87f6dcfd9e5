"""A throwaway OpenSSH server on loopback for the benchmarks that copy files with scp
(bench/cp.sh, bench/compare.sh). Python 3 standard library only."""

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# What a scp run needs on this machine; without them the callers skip their scp figures.
TOOLS = ("/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/scp")


def available():
    return all(os.path.exists(tool) for tool in TOOLS)


class Sshd:
    """sshd on a free loopback port: host and client keys generated in a private temp dir,
    stopped by `stop` (and by its own `timeout` after 30 minutes)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-bench-sshd-")
        self.proc = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        os.chmod(self.dir, 0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(self.dir, key)], check=True)
        shutil.copy(os.path.join(self.dir, "client_key.pub"),
                    os.path.join(self.dir, "authorized_keys"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(f"ListenAddress 127.0.0.1:{self.port}\nHostKey {self.dir}/host_key\n"
                    f"AuthorizedKeysFile {self.dir}/authorized_keys\nPidFile {self.dir}/pid\n"
                    "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                    f"AllowUsers {getpass.getuser()}\nSubsystem sftp internal-sftp\n"
                    "LogLevel ERROR\n")
        if os.geteuid() == 0:
            # sshd's privilege separation directory; a user's sshd runs without one.
            os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["timeout", "1800", "/usr/sbin/sshd", "-D", "-e", "-f",
                                      config],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("sshd did not listen")
                time.sleep(0.05)

    def scp(self, proxy, source, dest, env, limit):
        """`scp source dest` with `proxy` as its ProxyCommand (ssh fills in %h and %p: the
        instance and this sshd's port); the seconds it took. Raises on a failed copy."""
        args = ["scp", "-q", "-F", "/dev/null", "-i", os.path.join(self.dir, "client_key"),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={proxy}", "-P", str(self.port),
                source, dest]
        start = time.monotonic()
        # A group of its own: on a timeout ssh and its ProxyCommand (the AWS CLI and its
        # plugin) stop with scp.
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"{shlex.join(args)} took over {limit:.0f} s")
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed: {stderr.decode()}")
        return time.monotonic() - start

    def stop(self):
        try:
            if self.proc is not None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
