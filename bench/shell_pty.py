#!/usr/bin/env python3
"""Terminal-side measurements for bench/shell.sh (Python 3 standard library only).

Runs `postern shell` and, as the baseline, the emulator's shell directly, each on a PTY of
its own, and measures what a user at that terminal sees:

  echo     one printable byte written to the PTY master, time until it is read back; the
           two sessions take turns keystroke by keystroke so both see the same machine load
  startup  process start (just before fork) to the first byte of the prompt
  output   peak RSS (VmHWM) of the postern process while a command prints a lot of output

Everything is bounded: every wait has a deadline, and every child is killed by its pid on
the way out. Called by bench/shell.sh, which owns the emulator; not meant to be run alone.
"""

import argparse
import fcntl
import json
import math
import os
import random
import select
import signal
import statistics
import struct
import sys
import termios
import time

PROMPT = b"$ "
ROWS, COLS = 50, 200
# Letters only: `~` would be postern's escape character after a newline.
KEYS = b"abcdefghijklmnopqrstuvwxyz"
KILL_LINE = b"\x15"  # ^U: empties the shell's line between batches
END_MARK = "__POSTERN_BENCH_END__"


class BenchError(Exception):
    pass


class Session:
    """A child process on a fresh PTY, session leader with the PTY as controlling terminal."""

    def __init__(self, name, argv, env):
        self.name = name
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # child: only exec-safe calls, never return into Python
            try:
                os.close(master)
                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                if slave > 2:
                    os.close(slave)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(slave)
        os.set_blocking(master, False)
        self.pid = pid
        self.fd = master
        self.status = None
        self.buf = bytearray()  # output not yet consumed by a wait

    def read_some(self, timeout):
        """Waits up to `timeout` for output; returns bytes read, b"" on timeout, None at EOF."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return b""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError:  # EIO: the child side is closed
            return None
        return data or None

    def wait_for(self, needle, deadline):
        """Reads until `needle` is in the buffer; returns the time of the read that completed it."""
        while needle not in self.buf:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise BenchError(f"{self.name}: no {needle!r} in time; got {bytes(self.buf[-200:])!r}")
            data = self.read_some(left)
            if data is None:
                raise BenchError(f"{self.name}: closed while waiting for {needle!r}; got {bytes(self.buf[-200:])!r}")
            if data:
                self.buf += data
        return time.perf_counter()

    def drain_quiet(self, quiet, deadline):
        """Reads until no output for `quiet` seconds."""
        while True:
            if time.perf_counter() > deadline:
                raise BenchError(f"{self.name}: output never went quiet")
            data = self.read_some(quiet)
            if data is None:
                raise BenchError(f"{self.name}: closed while draining")
            if not data:
                return
            self.buf += data

    def wait_prompt(self, limit=30.0):
        """Waits for a prompt followed by silence, and empties the buffer."""
        deadline = time.perf_counter() + limit
        self.wait_for(PROMPT, deadline)
        self.drain_quiet(0.3, deadline)
        if not self.buf.rstrip(b" ").endswith(PROMPT.rstrip()):
            raise BenchError(f"{self.name}: not at a prompt: {bytes(self.buf[-200:])!r}")
        self.buf.clear()

    def write(self, data):
        while data:
            _, ready, _ = select.select([], [self.fd], [], 5)
            if not ready:
                raise BenchError(f"{self.name}: terminal input blocked")
            data = data[os.write(self.fd, data):]

    def vm(self, field):
        """A /proc/<pid>/status field in KiB (VmHWM, VmRSS)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"{self.name}: no {field} in /proc/{self.pid}/status")

    def finish(self, limit=10.0):
        """Ends the session with `exit` (killing it at the deadline); returns its exit code."""
        if self.status is None:
            try:
                self.write(b"exit\r")
            except (BenchError, OSError):
                pass
            deadline = time.perf_counter() + limit
            while self.status is None and time.perf_counter() < deadline:
                if self.read_some(0.05) is None:
                    time.sleep(0.01)
                self.poll()
        return self.close()

    def poll(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def close(self):
        """Kills the child by its pid if it still runs, reaps it, closes the master."""
        self.poll()
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return self.status


def percentile(values, q):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def echo_rtt(sessions, keystrokes, batch, gap_ms, rng, wait):
    """Alternates keystrokes between `sessions`; returns ({name: [seconds]}, {name: problem}).
    Sessions of the same name pool their samples.

    A session that shows no prompt, or does not echo a keystroke within `wait` seconds, drops
    out with the problem noted; the others go on.
    """
    samples = {s.name: [] for s in sessions}
    problems = {}
    live = []
    for s in sessions:
        try:
            s.wait_prompt(limit=wait * 5)
            live.append(s)
        except BenchError as err:
            problems[s.name] = f"no quiet prompt within {wait * 5:.0f} s ({err})"
    for i in range(keystrokes):
        # A fresh order each round: every session types first, in the middle and last equally
        # often, and no session always follows the same one (with a fixed cycle, a session
        # always ran right after the same neighbour and inherited what that one left behind).
        order = list(live)
        rng.shuffle(order)
        for s in order:
            key = KEYS[i % len(KEYS):i % len(KEYS) + 1]
            time.sleep(rng.uniform(gap_ms[0], gap_ms[1]) / 1000)
            s.buf.clear()
            sent = time.perf_counter()
            s.write(key)
            try:
                got = s.wait_for(key, sent + wait)
            except BenchError:
                problems[s.name] = f"keystroke {i + 1} not echoed within {wait:.0f} s"
                live.remove(s)
                continue
            if bytes(s.buf) != key:
                raise BenchError(f"{s.name}: expected echo {key!r}, got {bytes(s.buf)!r}")
            samples[s.name].append(got - sent)
            s.buf.clear()
        if (i + 1) % batch == 0 or i + 1 == keystrokes:
            for s in live:
                s.write(KILL_LINE)
            for s in live:
                s.drain_quiet(0.1, time.perf_counter() + 10)
                s.buf.clear()
    return samples, problems


def startup(make, runs, wait):
    """Process start to the first prompt byte, `runs` times; returns seconds (None when no
    prompt shows within `wait`) and exit codes."""
    times, codes = [], []
    for _ in range(runs):
        s = make()
        try:
            deadline = s.started + wait
            # Time the read that brought the prompt's first byte, not the one completing it.
            stamps = []  # (buffer length after a read, time of that read)
            while PROMPT not in s.buf:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                data = s.read_some(left)
                if data is None:
                    raise BenchError(f"{s.name}: closed before its prompt: {bytes(s.buf[-200:])!r}")
                if data:
                    s.buf += data
                    stamps.append((len(s.buf), time.perf_counter()))
            at = s.buf.find(PROMPT)
            if at < 0:
                times.append(None)
                continue
            first = next(t for end, t in stamps if end > at)
            times.append(first - s.started)
            s.drain_quiet(0.2, time.perf_counter() + 10)
        finally:
            codes.append(s.finish())
    return times, codes


def big_output(make, nbytes):
    """Runs `yes | head -c N` in a postern session; returns peak RSS and transfer figures."""
    s = make()
    try:
        # A marker line rather than the prompt: it ends in a newline, so it shows even from a
        # postern that holds output back until one.
        s.write(b"echo RE''ADY\r")
        s.wait_for(b"READY\r\n", time.perf_counter() + 30)
        s.drain_quiet(0.3, time.perf_counter() + 10)
        s.buf.clear()
        idle_rss = s.vm("VmRSS")
        # The mark is split in the command line so only the command's output contains it whole.
        half = len(END_MARK) // 2
        command = f"yes | head -c {nbytes}; echo {END_MARK[:half]}''{END_MARK[half:]}\r"
        s.write(command.encode())
        mark = END_MARK.encode()
        start = time.perf_counter()
        deadline = start + max(120, nbytes / 200_000)  # far above the paced 1 MB/s
        received = 0
        tail = b""
        hwm_peak = 0
        last_poll = start
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise BenchError(f"{s.name}: output not finished in time ({received} bytes)")
            data = s.read_some(min(left, 1))
            if data is None:
                raise BenchError(f"{s.name}: closed during output ({received} bytes)")
            received += len(data)
            window = tail + data
            if mark in window:
                break
            tail = window[-len(mark):]
            now = time.perf_counter()
            if now - last_poll > 0.5:
                hwm_peak = max(hwm_peak, s.vm("VmHWM"))
                last_poll = now
        elapsed = time.perf_counter() - start
        s.drain_quiet(0.3, time.perf_counter() + 10)
        hwm = max(hwm_peak, s.vm("VmHWM"))
        code = s.finish()
        return {
            "idle_rss_kib": idle_rss,
            "peak_rss_kib": hwm,
            "bytes": received,
            "seconds": elapsed,
            "exit_code": code,
        }
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postern", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--instance", required=True)
    p.add_argument("--shell", default="/bin/sh", help="the emulator's --shell, for the baseline")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for both shells")
    p.add_argument("--postern-env", action="append", default=[], help="NAME=VALUE for postern only")
    p.add_argument("--keystrokes", type=int, default=500)
    p.add_argument("--batch", type=int, default=50, help="keystrokes per line before ^U")
    p.add_argument("--gap-ms", default="10,30", help="random pause before each keystroke, MIN,MAX")
    p.add_argument("--starts", type=int, default=10)
    p.add_argument("--output-bytes", type=int, default=20 * 1024 * 1024)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--wait", type=float, default=2.0, help="seconds a keystroke may take to echo (x5 for a prompt)")
    p.add_argument("--json", help="also write the raw figures here")
    a = p.parse_args()

    shell_env = dict(kv.split("=", 1) for kv in a.env)
    # The emulator's PTY plugin adds TERM to the environment it was started with.
    baseline_env = dict(shell_env, TERM="xterm-256color")
    postern_env = dict(shell_env, **dict(kv.split("=", 1) for kv in a.postern_env))
    postern_env.setdefault("TERM", "xterm-256color")
    # Every service to the emulator (--endpoint-url would be SSM's only).
    postern_env["AWS_ENDPOINT_URL"] = a.endpoint
    postern_argv = [a.postern, "shell", a.instance]

    def postern():
        return Session("postern", postern_argv, postern_env)

    def baseline():
        return Session("local pty", [a.shell], baseline_env)

    lo, hi = (float(x) for x in a.gap_ms.split(","))
    rng = random.Random(a.seed)
    results = {"keystroke_wait_s": a.wait}

    sessions = [postern(), baseline()]
    try:
        rtt, problems = echo_rtt(sessions, a.keystrokes, a.batch, (lo, hi), rng, a.wait)
        codes = [s.finish() for s in sessions]
    finally:
        for s in sessions:
            s.close()
    if codes[0] != 0:
        raise BenchError(f"postern shell exited {codes[0]} after the echo test")
    if "local pty" in problems:
        raise BenchError(f"the baseline failed: {problems['local pty']}")
    results["echo"] = {name: summary(v, problems.get(name), p99=True) for name, v in rtt.items()}

    # The start-up runs take turns too.
    pt, bt, pcodes = [], [], []
    for _ in range(a.starts):
        t, c = startup(postern, 1, a.wait * 5)
        pt += t
        pcodes += c
        t, _ = startup(baseline, 1, a.wait * 5)
        bt += t
    if any(c != 0 for c in pcodes):
        raise BenchError(f"postern shell exit codes after start-up runs: {pcodes}")
    if None in bt:
        raise BenchError("the baseline shell showed no prompt")
    missing = pt.count(None)
    results["startup"] = {
        "postern": summary([t for t in pt if t is not None], f"no prompt within {a.wait * 5:.0f} s in {missing} of {len(pt)} runs" if missing else None),
        "local pty": summary(bt, None),
    }

    out = big_output(postern, a.output_bytes)
    if out["exit_code"] != 0:
        raise BenchError(f"postern shell exited {out['exit_code']} after the output test")
    results["output"] = out

    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    print_table(results)


