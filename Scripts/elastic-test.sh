#!/usr/bin/env bash
# The elastic cluster under faults, on one machine. In a private network and mount namespace
# (unshare -n -m: no packet leaves this machine), a bridge with six "hosts" (network
# namespaces: a coordinator and five shard nodes), real processes, and a writer (upserts and
# deletes) and a searcher running the whole time (Scripts/elastic_load.py under Debian's python3, a Python client
# written from Protocols/README.md). With 4 nodes and 2 copies of every bucket:
#   - a 5th node is added and the cluster rebalanced onto it;
#   - one node is killed with SIGKILL in the middle of the moves and restarted;
#   - another is cut off by the network (iptables DROP), then healed;
#   - a node is removed (drained, then dropped from the map).
# At the end: every acknowledged key present with exactly its vector, every deleted key absent,
# the searcher saw no partial answer and no key twice in a result (at most one node was ever
# unavailable), and recall@10 against exact neighbours is what it was before (within 0.005).
# Needs root; prints "elastic-test: skipped" and exits 0 otherwise. Bounded: every step has a
# timeout, the whole run at most 10 minutes.
# Usage: Scripts/elastic-test.sh [--entries N] [BINARY_DIR]   (default 300000, .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  entries=300000
  if [ "${1:-}" = "--entries" ]; then entries=$2; shift 2; fi
  if [ "$(id -u)" != 0 ]; then echo "elastic-test: skipped: network namespaces need root"; exit 0; fi
  for tool in ip iptables unshare /usr/bin/python3 protoc; do
    command -v "$tool" >/dev/null || { echo "elastic-test: $tool is missing (apt-get install iproute2 iptables util-linux python3-protobuf protobuf-compiler)"; exit 1; }
  done
  bin=$(readlink -f "${1:-.build/debug}")
  exec timeout 600 unshare -n -m bash "$0" --inside "$bin" "$entries"
fi
bin=$2
entries=$3
name=elastic-test
source Scripts/netns-lib.sh
netns_bridge 10.77.0
host coord 10.77.0.10
for i in 0 1 2 3 4; do host "s$i" "10.77.0.2$i"; done

declare -a shard_pid
start_shard() {  # index
  : >"$work/s$1.log"
  ip netns exec "s$1" "$bin/pharos-shard" serve --host "10.77.0.2$1" --port 7701 --data "$work/s$1" --name "s$1" \
    >>"$work/s$1.log" 2>&1 &
  shard_pid[$1]=$!
  pids+=("$!")
  wait_listening "$work/s$1.log"
}
for i in 0 1 2 3; do start_shard "$i"; done
cat >"$work/cluster.json" <<JSON
{ "collection": { "dimension": 32, "metric": "l2", "factory": "IVF64,PQ16x4fs,RefineFlat" }, "buckets": 256, "replication": 2,
  "shards": [ { "name": "s0", "host": "10.77.0.20", "port": 7701 }, { "name": "s1", "host": "10.77.0.21", "port": 7701 },
              { "name": "s2", "host": "10.77.0.22", "port": 7701 }, { "name": "s3", "host": "10.77.0.23", "port": 7701 } ] }
JSON
ip netns exec coord "$bin/pharos-coordinator" --cluster "$work/cluster.json" --host 10.77.0.10 --port 7700 \
  --state "$work/coord" --allow-node-host 10.77.0.24 --deadline 5000 --write-deadline 20000 >"$work/coord.log" 2>&1 &
pids+=("$!")
wait_listening "$work/coord.log"

P="$bin/pharos"
C=(--coordinator 10.77.0.10:7700)
timeout 120 "$P" data synthetic --count "$entries" --train-count 20000 --queries 200 --dimension 32 --clusters 200 --out "$work/data" >/dev/null 2>&1
timeout 60 "$P" train "${C[@]}" --train "$work/data/train.fvecs" >/dev/null 2>&1 || fail "train failed"
timeout 300 "$P" ingest "${C[@]}" --vectors "$work/data/base.fvecs" --batch 5000 >/dev/null 2>&1 || fail "ingest failed"
recall() { timeout 60 "$P" search "${C[@]}" --queries "$work/data/queries.fvecs" --truth "$work/data/truth-l2-100.ivecs" -k 10 --nprobe 4 --batch 20 2>&1 \
  | sed -n 's/.*recall@10 \([0-9.]*\).*/\1/p'; }
