#!/usr/bin/env python3
"""Picker benchmark (issue 17), driven by bench/picker.sh.

A generated fleet of 50,000 instances (50 accounts x 3 regions) served by `postern emulator`
on loopback, listed once so the index is cached; then, with the release binary:

  * `postern list QUERY` end to end (process start to exit, stdout to /dev/null), its CPU
    time and its peak RSS (through /usr/bin/time);
  * process start to picker drawn: tmux runs postern; the clock starts when the command is
    started and stops when the pane shows the picker with every row counted (50000/50000),
    with the CPU time postern had used by then (steadier than wall time on a busy machine);
  * keystroke to filtered list, two ways: a query typed one key at a time; for each key, the
    time until the count line shows the count `postern list --json` gives for that prefix
    (same matcher), the matcher finished and its list drawn in the same frame:
      - through tmux (`tmux send-keys`, then `capture-pane` polls): an upper bound;
      - on a pty of our own (the precise figure): the key's byte is written to the pty's
        master and the output stream is read and fed to a small screen model until the count
        line shows the count; RUNS pickers, each typing the whole query;
  * peak RSS of the picker process (VmHWM) with the 50,000 rows loaded.

CPU time (user + system, all threads) is printed beside `postern list`'s wall time: on a busy
machine (a build running) wall times grow, CPU times much less. Times that go through tmux
include tmux's own latency (a send-keys and a capture-pane each fork a client: about 1-3 ms);
they are upper bounds. The pty harness has no such client: its clock starts just before the
key's byte is written and stops when the bytes completing the count have been read. Loopback only; the emulator stops with the script (and by itself after
15 minutes).
"""

import codecs
import fcntl
import json
import os
import pty
import re
import select
import struct
import termios
import unicodedata
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

SHAPE = os.environ.get("SHAPE", "accounts=50,regions=3,instances=50000")
# Another postern to serve the fleet (an older client against today's emulator), and whether
# to measure `postern list` only (a postern without the skim picker).
EMULATOR = os.environ.get("EMULATOR")
LIST_ONLY = os.environ.get("LIST_ONLY") == "1"
RUNS = int(os.environ.get("RUNS", "7"))
GOALS = {"drawn": 100.0, "keystroke": 16.0, "list": 100.0}