def summary(seconds, problem, p99=False):
    r = {"n": len(seconds), "problem": problem}
    if seconds:
        r["median_ms"] = statistics.median(seconds) * 1e3
        r["max_ms"] = max(seconds) * 1e3
        if p99:
            r["p99_ms"] = percentile(seconds, 0.99) * 1e3
    return r


def print_table(r):
    e, s, o = r["echo"], r["startup"], r["output"]
    mib = o["bytes"] / (1024 * 1024)
    rate = o["bytes"] / o["seconds"]
    ceiling = 1024 / 0.001  # the agent's pace: 1024 bytes, then 1 ms
    notes = []

    def timed(label, pair, key, digits):
        ours, base = pair["postern"], pair["local pty"]
        if key not in ours or ours["problem"]:
            note = f"postern {label}: {ours['problem']}"
            if note not in notes:
                notes.append(note)
            mark = f"[{notes.index(note) + 1}]"
            value, ratio = f"n/a {mark}", "-"
            if key in ours:
                value = f"{ours[key]:.{digits}f} ms {mark}"
                ratio = f"{ours[key] / base[key]:.1f}x"
        else:
            value, ratio = f"{ours[key]:.{digits}f} ms", f"{ours[key] / base[key]:.1f}x"
        return value, f"{base[key]:.{digits}f} ms", ratio

    rows = [("figure", "postern", "baseline", "ratio")]
    n = e["local pty"]["n"]
    rows.append((f"echo RTT median, {n} keys (local pty)",) + timed("echo", e, "median_ms", 3))
    rows.append((f"echo RTT p99, {n} keys (local pty)",) + timed("echo", e, "p99_ms", 3))
    n = s["local pty"]["n"]
    rows.append((f"start to first prompt byte, median of {n} (local pty)",) + timed("start-up", s, "median_ms", 1))
    rows.append((f"start to first prompt byte, max of {n} (local pty)",) + timed("start-up", s, "max_ms", 1))
    rows.append(("RSS, idle session", f"{o['idle_rss_kib'] / 1024:.1f} MiB", "-", "-"))
    rows.append((f"peak RSS (VmHWM), {mib:.0f} MiB received (idle)", f"{o['peak_rss_kib'] / 1024:.1f} MiB", f"{o['idle_rss_kib'] / 1024:.1f} MiB", f"{o['peak_rss_kib'] / o['idle_rss_kib']:.2f}x"))
    rows.append(("output rate (agent pace, 1024 B per 1 ms)", f"{rate / 1e6:.2f} MB/s", f"{ceiling / 1e6:.2f} MB/s", f"{rate / ceiling:.2f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for i, note in enumerate(notes, 1):
        print(f"[{i}] {note}")


if __name__ == "__main__":
    # Let `finally` blocks kill the sessions when bench/shell.sh or `timeout` stops us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except BenchError as err:
        print(f"shell benchmark failed: {err}", file=sys.stderr)
        sys.exit(1)
