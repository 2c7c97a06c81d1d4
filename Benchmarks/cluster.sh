#!/usr/bin/env bash
# The cluster against the in-process engine on the same data and machine (issue 4's
# targets): per-query latency through a coordinator and 3 shard processes on loopback vs one
# in-process index holding all the data (k=100), throughput with 16 concurrent clients,
# alpha-QE's cost, and ingestion through the coordinator vs one in-process shard.
#   Benchmarks/cluster.sh            200k x 128 synthetic, IVF1024,PQ32x4fs,RefineSQ8
#   Benchmarks/cluster.sh --small    20k x 64 (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
count=200000; dim=128; lists=1024; m=32; queries=500
if [ "${1:-}" = "--small" ]; then count=20000; dim=64; lists=128; m=16; queries=200; shift; fi
bash Scripts/install-deps.sh
swift build -c release
bin=.build/release
export OPENBLAS_NUM_THREADS=1
set_dir=data/synthetic-$((count / 1000))k-$dim
[ -f "$set_dir/base.fvecs" ] || "$bin/pharos" data synthetic --count "$count" --train-count 20000 --queries 1000 \
  --dimension "$dim" --clusters 500 --out "$set_dir" >/dev/null
dir=data/bench-cluster
rm -rf "$dir"
log=$(mktemp)
"$bin/pharos" cluster up --shards 3 --dimension "$dim" --factory "IVF$lists,PQ${m}x4fs,RefineSQ8" --data "$dir" --port 7790 >"$log" 2>&1 &
cluster=$!
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q "cluster ready" "$log" && break; sleep 0.1; done
grep -q "cluster ready" "$log" || { cat "$log"; exit 1; }
mkdir -p Benchmarks/results
"$bin/pharos" cluster-bench --coordinator 127.0.0.1:7790 --cluster "$dir/cluster.json" --train "$set_dir/train.fvecs" \
  --base "$set_dir/base.fvecs" --queries "$set_dir/queries.fvecs" --query-count "$queries" "$@" \
  | tee "Benchmarks/results/cluster-$count-$(date +%Y%m%d-%H%M%S).md"
