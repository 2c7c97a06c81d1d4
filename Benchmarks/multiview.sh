#!/usr/bin/env bash
# Defaults by evidence (issue 14): mAP on a set of real multi-view photos (several camera
# positions of one object or scene, never crops of one photo; Benchmarks/multiview.py builds it
# from opencv-doc, scikit-image and visp-images-data), for each longer side and pooling, exact
# inner-product rankings (`pharos eval --database`), so the numbers measure the descriptors.
# Then whitening learned on another collection (the labelled photo set, `pharos data photos`)
# applied to this one, as users who learn it once and reuse it would.
#   Benchmarks/multiview.sh            the whole sweep (about 20 minutes on 2 cores)
#   Benchmarks/multiview.sh --small    GeM at 512 and 1024 only
set -euo pipefail
cd "$(dirname "$0")/.."
sides=(384 512 768 1024); poolings=("gem" "mac" "rmac" "gem --multiscale")
if [ "${1:-}" = "--small" ]; then sides=(512 1024); poolings=("gem"); fi
bash Scripts/install-deps.sh
# Real camera sequences of four scenes (75 MB; only this benchmark needs them).
dpkg-query -W -f='${Status}' visp-images-data 2>/dev/null | grep -q "install ok installed" \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq visp-images-data >/dev/null; }
swift build -c release
P=.build/release/pharos
venv=.venv-bench
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "numpy<3"
"$venv/bin/python" Benchmarks/multiview.py --out data/multiview
[ -f data/photos/labels.json ] || "$P" data photos --out data/photos >/dev/null
out=data/multiview-bench
mkdir -p "$out" Benchmarks/results
map() { "$P" eval --ground-truth "$1" --database "$2.npy" --database-keys "$2.keys" "${@:3}" | sed -E 's/.*mAP ([0-9.]+).*/\1/'; }
qe=(--expand alpha:alpha=3,n=5)
{
  echo "| pooling | longer side | mAP | + alpha-QE | seconds to describe |"
  echo "|---|---|---|---|---|"
  for pooling in "${poolings[@]}"; do
    for side in "${sides[@]}"; do
      name="$(tr ' ' '_' <<<"$pooling" | tr -d '-')-$side"
      started=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$P" extract --images data/multiview/images --pooling $pooling --max-side "$side" --out "$out/$name" --restart >/dev/null 2>&1
      seconds=$(printf %.1f "$(echo "$(date +%s.%N) - $started" | bc)")
      echo "| $pooling | $side | $(map data/multiview/labels.json "$out/$name") | $(map data/multiview/labels.json "$out/$name" "${qe[@]}") | $seconds |"
    done
  done
  echo
  echo "Whitening learned on the labelled photo set (370 photos, GeM, 512 pixels), applied to the multi-view set (GeM, 512):"
  echo
  echo "| whitening | multi-view mAP | + alpha-QE | labelled set mAP (where it was learned) |"
  echo "|---|---|---|---|"
  "$P" extract --images data/photos/images --pooling gem --max-side 512 --out "$out/labelled-gem-512" >/dev/null 2>&1
  echo "| none | $(map data/multiview/labels.json "$out/gem-512") | $(map data/multiview/labels.json "$out/gem-512" "${qe[@]}") | $(map data/photos/labels.json "$out/labelled-gem-512") |"
  for spec in "32 0.5" "32 0" "128 0.5" "128 0"; do
    read -r dimension power <<<"$spec"
    w="$out/labelled-$dimension-$power.phxw"
    "$P" whiten learn --descriptors "$out/labelled-gem-512.npy" --dimension "$dimension" --power "$power" --out "$w" >/dev/null
    echo "| PCA $dimension, power $power | $(map data/multiview/labels.json "$out/gem-512" --whitening "$w") | $(map data/multiview/labels.json "$out/gem-512" --whitening "$w" "${qe[@]}") | $(map data/photos/labels.json "$out/labelled-gem-512" --whitening "$w") |"
  done
} | tee "Benchmarks/results/multiview-$(date +%Y%m%d-%H%M%S).md"
