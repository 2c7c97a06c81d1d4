#!/usr/bin/env bash
# Runs Scripts/wire-fuzz.py (the outside-in, structure-aware fuzzer) against a fresh local
# cluster: `pharos cluster up` on loopback (3 shards), trained and loaded with a small synthetic
# set, every process watched by PID and RSS. Exits non-zero when the fuzzer finds a crash, a
# hang, a wrong request id or memory past the bound.
#   bash Scripts/wire-fuzz-cluster.sh                       # the bounded run CI makes (5,000 frames)
#   bash Scripts/wire-fuzz-cluster.sh --frames 1000000 --seconds 7200   # the long run
# Extra arguments go to wire-fuzz.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh   # protoc and python3-protobuf among them
swift build -c release --product pharos >/dev/null
swift build -c release --product pharos-shard >/dev/null
swift build -c release --product pharos-coordinator >/dev/null
bin=.build/release
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
port=${PHAROS_FUZZ_PORT:-7940}
log="$work/cluster.log"
"$bin/pharos" cluster up --data "$work/cluster" --dimension 16 --factory IVF64,PQ8x4fs,RefineSQ8 --port "$port" >"$log" 2>&1 &
cluster=$!
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do grep -q "cluster ready" "$log" && break; sleep 0.1; done
grep -q "cluster ready" "$log" || { cat "$log"; exit 1; }
"$bin/pharos" data synthetic --count 4000 --train-count 4000 --queries 10 --dimension 16 --clusters 40 --out "$work/set" >/dev/null
"$bin/pharos" train --train "$work/set/train.fvecs" --coordinator "127.0.0.1:$port" >/dev/null
"$bin/pharos" ingest --vectors "$work/set/base.fvecs" --coordinator "127.0.0.1:$port" >/dev/null
pids=$(for name in shard-0 shard-1 shard-2; do pgrep -f -- "serve --data $work/cluster/$name " ; done; pgrep -f -- "--cluster $work/cluster/cluster.json")
pids=$(echo $pids | tr ' ' ',')
args=(--coordinator "127.0.0.1:$port" --pids "$pids" --crash-dir "${PHAROS_FUZZ_CRASH_DIR:-$work/crashes}")
for i in 1 2 3; do args+=(--shard "127.0.0.1:$((port + i))"); done
if [ $# -eq 0 ]; then set -- --frames 5000 --seconds 240; fi
/usr/bin/python3 Scripts/wire-fuzz.py "${args[@]}" "$@"
