#!/usr/bin/env python3
"""Measurements for bench/resilience.sh (see there). Loopback only, port 0, every wait bounded."""
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

POSTERN = sys.argv[1]
QUICK = "--quick" in sys.argv
LIMIT = 600.0
# The emulator verifies SigV4: it is started with these base keys (POSTERN_EMULATOR_*) and the
# client signs with them.
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench",
           POSTERN_EMULATOR_ACCESS_KEY_ID="AKIDBENCH", POSTERN_EMULATOR_SECRET_ACCESS_KEY="bench",
           AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", HOME="/nonexistent")
ENV.pop("AWS_PROFILE", None)


def emulator(*flags):
    proc = subprocess.Popen([POSTERN, "emulator", "--no-pacing", "--exit-after", "900s", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    ready = json.loads(proc.stdout.readline())
    return proc, ready["endpoint"], ready["instances"][0]


def echo_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=pump, args=(conn,), daemon=True).start()

    def pump(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def forward(endpoint, instance, port):
    # Every service to the emulator (--endpoint-url would be SSM's only).
    proc = subprocess.Popen([POSTERN, "forward", instance, "-L", f"0:{port}", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(ENV, AWS_ENDPOINT_URL=endpoint))
    local = json.loads(proc.stdout.readline())["local"]
    host, port = local.rsplit(":", 1)
    return proc, (host, int(port))


def stop(proc):
    proc.send_signal(2)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def reconnect_figures(stderr):
    """The pump's own outage lengths, in ms, from its 'reconnected after' notices."""
    out = []
    for m in re.finditer(r"reconnected after (\d+(?:\.\d+)?)(ms|s|us|µs)", stderr):
        value, unit = float(m.group(1)), m.group(2)
        out.append(value * {"ms": 1, "s": 1000, "us": 0.001, "µs": 0.001}[unit])
    return out


def transfer_across_drops(size, close_every):
    emu, endpoint, instance = emulator("--close-every", str(close_every))
    port = echo_server()
    fw, local = forward(endpoint, instance, port)
    data = os.urandom(size)
    conn = socket.create_connection(local)
    back = bytearray()
    sender = threading.Thread(target=conn.sendall, args=(data,))
    start = time.monotonic()
    sender.start()
    conn.settimeout(120)
    while len(back) < len(data):
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        back.extend(chunk)
    elapsed = time.monotonic() - start
    sender.join()
    conn.close()
    stderr = stop(fw)
    emu.terminate()
    emu.wait(timeout=30)
    lost = max(0, len(data) - len(back))
    extra = max(0, len(back) - len(data))
    same = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    differing = 0 if same else sum(1 for a, b in zip(data, back) if a != b)
    return elapsed, reconnect_figures(stderr), lost, extra, differing


def ping_pong_across_drops(rounds, close_every):
    emu, endpoint, instance = emulator("--close-every", str(close_every))
    port = echo_server()
    fw, local = forward(endpoint, instance, port)
    conn = socket.create_connection(local)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(60)
    rtts = []
    for i in range(rounds):
        byte = bytes([i % 256])
        t = time.monotonic()
        conn.sendall(byte)
        assert conn.recv(1) == byte, "echo differs"
        rtts.append((time.monotonic() - t) * 1000)
    conn.close()
    stderr = stop(fw)
    emu.terminate()
    emu.wait(timeout=30)
    return rtts, reconnect_figures(stderr)


def exec_throughput(size, *flags):
    emu, endpoint, instance = emulator(*flags)
    start = time.monotonic()
    out = subprocess.run([POSTERN, "exec", instance, "--", f"head -c {size} /dev/zero"],
                         capture_output=True, env=dict(ENV, AWS_ENDPOINT_URL=endpoint),
                         timeout=LIMIT)
    elapsed = time.monotonic() - start
    emu.terminate()
    emu.wait(timeout=30)
    assert out.returncode == 0 and len(out.stdout) == size, (out.returncode, len(out.stdout),
                                                             out.stderr[-500:])
    return size / elapsed / 1e6, out.stderr.decode(errors="replace")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    size = (16 if QUICK else 64) * 1024 * 1024
    # Both directions carry ~size/1024 data messages and as many acks per socket: choose N
    # for 100+ drops.
    close_every = max(200, (4 * size // 1024) // 110)
    elapsed, figures, lost, extra, differing = transfer_across_drops(size, close_every)
    print(f"forward echo of {size >> 20} MiB, websocket closed every {close_every} messages: "
          f"{len(figures)} drops survived in {elapsed:.1f} s "
          f"({2 * size / elapsed / 1e6:.1f} MB/s both ways)")
    print(f"  bytes lost: {lost}, bytes duplicated: {extra}, bytes differing: {differing}"
          f"  (must all be 0)")
    if figures:
        print(f"  reconnect (break to new websocket), from postern's notices: "
              f"median {statistics.median(figures):.1f} ms, p95 {pct(figures, 0.95):.1f} ms, "
              f"max {max(figures):.1f} ms")
    rounds = 2000 if QUICK else 6000
    rtts, figures = ping_pong_across_drops(rounds, 150)
    normal = statistics.median(rtts)
    worst = sorted(rtts)[-len(figures):] if figures else []
    print(f"1-byte ping-pong through a forward, {rounds} rounds, websocket closed every 150 "
          f"messages ({len(figures)} drops):")
    print(f"  round trip median {normal:.2f} ms, p99 {pct(rtts, 0.99):.2f} ms, "
          f"max {max(rtts):.2f} ms")
    if worst:
        # Each drop stalls at most the round in flight: the slowest rounds, one per drop,
        # bound the drop-to-data-flowing-again time seen by the application.
        print(f"  the {len(worst)} slowest rounds (one per drop): median "
              f"{statistics.median(worst):.2f} ms, max {max(worst):.2f} ms "
              f"(ratio to a normal round trip {statistics.median(worst) / normal:.1f}x)")
    size = (20 if QUICK else 100) * 1_000_000
    plain, _ = exec_throughput(size)
    encrypted, notice = exec_throughput(size, "--session-kms-key", "alias/bench")
    assert "encrypted using AWS KMS" in notice, notice[-500:]
    print(f"exec output {size // 1_000_000} MB, pacing off: plain {plain:.1f} MB/s, "
          f"KMS-encrypted {encrypted:.1f} MB/s, ratio encrypted/plain {encrypted / plain:.2f}")


main()
