#!/usr/bin/env python3
"""Measurements for bench/cp.sh (see there). Loopback only, port 0, every wait bounded."""
import os
import subprocess
import sys
import tempfile
import time

import copied_files
import forward_bench as fb
import local_sshd

POSTERN, PROFILE = sys.argv[1], sys.argv[2]
QUICK = "--quick" in sys.argv[3:]
MIB = 1024 * 1024
SIZE = (16 if QUICK else 64) * MIB
PORT_SAMPLE = (2 if QUICK else 8) * 1_000_000
LIMIT = 900


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
    if copied_files.sha256(dst) != want:
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
            want = copied_files.write_random(src, SIZE)
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
            if local_sshd.available():
                sshd = local_sshd.Sshd()
                proxy = f"env AWS_ENDPOINT_URL={emu.endpoint} {POSTERN} ssh-proxy %h %p"
                try:
                    for direction in ("download", "upload"):
                        dst = os.path.join(tmp, f"scp-{direction}.bin")
                        if direction == "download":
                            source, dest = f"{emu.instance}:{src}", dst
                        else:
                            source, dest = src, f"{emu.instance}:{dst}"
                        secs = sshd.scp(proxy, source, dest, fb.ENV, LIMIT)
                        if copied_files.sha256(dst) != want:
                            raise RuntimeError(f"scp {direction}: SHA-256 differs")
                        os.remove(dst)
                        rate = SIZE / secs
                        print(f"{'scp ' + direction + ' through postern ssh-proxy (sha256 ok)':58} "
                              f"{rate / 1e6:8.2f} MB/s  {secs:6.2f} s  "
                              f"{rate / port_rate:5.1f}x port")
                finally:
                    sshd.stop()
            else:
                print("scp through postern ssh-proxy: skipped "
                      f"({', '.join(local_sshd.TOOLS)} needed)")
    finally:
        emu.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Load average at the end: {load}. Emulator figures only: the service's own limits "
          "(per-session bandwidth, StartSession rate) are not modelled.")


if __name__ == "__main__":
    main()
