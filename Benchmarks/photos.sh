#!/usr/bin/env bash
# mAP on the labelled photo set (pharos data photos) for each pooling, with and without PCA
# whitening and alpha-QE: the README's table. Exact inner-product rankings of the extracted
# descriptors (`pharos eval --database`), so the numbers measure the descriptors, not the index.
#   Benchmarks/photos.sh            all poolings, single scale and GeM multi-scale, 512 pixels
#   Benchmarks/photos.sh --small    GeM and MAC only (what CI runs)
# The whitening is learned without labels from the set's own descriptors (PCA to 32 dimensions:
# with 370 images a wider whitening amplifies noise; see Benchmarks/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
configs=("gem" "mac" "spoc" "crow" "rmac" "gem --multiscale")
[ "${1:-}" = "--small" ] && configs=("gem" "mac")
bash Scripts/install-deps.sh
swift build -c release
P=.build/release/pharos
[ -f data/photos/labels.json ] || "$P" data photos --out data/photos
out=data/photos-bench
mkdir -p "$out" Benchmarks/results
map() { "$P" eval --ground-truth data/photos/labels.json --database "$1.npy" --database-keys "$1.keys" "${@:2}" | sed -E 's/.*mAP ([0-9.]+).*/\1/'; }
{
  echo "| pooling | mAP | + alpha-QE | whitened | whitened + alpha-QE |"
  echo "|---|---|---|---|---|"
  for config in "${configs[@]}"; do
    name=$(tr ' ' '_' <<<"$config" | tr -d '-')
    # shellcheck disable=SC2086
    "$P" extract --images data/photos/images --pooling $config --max-side 512 --out "$out/$name" --restart >/dev/null 2>&1
    "$P" whiten learn --descriptors "$out/$name.npy" --dimension 32 --out "$out/$name.phxw" >/dev/null
    qe=(--expand alpha:alpha=3,n=5)
    echo "| $config | $(map "$out/$name") | $(map "$out/$name" "${qe[@]}") | $(map "$out/$name" --whitening "$out/$name.phxw") | $(map "$out/$name" --whitening "$out/$name.phxw" "${qe[@]}") |"
  done
} | tee "Benchmarks/results/photos-$(date +%Y%m%d-%H%M%S).md"
