#!/usr/bin/env bash
# Two coordinators sharing the cluster map through a 3-member etcd cluster, on one machine. In a
# private network and mount namespace (unshare -n -m: no packet leaves this machine), a bridge
# with eight "hosts" (network namespaces: three etcd members, two coordinators, three shard
# nodes), real processes, and a writer and a searcher (Scripts/elastic_load.py, written from
# Protocols/README.md) talking to the coordinator that does not run the moves:
#   - a shard is added and a rebalance asked of the second coordinator; the first, holding
#     the mover lease, runs the moves;
#   - the first is killed (SIGKILL) in the middle of a move: the second takes the lease within
#     seconds, restarts the copies it finds and finishes the rebalance;
#   - the first etcd member is killed: the map is still read and changed through the other two.
# At the end: every acknowledged key present with exactly its vector, every deleted key absent,
# no partial answer and no key twice in any result, and both coordinators' maps the same epoch.
# Needs root and etcd (Debian etcd-server); prints "etcd-test: skipped" and exits 0 otherwise.
# Bounded: every step has a timeout, the whole run at most 5 minutes.
# Usage: Scripts/etcd-test.sh [BINARY_DIR]   (default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  if [ "$(id -u)" != 0 ]; then echo "etcd-test: skipped: network namespaces need root"; exit 0; fi
  command -v etcd >/dev/null || { echo "etcd-test: etcd is missing (apt-get install etcd-server)"; exit 1; }
  for tool in ip unshare /usr/bin/python3 protoc; do
    command -v "$tool" >/dev/null || { echo "etcd-test: $tool is missing"; exit 1; }
  done
  bin=$(readlink -f "${1:-.build/debug}")
  exec timeout 300 unshare -n -m bash "$0" --inside "$bin"
fi
bin=$2
name=etcd-test
source Scripts/netns-lib.sh
netns_bridge 10.78.0
for i in 0 1 2; do host "e$i" "10.78.0.1$i"; done
host c0 10.78.0.20; host c1 10.78.0.21
for i in 0 1 2 3; do host "s$i" "10.78.0.3$i"; done

members="e0=http://10.78.0.10:2380,e1=http://10.78.0.11:2380,e2=http://10.78.0.12:2380"
declare -a etcd_pid
for i in 0 1 2; do
  ip netns exec "e$i" etcd --name "e$i" --data-dir "$work/e$i" --listen-client-urls "http://10.78.0.1$i:2379" \
    --advertise-client-urls "http://10.78.0.1$i:2379" --listen-peer-urls "http://10.78.0.1$i:2380" \
    --initial-advertise-peer-urls "http://10.78.0.1$i:2380" --initial-cluster "$members" \
    --initial-cluster-state new >"$work/e$i.log" 2>&1 &
  etcd_pid[$i]=$!
  pids+=("$!")
done
endpoints=10.78.0.10:2379,10.78.0.11:2379,10.78.0.12:2379

for i in 0 1 2; do
  ip netns exec "s$i" "$bin/pharos-shard" serve --host "10.78.0.3$i" --port 7701 --data "$work/s$i" --name "s$i" >"$work/s$i.log" 2>&1 &
  pids+=("$!")
  wait_listening "$work/s$i.log"
done
cat >"$work/cluster.json" <<JSON
{ "collection": { "dimension": 32, "metric": "l2", "factory": "IVF32,PQ16x4fs,RefineFlat" }, "buckets": 256, "replication": 1,
  "shards": [ { "name": "s0", "host": "10.78.0.30", "port": 7701 }, { "name": "s1", "host": "10.78.0.31", "port": 7701 },
              { "name": "s2", "host": "10.78.0.32", "port": 7701 } ] }
JSON
declare -a coord_pid
start_coordinator() {  # index
  ip netns exec "c$1" "$bin/pharos-coordinator" --cluster "$work/cluster.json" --host "10.78.0.2$1" --port 7700 \
    --state "$work/c$1" --etcd "$endpoints" --name "c$1" --allow-node-host 10.78.0.33 >"$work/c$1.log" 2>&1 &
  coord_pid[$1]=$!
  pids+=("$!")
  wait_listening "$work/c$1.log"
}
for _ in $(seq 1 100); do grep -q "ready to serve client requests" "$work/e0.log" && break; sleep 0.1; done
start_coordinator 0
sleep 1.5   # c0 takes the mover lease first
start_coordinator 1

