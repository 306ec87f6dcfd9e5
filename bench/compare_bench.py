#!/usr/bin/env python3
"""postern against AWS's session-manager-plugin, in one run, on this machine (bench/compare.sh).

Both clients talk to the same `postern emulator` on loopback, with the agent's pacing on and
off. The official plugin runs the way users run it: `aws ssm start-session` starting it. postern
runs natively (`postern forward`, `postern shell`) and, as the drop-in, under the same AWS CLI
command (`postern plugin`, the link `postern install-plugin` makes). Each figure is measured on
the client process only (the plugin, not the AWS CLI above it): throughput each way, CPU seconds
per 100 MB, peak RSS, time to a ready forward, keystroke echo and the CPU each keystroke
costs, 8-connection scaling, and copying a file each way (`postern cp` against scp through
the plugin). Prints a table of figures and ratios; `--write FILE` also writes it as Markdown.
A column whose client is missing is skipped with a note.

Loopback only, port 0 or a port just taken from the kernel, every wait bounded, every child
stopped by its pid on the way out. Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import copied_files  # noqa: E402  (random files and their SHA-256)
import forward_bench as fb  # noqa: E402  (source/sink servers, download, upload, parallel)
import local_sshd  # noqa: E402  (an sshd for the plugin's scp)
import shell_pty  # noqa: E402  (PTY sessions, keystroke echo)

MB = 1_000_000
# What --only can pick: forwards without and with the agent's pacing, time to a ready forward,
# 8 parallel downloads, keystroke echo with the shell's RSS, copying a file each way.
GROUPS = ("unpaced", "paced", "ready", "scaling", "echo", "cp")
LIMIT = 120.0
KEYS = ("AKIDCOMPARE", "compare-bench-secret")


def base_env():
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "AWS_ACCESS_KEY_ID": KEYS[0],
        "AWS_SECRET_ACCESS_KEY": KEYS[1],
        "POSTERN_EMULATOR_ACCESS_KEY_ID": KEYS[0],
        "POSTERN_EMULATOR_SECRET_ACCESS_KEY": KEYS[1],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        # The emulator's shells inherit its environment: a prompt the echo test knows.
        "PS1": "$ ",
    }
    return env


class Emulator:
    def __init__(self, postern, paced):
        args = [postern, "emulator", "--exit-after", "30m"] + ([] if paced else ["--no-pacing"])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=base_env(), text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.endpoint = ready["endpoint"]
        self.instance = ready["instances"][0]

    def env(self):
        return dict(base_env(), AWS_ENDPOINT_URL=self.endpoint)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def children(pid):
    """Direct children of `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def client_pid(top, via_cli, deadline):
    """The session client's pid: `top` itself, or the plugin the AWS CLI started."""
    if not via_cli:
        return top
    while time.monotonic() < deadline:
        kids = children(top)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise RuntimeError("the AWS CLI started no plugin")


def thread_cpu_ns(pids):
    """{(pid, tid): CPU nanoseconds so far} of every thread of `pids`, from schedstat (exact,
    unlike the tick-sampled utime/stime, which a few hundred milliseconds would not resolve)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[(pid, tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_ns_between(before, after):
    """CPU time the threads used from `before` to `after`; a thread started meanwhile counts
    whole, one that ended meanwhile loses only its last moments."""
    return sum(ns - before.get(key, 0) for key, ns in after.items())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Peak RSS of everything a user runs for one session: postern alone, or the AWS CLI that
# called StartSession plus the plugin it started (the CLI waits for the plugin, resident, the
# whole session).
CLIENT_PROCESSES = "peak RSS, all client processes"


def cli_peak(pid):
    """The AWS CLI's peak RSS in MiB, or 0 when the client has no CLI process."""
    return vm(pid, "VmHWM") if pid is not None else 0.0


def reset_peak(pid):
    """Resets `pid`'s peak RSS (VmHWM) to its current RSS (/proc/PID/clear_refs, "5"); returns
    the peak so far, so that the process's whole-life peak stays known."""
    before = vm(pid, "VmHWM")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    return before


def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def evict_page_cache(paths):
    """Drops the page cache of `paths` (written back first; pages a running process maps
    stay). The RSS of a binary's code depends on how its file sits in the page cache: the
    kernel maps a whole large folio on a fault, and a freshly linked or copied file is cached
    in other folio sizes than one read back through page faults, a difference of several MiB
    between two identical binaries. Evicted, every client starts from the same state, as
    after a reboot: its pages come back through its own faults."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    """How one column starts its sessions: native postern, or `aws ssm start-session` with a
    plugin directory (the official plugin, or postern's drop-in link) first on PATH."""

    def __init__(self, name, postern=None, aws=None, plugin=None):
        self.name = name
        self.postern = postern
        self.aws = aws
        self.plugin_dir = None
        if plugin:
            self.plugin_dir = tempfile.mkdtemp(prefix="postern-compare-")
            os.symlink(plugin, os.path.join(self.plugin_dir, "session-manager-plugin"))

    @property
    def via_cli(self):
        return self.plugin_dir is not None

    def env(self, emu):
        env = emu.env()
        if self.via_cli:
            env["PATH"] = f"{self.plugin_dir}:{env['PATH']}"
        return env

    def forward_argv(self, emu, remote_port, local_port):
        if not self.via_cli:
            return [self.postern, "forward", emu.instance, "-L", f"{local_port}:{remote_port}"]
        params = json.dumps({"portNumber": [str(remote_port)],
                             "localPortNumber": [str(local_port)]})
        return [self.aws, "ssm", "start-session", "--target", emu.instance, "--document-name",
                "AWS-StartPortForwardingSession", "--parameters", params]

    def shell_argv(self, emu):
        if not self.via_cli:
            return [self.postern, "shell", emu.instance]
        return [self.aws, "ssm", "start-session", "--target", emu.instance]

    def cleanup(self):
        if self.plugin_dir:
            shutil.rmtree(self.plugin_dir, ignore_errors=True)


class Forward:
    """A running port forward of `client`, ready once it says so: postern's `--json` line, or
    the plugin's `Waiting for connections...` (postern's drop-in prints the same)."""

    def __init__(self, client, emu, remote_port):
        self.local = free_port()
        argv = client.forward_argv(emu, remote_port, self.local)
        if not client.via_cli:
            argv.append("--json")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=client.env(emu),
                                     start_new_session=True)
        marker = b'"local"' if not client.via_cli else b"Waiting for connections"
        deadline = self.started + 60
        seen = b""
        while marker not in seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"{client.name}: forward not ready: {seen[-300:]!r} "
                                   + self.proc.stderr.read().decode(errors="replace")[-500:])
            seen += chunk
        self.ready_after = time.monotonic() - self.started
        self.pid = client_pid(self.proc.pid, client.via_cli, deadline)
        # The AWS CLI that started the plugin stays alive, waiting for it, the whole session.
        self.cli_pid = self.proc.pid if client.via_cli else None

    def stop(self):
        try:
            os.killpg(self.proc.pid, 2)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)


class Table:
    def __init__(self, names):
        self.names = names
        self.rows = []

    def add(self, metric, unit, values, better="higher"):
        """`values`: {client name: figure or None}; the ratios are postern over the plugin
        (and over the baseline build, when there is one)."""
        self.rows.append((metric, unit, values, better))
        cells = "".join(f"{fmt(values.get(n)):>16}" for n in self.names)
        print(f"{metric:<54}{unit:<8}{cells}  {self.ratios(values, better)}", flush=True)

    def ratios(self, values, better):
        text = ratio_cell(values, "plugin", better)
        if "baseline" in self.names:
            text += "  " + ratio_cell(values, "baseline", better).split(" (")[0]
        return text

    def ratio_heads(self):
        return ["postern / plugin"] + (["postern / baseline"] if "baseline" in self.names
                                       else [])

    def header(self):
        print(f"{'':<54}{'':<8}" + "".join(f"{n:>16}" for n in self.names)
              + "  " + "  ".join(self.ratio_heads()))

    def markdown(self):
        heads = self.ratio_heads()
        lines = ["| figure | unit | " + " | ".join(self.names + heads) + " |",
                 "|---|---|" + "---:|" * (len(self.names) + len(heads))]
        for metric, unit, values, better in self.rows:
            cells = [fmt(values.get(n)) for n in self.names]
            cells.append(ratio_cell(values, "plugin", better))
            if "baseline" in self.names:
                cells.append(ratio_cell(values, "baseline", better))
            lines.append(f"| {metric} | {unit} | {' | '.join(cells)} |")
        return "\n".join(lines)


def fmt(value):
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def ratio_cell(values, other, better):
    ours, theirs = values.get("postern"), values.get(other)
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x ({better} is better)"


def forward_figures(clients, emu, source, sink, size, table, paced, rounds):
    """Throughput each way, CPU per 100 MB and peak RSS, one connection, per client: the
    median of `rounds` transfers each way, the clients taking turns in an order that rotates
    every round, after one unmeasured warm-up transfer (the first transfer after the
    emulator starts ran ~10-15% slower whichever client made it: in one run, the same binary
    measured 0.86x itself when it went first)."""
    warm = Forward(clients[0], emu, source)
    try:
        fb.download(warm.local, min(size, 4 * MB))
    finally:
        warm.stop()
    samples = {c.name: {"download": [], "upload": []} for c in clients}
    for round_ in range(rounds):
        turn = clients[round_ % len(clients):] + clients[:round_ % len(clients)]
        for way, fn, port in (("download", fb.download, source), ("upload", fb.upload, sink)):
            for client in turn:
                fw = Forward(client, emu, port)
                try:
                    setup_peak = reset_peak(fw.pid)
                    cpu0 = cpu_seconds(fw.pid)
                    secs = fn(fw.local, size)
                    cpu = cpu_seconds(fw.pid) - cpu0
                    during = vm(fw.pid, "VmHWM")
                    whole = max(setup_peak, during)
                    samples[client.name][way].append(
                        (size / secs / MB, cpu / (size / (100 * MB)), whole, during,
                         whole + cli_peak(fw.cli_pid)))
                finally:
                    fw.stop()
    label = "paced" if paced else "unpaced"
    of = f" (median of {rounds})" if rounds > 1 else ""
    for i, what, unit, better in ((0, "MB/s", "MB/s", "higher"),
                                  (1, "CPU s per 100 MB", "s", "lower"),
                                  (2, "peak RSS, whole process", "MiB", "lower"),
                                  (3, "peak RSS after ready", "MiB", "lower"),
                                  (4, CLIENT_PROCESSES, "MiB", "lower")):
        for way in ("download", "upload"):
            table.add(f"{label} {way}: {what}{of}", unit,
                      {n: statistics.median(x[i] for x in r[way]) for n, r in samples.items()},
                      better)


def ready_figures(clients, emu, source, runs, table):
    times = {c.name: [] for c in clients}
    for _ in range(runs):
        for client in clients:  # turns, so both see the same load
            fw = Forward(client, emu, source)
            times[client.name].append(fw.ready_after * 1000)
            fw.stop()
    table.add(f"process start to forward ready (median of {runs})", "ms",
              {n: statistics.median(t) for n, t in times.items()}, "lower")


def scaling_figures(clients, emu, source, each, table):
    """8 parallel downloads through one forward: postern's --sessions auto against the
    plugin's single multiplexed session."""
    values = {}
    for client in clients:
        fw = Forward(client, emu, source)
        try:
            secs = fb.parallel(fb.download, fw.local, each, 8)
            values[client.name] = 8 * each / secs / MB
        finally:
            fw.stop()
    table.add("paced, 8 parallel downloads, default sessions", "MB/s", values, "higher")


def shell_figures(clients, emu, keystrokes, table):
    # The RSS figures come from each client's first shell; the echo pools all of its shells.
    firsts = [shell_pty.Session(c.name, c.shell_argv(emu), c.env(emu)) for c in clients]
    sessions = list(firsts)
    try:
        # Every other round starts its shells in the reverse order, so no client's shells are
        # all started first (or last) on the emulator.
        for round_ in range(1, ECHO_SHELLS):
            order = clients[::-1] if round_ % 2 else clients
            sessions += [shell_pty.Session(c.name, c.shell_argv(emu), c.env(emu))
                         for c in order]
        pids, setup_peaks, cli_pids = {}, {}, {}
        for client, s in zip(clients, firsts):
            s.wait_prompt()
            pids[client.name] = client_pid(s.pid, client.via_cli, time.monotonic() + 10)
            cli_pids[client.name] = s.pid if client.via_cli else None
            setup_peaks[client.name] = reset_peak(pids[client.name])
        for s in sessions[len(firsts):]:
            s.wait_prompt()
        for s in sessions:
            s.write(b"\r")  # a fresh prompt for echo_rtt to wait for
        # Each shell's session client: postern, or the plugin (the AWS CLI that started it
        # only waits for it: no CPU to speak of).
        clients_of = {}
        via_cli = {c.name: c.via_cli for c in clients}
        for s in sessions:
            clients_of.setdefault(s.name, []).append(
                client_pid(s.pid, via_cli[s.name], time.monotonic() + 10))
        cpu_before = {name: thread_cpu_ns(p) for name, p in clients_of.items()}
        samples, problems = shell_pty.echo_rtt(sessions, keystrokes, 50, (10, 30),
                                               __import__("random").Random(5), 2.0)
        cpu_used = {name: cpu_ns_between(cpu_before[name], thread_cpu_ns(p))
                    for name, p in clients_of.items()}
        rss, whole, together = {}, {}, {}
        for name, pid in pids.items():
            rss[name] = vm(pid, "VmHWM")
            whole[name] = max(rss[name], setup_peaks[name])
            together[name] = whole[name] + cli_peak(cli_pids[name])
        for s in sessions:
            s.write(b"exit\r")
        for s in sessions:
            s.finish()
    finally:
        for s in sessions:
            s.close()
    for name, problem in problems.items():
        print(f"  note: {name}: {problem}")
    each = f"{keystrokes} in each of {ECHO_SHELLS} shells"
    table.add(f"keystroke echo, median of {each}", "ms",
              {n: statistics.median(v) * 1000 for n, v in samples.items() if v}, "lower")
    table.add(f"keystroke echo, p99 of {each}", "ms",
              {n: shell_pty.percentile(v, 0.99) * 1000 for n, v in samples.items() if v},
              "lower")
    # CPU time the client process used while the keystrokes went through (the gaps between
    # them included), over the keystrokes echoed: what typing costs the user's machine.
    table.add("keystroke echo: client CPU per keystroke", "us",
              {n: cpu_used[n] / 1000 / len(v) for n, v in samples.items() if v}, "lower")
    table.add("interactive shell: peak RSS, whole process", "MiB", whole, "lower")
    table.add("interactive shell: peak RSS after the prompt", "MiB", rss, "lower")
    table.add(f"interactive shell: {CLIENT_PROCESSES}", "MiB", together, "lower")


def cp_figures(clients, emu, size, table, notes):
    """Copying one file of `size` random bytes each way, SHA-256 checked, as each client's
    users do it, start-up included: postern with `postern cp` after `postern setup` (its
    Postern-Command document, the default --sessions); the plugin and postern's drop-in with
    scp, `aws ssm start-session --document-name AWS-StartSSHSession` as its ProxyCommand, to an
    sshd on loopback (the emulator's instance forwards the session to it: one paced port
    session). A column whose client cannot copy (no OpenSSH here, a postern build without
    `cp`) is left empty with a note."""
    native = []
    for client in clients:
        if client.via_cli:
            continue
        if has_cp(client.postern):
            native.append(client)
        else:
            notes.append(f"copy a file: no {client.name} figures (this build has no `cp`)")
            print("note:", notes[-1])
    scp_clients = [c for c in clients if c.via_cli]
    if scp_clients and not local_sshd.available():
        notes.append("copy a file: the scp columns are skipped ("
                     + ", ".join(local_sshd.TOOLS) + " needed)")
        print("note:", notes[-1])
        scp_clients = []
    rates = {"download": {}, "upload": {}}
    with tempfile.TemporaryDirectory(prefix="postern-compare-cp-") as tmp:
        src = os.path.join(tmp, "source.bin")
        want = copied_files.write_random(src, size)

        def ends(client, way):
            """(source, destination, the local copy to check) of `client`'s copy `way`."""
            local = os.path.join(tmp, f"{client.name.replace(' ', '-')}-{way}.bin")
            if way == "download":
                return f"{emu.instance}:{src}", local, local
            return src, f"{emu.instance}:{local}", local

        for client in native:
            run_postern(client, emu, ["setup"])
            for way in ("download", "upload"):
                source, dest, local = ends(client, way)
                secs = run_postern(client, emu, ["cp", source, dest])
                rates[way][client.name] = size / secs / MB
                check_copy(client, way, local, want)
        if scp_clients:
            sshd = local_sshd.Sshd()
            try:
                for client in scp_clients:
                    proxy = (f"{shlex.quote(client.aws)} ssm start-session --target %h"
                             " --document-name AWS-StartSSHSession --parameters portNumber=%p")
                    for way in ("download", "upload"):
                        source, dest, local = ends(client, way)
                        secs = sshd.scp(proxy, source, dest, client.env(emu), CP_LIMIT)
                        rates[way][client.name] = size / secs / MB
                        check_copy(client, way, local, want)
            finally:
                sshd.stop()
    for way in ("download", "upload"):
        table.add(f"copy a {size / MB:g} MB file, {way} (cp vs scp)",
                  "MB/s", rates[way], "higher")


def has_cp(postern):
    """Whether this postern build has the `cp` command."""
    return subprocess.run([postern, "cp", "--help"], capture_output=True).returncode == 0


def run_postern(client, emu, args):
    """Runs `postern ARGS` for a native column; the seconds it took. Raises on a non-zero
    exit (with its stderr) or after CP_LIMIT."""
    start = time.monotonic()
    done = subprocess.run([client.postern] + args, env=client.env(emu),
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=CP_LIMIT)
    secs = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{client.name}: postern {' '.join(args)} exited "
                           f"{done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return secs


def check_copy(client, way, path, want):
    got = copied_files.sha256(path)
    os.remove(path)
    if got != want:
        raise RuntimeError(f"{client.name}: the {way}ed copy's SHA-256 differs")


# A copy (postern cp, or the plugin's scp at its ~1 MB/s) that takes longer has hung.
CP_LIMIT = 600.0


# Shells per client for the echo figures. The same binary measured up to 3-4% apart in two
# shells of one run (A/A runs); pooling shells, started in alternating orders, evens out what
# one shell's placement (its CPU, its pages, its place among the emulator's sessions) adds.
ECHO_SHELLS = 2


# The link-time function order release builds use (build.rs, scripts/symbol-order.sh).
ORDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "profile-data",
                     "symbol-order.txt")
# More ordered names missing from the binary than this: its code sits as rustc emitted it
# (more code pages mapped, slower wake-ups) and its figures are not the release binary's.
STALE_ORDER_SHARE = 0.05


def order_note(binary):
    """A note when `binary` lacks many of the names in the committed function order (built
    from other sources, another lockfile or toolchain, or without the order); None otherwise
    or when nm is missing."""
    nm = shutil.which("nm")
    if not nm or not os.path.exists(ORDER):
        return None
    with open(ORDER) as f:
        wanted = {line.strip() for line in f if line.strip()}
    listing = subprocess.run([nm, "--defined-only", binary], capture_output=True, text=True)
    if listing.returncode != 0 or not wanted:
        return None
    present = {fields[-1] for fields in map(str.split, listing.stdout.splitlines()) if fields}
    missing = len(wanted - present)
    if missing <= STALE_ORDER_SHARE * len(wanted):
        return None
    return (f"{os.path.basename(binary)}: {missing} of the {len(wanted)} functions in"
            f" profile-data/symbol-order.txt are not in this binary, so they are not placed"
            f" together: its RSS and echo figures are worse than with a current order"
            f" (scripts/symbol-order.sh regenerates it)")


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.release()}, {model}, {os.cpu_count()} CPUs, "
            f"load average {load} when the run ended")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postern", required=True)
    p.add_argument("--plugin", help="AWS's session-manager-plugin (column skipped when absent)")
    p.add_argument("--aws", help="the AWS CLI (the drop-in and plugin columns need it)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--write", help="also write the table as Markdown to this file")
    p.add_argument("--baseline", help="another postern build, measured natively as a column of "
                   "its own (before/after a change, in the same run)")
    p.add_argument("--only", type=lambda v: set(v.split(",")), default=set(GROUPS),
                   help="comma-separated groups to measure, of " + ", ".join(GROUPS)
                   + " (default: all)")
    p.add_argument("--keystrokes", type=int, help="keystrokes for the echo figures "
                   "(default 500, 100 with --quick)")
    p.add_argument("--rounds", type=int, help="transfers each way per client for the "
                   "throughput, CPU and RSS figures, the clients taking turns (median; default "
                   "3, 1 with --quick)")
    p.add_argument("--paced-mb", type=float, help="MB per paced transfer "
                   "(default 4, 1 with --quick)")
    p.add_argument("--cp-mb", type=float, help="MB of the copied file "
                   "(default 16, 2 with --quick)")
    a = p.parse_args()
    if not a.only <= set(GROUPS):
        p.error(f"--only: unknown group(s) {', '.join(sorted(a.only - set(GROUPS)))}; "
                f"choose from {', '.join(GROUPS)}")

    notes = []
    clients = [Client("postern", postern=a.postern)]
    if a.baseline:
        clients.append(Client("baseline", postern=a.baseline))
    if a.aws and a.plugin:
        clients.append(Client("plugin", aws=a.aws, plugin=a.plugin))
    else:
        notes.append("the official plugin column is skipped: "
                     + ("no AWS CLI" if not a.aws else "no session-manager-plugin")
                     + " (set SESSION_MANAGER_PLUGIN / AWS_CLI, see bench/compare.sh)")
    if a.aws:
        clients.append(Client("postern drop-in", aws=a.aws, plugin=a.postern))
    names = [c.name for c in clients]
    stale = order_note(a.postern)
    if stale:
        notes.append(stale)
    for note in notes:
        print("note:", note)

    size = (10 if a.quick else 100) * MB
    paced_size = int((a.paced_mb or (1 if a.quick else 4)) * MB)
    keystrokes = a.keystrokes or (100 if a.quick else 500)
    cp_size = int((a.cp_mb or (2 if a.quick else 16)) * MB)
    rounds = a.rounds or (1 if a.quick else 3)
    if rounds < 1:
        p.error("--rounds: at least 1")
    each = (256 * 1024) if a.quick else 1 * MB
    table = Table(names)
    source, sink = fb.servers()
    binaries = [p for p in (a.postern, a.baseline, a.plugin) if p]
    try:
        table.header()
        if "unpaced" in a.only:
            evict_page_cache(binaries)
            emu = Emulator(a.postern, paced=False)
            try:
                forward_figures(clients, emu, source, sink, size, table, paced=False,
                                rounds=rounds)
            finally:
                emu.stop()
        if a.only & {"paced", "ready", "scaling", "echo", "cp"}:
            evict_page_cache(binaries)
            emu = Emulator(a.postern, paced=True)
            try:
                if "paced" in a.only:
                    forward_figures(clients, emu, source, sink, paced_size, table, paced=True,
                                    rounds=rounds)
                if "ready" in a.only:
                    ready_figures(clients, emu, source, 3 if a.quick else 10, table)
                if "scaling" in a.only:
                    scaling_figures(clients, emu, source, each, table)
                if "echo" in a.only:
                    shell_figures(clients, emu, keystrokes, table)
                if "cp" in a.only:
                    cp_figures(clients, emu, cp_size, table, notes)
            finally:
                emu.stop()
    finally:
        for c in clients:
            c.cleanup()

    if a.write:
        command = "bench/compare.sh" + (" --quick" if a.quick else "")
        if a.only != set(GROUPS):
            command += " --only " + ",".join(g for g in GROUPS if g in a.only)
        for flag, value in (("--keystrokes", a.keystrokes), ("--paced-mb", a.paced_mb),
                            ("--cp-mb", a.cp_mb)):
            if value is not None:
                command += f" {flag} {value}"
        text = (f"# Benchmarks: postern against AWS's session-manager-plugin\n\n"
                f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
                f" ({machine()}); never edited by hand. Both clients against `postern emulator`"
                f" on loopback; figures are of the client process (the plugin under"
                f" `aws ssm start-session`, not the AWS CLI). Peak RSS is VmHWM: \"whole"
                f" process\" from exec to the end (for postern this includes its own"
                f" StartSession through the AWS SDK, which the plugin leaves to the AWS CLI);"
                f" \"after ready\" / \"after the prompt\" from the moment the forward printed"
                f" its ready line or the shell its prompt (VmHWM reset through"
                f" /proc/PID/clear_refs, the same for every client); \"all client processes\""
                f" adds, for the plugin and the drop-in, the peak of the AWS CLI that called"
                f" StartSession and stays resident, waiting for the plugin, the whole session."
                f" Copying a file: `postern cp` after `postern setup` against scp with"
                f" `aws ssm start-session --document-name AWS-StartSSHSession` as its"
                f" ProxyCommand (the plugin, the drop-in) to an sshd on loopback; each"
                f" copy's time includes its start-up, and every copy is SHA-256 checked."
                f" Before each emulator starts, the binaries leave the page cache"
                f" (posix_fadvise), so every client maps its code from the same state."
                f" Rerun:"
                f" `bench/compare.sh --write`.\n\n{table.markdown()}\n")
        if notes:
            text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        with open(a.write, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
