#!/usr/bin/env bash
# The main job, on the embedded default: a local cluster on loopback (a coordinator and 3
# shard processes, data under ./data/cluster), trained and loaded with Fashion-MNIST
# (60,000 x 784), searched with the 10,000 test images with and without query expansion;
# prints recall against exact neighbours and latency, then stops the cluster cleanly.
# Data lands under ./data (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
swift build -c release
bin=.build/release
data=data/fashion-mnist
threads=${THREADS:-$(nproc)}
"$bin/pharos" data fashion-mnist --out "$data" --threads "$threads"

rm -rf data/cluster
log=$(mktemp)
"$bin/pharos" cluster up --shards 3 --dimension 784 --factory "IVF256,PQ56x4fs,RefineSQ8" --data data/cluster >"$log" 2>&1 &
cluster=$!
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "cluster ready" "$log" && break; sleep 0.1; done
grep "cluster ready" "$log" || { cat "$log"; exit 1; }

"$bin/pharos" train --train "$data/base.fvecs" --threads "$threads"
"$bin/pharos" ingest --vectors "$data/base.fvecs"
"$bin/pharos" status
echo "== search, 100 queries per request (throughput)"
"$bin/pharos" search --queries "$data/queries.fvecs" -k 100 --nprobe 16 --batch 100 --truth "$data/truth-l2-100.ivecs"
echo "== search, one query per request (latency)"
"$bin/pharos" search --queries "$data/queries.fvecs" -k 100 --nprobe 16 --limit 2000 --truth "$data/truth-l2-100.ivecs"
echo "== with alpha-QE (alpha 3, top 10), one query per request"
"$bin/pharos" search --queries "$data/queries.fvecs" -k 100 --nprobe 16 --limit 2000 --expand alpha:alpha=3,n=10 \
  --truth "$data/truth-l2-100.ivecs"
kill -INT $cluster
wait $cluster || true
trap - EXIT
grep "cluster stopped" "$log"