P="$bin/pharos"
C0=(--coordinator 10.78.0.20:7700); C1=(--coordinator 10.78.0.21:7700)
mover() { ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$endpoints" get /pharos/default/mover --print-value-only 2>/dev/null | cut -d' ' -f1 || true; }
[ "$(mover)" = c0 ] || fail "c0 does not hold the mover lease: $(mover)"
timeout 120 "$P" data synthetic --count 20000 --train-count 5000 --queries 100 --dimension 32 --clusters 100 --out "$work/data" >/dev/null 2>&1
timeout 60 "$P" train "${C0[@]}" --train "$work/data/train.fvecs" >/dev/null 2>&1 || fail "train failed"
timeout 120 "$P" ingest "${C1[@]}" --vectors "$work/data/base.fvecs" --batch 5000 >/dev/null 2>&1 || fail "ingest through c1 failed"
echo "ok: 3 etcd members, 2 coordinators (c0 holds the mover lease), 3 shard nodes; 20000 entries ingested through c1"

load=(/usr/bin/python3 Scripts/elastic_load.py --coordinator 10.78.0.21:7700 --seconds 200 --stop-file "$work/stop")
"${load[@]}" writer --out "$work/writer.json" >"$work/writer.out" 2>&1 &
writer=$!
"${load[@]}" searcher --queries "$work/data/queries.fvecs" --out "$work/searcher.json" >"$work/searcher.out" 2>&1 &
searcher=$!
sleep 1

ip netns exec s3 "$bin/pharos-shard" serve --host 10.78.0.33 --port 7701 --data "$work/s3" --name s3 >"$work/s3.log" 2>&1 &
pids+=("$!")
wait_listening "$work/s3.log"
timeout 60 "$P" cluster add-shard "${C0[@]}" --name s3 --address 10.78.0.33:7701 >/dev/null || fail "add-shard failed"
# Asked of c1; run by c0 (throttled so that the kill below lands mid-move).
timeout 60 "$P" cluster rebalance "${C1[@]}" --rate-mb 0.05 >/dev/null || fail "rebalance failed"
status() { timeout 20 "$P" status "$@" --json 2>/dev/null || true; }
field() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
for _ in $(seq 1 100); do [ "$(status "${C1[@]}" | field 'len(d["moves"])')" != 0 ] && break; sleep 0.1; done
[ "$(status "${C1[@]}" | field 'len(d["moves"])')" != 0 ] || fail "no move running"
kill -KILL "${coord_pid[0]}"
echo "ok: c0 killed (SIGKILL) with moves running"
for _ in $(seq 1 100); do [ "$(mover)" = c1 ] && break; sleep 0.1; done
[ "$(mover)" = c1 ] || fail "c1 did not take the mover lease: $(mover)"
echo "ok: c1 took the mover lease"

kill -KILL "${etcd_pid[0]}"   # the first member named: callers must fall over to the others
settled() { status "${C1[@]}" | field '1 if not d["moves"] and d["movesPending"] == 0 and max(n["buckets"] for n in d["nodes"]) - min(n["buckets"] for n in d["nodes"]) <= 1 else 0'; }
for _ in $(seq 1 600); do [ "$(settled)" = 1 ] && break; sleep 0.2; done
[ "$(settled)" = 1 ] || fail "the rebalance did not finish under c1: $(status "${C1[@]}")"
echo "ok: etcd member e0 killed; c1 finished the rebalance: $(status "${C1[@]}" | field '",".join(n["name"] + ":" + str(n["buckets"]) for n in d["nodes"])')"

start_coordinator 0
sleep 1
e0=$(status "${C0[@]}" | field 'd["epoch"]'); e1=$(status "${C1[@]}" | field 'd["epoch"]')
[ "$e0" = "$e1" ] || fail "c0 restarted at epoch $e0, c1 is at $e1"
echo "ok: c0 restarted and reads the same map (epoch $e0)"

touch "$work/stop"
wait "$writer" || fail "the writer failed: $(cat "$work/writer.out")"
wait "$searcher" || fail "the searcher failed: $(cat "$work/searcher.out")"
cat "$work/writer.out" "$work/searcher.out"
/usr/bin/python3 -c "
import json, sys
s = json.load(open('$work/searcher.json'))
if s['partial'] or s['duplicates'] or s['errors'] or s['searches'] < 20:
    print('etcd-test: the searcher saw', s); sys.exit(1)
" || fail "searches were not all complete"
/usr/bin/python3 Scripts/elastic_load.py check --coordinator 10.78.0.20:7700 --writer-log "$work/writer.json" --base 20000 || fail "keys lost or wrong"
echo "etcd-test passed"
