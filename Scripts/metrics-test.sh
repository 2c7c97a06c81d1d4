#!/usr/bin/env bash
# The admin ports of a live local cluster, from outside: `pharos cluster up` (2 shards),
# train, ingest 2,000 vectors, search; then every process's /metrics must pass
# `promtool check metrics` and show what happened (searches counted at the coordinator, each
# node's answer times, live entries summing to what was ingested), /livez and /readyz answer
# 200, unknown paths 404 and POST 405. Then the systemd protocol (Type=notify): a coordinator
# started with NOTIFY_SOCKET says READY=1 once listening, RELOADING=1 then READY=1 around a
# SIGHUP (it re-reads its map), STOPPING=1 on SIGTERM, and exits 0. Loopback only; bounded
# (about 20 s).
# Usage: Scripts/metrics-test.sh [BIN_DIR]   (default .build/debug, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug}
[ -x "$bin/pharos" ] || swift build
command -v promtool >/dev/null || { echo "promtool is missing: bash Scripts/install-deps.sh" >&2; exit 1; }
work=$(mktemp -d)
port=${PORT:-7950}
cluster=""
cleanup() {
  [ -z "$cluster" ] || { kill -INT "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

/usr/bin/python3 - "$work" <<'PY'
import struct, sys, random
random.seed(7)
def write(path, rows):
    with open(path, "wb") as f:
        for row in rows:
            f.write(struct.pack("<i", len(row)) + struct.pack("<%df" % len(row), *row))
write(sys.argv[1] + "/base.fvecs", [[random.gauss(0, 1) for _ in range(16)] for _ in range(2000)])
write(sys.argv[1] + "/queries.fvecs", [[random.gauss(0, 1) for _ in range(16)] for _ in range(20)])
PY

"$bin/pharos" cluster up --shards 2 --data "$work/cluster" --port "$port" --dimension 16 --factory "IVF8,PQ8" >"$work/cluster.log" 2>&1 &
cluster=$!
for _ in $(seq 1 150); do grep -q "cluster ready" "$work/cluster.log" && break; sleep 0.1; done
grep -q "cluster ready" "$work/cluster.log" || { cat "$work/cluster.log"; exit 1; }
c=(--coordinator "127.0.0.1:$port")
"$bin/pharos" train "${c[@]}" --train "$work/base.fvecs" >/dev/null
"$bin/pharos" ingest "${c[@]}" --vectors "$work/base.fvecs" >/dev/null
"$bin/pharos" search "${c[@]}" --queries "$work/queries.fvecs" -k 10 >/dev/null

/usr/bin/python3 - "$port" "$work" <<'PY'
import re, subprocess, sys, urllib.error, urllib.request
port, work = int(sys.argv[1]), sys.argv[2]
admins = {"coordinator": port + 1000, "shard-0": port + 1001, "shard-1": port + 1002}

def get(address, path, method="GET"):
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (address, path), method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

def value(text, name, labels=None):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        if labels and not all('%s="%s"' % kv in (m.group(2) or "") for kv in labels.items()):
            continue
        total += float(m.group(3))
        found = True
    if not found:
        raise SystemExit("no series %s%s in the exposition" % (name, labels or ""))
    return total

pages = {}
for name, address in admins.items():
    status, text = get(address, "/metrics")
    assert status == 200, (name, status)
    lint = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    if lint.returncode != 0:
        raise SystemExit("%s /metrics fails promtool check metrics:\n%s%s" % (name, lint.stdout.decode(), lint.stderr.decode()))
    for path in ("/livez", "/readyz"):
        status, body = get(address, path)
        assert status == 200, "%s %s answered %d: %s" % (name, path, status, body)
    assert get(address, "/nothing-here")[0] == 404, name
    assert get(address, "/metrics", method="POST")[0] == 405, name
    assert value(text, "pharos_build_info") == 1, name
    pages[name] = text

coordinator = pages["coordinator"]
searches = value(coordinator, "pharos_requests_total", {"type": "Search", "outcome": "ok"})
assert searches >= 20, "the coordinator counted %d searches, 20 were sent" % searches
for node in ("shard-0", "shard-1"):
    answers = value(coordinator, "pharos_coordinator_shard_request_seconds_count", {"node": node})
    assert answers >= 20, "%s answered %d shares of searches" % (node, answers)
assert value(coordinator, "pharos_cluster_buckets_unserved") == 0
assert value(coordinator, "pharos_cluster_nodes", {"state": "active"}) == 2
assert value(coordinator, "pharos_coordinator_partial_answers_total") == 0
live = sum(value(pages[n], "pharos_shard_entries", {"state": "live"}) for n in ("shard-0", "shard-1"))
assert live == 2000, "the shards hold %d live entries, 2000 were ingested" % live
for n in ("shard-0", "shard-1"):
    assert value(pages[n], "pharos_shard_trained") == 1, n
    assert value(pages[n], "pharos_shard_log_fsync_seconds_count") > 0, n
    assert value(pages[n], "pharos_requests_total", {"type": "Upsert", "outcome": "ok"}) > 0, n
    assert value(pages[n], "pharos_process_resident_file_bytes") > 0, n
print("metrics-test: 3 processes scraped; promtool check metrics passed; %d searches, %d live entries counted" % (searches, live))
PY

# A backup of a serving shard: snapshot while the cluster runs, restore into a new folder,
# verify it, and serve it as a new node holding the same entries.
"$bin/pharos-shard" snapshot --data "$work/cluster/shard-0" --out "$work/shard-0.tar"
members=$(tar tf "$work/shard-0.tar")   # whole, not piped into grep -q (SIGPIPE under pipefail)
grep -q '^MANIFEST$' <<<"$members" || { echo "snapshot has no MANIFEST: $members" >&2; exit 1; }
"$bin/pharos-shard" restore --from "$work/shard-0.tar" --data "$work/restored"
"$bin/pharos-shard" verify --data "$work/restored" >/dev/null
before=$("$bin/pharos" status --json --coordinator "127.0.0.1:$port" | /usr/bin/python3 -c 'import json,sys; print([n["entries"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="shard-0"][0])')
after=$("$bin/pharos-shard" stats --data "$work/restored" | sed -n 's/.*, live \([0-9]*\).*/\1/p' | sed -n 1p)
[ -n "$after" ] && [ "$before" = "$after" ] || { echo "restored shard holds '$after' live entries, the serving one $before" >&2; exit 1; }
echo "metrics-test: shard-0 snapshotted while serving and restored: $after live entries, verified"

/usr/bin/python3 - "$bin" "$work" <<'PY'
import os, signal, socket, subprocess, sys
bin, work = sys.argv[1], sys.argv[2]
path = work + "/notify.sock"
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind(path)
listener.settimeout(15)
env = dict(os.environ, NOTIFY_SOCKET=path)
coordinator = subprocess.Popen([bin + "/pharos-coordinator", "--cluster", work + "/cluster/cluster.json", "--port", "0", "--admin-port", "0"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def expect(word):
    message = listener.recv(4096).decode()
    if word not in message.split("\n"):
        coordinator.kill()
        raise SystemExit("systemd notification: expected %s, got %r" % (word, message))
    return message
try:
    expect("READY=1")
    coordinator.send_signal(signal.SIGHUP)
    expect("RELOADING=1")
    status = expect("READY=1")
    assert "cluster map" in status, status
    coordinator.send_signal(signal.SIGTERM)
    expect("STOPPING=1")
    assert coordinator.wait(timeout=15) == 0
finally:
    if coordinator.poll() is None:
        coordinator.kill()
print("metrics-test: READY=1, RELOADING=1 and READY=1 around SIGHUP, STOPPING=1; exit 0")
PY
