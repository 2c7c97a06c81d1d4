#!/usr/bin/env bash
# Runs every test (Swift Testing). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # Pharos parallelises above BLAS
swift test "$@"
