#!/usr/bin/env bash
# `postern ssh --push-key` overhead (issue 21): what the push adds before ssh starts (EC2
# DescribeInstances for the availability zone, an ed25519 key pair written 0600, EC2 Instance
# Connect SendSSHPublicKey, the key removed after ssh). The "ssh" is /bin/true, so the figure is
# postern's own cost: RUNS runs of `postern ssh --no-push-key` and of `postern ssh --push-key`
# against `postern emulator` (builtin fleet, no injected latency, loopback, port 0; stopped at
# the end and by itself after 5 min), mean and median wall time per run.
#
# Usage: bench/ssh_push_key.sh
# Knobs: RUNS (20), PROFILE (release; `dev` for a quick debug build: label its figures as such).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"
source "$here/build_postern.sh"
export RUNS="${RUNS:-20}"
export PROFILE_LABEL="$profile"
exec python3 - <<'PY'
import json, os, statistics, subprocess, tempfile, time

bin = os.environ["POSTERN_BIN"]
runs = int(os.environ["RUNS"])
home = tempfile.mkdtemp(prefix="postern-bench-push-key-")
emulator = subprocess.Popen(
    [bin, "emulator", "--no-pacing", "--exit-after", "300s"],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    ready = json.loads(emulator.stdout.readline())
    env = {
        "PATH": os.environ["PATH"], "HOME": home, "TMPDIR": home,
        "POSTERN_CACHE_DIR": os.path.join(home, "cache"),
        "XDG_CONFIG_HOME": os.path.join(home, "config"),
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": ready["endpoint"], "AWS_REGION": ready["region"],
        "AWS_ACCESS_KEY_ID": ready["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ready["secret_access_key"],
    }
    instance = ready["instances"][0]
    print(f"profile {os.environ['PROFILE_LABEL']}, {runs} runs each, instance {instance}")
    for mode in ["--no-push-key", "--push-key"]:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([bin, "ssh", mode, "--ssh-program", "true", instance],
                           env=env, check=True, stdin=subprocess.DEVNULL)
            times.append((time.perf_counter() - start) * 1000)
        print(f"{mode:14} mean {statistics.mean(times):7.1f} ms  median "
              f"{statistics.median(times):7.1f} ms")
    left = [n for n in os.listdir(home) if n.startswith("postern-key-")]
    print(f"key directories left in TMPDIR: {len(left)}")
finally:
    emulator.terminate()
    emulator.wait()
PY
