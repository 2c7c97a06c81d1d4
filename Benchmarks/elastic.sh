#!/usr/bin/env bash
# The elastic cluster's costs, each against a peer measured in the same run on the same data
# and machine (the elastic-cluster issue's targets):
#   - write throughput with 2 copies vs 1: two local clusters of 2 shard nodes side by side,
#     ingest rounds interleaved, medians (target >= 0.6x on 2 cores);
#   - bucket moves vs a plain socket: a 3rd node added and rebalanced onto; the entry bytes the
#     moves carried per second, against the same number of bytes over a plain loopback socket
#     written to a file and fsynced (Benchmarks/socket_copy.py) (target >= 0.7x);
#   - search latency during a rebalance vs before and after it, p50 and p99 of single-query
#     searches (target <= 1.5x), the rebalance throttled as an operator of a serving cluster
#     would (--rate-mb, 1 move at a time; RATE_MB, default 4);
#   - the time for a new node to take its full share (add-shard, then rebalance --wait).
#   Benchmarks/elastic.sh            200k x 64 synthetic, IVF256,PQ16x4fs,RefineSQ8
#   Benchmarks/elastic.sh --small    20k x 64 (what CI runs); COUNT=N sets the rows per ingest round
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-200000}; rounds=3
if [ "${1:-}" = "--small" ]; then count=20000; shift; fi
bash Scripts/install-deps.sh
swift build -c release
bin=.build/release
P=$bin/pharos
export OPENBLAS_NUM_THREADS=1
set_dir=data/synthetic-$((count / 1000))k-64
[ -f "$set_dir/base.fvecs" ] || "$P" data synthetic --count "$count" --train-count 20000 --queries 1000 \
  --dimension 64 --clusters 500 --out "$set_dir" >/dev/null
work=data/bench-elastic
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
up() {  # name, port, replication
  "$P" cluster up --shards 2 --replication "$3" --dimension 64 --factory IVF256,PQ16x4fs,RefineSQ8 --buckets 1024 \
    --data "$work/$1" --port "$2" >"$work/$1.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do grep -q "cluster ready" "$work/$1.log" && return 0; sleep 0.1; done
  cat "$work/$1.log"; exit 1
}
up one 7820 1
up two 7840 2
for port in 7820 7840; do "$P" train --coordinator 127.0.0.1:$port --train "$set_dir/train.fvecs" >/dev/null; done
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
rate() { sed -n 's/.*(\([0-9.]*\) vectors\/s).*/\1/p'; }

# 1. Writes: rounds alternate between the clusters (and which goes first).
one=(); two=()
for r in $(seq 1 $rounds); do
  for port in $( ((r % 2)) && echo "7820 7840" || echo "7840 7820"); do
    v=$("$P" ingest --coordinator 127.0.0.1:$port --vectors "$set_dir/base.fvecs" --key-prefix "r$r-" 2>&1 | rate)
    if [ "$port" = 7820 ]; then one+=("$v"); else two+=("$v"); fi
  done
done
w1=$(median "${one[@]}"); w2=$(median "${two[@]}")

