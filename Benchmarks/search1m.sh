#!/usr/bin/env bash
# Search at a million (issue 14): 1,000,000 x 512 unit vectors, IVF4096,PQ64x4fs,RefineSQ8,
# 3 shard processes and a coordinator on loopback, one query per request, k=10, nprobe=16.
# Where a search's time goes, measured side by side in interleaved rounds:
#   A  through the coordinator, which finds each query's lists once and sends them along
#   B  through a second coordinator on the same shards with --shards-find-lists (every shard
#      repeats the coarse search, as before)
#   C  one shard asked directly (a third of the data; the network hop and the shard server)
#   D  the in-process engine over that shard's own files (pharos-shard search --batch 1)
# plus A right after ingestion, before the shards sealed what was in memory.
#   Benchmarks/search1m.sh              1,000,000 vectors (about 10 minutes on 2 cores)
#   Benchmarks/search1m.sh --count N    fewer, for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
count=1000000; rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bash Scripts/install-deps.sh
swift build -c release
bin=.build/release
export OPENBLAS_NUM_THREADS=1
set_dir=data/synthetic-$((count / 1000))k-512n
[ -f "$set_dir/base.fvecs" ] || "$bin/pharos" data synthetic --count "$count" --train-count 100000 --queries 1000 \
  --dimension 512 --normalized --out "$set_dir" >/dev/null
dir=data/bench-search1m
work=$(mktemp -d)
rm -rf "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir" "$work"
}
trap cleanup EXIT
port=7850
"$bin/pharos" cluster up --shards 3 --dimension 512 --metric ip --normalize --factory "IVF4096,PQ64x4fs,RefineSQ8" \
  --data "$dir" --port "$port" >"$work/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do grep -q "cluster ready" "$work/cluster.log" && break; sleep 0.1; done
grep -q "cluster ready" "$work/cluster.log" || { cat "$work/cluster.log"; exit 1; }
A=(--coordinator "127.0.0.1:$port")
"$bin/pharos" train "${A[@]}" --train "$set_dir/train.fvecs" | tail -n 1
start=$(date +%s.%N)
"$bin/pharos" ingest "${A[@]}" --vectors "$set_dir/base.fvecs" | tail -n 1
ingest_seconds=$(echo "$(date +%s.%N) - $start" | bc)
fail() { echo "search1m: $*" >&2; exit 1; }
search() {   # ADDRESS -> "p50 p99" in ms (a failed search stops the benchmark)
  "$bin/pharos" search --coordinator "$1" --queries "$set_dir/queries.fvecs" -k 10 --nprobe 16 \
    --truth "$set_dir/truth-ip-100.ivecs" --key-prefix row- >"$work/search.out" 2>&1 || fail "search of $1: $(tail -n 3 "$work/search.out")"
  sed -nE 's/.*latency p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2/p' "$work/search.out"
}
measure() {   # MODE COMMAND... -> a line of the rounds file, or stop
  local mode=$1; shift
  local times
  times=$("$@") || exit 1
  [ -n "$times" ] || fail "no latency from mode $mode"
  echo "$mode $times" >>"$work/rounds"
}
memory=$("$bin/pharos" status "${A[@]}" | sed -nE 's/.* ([0-9]+) in memory.*/\1/p')
unsealed=$(search "127.0.0.1:$port") || exit 1
[ -n "$unsealed" ] || fail "no latency from the first search"
recall=$(sed -nE 's/.*(recall@10 [0-9.]+).*/\1/p' "$work/search.out")
# The shards seal what is in memory once writes have paused (30 s).
for _ in $(seq 1 240); do
  [ "$("$bin/pharos" status "${A[@]}" | sed -nE 's/.* ([0-9]+) in memory.*/\1/p')" = 0 ] && break
  sleep 1
done
"$bin/pharos" status "${A[@]}" | grep collection
# B: a second coordinator on the same shards, its own copy of the map, no trained state kept.
mkdir -p "$work/coord-b"
cp "$dir/coordinator/cluster-state.json" "$work/coord-b/"
"$bin/pharos-coordinator" --cluster "$dir/cluster.json" --state "$work/coord-b" --port $((port + 10)) --no-admin \
  --shards-find-lists >"$work/coord-b.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "listening" "$work/coord-b.log" && break; sleep 0.1; done
grep -q "listening" "$work/coord-b.log" || fail "the second coordinator did not start: $(cat "$work/coord-b.log")"
shard0=$("$bin/pharos" status "${A[@]}" | sed -nE 's/^  shard-0 ([0-9.:]+) .*/\1/p')
# D: the in-process engine over a copy of shard-0's files (the serving process holds the lock).
cp -r "$dir/shard-0" "$work/s0"
rm -f "$work/s0/LOCK"
# (Copied while served: a compaction racing the copy would leave it inconsistent; verify it.)
"$bin/pharos-shard" verify --data "$work/s0" >/dev/null || fail "the copy of shard-0 does not verify (copied during a compaction?): run again"
inprocess() {
  "$bin/pharos-shard" search --data "$work/s0" --queries "$set_dir/queries.fvecs" -k 10 --nprobe 16 --batch 1 --threads 1 \
    >"$work/inprocess.out" 2>&1 || fail "pharos-shard search: $(tail -n 3 "$work/inprocess.out")"
  sed -nE 's/.*p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2/p' "$work/inprocess.out"
}
: >"$work/rounds"
for r in $(seq 1 "$rounds"); do
  measure A search "127.0.0.1:$port"
  measure B search "127.0.0.1:$((port + 10))"
  measure C search "$shard0"
  measure D inprocess
done
/usr/bin/python3 - "$work/rounds" "$count" "$ingest_seconds" "$memory" "$unsealed" "$recall" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if len(line.split()) == 3]
count, ingest, memory, unsealed, recall = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5].split(), sys.argv[6]
def med(mode, i):
    return statistics.median(float(r[1 + i]) for r in rows if r[0] == mode)
names = {"A": "through the coordinator (lists found once, by it)", "B": "through the coordinator, every shard finding its lists",
         "C": "one shard directly (a third of the data)", "D": "in-process engine over that shard's files"}
print("## Search at %d x 512, IVF4096,PQ64x4fs,RefineSQ8, 3 shards on loopback, k=10, nprobe=16, one query per request" % count)
print()
print("Ingestion: %.1f s (%.0f vectors/s); %s. Medians over %d interleaved rounds of 1000 queries." % (ingest, count / ingest, recall, len(rows) // 4))
print()
print("| path | p50 (ms) | p99 (ms) |")
print("|---|---|---|")
print("| A right after ingestion (%s entries still in memory) | %s | %s |" % (memory, unsealed[0], unsealed[1]))
for m in "ABCD":
    print("| %s %s | %.3f | %.3f |" % (m, names[m], med(m, 0), med(m, 1)))
print()
print("- B / A at p50: %.2fx (the coarse search each shard repeats)" % (med("B", 0) / med("A", 0)))
print("- A - C at p50: +%.3f ms (coordinator, fan-out to 3 shards on 2 cores, merge)" % (med("A", 0) - med("C", 0)))
print("- C - D at p50: +%.3f ms (the network hop and the shard server)" % (med("C", 0) - med("D", 0)))
PY
