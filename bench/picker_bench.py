#!/usr/bin/env python3
"""Picker benchmark (issue 17), driven by bench/picker.sh.

A generated fleet of 50,000 instances (50 accounts x 3 regions) served by `postern emulator`
on loopback, listed once so the index is cached; then, with the release binary:

  * `postern list QUERY` end to end (process start to exit, stdout to /dev/null), its CPU
    time and its peak RSS (through /usr/bin/time);
  * process start to picker drawn: tmux runs postern; the clock starts when the command is
    started and stops when the pane shows the picker with every row counted (50000/50000),
    with the CPU time postern had used by then (steadier than wall time on a busy machine);
  * keystroke to filtered list: a query typed one key at a time; for each key, the time from
    `tmux send-keys` until the pane's count line shows the count `postern list --json` gives
    for that prefix (same matcher), the matcher finished;
  * peak RSS of the picker process (VmHWM) with the 50,000 rows loaded.

CPU time (user + system, all threads) is printed beside `postern list`'s wall time: on a busy
machine (a build running) wall times grow, CPU times much less. Times that go through tmux
include tmux's own latency (a send-keys and a capture-pane each fork a client: about 1-3 ms);
they are upper bounds. Loopback only; the emulator stops with the script (and by itself after
15 minutes).
"""

import json
import os
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
        latencies = []
        previous = total
        for i, key in enumerate(typed):
            latency = tmux.keystroke(key, expected[i], total, changed=expected[i] != previous)
            previous = expected[i]
            if latency is not None:
                latencies.append(latency)
                print(f"  {typed[: i + 1]!r:16} -> {expected[i]:6} rows  {latency:5.1f} ms")
        tmux.close()
        latencies.sort()
        p90 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.9))]
        print(f"keystroke to filtered list ({len(latencies)} keys whose count changed): median "
              f"{statistics.median(latencies):.1f} ms, p90 {p90:.1f} ms, max {max(latencies):.1f} ms")
        print(f"peak RSS of the picker with {total} rows: {rss / 1024:.1f} MiB")
    finally:
        tmux.kill()

    print("\ngoals: picker drawn < %.0f ms, keystroke to redraw < %.0f ms, postern list QUERY < %.0f ms"
          % (GOALS["drawn"], GOALS["keystroke"], GOALS["list"]))
    print("ratios to goal: drawn %.2f, keystroke (median) %.2f, list (worst median) %.2f" % (
        statistics.median(drawn) / GOALS["drawn"],
        statistics.median(latencies) / GOALS["keystroke"],
        max(list_medians) / GOALS["list"],
    ))


def peak_rss(command: list, env: dict) -> str:
    """The peak RSS of `command`, through GNU time: a child forked from this process would
    count this process's own memory (the parsed fleet) in its maximum RSS."""
    if not os.path.exists("/usr/bin/time"):
        return "n/a (no /usr/bin/time)"
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return f"{int(out.stderr.strip().splitlines()[-1]) / 1024:.1f} MiB"


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
        pid = self.cmd("display-message", "-p", "-t", self.target, "#{pane_pid}").strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def vmhwm(self) -> int:
        pid = self.cmd("display-message", "-p", "-t", self.target, "#{pane_pid}").strip()
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def close(self) -> None:
        self.cmd("send-keys", "-t", self.target, "Escape")

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


if __name__ == "__main__":
    main()
