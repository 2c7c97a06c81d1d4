#!/usr/bin/env bash
# Shard storage against the in-memory index engine, same data, threads and process (the
# storage issue's targets): durable ingestion (log + seal) vs `add`, search over sealed
# segments vs the in-memory index, and opening a sealed shard (time, resident memory).
#   Benchmarks/storage.sh            1M x 128, IVF1024,PQ32x4fs,RefineSQ8, 3 interleaved repeats
#   Benchmarks/storage.sh --small    100k x 128 (what CI runs)
# Extra arguments go to `pharos-shard bench` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
count=1000000
if [ "${1:-}" = "--small" ]; then count=100000; shift; fi
bash Scripts/install-deps.sh
swift build -c release --product pharos-shard
mkdir -p Benchmarks/results data
export OPENBLAS_NUM_THREADS=1
.build/release/pharos-shard bench --count "$count" --repeats 3 --queries 5000 --data data/bench-shard "$@" \
  | tee "Benchmarks/results/storage-$count-$(date +%Y%m%d-%H%M%S).md"
rm -rf data/bench-shard
