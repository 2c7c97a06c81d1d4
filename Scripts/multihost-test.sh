#!/usr/bin/env bash
# Multi-host faults on one machine. In a private network and mount namespace (unshare -n -m,
# so no packet can leave this machine), builds a bridge with four "hosts" (network
# namespaces: one coordinator, three shards), runs real processes on them, and checks:
#   - a shard cut off by the network (iptables DROP): searches return within the deadline,
#     flagged partial and naming it; restored: complete again;
#   - a frozen shard (SIGSTOP): the same; SIGCONT: complete again;
#   - a shard killed with SIGKILL and restarted: every acknowledged entry is still there.
# Needs root; prints "multihost-test: skipped" and exits 0 otherwise. Bounded: every step has
# a timeout and the whole run takes well under a minute.
# Usage: Scripts/multihost-test.sh [BINARY_DIR]   (default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  if [ "$(id -u)" != 0 ]; then echo "multihost-test: skipped: network namespaces need root"; exit 0; fi
  for tool in ip iptables unshare; do
    command -v "$tool" >/dev/null || { echo "multihost-test: $tool is missing (apt-get install iproute2 iptables util-linux)"; exit 1; }
  done
  bin=$(readlink -f "${1:-.build/debug}")
  exec timeout 300 unshare -n -m bash "$0" --inside "$bin"
fi
bin=$2
name=multihost-test
source Scripts/netns-lib.sh
netns_bridge 10.77.0
host coord 10.77.0.10; host s0 10.77.0.20; host s1 10.77.0.21; host s2 10.77.0.22

start_shard() {  # index
  ip netns exec "s$1" "$bin/pharos-shard" serve --host "10.77.0.2$1" --port 7701 --data "$work/s$1" --name "s$1" \
    >"$work/s$1.log" 2>&1 &
  shard_pid[$1]=$!
  pids+=("$!")
  wait_listening "$work/s$1.log"
}
declare -a shard_pid
for i in 0 1 2; do start_shard "$i"; done
cat >"$work/cluster.json" <<JSON
{ "collection": { "dimension": 32, "metric": "l2", "factory": "IVF16,PQ8x4fs,RefineSQ8" }, "buckets": 256,
  "shards": [ { "name": "s0", "host": "10.77.0.20", "port": 7701 },
              { "name": "s1", "host": "10.77.0.21", "port": 7701 },
              { "name": "s2", "host": "10.77.0.22", "port": 7701 } ] }
JSON
ip netns exec coord "$bin/pharos-coordinator" --cluster "$work/cluster.json" --host 10.77.0.10 --port 7700 >"$work/coord.log" 2>&1 &
pids+=("$!")
wait_listening "$work/coord.log"

P="$bin/pharos"
C=(--coordinator 10.77.0.10:7700)
timeout 60 "$P" data synthetic --count 3000 --train-count 2000 --queries 20 --dimension 32 --clusters 20 --out "$work/data" >/dev/null 2>&1
timeout 60 "$P" train "${C[@]}" --train "$work/data/train.fvecs" >/dev/null 2>&1
timeout 60 "$P" ingest "${C[@]}" --vectors "$work/data/base.fvecs" --batch 500 2>/dev/null
search() { timeout 20 "$P" search "${C[@]}" --queries "$work/data/queries.fvecs" -k 10 --nprobe 4 --deadline 500 --limit "${1:-20}" --allow-partial 2>&1; }
live() { timeout 20 "$P" status "${C[@]}" | sed -n 's/.* \([0-9]*\) live entries.*/\1/p'; }
expect_partial() {  # shard name
  out=$(search 5)   # each waits out the 500 ms deadline for the missing shard
  grep -q "partial answer, missing: \[\"$1 " <<<"$out" || { echo "multihost-test: expected answers missing $1:"; echo "$out"; exit 1; }
  grep -q "searched 5 queries" <<<"$out" || { echo "multihost-test: search did not finish:"; echo "$out"; exit 1; }
}
expect_complete() {
  for _ in $(seq 1 50); do
    out=$(search)
    if ! grep -q "partial" <<<"$out" && grep -q "searched 20 queries" <<<"$out"; then return 0; fi
    sleep 0.2
  done
  echo "multihost-test: answers stayed partial:"; echo "$out"; exit 1
}
[ "$(live)" = 3000 ] || { echo "multihost-test: expected 3000 live entries, got $(live)"; exit 1; }
expect_complete
echo "ok: 3 shard hosts and a coordinator host on a bridge; 3000 entries; complete answers"

# An interrupted ingestion resumes from its checkpoint: one that says 3 of 6 batches were
# acknowledged makes the rerun send only the other 3 (1,500 rows, under new keys here).
printf '{"vectors":"%s","rows":3000,"batch":500,"acknowledgedBatches":3}' "$work/data/base.fvecs" >"$work/checkpoint.json"
out=$(timeout 60 "$P" ingest "${C[@]}" --vectors "$work/data/base.fvecs" --batch 500 --key-prefix extra- \
  --checkpoint "$work/checkpoint.json" 2>&1)
grep -q "ingested 1500 vectors" <<<"$out" || { echo "multihost-test: the resumed ingest did not send just the rest:"; echo "$out"; exit 1; }
[ "$(live)" = 4500 ] || { echo "multihost-test: expected 4500 live entries after the resumed ingest, got $(live)"; exit 1; }
grep -q '"acknowledgedBatches":6' "$work/checkpoint.json" || { echo "multihost-test: checkpoint not advanced:"; cat "$work/checkpoint.json"; exit 1; }
echo "ok: an ingest resumed from its checkpoint sent only the 3 unacknowledged batches"

ip netns exec s1 iptables -A INPUT -p tcp --dport 7701 -j DROP
start=$(date +%s%N); expect_partial s1; took=$(( ($(date +%s%N) - start) / 1000000 ))
echo "ok: s1 cut off (iptables DROP): 5 searches answered partial, naming s1, in $took ms (deadline 500 ms each)"
ip netns exec s1 iptables -D INPUT -p tcp --dport 7701 -j DROP
expect_complete
echo "ok: s1 restored: complete again"

kill -STOP "${shard_pid[2]}"
expect_partial s2
kill -CONT "${shard_pid[2]}"
expect_complete
echo "ok: s2 frozen (SIGSTOP): partial, naming s2; SIGCONT: complete again"

kill -KILL "${shard_pid[0]}"; wait "${shard_pid[0]}" 2>/dev/null || true
expect_partial s0
start_shard 0
expect_complete
[ "$(live)" = 4500 ] || { echo "multihost-test: after SIGKILL and restart, $(live) live entries, expected 4500"; exit 1; }
echo "ok: s0 killed (SIGKILL) and restarted: all 4500 acknowledged entries present, answers complete"
echo "multihost-test passed"
