#!/usr/bin/env python3
"""The functions a session runs, for the linker to place together (scripts/symbol-order.sh).

Runs POSTERN under valgrind's callgrind against `postern emulator` on loopback: an interactive
shell (prompt, one command, exit), `exec` of one command, and a forward moving a few MB each
way. Writes the names of the binary's functions that ran, one a line, in the binary's own
address order (neighbours stay neighbours), for `POSTERN_SYMBOL_ORDER` (build.rs). The
functions that ran after the first session's data channel opened (`setup_memory::release`,
where postern drops its start-up code pages) come first: a running session maps those again,
and packed together they take few pages; the functions only start-up ran follow, grouped by
the step of start-up that first ran them (`setup_memory::between_steps` drops each step's pages
before the next, so a step whose code sits together maps few of them).

Every wait is bounded and every child is stopped by its pid. Python 3 standard library, plus
valgrind and nm (binutils) on PATH.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import compare_bench as cb  # noqa: E402  (emulator, clients, forwards)
import forward_bench as fb  # noqa: E402  (source and sink servers, download, upload)
import shell_pty  # noqa: E402  (PTY sessions)

MB = 1_000_000


def callgrind(out):
    # An absolute path: the PTY child is started with execve, which searches no PATH.
    return [shutil.which("valgrind"), "-q", "--tool=callgrind", "--demangle=no", "--dump-instr=no",
            "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}",
            # A dump after each step of start-up and when start-up ends (see functions_run).
            f"--dump-after={SESSION_STARTS}", f"--dump-after={STEP_ENDS}"]


# The mangled name of the function after which a session runs (src/setup_memory.rs).
SESSION_STARTS = "*12setup_memory7release*"
# The mangled name of the function that ends each step of start-up before that.
STEP_ENDS = "*12setup_memory13between_steps*"


def run_workload(postern, work):
    """Profiles the sessions; returns the callgrind output files."""
    outs = []
    emu = cb.Emulator(postern, paced=False)
    try:
        env = emu.env()
        out = os.path.join(work, "shell.out")
        shell = shell_pty.Session("shell", callgrind(out) + [postern, "shell", emu.instance], env)
        try:
            shell.wait_prompt(limit=180)
            shell.write(b"echo symbol-order\r")
            shell.wait_prompt(limit=60)
            code = shell.finish(limit=120)
        finally:
            shell.close()
        if code != 0:
            raise RuntimeError(f"postern shell under callgrind exited with {code}")
        outs.append(out)

        out = os.path.join(work, "exec.out")
        subprocess.run(callgrind(out) + [postern, "exec", emu.instance, "--", "true"], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
                       timeout=180)
        outs.append(out)

        source, sink = fb.servers()
        client = cb.Client("postern", postern=postern)
        for name, port, transfer in (("forward", source, fb.download),
                                     ("forward-up", sink, fb.upload)):
            out = os.path.join(work, f"{name}.out")
            client.forward_argv = lambda emu, remote, local, out=out: callgrind(out) + [
                postern, "forward", emu.instance, "-L", f"{local}:{remote}"]
            forward = cb.Forward(client, emu, port)
            try:
                transfer(forward.local, 4 * MB)
            finally:
                forward.stop()
            outs.append(out)
    finally:
        emu.stop()
    return outs


def functions_run(outputs, binary):
    """({names that ran during sessions}, [{names first run in start-up step i}]) of
    `binary`'s functions (callgrind's recursion marks `'N` dropped). Callgrind dumps after each
    step of start-up and after the release that starts the session: a workload's dumps up to
    the one holding `setup_memory::release` are its start-up steps in order; the later dumps and
    the final part are the session."""
    session, steps = set(), []
    for out in outputs:
        numbered = sorted(glob.glob(glob.escape(out) + ".*"),
                          key=lambda p: int(p.rsplit(".", 1)[1]))
        parts = [names_in(p, binary) for p in numbered + glob.glob(glob.escape(out))]
        ends = [i for i, names in enumerate(parts) if any(RELEASE.search(n) for n in names)]
        if not ends:
            raise RuntimeError(f"{out}: callgrind dumped nothing at {SESSION_STARTS}; was the "
                               "session opened (src/setup_memory.rs)?")
        for i, names in enumerate(parts[: ends[0] + 1]):
            if i == len(steps):
                steps.append(set())
            steps[i] |= names
        for names in parts[ends[0] + 1:]:
            session |= names
    seen = set(session)
    for names in steps:
        names -= seen
        seen |= names
    return session, steps


# `setup_memory::release`, as callgrind names it (mangled).
RELEASE = re.compile(re.escape(SESSION_STARTS.strip("*")))


def names_in(path, binary):
    """The names of `binary`'s functions that ran in one callgrind output file."""
    names, obj = set(), None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                obj = line[3:].strip()
            elif line.startswith("fn=") and obj == binary:
                names.add(re.sub(r"'\d+$", "", line[3:].strip()))
    return names


def text_symbols(binary):
    """{name: lowest address} of the binary's functions."""
    listing = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                             check=True).stdout
    addresses = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            address = int(parts[0], 16)
            addresses[parts[2]] = min(address, addresses.get(parts[2], address))
    return addresses


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postern", required=True, help="the release binary to profile")
    p.add_argument("--out", required=True, help="the symbol order file to write")
    a = p.parse_args()
    for tool in ("valgrind", "nm"):
        if shutil.which(tool) is None:
            sys.exit(f"symbol_order.py: {tool} is not on PATH; install it (valgrind, binutils)")
    binary = os.path.realpath(a.postern)
    work = tempfile.mkdtemp(prefix="postern-symbol-order-")
    try:
        session, steps = functions_run(run_workload(binary, work), binary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    addresses = text_symbols(binary)
    ordered = []
    for names in [session] + steps:
        ordered += sorted((n for n in names if n in addresses), key=lambda n: addresses[n])
    if len(ordered) < 1000:
        sys.exit(f"symbol_order.py: only {len(ordered)} functions of {binary} ran under "
                 "callgrind; is it a release build with its symbol table (not stripped)?")
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(ordered) + "\n")
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(ordered)} functions ({len(session)} run by sessions first, then"
          f" {len(steps)} steps of start-up)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
