#!/usr/bin/env python3
"""Discovery benchmark (issues 8 and 22), driven by bench/discovery.sh.

`postern emulator --generate-fleet SHAPE --api-latency LATENCY` on loopback; a postern
configuration listing every account of the fleet (role PosternAccess, every region), so each
account is reached through the role broker: GetCallerIdentity once, AssumeRole per account,
then DescribeInstances and DescribeInstanceInformation (every page) per account and region.

  * cold discovery: `postern list --refresh --json` with empty caches (index and credentials),
    with postern's default concurrency (or CONCURRENCY), then the same with
    POSTERN_DISCOVERY_CONCURRENCY=1 (the sequential baseline, SEQUENTIAL=0 skips it); the
    ratio of the two wall times;
  * warm start: `postern list --json` from the cache, and `postern list web` (a fuzzy query);
  * wall time, CPU time (user + system) and peak RSS of each postern process (GNU time).

The emulator runs on the same machine and its CPU time is not counted; on a busy machine wall
times grow with the load (printed). Loopback only; the emulator stops at the end (and by
itself after 15 minutes).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib

BIN = os.environ["POSTERN_BIN"]
SHAPE = os.environ["SHAPE"]
LATENCY = os.environ["LATENCY"]
CONCURRENCY = os.environ.get("CONCURRENCY", "")
SEQUENTIAL = os.environ.get("SEQUENTIAL", "1") == "1"
GOAL = 20.0


def main() -> None:
    fleet = tomllib.loads(
        subprocess.run(
            [BIN, "emulator", "--generate-fleet", SHAPE, "--print-fleet"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    total = len(fleet["instances"])
    home = tempfile.mkdtemp(prefix="postern-bench-discovery-")
    emulator = subprocess.Popen(
        [BIN, "emulator", "--generate-fleet", SHAPE, "--api-latency", LATENCY,
         "--exit-after", "15m"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = json.loads(emulator.stdout.readline())
        run(fleet, total, ready, home)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def run(fleet: dict, total: int, ready: dict, home: str) -> None:
    config = os.path.join(home, "config.toml")
    regions = ", ".join(f'"{r}"' for r in fleet["regions"])
    with open(config, "w") as f:
        f.write(f'role = "PosternAccess"\nregions = [{regions}]\n')
        for a in fleet["accounts"]:
            f.write(f'\n[[accounts]]\nid = "{a["id"]}"\nalias = "{a["alias"]}"\nenv = "{a["env"]}"\n')
    env = {
        "PATH": os.environ["PATH"],
        "HOME": home,
        "AWS_ACCESS_KEY_ID": ready["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ready["secret_access_key"],
        "AWS_REGION": fleet["regions"][0],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "POSTERN_CONFIG": config,
        "POSTERN_STATE_DIR": os.path.join(home, "state"),
        # Every service at the emulator (`--endpoint-url` names SSM's endpoint only).
        "AWS_ENDPOINT_URL": ready["endpoint"],
    }
    scopes = len(fleet["accounts"]) * len(fleet["regions"])
    print(f"fleet {SHAPE}: {total} instances, {scopes} scopes, {LATENCY} API latency per call, "
          f"{os.environ.get('PROFILE_LABEL', 'release')} build, load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")

    label = f"concurrency {CONCURRENCY}" if CONCURRENCY else "default concurrency"
    concurrent = cold(env, home, "concurrent", CONCURRENCY, total)
    print(f"cold discovery, {label}: {concurrent}")
    if SEQUENTIAL:
        sequential = cold(env, home, "sequential", "1", total)
        print(f"cold discovery, sequential (POSTERN_DISCOVERY_CONCURRENCY=1): {sequential}")
        ratio = sequential.wall / concurrent.wall
        print(f"speed-up over the sequential baseline: {ratio:.1f}x (goal >= {GOAL:.0f}x)")

    warm_env = dict(env, POSTERN_CACHE_DIR=os.path.join(home, "concurrent"))
    warm = measure([BIN, "list", "--json"], warm_env)
    assert warm.rows == total, f"the warm start listed {warm.rows} of {total}"
    print(f"warm start from the cache (postern list --json): {warm}")
    query = measure([BIN, "list", "--json", "web"], warm_env)
    print(f"fuzzy query from the cache (postern list --json web, {query.rows} rows): {query}")


def cold(env: dict, home: str, name: str, concurrency: str, total: int) -> "Measured":
    """`postern list --refresh --json` with empty caches (index and credentials)."""
    env = dict(env, POSTERN_CACHE_DIR=os.path.join(home, name))
    if concurrency:
        env["POSTERN_DISCOVERY_CONCURRENCY"] = concurrency
    measured = measure([BIN, "list", "--refresh", "--json"], env)
    assert measured.rows == total, f"{name}: listed {measured.rows} of {total}"
    return measured


class Measured:
    def __init__(self, wall: float, cpu: float, rss_kib: int, rows: int) -> None:
        self.wall, self.cpu, self.rss_kib, self.rows = wall, cpu, rss_kib, rows

    def __str__(self) -> str:
        return (f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU, peak RSS "
                f"{self.rss_kib / 1024:.1f} MiB")


def measure(command: list, env: dict) -> Measured:
    """Wall time, then CPU time and peak RSS through GNU time (a child forked from this
    process would count this process's memory in its maximum RSS)."""
    report = tempfile.NamedTemporaryFile(prefix="postern-bench-time-", delete=False)
    report.close()
    try:
        started = time.perf_counter()
        out = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%U %S %M", *command],
            env=env,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({out.returncode}): "
                             f"{out.stderr.decode(errors='replace')[-2000:]}")
        with open(report.name) as f:
            user, system, rss = f.read().split()[-3:]
    finally:
        os.unlink(report.name)
    return Measured(wall, float(user) + float(system), int(rss), out.stdout.count(b"\n"))


if __name__ == "__main__":
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("bench/discovery.sh needs GNU time at /usr/bin/time")
    main()
