#!/usr/bin/env bash
# A rolling upgrade between two builds, on loopback: a cluster of the previous release (3 shard
# nodes, 2 copies, a coordinator; protocol version 1) is upgraded one process at a time to this
# build (version 4) while a searcher written from Protocols/README.md runs: first one shard
# (a new node serving an old coordinator), then the coordinator (a new coordinator with old
# shards), then the other shards. Checks: the searcher never gets a partial answer or a wrong
# top hit (only refusals while the coordinator itself restarts), every entry fetched before
# is fetched identically after, `pharos status` shows the mixed versions midway and only this
# build at the end, and writes and deletes work afterwards. Bounded: the old build takes a few
# minutes, the scenario about 30 s.
# Usage: Scripts/upgrade-test.sh [BIN_DIR] [OLD_COMMIT]
#   (default .build/debug; the old commit defaults to the last one speaking only version 1)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.build/debug}" && pwd)
old_ref=${2:-77ab52e692d2eaabfd588368ec8225316a5c19ef}
[ -x "$bin/pharos" ] || swift build
work=$(mktemp -d)
old_tree=${OLD_TREE:-.build-upgrade/old}   # kept between runs: the old build is the slow part
port=${PORT:-7980}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "upgrade-test: $*" >&2; exit 1; }

# The previous release, built in its own folder.
if [ ! -x "$old_tree/.build/debug/pharos-shard" ] || [ "$(git -C "$old_tree" rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$old_ref")" ]; then
  rm -rf "$old_tree"
  git worktree prune
  mkdir -p "$(dirname "$old_tree")"
  git worktree add --detach --force "$old_tree" "$old_ref" >/dev/null
  echo "upgrade-test: building $old_ref (the previous release) in $old_tree"
  (cd "$old_tree" && swift build --product pharos-shard >/dev/null && swift build --product pharos-coordinator >/dev/null)
fi
old=$(cd "$old_tree/.build/debug" && pwd)

start() {   # start NAME BIN ARGS...: a server in the background; waits until it listens
  local name=$1 program=$2
  shift 2
  "$program" "$@" >"$work/$name.out" 2>>"$work/$name.log" &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 1 100); do grep -q "listening on" "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  cat "$work/$name.log" >&2
  fail "$name did not start"
}
stop() {   # stop NAME: SIGTERM and wait
  local var="pid_$1"
  kill -TERM "${!var}"
  wait "${!var}" 2>/dev/null || true
}
shard() { start "s$1" "$2/pharos-shard" serve --data "$work/s$1" --port $((port + 1 + $1)) --name "s$1" --no-admin; }
shard_old() { start "s$1" "$old/pharos-shard" serve --data "$work/s$1" --port $((port + 1 + $1)) --name "s$1"; }
coordinator() { start coordinator "$1/pharos-coordinator" --cluster "$work/cluster.json" --port "$port" --state "$work/state" "${@:2}"; }

/usr/bin/python3 - "$work" "$port" <<'PY'
import json, random, struct, sys
work, port = sys.argv[1], int(sys.argv[2])
random.seed(21)
with open(work + "/base.fvecs", "wb") as f:
    for _ in range(3000):
        f.write(struct.pack("<i16f", 16, *[random.gauss(0, 1) for _ in range(16)]))
json.dump({"collection": {"dimension": 16, "metric": "l2", "factory": "IVF16,PQ8"}, "buckets": 256, "replication": 2,
           "shards": [{"name": "s%d" % i, "host": "127.0.0.1", "port": port + 1 + i} for i in range(3)]},
          open(work + "/cluster.json", "w"))
PY

for i in 0 1 2; do shard_old "$i"; done
coordinator "$old"
c=(--coordinator "127.0.0.1:$port")
"$bin/pharos" train "${c[@]}" --train "$work/base.fvecs" >/dev/null 2>&1
"$bin/pharos" ingest "${c[@]}" --vectors "$work/base.fvecs" >/dev/null 2>&1
seq 0 2999 | sed 's/^/row-/' >"$work/keys.txt"
seq 0 99 | sed 's/^/row-/' >"$work/deleted-keys.txt"
"$bin/pharos" fetch "${c[@]}" --keys-file "$work/keys.txt" --json >"$work/before.jsonl"

# The searcher: a client from the protocol document, until told to stop.
/usr/bin/python3 - "$work" "$port" 2>"$work/searcher.log" <<'PY' &
import os, random, struct, sys, time
sys.path.insert(0, "Scripts")
from pharos_client import Connection, protocol
work, port = sys.argv[1], int(sys.argv[2])
pb = protocol()
rows = []
with open(work + "/base.fvecs", "rb") as f:
    while True:
        head = f.read(4)
        if not head:
            break
        rows.append(struct.unpack("<16f", f.read(64)))
