#!/usr/bin/env bash
# The main job: build an index over Fashion-MNIST (60,000 x 784) and search it with the
# 10,000 test images, printing build time, QPS and recall against exact neighbours.
# Data lands under ./data (git-ignored); a second run reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
swift build -c release --product pharos
pharos=.build/release/pharos
data=data/fashion-mnist
threads=${THREADS:-$(nproc)}

"$pharos" data fashion-mnist --out "$data" --threads "$threads"
for factory in "IVF256,PQ56x4fs,RefineSQ8" "IVF256,PQ56"; do
  echo "== $factory"
  "$pharos" index build --factory "$factory" --metric l2 --base "$data/base.fvecs" \
    --out "data/index-demo" --threads "$threads"
  for nprobe in 4 16; do
    "$pharos" index search --index data/index-demo --queries "$data/queries.fvecs" -k 100 \
      --nprobe "$nprobe" --threads "$threads" --out data/result-demo.ivecs
    "$pharos" index recall --result data/result-demo.ivecs --truth "$data/truth-l2-100.ivecs"
  done
done
