#!/usr/bin/env bash
# The Swift EfficientNet-Lite0 forward pass against PyTorch's (CPU, batch norm folded,
# inference mode) on the same photos at the same resolution and thread count, interleaved:
# images per second and their ratio, medians over rounds; and how close Pharos comes to the
# machine's limit: the network's FLOPs at that size (2 x its convolutions' multiply-adds) times
# images/s, against the SGEMM peak measured on the same threads in the same run.
#   Benchmarks/cnn.sh            16 photos at 512x384 and 1024x768 (longer side 512 and 1024,
#                                the sizes users run), 1 and 2 threads, 5 rounds
#   Benchmarks/cnn.sh --small    8 photos at 224x224, 1 thread, 3 rounds (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
count=16; rounds=5; sizes=("512 384" "1024 768"); thread_counts=(1 2)
if [ "${1:-}" = "--small" ]; then count=8; rounds=3; sizes=("224 224"); thread_counts=(1); fi
bash Scripts/install-deps.sh
swift build -c release
venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
# PyTorch's CPU wheel, pinned, from wherever pip is configured to look; else the newest torch
# that index offers.
if ! "$venv/bin/python" -c "import torch, PIL" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0+cpu" pillow "numpy<3" 2>/dev/null \
    || "$venv/bin/pip" install -q --disable-pip-version-check torch pillow "numpy<3"
fi
images=/usr/share/doc/opencv-doc/examples/data
mkdir -p Benchmarks/results
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
{
  echo "| input | threads | pharos (images/s) | torch (images/s) | ratio | GFLOP per image | pharos GFLOP/s | SGEMM peak GFLOP/s | of peak |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for size in "${sizes[@]}"; do
    read -r w h <<<"$size"
    for t in "${thread_counts[@]}"; do
      ours=(); theirs=(); peaks=()
      for _ in $(seq 1 "$rounds"); do   # interleaved: one round of each, in turn
        line=$(OPENBLAS_NUM_THREADS=1 .build/release/pharos cnn-bench --images "$images" --count "$count" --width "$w" --height "$h" \
          --threads "$t" --rounds 1)
        ours+=("$(sed -E 's/.*: ([0-9.]+) images\/s.*/\1/' <<<"$line")")
        peaks+=("$(sed -E 's/.* of the ([0-9.]+) GFLOP\/s SGEMM peak.*/\1/' <<<"$line")")
        gflop=$(sed -E 's/.*; ([0-9.]+) GFLOP per image.*/\1/' <<<"$line")
        kernels=$(sed -E 's/.*\(OpenBLAS (.*) kernels\).*/\1/' <<<"$line")
        theirs+=("$("$venv/bin/python" Benchmarks/cnn_bench.py --images "$images" --count "$count" --width "$w" --height "$h" \
          --threads "$t" --rounds 1 | sed -E 's/.*: ([0-9.]+) images.*/\1/')")
      done
      a=$(printf '%s\n' "${ours[@]}" | median); b=$(printf '%s\n' "${theirs[@]}" | median)
      peak=$(printf '%s\n' "${peaks[@]}" | median)
      echo "| ${w}x${h} | $t | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2fx", a / b}') | $gflop |" \
        "$(awk -v a="$a" -v g="$gflop" 'BEGIN {printf "%.1f", a * g}') | $peak | $(awk -v a="$a" -v g="$gflop" -v p="$peak" 'BEGIN {printf "%.0f%%", 100 * a * g / p}') |"
    done
  done
  echo
  echo "OpenBLAS kernels: $kernels (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}); PyTorch uses its own."
} | tee "Benchmarks/results/cnn-$(date +%Y%m%d-%H%M%S).md"
