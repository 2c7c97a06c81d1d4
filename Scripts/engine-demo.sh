#!/usr/bin/env bash
# The engine on its own: build an index over Fashion-MNIST (60,000 x 784) and search it with the
# 10,000 test images, printing build time, QPS and recall against exact neighbours; then the
# same in a durable shard (write-ahead log, sealed mmap segment), reopened and verified.
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

# The same data in a durable shard: create (train), ingest (log + seal), reopen by mmap and
# search, then check every checksum. The recall matches the in-memory index above.
swift build -c release --product pharos-shard
shard=.build/release/pharos-shard
echo "== durable shard: IVF256,PQ56x4fs,RefineSQ8"
rm -rf data/shard-demo
"$shard" create --data data/shard-demo --factory "IVF256,PQ56x4fs,RefineSQ8" --train "$data/base.fvecs" --threads "$threads"
"$shard" ingest --data data/shard-demo --vectors "$data/base.fvecs" --threads "$threads"
"$shard" search --data data/shard-demo --queries "$data/queries.fvecs" -k 100 --nprobe 16 --threads "$threads" \
  --truth "$data/truth-l2-100.ivecs"
"$shard" verify data/shard-demo