counts = {"ok": 0, "partial": 0, "wrong": 0, "refused": 0}
connection = None
deadline = time.time() + 240
while not os.path.exists(work + "/stop") and time.time() < deadline:
    i = random.randrange(len(rows))
    try:
        if connection is None:
            connection = Connection(pb, port, timeout=5)
        connection.send(lambda e: e.search.CopyFrom(pb.Search(vectors=rows[i], dimension=16, k=5, nprobe=16)))
        reply = connection.read()
    except OSError:
        counts["refused"] += 1   # the coordinator itself restarting
        connection = None
        time.sleep(0.05)
        continue
    kind = reply.WhichOneof("body")
    if kind != "search_result":
        counts["refused"] += 1
        connection = None
        time.sleep(0.05)
    elif reply.search_result.partial or reply.search_result.missing:
        counts["partial"] += 1
    elif "row-%d" % i not in reply.search_result.queries[0].keys:
        counts["wrong"] += 1
    else:
        counts["ok"] += 1
open(work + "/searcher.txt", "w").write(" ".join("%s=%d" % kv for kv in counts.items()))
PY
searcher=$!
pids+=($searcher)
status_json() { "$bin/pharos" status --json "${c[@]}" 2>/dev/null || true; }
wait_software() {   # wait_software NODE WORD: until status names WORD in NODE's software
  for _ in $(seq 1 100); do
    status_json | /usr/bin/python3 -c 'import json,sys; n={x["name"]:x for x in json.load(sys.stdin)["nodes"]}; sys.exit(0 if sys.argv[2] in n[sys.argv[1]]["software"] else 1)' "$1" "$2" && return 0
    sleep 0.2
  done
  status_json >&2
  fail "$1 never reported software containing '$2'"
}
sleep 1

# 1. One shard first: a new node serving the old coordinator.
stop s0; shard 0 "$bin"; sleep 2
# 2. The coordinator: a new coordinator with two old shards and one new one.
stop coordinator; coordinator "$bin"
version=$("$bin/pharos" --version | sed 's/^pharos //')
wait_software s0 "pharos-shard $version"
wait_software s1 "protocol version 1"
echo "upgrade-test: midway: $(status_json | /usr/bin/python3 -c 'import json,sys; print("; ".join("%s: %s, protocol %d" % (n["name"], n["software"], n["protocolVersion"]) for n in json.load(sys.stdin)["nodes"]))')"
# 3. The other shards, one at a time.
for i in 1 2; do stop "s$i"; shard "$i" "$bin"; sleep 2; done
for i in 0 1 2; do wait_software "s$i" "pharos-shard $version"; done
touch "$work/stop"
wait "$searcher" || true
[ -s "$work/searcher.txt" ] || { cat "$work/searcher.log" >&2; fail "the searcher stopped early"; }
result=$(cat "$work/searcher.txt")
echo "upgrade-test: searcher: $result"
grep -q "partial=0 wrong=0" <<<"$result" || fail "answers were partial or wrong during the upgrade: $result"
ok=$(sed 's/ok=\([0-9]*\).*/\1/' <<<"$result")
[ "$ok" -ge 50 ] || fail "only $ok searches succeeded"

"$bin/pharos" fetch "${c[@]}" --keys-file "$work/keys.txt" --json >"$work/after.jsonl"
cmp -s "$work/before.jsonl" "$work/after.jsonl" || fail "entries fetched after the upgrade differ from before"
# Writes and deletes on the upgraded cluster.
deleted=$("$bin/pharos" delete "${c[@]}" --keys-file "$work/deleted-keys.txt" --json)
grep -q '"deleted":100' <<<"$deleted" || fail "deletes after the upgrade: $deleted"
"$bin/pharos" ingest "${c[@]}" --vectors "$work/base.fvecs" --key-prefix new- --json >/dev/null 2>&1
live=$(status_json | /usr/bin/python3 -c 'import json,sys; print(sum(n["entries"] for n in json.load(sys.stdin)["nodes"]))')
[ "$live" = $(( (2900 + 3000) * 2 )) ] || fail "after writes the copies hold $live entries, expected $(( (2900 + 3000) * 2 ))"
echo "upgrade-test: $old_ref -> this build one process at a time; every entry unchanged; writes after it land on both copies"
