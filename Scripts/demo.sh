#!/usr/bin/env bash
# The main job, on the embedded default (local clusters on loopback, data under ./data, no
# external servers):
# 1. Photos: builds the labelled photo set from packaged photos, describes every photo with
#    EfficientNet-Lite0 + GeM, starts a local cluster (a coordinator and 3 shard processes),
#    trains it, ingests the descriptors, and measures mAP without and with alpha-QE, and with
#    diffusion re-ranking.
# 2. Scale: the same loop on Fashion-MNIST (60,000 x 784) with the 10,000 test vectors:
#    recall against exact neighbours and latency, with and without query expansion.
# Each cluster is stopped cleanly at the end of its part.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
swift build -c release
bin=.build/release
threads=${THREADS:-$(nproc)}
cluster=""
log=$(mktemp)

start_cluster() {   # start_cluster PORT DATA ARGS...: starts `pharos cluster up`, waits until ready
  local port=$1 dir=$2
  shift 2
  rm -rf "$dir"
  "$bin/pharos" cluster up --shards 3 --data "$dir" --port "$port" "$@" >"$log" 2>&1 &
  cluster=$!
  for _ in $(seq 1 100); do grep -q "cluster ready" "$log" && break; sleep 0.1; done
  grep "cluster ready" "$log" || { cat "$log"; exit 1; }
}
stop_cluster() {
  kill -INT "$cluster"
  wait "$cluster" || true
  grep "cluster stopped" "$log"
  cluster=""
}
trap '[ -z "$cluster" ] || { kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null || true; }' EXIT

echo "== photos: build the labelled set, describe it (EfficientNet-Lite0, GeM), index it, measure mAP"
"$bin/pharos" data photos --out data/photos
"$bin/pharos" extract --images data/photos/images --pooling gem --max-side 512 --threads "$threads" --out data/photos-desc/gem --restart
start_cluster 7800 data/cluster-photos --dimension 1280 --metric ip --normalize --factory "IVF4,PQ160x4fs,RefineSQ8"
c=(--coordinator 127.0.0.1:7800)
"$bin/pharos" train "${c[@]}" --train data/photos-desc/gem.npy --threads "$threads"
"$bin/pharos" ingest "${c[@]}" --vectors data/photos-desc/gem.npy --keys data/photos-desc/gem.keys
"$bin/pharos" eval "${c[@]}" --ground-truth data/photos/labels.json -k 100 --nprobe 4 --label "GeM"
"$bin/pharos" eval "${c[@]}" --ground-truth data/photos/labels.json -k 100 --nprobe 4 --expand alpha:alpha=3,n=5 --label "GeM + alpha-QE"
"$bin/pharos" eval "${c[@]}" --ground-truth data/photos/labels.json -k 100 --nprobe 4 --rerank diffusion --label "GeM + diffusion"
stop_cluster

echo "== scale: Fashion-MNIST (60,000 x 784) through a local cluster"
data=data/fashion-mnist
"$bin/pharos" data fashion-mnist --out "$data" --threads "$threads"
start_cluster 7700 data/cluster --dimension 784 --factory "IVF256,PQ56x4fs,RefineSQ8"
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
stop_cluster
