#!/usr/bin/env python3
"""Measurements for bench/cp.sh (see there). Loopback only, port 0, every wait bounded."""
import getpass
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import forward_bench as fb

POSTERN, PROFILE = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv[3:]
MIB = 1024 * 1024
SIZE = (16 if QUICK else 64) * MIB
PORT_SAMPLE = (2 if QUICK else 8) * 1_000_000
LIMIT = 900


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def postern(emu, args):
    """Runs postern; (seconds, peak RSS in MiB). Fails loudly on a non-zero exit."""
    env = dict(fb.ENV, AWS_ENDPOINT_URL=emu.endpoint)
    start = time.monotonic()
    proc = subprocess.Popen([POSTERN] + args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = start + LIMIT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"postern {' '.join(args)} took over {LIMIT} s")
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"postern {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


class Sshd:
    """A throwaway sshd on a free loopback port: host and client keys generated in a private
    temp dir, killed on stop (and by its own `timeout`)."""

    TOOLS = ("/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/scp")

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-cp-bench-sshd-")
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
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["timeout", "1800", "/usr/sbin/sshd", "-D", "-e", "-f", config],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("sshd did not listen")
                time.sleep(0.05)

    def scp(self, emu, source, dest):
        """scp source dest through `postern ssh-proxy`; seconds."""
        proxy = f"env AWS_ENDPOINT_URL={emu.endpoint} {POSTERN} ssh-proxy %h %p"
        args = ["scp", "-q", "-F", "/dev/null", "-i", os.path.join(self.dir, "client_key"),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={proxy}", "-P", str(self.port),
                source, dest]
        start = time.monotonic()
        done = subprocess.run(args, env=fb.ENV, stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=LIMIT)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed: {done.stderr.decode()}")
        return time.monotonic() - start

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def row(name, secs, rss, port_rate, extra=""):
    rate = SIZE / secs
    print(f"{name:58} {rate / 1e6:8.2f} MB/s  {secs:6.2f} s  "
          f"{rate / port_rate:5.1f}x port  peak RSS {rss:5.1f} MiB{extra}")
    return rate


def cp(emu, direction, sessions, src, dst_dir, want):
    """One SHA-256-checked copy of src; (seconds, peak RSS)."""
    dst = os.path.join(dst_dir, f"{direction}-{sessions}.bin")
    if direction == "download":
        args = ["cp", "--sessions", str(sessions), f"{emu.instance}:{src}", dst]
    else:
        args = ["cp", "--sessions", str(sessions), src, f"{emu.instance}:{dst}"]
    secs, rss = postern(emu, args)
    if sha256(dst) != want:
        raise RuntimeError(f"{direction} --sessions {sessions}: SHA-256 differs")
    os.remove(dst)
    return secs, rss


def main():
    source_port, _ = fb.servers()
    emu = fb.Emulator(paced=True)
    try:
        fwd = fb.Forward(emu, source_port, 1)
        try:
            port_rate = PORT_SAMPLE / fb.download(fwd.port, PORT_SAMPLE)
        finally:
            fwd.stop()
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"postern cp bench, {PROFILE} build, emulator pacing on, {SIZE // MIB} MiB random, "
              f"load average {load} on {os.cpu_count()} CPUs")
        print(f"{'one SSM port session, paced (baseline)':58} {port_rate / 1e6:8.2f} MB/s")
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src.bin")
            with open(src, "wb") as f:
                for _ in range(SIZE // MIB):
                    f.write(os.urandom(MIB))
            want = sha256(src)
            # Without `postern setup`: no Postern-Command, every session a paced PTY.
            one = None
            for sessions in (1, 8):
                secs, rss = cp(emu, "download", sessions, src, tmp, want)
                extra = "" if one is None else f"  {one / secs:4.1f}x one session"
                one = one or secs
                row(f"cp download without setup (PTY) --sessions {sessions}", secs, rss,
                    port_rate, extra)
            postern(emu, ["setup"])
            for direction in ("download", "upload"):
                for sessions in (1, 4, 8):
                    secs, rss = cp(emu, direction, sessions, src, tmp, want)
                    row(f"cp {direction} --sessions {sessions} (sha256 ok)", secs, rss, port_rate)
            # scp through `postern ssh-proxy` (one SSH port session, paced) to a local sshd.
            if all(os.path.exists(tool) for tool in Sshd.TOOLS):
                sshd = Sshd()
                try:
                    for direction in ("download", "upload"):
                        dst = os.path.join(tmp, f"scp-{direction}.bin")
                        if direction == "download":
                            secs = sshd.scp(emu, f"{emu.instance}:{src}", dst)
                        else:
                            secs = sshd.scp(emu, src, f"{emu.instance}:{dst}")
                        if sha256(dst) != want:
                            raise RuntimeError(f"scp {direction}: SHA-256 differs")
                        os.remove(dst)
                        rate = SIZE / secs
                        print(f"{'scp ' + direction + ' through postern ssh-proxy (sha256 ok)':58} "
                              f"{rate / 1e6:8.2f} MB/s  {secs:6.2f} s  "
                              f"{rate / port_rate:5.1f}x port")
                finally:
                    sshd.stop()
            else:
                print(f"scp through postern ssh-proxy: skipped ({', '.join(Sshd.TOOLS)} needed)")
    finally:
        emu.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Load average at the end: {load}. Emulator figures only: the service's own limits "
          "(per-session bandwidth, StartSession rate) are not modelled.")


if __name__ == "__main__":
    main()
