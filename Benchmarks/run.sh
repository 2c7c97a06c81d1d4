#!/usr/bin/env bash
# Side-by-side benchmark of Pharos and faiss-cpu: same files, parameters and thread counts,
# runs interleaved, medians reported with ratios. Usage:
#   Benchmarks/run.sh            full run (Fashion-MNIST, 1M x 128, 100k x 2048; tens of minutes)
#   Benchmarks/run.sh --small    a bounded run for CI (a few minutes)
# Extra arguments go to compare.py (e.g. --repeats 5, --only fashion).
set -euo pipefail
cd "$(dirname "$0")/.."
size=full
if [ "${1:-}" = "--small" ]; then size=small; shift; fi

bash Scripts/install-deps.sh
swift build -c release --product pharos
venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q --disable-pip-version-check "faiss-cpu==1.15.1" "numpy<3"

pharos=.build/release/pharos
threads=$(nproc)
if [ "$size" = small ]; then
  "$pharos" data synthetic --count 20000 --train-count 5000 --queries 200 --dimension 64 \
    --clusters 100 --out data/synthetic-20k-64 --threads "$threads"
else
  "$pharos" data fashion-mnist --out data/fashion-mnist --threads "$threads"
  "$pharos" data synthetic --count 1000000 --train-count 100000 --queries 1000 --dimension 128 \
    --clusters 1000 --out data/synthetic-1m-128 --threads "$threads"
  "$pharos" data synthetic --count 100000 --train-count 20000 --queries 1000 --dimension 2048 \
    --clusters 500 --normalized --out data/synthetic-100k-2048 --threads "$threads"
fi
mkdir -p Benchmarks/results
"$venv/bin/python" Benchmarks/compare.py --size "$size" --pharos "$pharos" --python "$venv/bin/python" "$@" \
  | tee "Benchmarks/results/$size-$(date +%Y%m%d-%H%M%S).md"
