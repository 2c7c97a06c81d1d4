#!/usr/bin/env bash
# Writes with 2 copies against 1 copy, at the descriptors' dimension (512-D, unit-norm, inner
# product, IVF1024,PQ64x4fs,RefineSQ8), where encoding is most of a write's work: each round
# starts three local clusters of 2 shard nodes in turn on the same data and ingests it through
# `pharos ingest` (rounds interleaved, medians of the per-round ratios):
#   1 copy;  2 copies, rows encoded once by the coordinator (protocol version 3, the default);
#   2 copies, every copy encoding the vectors itself (pharos-coordinator --shards-encode-writes).
# The elastic-cluster issue's target is 2 copies >= 0.6x of 1 copy on 2 cores.
#   Benchmarks/replicated-writes.sh            100,000 rows, 3 rounds
#   Benchmarks/replicated-writes.sh --small    20,000 rows, 1 round (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
count=100000; rounds=3
if [ "${1:-}" = "--small" ]; then count=20000; rounds=1; fi
bash Scripts/install-deps.sh
swift build -c release >/dev/null
bin=$PWD/.build/release
export OPENBLAS_NUM_THREADS=1
set_dir=data/synthetic-$((count / 1000))k-512
[ -f "$set_dir/base.fvecs" ] || "$bin/pharos" data synthetic --count "$count" --train-count 20000 --queries 100 \
  --dimension 512 --clusters 500 --normalized --out "$set_dir" >/dev/null
work=$(mktemp -d)
cluster=
cleanup() { [ -n "$cluster" ] && kill -INT "$cluster" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# The third variant: the same programs, its coordinator started with --shards-encode-writes.
mkdir -p "$work/each-copy"
cp "$bin/pharos" "$bin/pharos-shard" "$work/each-copy/"
printf '#!/bin/sh\nexec %s/pharos-coordinator "$@" --shards-encode-writes\n' "$bin" >"$work/each-copy/pharos-coordinator"
chmod +x "$work/each-copy/pharos-coordinator"
rate() {  # programs folder, copies, port -> vectors/s of the ingest
  rm -rf "$work/c"
  "$1/pharos" cluster up --shards 2 --replication "$2" --dimension 512 --metric ip --factory IVF1024,PQ64x4fs,RefineSQ8 \
    --buckets 1024 --data "$work/c" --port "$3" >"$work/c.log" 2>&1 &
  cluster=$!
  for _ in $(seq 1 100); do grep -q "cluster ready" "$work/c.log" && break; sleep 0.1; done
  grep -q "cluster ready" "$work/c.log" || { cat "$work/c.log" >&2; exit 1; }
  "$bin/pharos" train --train "$set_dir/train.fvecs" --coordinator "127.0.0.1:$3" >/dev/null 2>&1
  local start end
  start=$(date +%s.%N)
  "$bin/pharos" ingest --vectors "$set_dir/base.fvecs" --coordinator "127.0.0.1:$3" >/dev/null 2>&1
  end=$(date +%s.%N)
  kill -INT "$cluster"; wait "$cluster" 2>/dev/null || true; cluster=
  awk -v n="$count" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n / (e - s)}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one=(); once=(); each=(); r_once=(); r_each=()
for i in $(seq 1 "$rounds"); do
  a=$(rate "$bin" 1 7960); b=$(rate "$bin" 2 7970); c=$(rate "$work/each-copy" 2 7980)
  echo "round $i: 1 copy $a, 2 copies encoded once $b, 2 copies each encoding $c vectors/s" >&2
  one+=("$a"); once+=("$b"); each+=("$c")
  r_once+=("$(awk -v x="$b" -v y="$a" 'BEGIN {print x / y}')"); r_each+=("$(awk -v x="$c" -v y="$a" 'BEGIN {print x / y}')")
done
mkdir -p Benchmarks/results
{
  echo "## Writes with 2 copies vs 1: $count x 512 (unit-norm, ip), IVF1024,PQ64x4fs,RefineSQ8, 2 shard nodes + coordinator on loopback, $rounds rounds"
  echo
  echo "| variant | vectors/s (median) | vs 1 copy (median of rounds) |"
  echo "|---|---|---|"
  echo "| 1 copy | $(printf '%s\n' "${one[@]}" | median) | 1.00x |"
  echo "| 2 copies, encoded once by the coordinator | $(printf '%s\n' "${once[@]}" | median) | $(printf '%s\n' "${r_once[@]}" | median | awk '{printf "%.2fx", $1}') |"
  echo "| 2 copies, each copy encoding | $(printf '%s\n' "${each[@]}" | median) | $(printf '%s\n' "${r_each[@]}" | median | awk '{printf "%.2fx", $1}') |"
} | tee "Benchmarks/results/replicated-writes-$(date +%Y%m%d-%H%M%S).md"