status() { timeout 20 "$P" status "${C[@]}" --json 2>/dev/null || true; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
before=$(recall)
[ -n "$before" ] || fail "no recall before"
echo "ok: 4 nodes, 2 copies of 256 buckets, $entries entries; recall@10 $before"

load=(/usr/bin/python3 Scripts/elastic_load.py --coordinator 10.77.0.10:7700 --seconds 400 --stop-file "$work/stop")
"${load[@]}" writer --out "$work/writer.json" >"$work/writer.out" 2>&1 &
writer=$!
"${load[@]}" searcher --queries "$work/data/queries.fvecs" --out "$work/searcher.json" >"$work/searcher.out" 2>&1 &
searcher=$!
sleep 2

start_shard 4
timeout 60 "$P" cluster add-shard "${C[@]}" --name s4 --address 10.77.0.24:7701 >/dev/null || fail "add-shard failed"
# Throttled so that the kill below lands mid-move (and scaled with the entries: the rate stays
# in the map, and the repairs after the kill move at it too).
rate=$(/usr/bin/python3 -c "print(max(0.05, $entries / 400000))")
timeout 60 "$P" cluster rebalance "${C[@]}" --max-concurrent-moves 2 --rate-mb "$rate" >/dev/null || fail "rebalance failed"
for _ in $(seq 1 100); do [ "$(status | field 'len(d["moves"])')" != 0 ] && break; sleep 0.05; done
running=$(status | field '"; ".join("bucket %d %s -> %s %s" % (m["bucket"], m["source"], m["target"], m["phase"]) for m in d["moves"])')
[ -n "$running" ] || fail "no move running after the rebalance started"
echo "ok: s4 added, moves running: $running"

kill -KILL "${shard_pid[1]}"; wait "${shard_pid[1]}" 2>/dev/null || true
sleep 2
start_shard 1
echo "ok: s1 killed (SIGKILL) during the moves and restarted"
settled() { status | field '1 if not d["moves"] and d["movesPending"] == 0 and d["bucketsUnderReplicated"] == 0 and all(n["state"] == "active" for n in d["nodes"]) else 0'; }
for _ in $(seq 1 600); do [ "$(settled)" = 1 ] && break; sleep 0.2; done
[ "$(settled)" = 1 ] || fail "not settled after s1 came back: $(status)"
echo "ok: every bucket has 2 copies again"

ip netns exec s2 iptables -A INPUT -p tcp --dport 7701 -j DROP
sleep 4
ip netns exec s2 iptables -D INPUT -p tcp --dport 7701 -j DROP
for _ in $(seq 1 600); do [ "$(settled)" = 1 ] && break; sleep 0.2; done
[ "$(settled)" = 1 ] || fail "not settled after s2's partition healed: $(status)"
echo "ok: s2 cut off for 4 s (iptables DROP) and healed; every bucket has 2 copies again"

timeout 300 "$P" cluster rebalance "${C[@]}" --wait --max-concurrent-moves 2 >/dev/null 2>"$work/rebalance.err" || fail "rebalance --wait failed"
timeout 300 "$P" cluster remove-shard "${C[@]}" --name s3 --wait >/dev/null 2>"$work/remove.err" || fail "remove-shard --wait failed"
nodes=$(status | field '",".join(n["name"] + ":" + str(n["buckets"]) for n in d["nodes"])')
echo "ok: rebalanced, then s3 removed: $nodes"

touch "$work/stop"
wait "$writer" || fail "the writer failed: $(cat "$work/writer.out")"
wait "$searcher" || fail "the searcher failed: $(cat "$work/searcher.out")"
cat "$work/writer.out" "$work/searcher.out"
python3 -c "
import json, sys
s = json.load(open('$work/searcher.json'))
if s['partial'] or s['duplicates'] or s['errors'] or s['searches'] < 50:
    print('elastic-test: the searcher saw', s); sys.exit(1)
" || fail "searches were not all complete"
/usr/bin/python3 Scripts/elastic_load.py check --coordinator 10.77.0.10:7700 --writer-log "$work/writer.json" --base "$entries" || fail "keys lost or wrong"
after=$(recall)
python3 -c "import sys; sys.exit(0 if abs($after - $before) <= 0.005 else 1)" || fail "recall@10 $after after, $before before"
copies=$(status | field 'sum(n["entries"] for n in d["nodes"])')
echo "ok: recall@10 $after (before $before); $copies entries over the nodes"
echo "elastic-test passed"