def main() -> None:
    postern = sys.argv[1]
    emulator_bin = EMULATOR or postern
    work = tempfile.TemporaryDirectory(prefix="postern-picker-bench-")
    home = work.name
    fleet = tomllib.loads(
        subprocess.run(
            [emulator_bin, "emulator", "--generate-fleet", SHAPE, "--print-fleet"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    total = len(fleet["instances"])
    emulator = subprocess.Popen(
        [emulator_bin, "emulator", "--generate-fleet", SHAPE, "--exit-after", "15m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = json.loads(emulator.stdout.readline())
        # The emulator verifies SigV4 against the keys of its ready line.
        keys = (ready["access_key_id"], ready["secret_access_key"])
        run(postern, home, fleet, total, ready["endpoint"], keys)
    finally:
        emulator.terminate()
        emulator.wait()
        work.cleanup()


def run(postern: str, home: str, fleet: dict, total: int, endpoint: str, keys: tuple) -> None:
    config = os.path.join(home, "config.toml")
    with open(config, "w") as f:
        regions = ", ".join(f'"{r}"' for r in fleet["regions"])
        f.write(f'role = "PosternAccess"\nregions = [{regions}]\n')
        for a in fleet["accounts"]:
            f.write(f'\n[[accounts]]\nid = "{a["id"]}"\nalias = "{a["alias"]}"\nenv = "{a["env"]}"\n')
    env = {
        "PATH": os.environ["PATH"],
        "HOME": home,
        "TERM": "tmux-256color",
        "AWS_ACCESS_KEY_ID": keys[0],
        "AWS_SECRET_ACCESS_KEY": keys[1],
        "AWS_REGION": fleet["regions"][0],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "POSTERN_CONFIG": config,
        "POSTERN_CACHE_DIR": os.path.join(home, "cache"),
        "POSTERN_STATE_DIR": os.path.join(home, "state"),
        # Every service at the emulator (`--endpoint-url` names SSM's endpoint only).
        "AWS_ENDPOINT_URL": endpoint,
    }
    base = [postern]

    started = time.perf_counter()
    listed = subprocess.run(
        base + ["list", "--refresh", "--json"], env=env, check=True, capture_output=True
    ).stdout.count(b"\n")
    cold = time.perf_counter() - started
    assert listed == total, f"listed {listed} of {total}"
    print(f"fleet: {total} instances, {len(fleet['accounts'])} accounts x {len(fleet['regions'])} regions")
    print(f"cold listing into the cache (postern list --refresh): {cold * 1e3:.0f} ms")

    def count(query: str) -> int:
        out = subprocess.run(base + ["list", "--json", query], env=env, check=True, capture_output=True)
        return out.stdout.count(b"\n")

    print("\npostern list QUERY, end to end (median of %d runs, stdout to /dev/null):" % RUNS)
    list_medians = []
    for query in ["orders prod", "web", "i-0a3", "'api-prod", "zzzz"]:
        times, cpu = [], []
        for _ in range(RUNS):
            started = time.perf_counter()
            child = subprocess.Popen(base + ["list", query], env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            times.append(time.perf_counter() - started)
            cpu.append(usage.ru_utime + usage.ru_stime)
            assert status == 0, f"postern list {query!r} failed"
        median = statistics.median(times) * 1e3
        list_medians.append(median)
        print(f"  {query!r:14} {count(query):6} rows  median {median:6.1f} ms  max {max(times) * 1e3:6.1f} ms  "
              f"CPU (user+sys) {statistics.median(cpu) * 1e3:6.1f} ms  peak RSS {peak_rss(base + ['list', query], env)}")

    if LIST_ONLY:
        return
    tmux = Tmux(home)
    try:
        drawn, drawn_cpu = [], []
        for _ in range(RUNS):
            drawn.append(tmux.time_to_picker(base, env, total))
            drawn_cpu.append(tmux.cpu_ms())
            tmux.close()
        print(f"\nprocess start to picker drawn ({total} cached rows): median {statistics.median(drawn):.1f} ms, "
              f"min {min(drawn):.1f} ms, max {max(drawn):.1f} ms, "
              f"CPU (user+sys) by then: mean {statistics.mean(drawn_cpu):.0f} ms (10 ms clock ticks)")

        typed = "orders prod"
        expected = [count(typed[: i + 1]) for i in range(len(typed))]
        tmux.time_to_picker(base, env, total)
        rss = tmux.vmhwm()
        latencies, tmux_rest = [], []
        previous = total
        for i, key in enumerate(typed):
            latency = tmux.keystroke(key, expected[i], total, changed=expected[i] != previous)
            previous = expected[i]
            if latency is not None:
                latencies.append(latency)
                if i > 0:
                    tmux_rest.append(latency)
                print(f"  {typed[: i + 1]!r:16} -> {expected[i]:6} rows  {latency:5.1f} ms")
        tmux.close()
        p90 = percentile(latencies, 0.9)
        print(f"keystroke to filtered list ({len(latencies)} keys whose count changed): median "
              f"{statistics.median(latencies):.1f} ms, p90 {p90:.1f} ms, max {max(latencies):.1f} ms")
        print(f"peak RSS of the picker with {total} rows: {rss / 1024:.1f} MiB")
    finally:
        tmux.kill()

    direct = pty_keystrokes(base, env, total, typed, expected)

    print(f"\nsummary (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
    print(f"  picker drawn:        tmux median {statistics.median(drawn):5.1f} ms   "
          f"pty median {statistics.median(direct['drawn']):5.1f} ms")
    print(f"  keystroke (all):     tmux median {statistics.median(latencies):5.1f} ms, p90 {p90:5.1f} ms   "
          f"pty median {statistics.median(direct['all']):5.1f} ms, p90 {percentile(direct['all'], 0.9):5.1f} ms")
    print(f"  keystroke (2nd on):  tmux median {statistics.median(tmux_rest):5.1f} ms   "
          f"pty median {statistics.median(direct['rest']):5.1f} ms, p90 {percentile(direct['rest'], 0.9):5.1f} ms")
    print(f"  list QUERY:          worst median {max(list_medians):5.1f} ms")
    print(f"  peak RSS:            tmux picker {rss / 1024:.1f} MiB   pty picker {direct['rss'] / 1024:.1f} MiB")

    print("\ngoals: picker drawn < %.0f ms, keystroke to redraw < %.0f ms, postern list QUERY < %.0f ms"
          % (GOALS["drawn"], GOALS["keystroke"], GOALS["list"]))
    print("ratios to goal: drawn %.2f, keystroke (pty median) %.2f, keystroke (tmux median, upper bound) %.2f, "
          "list (worst median) %.2f" % (
              statistics.median(drawn) / GOALS["drawn"],
              statistics.median(direct["all"]) / GOALS["keystroke"],
              statistics.median(latencies) / GOALS["keystroke"],
              max(list_medians) / GOALS["list"],
          ))


def pty_keystrokes(base: list, env: dict, total: int, typed: str, expected: list) -> dict:
    """Keystroke to filtered list on a pty of our own, RUNS pickers typing `typed`: the
    milliseconds from writing each key's byte until the output shows the prompt with the query
    so far and the count line with its expected count (keys that leave the count unchanged are
    typed but not timed: their frame cannot be told from the previous one). Between keys the
    output must have been quiet for QUIET_S (the preview, debounced 50 ms by skim, drawn), so
    each key is timed alone. Also: process start to picker drawn, CPU time per typed key
    (user + system, all threads, from /proc: matching, redraws and previews; 10 ms clock
    ticks summed over every key), peak RSS."""
    env = dict(env, TERM="xterm-256color")
    drawn, first, rest, per_prefix, cpu, rss = [], [], [], {}, [], 0
    for _ in range(RUNS):
        picker = PtyPicker(base, env, PTY_ROWS, PTY_COLS)
        try:
            drawn.append(picker.wait_for(lambda: picker.shows_picker(total)) * 1e3)
            picker.quiet()
            ticks = picker.cpu_ticks()
            previous = total
            for i, key in enumerate(typed):
                latency = picker.type(key, typed[: i + 1], expected[i], total)
                picker.quiet()
                if expected[i] != previous:
                    (first if i == 0 else rest).append(latency)
                    per_prefix.setdefault(typed[: i + 1], []).append(latency)
                previous = expected[i]
            cpu.append((picker.cpu_ticks() - ticks) * 1000 / os.sysconf("SC_CLK_TCK") / len(typed))
            rss = max(rss, picker.vmhwm())
        finally:
            picker.close()
    every = first + rest
    print(f"\nkeystroke to filtered list on a pty ({PTY_COLS}x{PTY_ROWS}, {RUNS} pickers typing {typed!r}, "
          f"medians per prefix):")
    for prefix, times in per_prefix.items():
        print(f"  {prefix!r:16} -> {expected[len(prefix) - 1]:6} rows  median {statistics.median(times):5.1f} ms  "
              f"max {max(times):5.1f} ms")
    print(f"keystroke to filtered list, pty ({len(every)} timed keys): median {statistics.median(every):.1f} ms, "
          f"p90 {percentile(every, 0.9):.1f} ms, max {max(every):.1f} ms; first key (every row matched) median "
          f"{statistics.median(first):.1f} ms; later keys median {statistics.median(rest):.1f} ms, "
          f"p90 {percentile(rest, 0.9):.1f} ms")
    print(f"CPU (user+sys, all threads) per typed key: mean {statistics.mean(cpu):.1f} ms "
          f"(matching, redraws, previews; {len(typed)} keys x {RUNS} pickers, 10 ms ticks)")
    print(f"process start to picker drawn, pty: median {statistics.median(drawn):.1f} ms, "
          f"min {min(drawn):.1f} ms, max {max(drawn):.1f} ms; peak RSS {rss / 1024:.1f} MiB")
    return {"drawn": drawn, "all": every, "rest": rest, "rss": rss}


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def peak_rss(command: list, env: dict) -> str:
    """The peak RSS of `command`, through GNU time: a child forked from this process would
    count this process's own memory (the parsed fleet) in its maximum RSS."""
    if not os.path.exists("/usr/bin/time"):
        return "n/a (no /usr/bin/time)"
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return f"{int(out.stderr.strip().splitlines()[-1]) / 1024:.1f} MiB"


def cpu_ticks(pid) -> int:
    """User + system CPU clock ticks process `pid` (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vm_hwm_kib(pid) -> int:
    """Process `pid`'s peak RSS (VmHWM) in KiB; 0 when the kernel does not say."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Tmux:
    """A tmux server on its own socket, one 160x40 window."""

    def __init__(self, home: str) -> None:
        self.socket = os.path.join(home, "tmux.sock")
        self.home = home
        self.cmd("new-session", "-d", "-s", "b", "-x", "160", "-y", "40", "sh")
        self.window = 0

    def cmd(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def pane(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", self.target)

    @property
    def target(self) -> str:
        return f"b:{self.window}"

    def time_to_picker(self, base: list, env: dict, total: int) -> float:
        """Starts postern in a new window (it waits for a line on stdin first, so the clock
        starts at its exec) and returns the milliseconds until the picker shows every row."""
        script = os.path.join(self.home, "picker.sh")
        with open(script, "w") as f:
            exports = " ".join(f"{k}='{v}'" for k, v in env.items())
            f.write(f"read go\nexec env -i {exports} {' '.join(base)}\n")
        self.window += 1
        self.cmd("new-window", "-t", self.target, f"sh {script}")
        time.sleep(0.2)  # the shell is reading: not part of the measurement
        started = time.perf_counter()
        self.cmd("send-keys", "-t", self.target, "Enter")
        needle = f"{total}/{total}"
        while True:
            screen = self.pane()
            lines = screen.splitlines()
            if len(lines) > 3 and needle in lines[1] and "%" not in lines[1] and "  " in lines[3]:
                return (time.perf_counter() - started) * 1e3
            if time.perf_counter() - started > 30:
                raise SystemExit(f"the picker never showed {needle}:\n{screen}")

    def keystroke(self, key: str, rows: int, total: int, changed: bool):
        """Types `key`; the milliseconds until the count line shows `rows` of `total` (None when
        the count did not change, which cannot be told from the screen)."""
        started = time.perf_counter()
        self.cmd("send-keys", "-t", self.target, "-l", key)
        needle = f" {rows}/{total}"
        while True:
            first = self.pane().splitlines()[1:2]
            if first and needle in " " + first[0].strip() and "%" not in first[0]:
                elapsed = (time.perf_counter() - started) * 1e3
                return elapsed if changed else None
            if time.perf_counter() - started > 30:
                raise SystemExit(f"the count never reached {needle}:\n{self.pane()}")

    def cpu_ms(self) -> float:
        """The CPU time (user + system, all threads) postern has used so far: read just after
        the picker was drawn, what drawing it cost (less sensitive to the machine's load than the
        wall time)."""
        return cpu_ticks(self.pane_pid()) * 1000 / os.sysconf("SC_CLK_TCK")

    def vmhwm(self) -> int:
        return vm_hwm_kib(self.pane_pid())

    def pane_pid(self) -> str:
        return self.cmd("display-message", "-p", "-t", self.target, "#{pane_pid}").strip()

    def close(self) -> None:
        self.cmd("send-keys", "-t", self.target, "Escape")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


class PtyPicker:
    """postern on a pty of our own (its controlling terminal, ROWS x COLS), its output read into
    a [`Screen`]."""

    def __init__(self, base: list, env: dict, rows: int, cols: int) -> None:
        self.started = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(base[0], base, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.screen = Screen(rows, cols)

    def read(self, timeout: float) -> bool:
        """Reads what the picker wrote within `timeout` seconds into the screen; whether
        anything came."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:
            data = b""
        if not data:
            raise SystemExit(f"postern closed its terminal; the screen was:\n{self.screen.text()}")
        self.screen.feed(data)
        return True

    def wait_for(self, condition, limit: float = 30.0) -> float:
        """Reads until `condition()` holds; the seconds since the picker was started (or since
        the last `mark`)."""
        deadline = time.perf_counter() + limit
        while not condition():
            if time.perf_counter() > deadline:
                raise SystemExit(f"gave up after {limit:.0f} s; the screen was:\n{self.screen.text()}")
            self.read(deadline - time.perf_counter())
        return time.perf_counter() - self.started

    def quiet(self) -> None:
        """Reads until the picker has written nothing for QUIET_S (at most 10 s)."""
        deadline = time.perf_counter() + 10
        while self.read(QUIET_S):
            if time.perf_counter() > deadline:
                raise SystemExit(f"the picker never went quiet; the screen was:\n{self.screen.text()}")

    def shows_picker(self, total: int) -> bool:
        """The picker is drawn with every row counted (as `Tmux.time_to_picker` checks)."""
        count, row = self.screen.line(1), self.screen.line(3)
        return f"{total}/{total}" in count and "%" not in count and "  " in row.strip()

    def type(self, key: str, query: str, rows: int, total: int) -> float:
        """Writes `key`; the milliseconds until the prompt shows `query` and the count line
        `rows` of `total`."""
        self.started = time.perf_counter()
        os.write(self.fd, key.encode())
        needle = f" {rows}/{total}"

        def shown() -> bool:
            # The list's side of the screen (the preview is right of the border).
            prompt, count = (self.screen.line(r).split("│", 1)[0] for r in (0, 1))
            return (prompt.rstrip().endswith("> " + query.rstrip())
                    and needle in " " + count.strip() and "%" not in count)
        return self.wait_for(shown) * 1e3

    def cpu_ticks(self) -> int:
        return cpu_ticks(self.pid)

    def vmhwm(self) -> int:
        return vm_hwm_kib(self.pid)

    def close(self) -> None:
        """Esc, then waits (at most 10 s) for postern to exit; killed if it did not."""
        try:
            os.write(self.fd, b"\x1b")
        except OSError:
            pass
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            try:
                self.read(0.05)
            except SystemExit:
                pass
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


class Screen:
    """A terminal screen as the picker's output leaves it: as much of ECMA-48 as crossterm and
    ratatui write (cursor addressing and moves, erases, text, wide characters); styles, modes
    and keyboard flags are read and ignored. ratatui writes only the cells that changed, so a
    count's digits may arrive one by one between cursor moves: the screen is what is read."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.cells = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""  # an escape sequence cut at the end of a read

    def line(self, row: int) -> str:
        return "".join(self.cells[row])

    def text(self) -> str:
        return "\n".join(self.line(r).rstrip() for r in range(self.rows))

    def feed(self, data: bytes) -> None:
        text = self.pending + self.decoder.decode(data)
        self.pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                end = self.escape(text, i)
                if end is None:
                    self.pending = text[i:]
                    return
                i = end
                continue
            i += 1
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row = min(self.row + 1, self.rows - 1)
            elif ch == "\b":
                self.col = max(self.col - 1, 0)
            elif ch >= " " and ch != "\x7f":
                self.put(ch)

    def escape(self, text: str, i: int):
        """Applies the escape sequence at `text[i]`; the index past it (None: cut short)."""
        if i + 1 >= len(text):
            return None
        kind = text[i + 1]
        if kind == "[":
            m = CSI.match(text, i + 2)
            if m is None:
                return None if CSI_PREFIX.fullmatch(text, i + 2) else i + 2
            self.csi(m.group(1), m.group(2), m.group(4))
            return m.end()
        if kind == "]":  # OSC, ended by BEL or ST
            ends = [e + 1 for e in [text.find("\x07", i + 2)] if e >= 0]
            ends += [e + 2 for e in [text.find("\x1b\\", i + 2)] if e >= 0]
            return min(ends) if ends else None
        if kind in "()*+#%":
            return i + 3 if i + 2 < len(text) else None
        return i + 2

    def csi(self, private: str, params: str, final: str) -> None:
        numbers = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")] if params else []

        def arg(k: int, default: int) -> int:
            return (numbers[k] if k < len(numbers) else 0) or default
        if private:
            # The alternate screen starts (and the main one comes back) blank.
            if private == "?" and final in "hl" and "1049" in params.split(";"):
                self.erase(0, 0, self.rows - 1, self.cols)
            return
        if final in "Hf":
            self.row, self.col = arg(0, 1) - 1, arg(1, 1) - 1
        elif final == "A":
            self.row -= arg(0, 1)
        elif final in "Be":
            self.row += arg(0, 1)
        elif final in "Ca":
            self.col += arg(0, 1)
        elif final == "D":
            self.col -= arg(0, 1)
        elif final in "G`":
            self.col = arg(0, 1) - 1
        elif final == "d":
            self.row = arg(0, 1) - 1
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self.erase(self.row, self.col, self.rows - 1, self.cols)
            elif mode == 1:
                self.erase(0, 0, self.row, self.col + 1)
            else:
                self.erase(0, 0, self.rows - 1, self.cols)
        elif final == "K":
            mode = numbers[0] if numbers else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
            self.erase(self.row, start, self.row, end)
        self.row = min(max(self.row, 0), self.rows - 1)
        self.col = min(max(self.col, 0), self.cols - 1)

    def erase(self, row0: int, col0: int, row1: int, col1: int) -> None:
        """Blanks from (row0, col0) to (row1, col1), the end column excluded on the last row."""
        for r in range(row0, row1 + 1):
            start = col0 if r == row0 else 0
            end = col1 if r == row1 else self.cols
            for c in range(start, min(end, self.cols)):
                self.cells[r][c] = " "

    def put(self, ch: str) -> None:
        if unicodedata.combining(ch):
            return
        width = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if self.col + width > self.cols:  # autowrap
            self.col = 0
            self.row = min(self.row + 1, self.rows - 1)
        self.cells[self.row][self.col] = ch
        if width == 2:
            self.cells[self.row][self.col + 1] = ""
        self.col += width


# A control sequence: private marker, parameters, intermediates, final byte (ECMA-48 5.4).
CSI = re.compile(r"([<=>?]?)([0-9;:]*)([ -/]*)([@-~])")
CSI_PREFIX = re.compile(r"[<=>?]?[0-9;:]*[ -/]*")
# The pty's window (as tmux's), and the silence that ends a key's output.
PTY_ROWS, PTY_COLS = 40, 160
QUIET_S = 0.12


if __name__ == "__main__":
    main()