status() { "$P" status --coordinator "127.0.0.1:$1" --json 2>/dev/null || true; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
latency() {  # port: "p50 p99" of 300 single-query searches
  "$P" search --coordinator "127.0.0.1:$1" --queries "$set_dir/queries.fvecs" -k 10 --limit 300 2>&1 \
    | sed -n 's/.*latency p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \2/p'
}
add_node() {  # cluster, port of its coordinator, node port
  "$bin/pharos-shard" serve --data "$work/$1/extra" --port "$3" --name extra >"$work/$1-extra.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do grep -q "listening on" "$work/$1-extra.log" && break; sleep 0.1; done
  "$P" cluster add-shard --coordinator "127.0.0.1:$2" --name extra --address "127.0.0.1:$3" >/dev/null
}

# 2. Moves: the one-copy cluster gets a 3rd node; nothing else runs meanwhile.
bytes0=$(status 7820 | field 'd["bytesMoved"]')
add_node one 7820 7829
start=$(date +%s.%N)
"$P" cluster rebalance --coordinator 127.0.0.1:7820 --wait --max-concurrent-moves 2 >/dev/null 2>&1
moved_seconds=$(python3 -c "print($(date +%s.%N) - $start)")
report=$(status 7820)
moved_bytes=$(( $(field 'd["bytesMoved"]' <<<"$report") - bytes0 ))
moved_entries=$(field 'd["entriesMoved"]' <<<"$report")
move_mb=$(python3 -c "print($moved_bytes / $moved_seconds / 1e6)")
plain_mb=$(python3 Benchmarks/socket_copy.py --bytes "$moved_bytes" | sed -n 's/.*: \([0-9.]*\) MB\/s.*/\1/p')

# 3. Search latency on the two-copy cluster: idle, during its rebalance onto a 3rd node, idle.
idle=(); busy=()
for _ in 1 2; do idle+=("$(latency 7840)"); done
add_node two 7840 7849
entries_two=$(( $(status 7840 | field 'sum(n["entries"] for n in d["nodes"])') / 2 ))
start=$(date +%s.%N)
"$P" cluster rebalance --coordinator 127.0.0.1:7840 --max-concurrent-moves 1 --rate-mb "${RATE_MB:-4}" >/dev/null
while [ "$(status 7840 | field '1 if d["moves"] or d["movesPending"] else 0')" = 1 ]; do busy+=("$(latency 7840)"); done
"$P" cluster rebalance --coordinator 127.0.0.1:7840 --wait >/dev/null 2>&1
join_seconds=$(python3 -c "print($(date +%s.%N) - $start)")
for _ in 1 2; do idle+=("$(latency 7840)"); done
[ ${#busy[@]} -gt 0 ] || busy=("${idle[0]}")
p50() { for x in "$@"; do echo "${x% *}"; done; }
p99() { for x in "$@"; do echo "${x#* }"; done; }
i50=$(median $(p50 "${idle[@]}")); i99=$(median $(p99 "${idle[@]}"))
b50=$(median $(p50 "${busy[@]}")); b99=$(median $(p99 "${busy[@]}"))

mkdir -p Benchmarks/results
python3 - "$count" "$w1" "$w2" "$moved_entries" "$moved_bytes" "$moved_seconds" "$move_mb" "$plain_mb" \
  "$i50" "$i99" "$b50" "$b99" "${#busy[@]}" "$join_seconds" "$entries_two" "${RATE_MB:-4}" <<'EOF' | tee "Benchmarks/results/elastic-$count-$(date +%Y%m%d-%H%M%S).md"
import sys
(count, w1, w2, entries, nbytes, seconds, move, plain, i50, i99, b50, b99, runs, join, held, rate) = sys.argv[1:]
f = float
print(f"## Elastic cluster: {int(count):,} x 64 per ingest round, IVF256,PQ16x4fs,RefineSQ8, 1024 buckets, 2 shard nodes + coordinator on loopback\n")
print("| measure | peer | Pharos | ratio | target |")
print("|---|---|---|---|---|")
print(f"| write throughput, vectors/s (median of 3 interleaved rounds): 2 copies vs 1 copy | {f(w1):,.0f} | {f(w2):,.0f} | {f(w2)/f(w1):.2f}x | >= 0.6x |")
print(f"| bucket moves, MB/s of entries carried ({int(entries):,} entries, {int(nbytes)/1e6:.1f} MB in {f(seconds):.1f} s) vs a plain loopback socket to an fsynced file | {f(plain):.1f} | {f(move):.1f} | {f(move)/f(plain):.3f}x | >= 0.7x |")
print(f"| search latency p50, ms, during a rebalance throttled to {rate} MB/s ({runs} runs of 300 queries) vs idle before and after | {f(i50):.2f} | {f(b50):.2f} | {f(b50)/f(i50):.2f}x | <= 1.5x |")
print(f"| search latency p99, ms, the same | {f(i99):.2f} | {f(b99):.2f} | {f(b99)/f(i99):.2f}x | <= 1.5x |")
print(f"\nA new 3rd node took its share of a 2-copy cluster of {int(held):,} entries (add-shard, then rebalance until even, throttled to {rate} MB/s per move) in {f(join):.1f} s.")
EOF
