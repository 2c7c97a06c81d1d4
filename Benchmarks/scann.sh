#!/usr/bin/env bash
# Pharos against ScaNN (pip scann, the inner-product anchor) and faiss-cpu on the same files,
# parameters and thread count, interleaved, medians (Benchmarks/compare.py --peers faiss,scann).
# Each case runs Pharos plain and with score-aware codes (_aq0.2) in ScaNN's recommended shape:
# 4-bit codes over 2-D blocks, exact reordering of 40 for k=10. Usage:
#   Benchmarks/scann.sh --small    20k x 64 normalised, inner product (a few minutes; CI runs it)
#   Benchmarks/scann.sh            Fashion-MNIST normalised (ip) and as is (l2), 1M x 128 (l2),
#                                  100k x 2048 normalised (ip); about an hour on 2 cores
# Extra arguments go to compare.py (default --threads 1, ScaNN's single-threaded search_batched).
set -euo pipefail
cd "$(dirname "$0")/.."
size=ip
if [ "${1:-}" = "--small" ]; then size=ip-small; shift; fi

bash Scripts/install-deps.sh
swift build -c release --product pharos
venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q --disable-pip-version-check "faiss-cpu==1.15.1" "numpy<3" "scann==1.4.2"

pharos=.build/release/pharos
threads=$(nproc)
if [ "$size" = ip-small ]; then
  "$pharos" data synthetic --count 20000 --train-count 5000 --queries 200 --dimension 64 \
    --clusters 100 --normalized --out data/synthetic-20k-64-ip --threads "$threads"
else
  "$pharos" data fashion-mnist --out data/fashion-mnist --threads "$threads"
  if [ ! -s data/fashion-mnist-ip/truth-ip-100.ivecs ]; then
    # Fashion-MNIST's rows scaled to unit norm; exact inner-product neighbours by Pharos.
    mkdir -p data/fashion-mnist-ip
    "$venv/bin/python" - <<'PY'
import numpy as np
for name in ("base", "queries", "train"):
    source = f"data/fashion-mnist/{name}.fvecs"
    try:
        raw = np.fromfile(source, dtype=np.int32)
    except FileNotFoundError:
        continue
    d = int(raw[0])
    rows = raw.reshape(-1, d + 1)
    vectors = rows[:, 1:].view(np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows[:, 1:] = vectors.astype(np.float32).view(np.int32)
    rows.tofile(f"data/fashion-mnist-ip/{name}.fvecs")
PY
    "$pharos" data truth --base data/fashion-mnist-ip/base.fvecs --queries data/fashion-mnist-ip/queries.fvecs \
      --metric ip --out data/fashion-mnist-ip/truth-ip-100.ivecs --threads "$threads"
  fi
  "$pharos" data synthetic --count 1000000 --train-count 100000 --queries 1000 --dimension 128 \
    --clusters 1000 --out data/synthetic-1m-128 --threads "$threads"
  "$pharos" data synthetic --count 100000 --train-count 20000 --queries 1000 --dimension 2048 \
    --clusters 500 --normalized --out data/synthetic-100k-2048 --threads "$threads"
fi
mkdir -p Benchmarks/results
"$venv/bin/python" Benchmarks/compare.py --size "$size" --peers faiss,scann --threads 1 --pharos "$pharos" \
  --python "$venv/bin/python" "$@" | tee "Benchmarks/results/scann-$size-$(date +%Y%m%d-%H%M%S).md"
