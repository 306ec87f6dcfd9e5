#!/usr/bin/env python3
"""Measurements for bench/forward.sh (see there). Loopback only, port 0, every wait bounded."""
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

POSTERN = sys.argv[1] if len(sys.argv) > 1 else ""  # imported by compare_bench.py too
QUICK = "--quick" in sys.argv[2:]
MB = 1_000_000
LIMIT = 300.0
AGENT_PACE = 1024 / 0.001  # bytes per second: 1 KiB per 1 ms (SPEC.md §10 item 17)
# The emulator verifies SigV4: it is started with these base keys (POSTERN_EMULATOR_*) and the
# client signs with them.
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench",
           POSTERN_EMULATOR_ACCESS_KEY_ID="AKIDBENCH", POSTERN_EMULATOR_SECRET_ACCESS_KEY="bench",
           AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", HOME="/nonexistent")
ENV.pop("AWS_PROFILE", None)


def servers():
    """A source (sends N bytes asked for in an 8-byte header, then closes) and a sink (reads
    the 8-byte length, then that many bytes, then answers one byte). Daemon threads."""
    def serve(listener, handler):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    def source(conn):
        n = int.from_bytes(recv_exact(conn, 8), "little")
        block = os.urandom(256 * 1024)
        sent = 0
        while sent < n:
            chunk = block[: min(len(block), n - sent)]
            conn.sendall(chunk)
            sent += len(chunk)
        conn.close()

    def sink(conn):
        n = int.from_bytes(recv_exact(conn, 8), "little")
        got = 0
        while got < n:
            data = conn.recv(1 << 20)
            if not data:
                break
            got += len(data)
        conn.sendall(b"k")
        conn.close()

    ports = []
    for handler in (source, sink):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        ports.append(listener.getsockname()[1])
        threading.Thread(target=serve, args=(listener, handler), daemon=True).start()
    return ports


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        data = conn.recv(n - len(buf))
        if not data:
            raise EOFError("short read")
        buf += data
    return buf


def download(port, n, first_byte=None):
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(LIMIT)
    start = time.monotonic()
    conn.sendall(n.to_bytes(8, "little"))
    got = 0
    while got < n:
        data = conn.recv(1 << 20)
        if not data:
            raise EOFError(f"download ended at {got} of {n}")
        if got == 0 and first_byte is not None:
            first_byte.append(time.monotonic() - start)
        got += len(data)
    conn.close()
    return time.monotonic() - start


def upload(port, n):
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(LIMIT)
    block = os.urandom(256 * 1024)
    start = time.monotonic()
    conn.sendall(n.to_bytes(8, "little"))
    sent = 0
    while sent < n:
        chunk = block[: min(len(block), n - sent)]
        conn.sendall(chunk)
        sent += len(chunk)
    if conn.recv(1) != b"k":
        raise EOFError("no upload acknowledgement")
    conn.close()
    return time.monotonic() - start


def parallel(fn, port, n, count):
    threads, errors = [], []

    def run():
        try:
            fn(port, n)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    start = time.monotonic()
    for _ in range(count):
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(LIMIT)
    if errors:
        raise errors[0]
    return time.monotonic() - start


class Emulator:
    def __init__(self, paced):
        args = [POSTERN, "emulator", "--exit-after", "30m"] + ([] if paced else ["--no-pacing"])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=ENV, text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.endpoint = ready["endpoint"]
        self.instance = ready["instances"][0]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Forward:
    def __init__(self, emu, remote_port, sessions):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [POSTERN, "forward", emu.instance,
             "-L", f"0:{remote_port}", "--json", "--sessions", str(sessions)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # Every service to the emulator (--endpoint-url would be SSM's only).
            env=dict(ENV, AWS_ENDPOINT_URL=emu.endpoint))
        line = self.proc.stdout.readline()
        self.ready_after = time.monotonic() - self.started
        if not line:
            raise RuntimeError("forward failed: " + self.proc.stderr.read())
        self.port = int(json.loads(line)["local"].rsplit(":", 1)[1])

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.send_signal(2)
        self.proc.wait(30)


def row(name, value, unit, baseline=None, baseline_name=""):
    ratio = f"  = {value / baseline:6.2f} x {baseline_name}" if baseline else ""
    print(f"{name:<58} {value:10.3f} {unit:<6}{ratio}", flush=True)


def main():
    source, sink = servers()
    single = (2 if QUICK else 8) * MB
    each = (512 * 1024) if QUICK else 2 * MB
    print(f"postern {POSTERN}; single connection {single / MB:.1f} MB, "
          f"8 connections x {each / MB:.1f} MB\n")

    print("== agent pacing ON (baseline: the agent's pace, 1 KiB per ms = 1.024 MB/s)")
    emu = Emulator(paced=True)
    readies = []
    for _ in range(3):
        fw = Forward(emu, source, 1)
        readies.append(fw.ready_after)
        fw.stop()
    fw = Forward(emu, source, 1)
    row("time from process start to forward ready (median of 4)",
        statistics.median(readies + [fw.ready_after]) * 1000, "ms")
    firsts = []
    for _ in range(10):
        download(fw.port, 1024, firsts)
    row("time to first byte, new connection on an open forward", statistics.median(firsts) * 1000,
        "ms")
    secs = download(fw.port, single)
    row("download, 1 connection", single / secs / MB, "MB/s", AGENT_PACE / MB, "agent pace")
    fw.stop()
    fw = Forward(emu, sink, 1)
    secs = upload(fw.port, single)
    row("upload, 1 connection", single / secs / MB, "MB/s", AGENT_PACE / MB, "agent pace")
    fw.stop()
    aggregate = {}
    for sessions in (1, 8, "auto"):
        fw = Forward(emu, source, sessions)
        secs = parallel(download, fw.port, each, 8)
        aggregate[sessions] = 8 * each / secs / MB
        row(f"download, 8 connections, --sessions {sessions}", aggregate[sessions], "MB/s",
            AGENT_PACE / MB, "agent pace")
        fw.stop()
    row("  --sessions 8 / --sessions 1", aggregate[8] / aggregate[1], "x")
    row("  --sessions auto / --sessions 8 (goal >= 0.9)", aggregate["auto"] / aggregate[8], "x")
    emu.stop()

    print("\n== agent pacing OFF (baseline: direct loopback TCP copy, same client and servers)")
    ceiling = (20 if QUICK else 100) * MB
    direct_down = ceiling / download(source, ceiling) / MB
    direct_up = ceiling / upload(sink, ceiling) / MB
    row("direct loopback download", direct_down, "MB/s")
    row("direct loopback upload", direct_up, "MB/s")
    emu = Emulator(paced=False)
    for name, fn, port, base in (("download", download, source, direct_down),
                                 ("upload", upload, sink, direct_up)):
        fw = Forward(emu, port, 1)
        cpu0 = fw.cpu_seconds()
        secs = fn(fw.port, ceiling)
        cpu = fw.cpu_seconds() - cpu0
        row(f"postern ceiling, {name}, 1 connection", ceiling / secs / MB, "MB/s", base,
            "direct")
        row(f"  postern CPU seconds per 100 MB ({name})", cpu / (ceiling / (100 * MB)), "s")
        row(f"  postern peak RSS ({name})", fw.peak_rss_mb(), "MiB")
        fw.stop()
    emu.stop()


if __name__ == "__main__":
    main()
