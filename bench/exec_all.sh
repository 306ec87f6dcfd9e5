#!/usr/bin/env bash
# `postern exec --all` benchmark (issue 21): `true` on every instance of a generated fleet
# (default 200 instances over 20 accounts, one region) with 50 ms injected API latency, each
# account through the role broker; wall time with --parallel 16 and --parallel 1 in the same
# run, the index listed once beforehand (not timed). Loopback only: `postern emulator` on port 0,
# stopped at the end (and by itself after 15 min).
#
# Usage: bench/exec_all.sh
# Knobs: SHAPE (accounts=20,regions=1,instances=200), LATENCY (50ms), PARALLEL ("16 1"),
#        PROFILE (release; `dev` for a quick debug build: label its figures as such).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"
source "$here/build_postern.sh"
export SHAPE="${SHAPE:-accounts=20,regions=1,instances=200}"
export LATENCY="${LATENCY:-50ms}"
export PARALLEL="${PARALLEL:-16 1}"
export PROFILE_LABEL="$profile"
exec python3 - <<'PY'
import json, os, subprocess, sys, tempfile, time

bin = os.environ["POSTERN_BIN"]
home = tempfile.mkdtemp(prefix="postern-bench-exec-")
emulator = subprocess.Popen(
    [bin, "emulator", "--generate-fleet", os.environ["SHAPE"], "--api-latency",
     os.environ["LATENCY"], "--exit-after", "900s"],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    ready = json.loads(emulator.stdout.readline())
    region = ready["region"]
    config = ['role = "PosternAccess"', f'regions = ["{region}"]', ""]
    for account in ready["accounts"]:
        config += ["[[accounts]]", f'id = "{account["id"]}"', f'alias = "{account["alias"]}"',
                   f'env = "{account["env"]}"', ""]
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write("\n".join(config))
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, "xdg-config"),
        "XDG_CACHE_HOME": os.path.join(home, "xdg-cache"),
        "POSTERN_CACHE_DIR": os.path.join(home, "cache"),
        "POSTERN_CONFIG": os.path.join(home, "config.toml"),
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": ready["endpoint"], "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": ready["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ready["secret_access_key"],
    }
    listed = subprocess.run([bin, "list", "--refresh", "--json"], env=env,
                            capture_output=True, text=True)
    rows = [json.loads(l) for l in listed.stdout.splitlines()]
    online = sum(1 for r in rows if r.get("ping_status") == "Online")
    print(f"fleet {os.environ['SHAPE']}, API latency {os.environ['LATENCY']}, "
          f"{len(rows)} instances listed ({online} online), {os.environ['PROFILE_LABEL']} build")
    results = {}
    for parallel in os.environ["PARALLEL"].split():
        start = time.monotonic()
        run = subprocess.run(
            [bin, "exec", "--all", "", "--yes", "--parallel", parallel, "--", "true"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        wall = time.monotonic() - start
        summary = next((l for l in run.stderr.splitlines() if "exec on" in l), run.stderr[-300:])
        results[parallel] = wall
        print(f"--parallel {parallel:>3}: {wall:7.2f} s wall, exit {run.returncode}: {summary}")
    if len(results) > 1:
        first, *rest = results
        for other in rest:
            print(f"speed-up --parallel {first} vs --parallel {other}: "
                  f"{results[other] / results[first]:.1f}x")
finally:
    emulator.terminate()
    emulator.wait(timeout=10)
PY
