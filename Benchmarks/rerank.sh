#!/usr/bin/env bash
# Re-ranking (issue 15): mAP and mP@1/5/10 of the global ranking, alpha-QE, diffusion and both,
#  1. exact rankings of the descriptors (`pharos eval --database`) on the labelled photo set
#     (`pharos data photos`) and on the set of real multi-view photos (Benchmarks/multiview.py);
#  2. the same through a local cluster (a coordinator and 3 shard processes, IVF4,PQ160x4fs,
#     RefineSQ8 as the demo), and the latency of each stage per query: single-query searches by
#     key, k 10, the stages interleaved over ROUNDS rounds, medians of each round's p50 and p99.
# Geometric verification (offline: `pharos eval --database --local`, the shards do not keep
# local features yet) after each, with a sweep of its pixel threshold and minimum inliers and
# its time per query.
# GeM, 512 pixels (the defaults). Diffusion: the defaults (shortlist 200, k 5, alpha 0.9, gamma 3)
# and the paper's k 50, alpha 0.99; first a sweep of k and alpha on the exact rankings, the
# evidence for the defaults.
#   Benchmarks/rerank.sh            both sets, 3 rounds
#   Benchmarks/rerank.sh --small    the labelled set only, 1 round (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
small=""; rounds=${ROUNDS:-3}
if [ "${1:-}" = "--small" ]; then small=1; rounds=1; fi
bash Scripts/install-deps.sh
swift build -c release
P=.build/release/pharos
out=data/rerank-bench
mkdir -p "$out" Benchmarks/results
[ -f data/photos/labels.json ] || "$P" data photos --out data/photos >/dev/null
# With --local: DELF-style local features beside the descriptors, for geometric verification.
# (--restart: outputs of an earlier run without them are of other settings.)
extract() {  # images, prefix
  [ -f "$2.local" ] || rm -f "$2.npy" "$2.keys" "$2.extract.json"
  "$P" extract --images "$1" --pooling gem --max-side 512 --local --out "$2" >/dev/null 2>&1
}
extract data/photos/images "$out/labelled"
sets=("labelled data/photos/labels.json $out/labelled")
if [ -z "$small" ]; then
  dpkg-query -W -f='${Status}' visp-images-data 2>/dev/null | grep -q "install ok installed" \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq visp-images-data >/dev/null; }
  venv=.venv-bench
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "numpy<3"
  "$venv/bin/python" Benchmarks/multiview.py --out data/multiview >/dev/null
  extract data/multiview/images "$out/multiview"
  sets+=("multi-view data/multiview/labels.json $out/multiview")
fi
stages=("global|" "alpha-QE|--expand alpha:alpha=3,n=5" "diffusion|--rerank diffusion"
        "diffusion, the paper's k 50, alpha 0.99|--rerank diffusion:k=50,alpha=0.99"
        "alpha-QE + diffusion|--expand alpha:alpha=3,n=5 --rerank diffusion")
row() {  # label, then eval's --json line
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print("| %s | %.4f | %.4f | %.4f | %.4f |" % (sys.argv[1], d["map"], d["mp@1"], d["mp@5"], d["mp@10"]))' "$1" "$2"
}
map() { python3 -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])["map"])' "$1"; }
{
  for s in "${sets[@]}"; do
    read -r name truth prefix <<<"$s"
    echo "Diffusion's k and alpha, $name set: mAP of exact rankings (shortlist 200, gamma 3; global $(map "$("$P" eval --ground-truth "$truth" --database "$prefix.npy" --database-keys "$prefix.keys" -k 100 --json)")):"
    echo
    echo "| k \\ alpha | 0.5 | 0.8 | 0.9 | 0.95 | 0.99 |"
    echo "|---|---|---|---|---|---|"
    for k in 3 5 10 20 50; do
      line="| $k |"
      for alpha in 0.5 0.8 0.9 0.95 0.99; do
        line+=" $(map "$("$P" eval --ground-truth "$truth" --database "$prefix.npy" --database-keys "$prefix.keys" -k 100 --json --rerank "diffusion:k=$k,alpha=$alpha")") |"
      done
      echo "$line"
    done
    echo
  done
  for s in "${sets[@]}"; do
    read -r name truth prefix <<<"$s"
    echo "Exact rankings, $name set (\`pharos eval --database\`, -k 100):"
    echo
    echo "| stage | mAP | mP@1 | mP@5 | mP@10 |"
    echo "|---|---|---|---|---|"
    verify=("verification|--rerank verify --local $prefix.local" "alpha-QE + verification|--expand alpha:alpha=3,n=5 --rerank verify --local $prefix.local"
            "diffusion + verification|--rerank verify+diffusion --local $prefix.local")
    for stage in "${stages[@]}" "${verify[@]}"; do
      # shellcheck disable=SC2086
      row "${stage%%|*}" "$("$P" eval --ground-truth "$truth" --database "$prefix.npy" --database-keys "$prefix.keys" -k 100 --json ${stage#*|})"
    done
    echo
  done

  # Verification's settings (the evidence for the defaults) and its cost per query.
  for s in "${sets[@]}"; do
    read -r name truth prefix <<<"$s"
    echo "Verification's inlier threshold (pixels) and minimum inliers, $name set: mAP of exact rankings, verified shortlist 100:"
    echo
    echo "| pixels \\ inliers | 6 | 9 | 12 | 16 | 24 |"
    echo "|---|---|---|---|---|---|"
    for px in 8 16 32; do
      line="| $px |"
      for n in 6 9 12 16 24; do
        line+=" $(map "$("$P" eval --ground-truth "$truth" --database "$prefix.npy" --database-keys "$prefix.keys" -k 100 --json --rerank "verify:threshold=$px,inliers=$n" --local "$prefix.local")") |"
      done
      echo "$line"
    done
    echo
    for model in affine similarity; do
      j=$("$P" eval --ground-truth "$truth" --database "$prefix.npy" --database-keys "$prefix.keys" -k 100 --json --rerank "verify:model=$model" --local "$prefix.local")
      python3 -c 'import json,sys; d=json.loads(sys.argv[3]); print("%s model, %s set: mAP %.4f; verifying 100 candidates took %.1f ms a query at p50, %.1f ms at p99 (500 keypoints a photo, %s threads)" % (sys.argv[1], sys.argv[2], d["map"], d["verify_ms_p50"], d["verify_ms_p99"], sys.argv[4]))' "$model" "$name" "$j" "$(nproc)"
    done
    echo
  done

  # Through a cluster: the labelled set.
  log=$out/cluster.log
  rm -rf "$out/cluster"
  "$P" cluster up --shards 3 --data "$out/cluster" --port 7880 --dimension 1280 --metric ip --normalize \
    --factory "IVF4,PQ160x4fs,RefineSQ8" >"$log" 2>&1 &
  cluster=$!
  # (This block runs in the pipeline's subshell: its trap stops the cluster however it ends.)
  trap 'kill -INT "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do grep -q "cluster ready" "$log" && break; sleep 0.1; done
  grep -q "cluster ready" "$log" || { cat "$log" >&2; exit 1; }
  c=(--coordinator 127.0.0.1:7880)
  "$P" train "${c[@]}" --train "$out/labelled.npy" >/dev/null
  "$P" ingest "${c[@]}" --vectors "$out/labelled.npy" --keys "$out/labelled.keys" >/dev/null 2>&1
  echo "Through the cluster, labelled set (\`pharos eval --coordinator\`, nprobe 4, -k 100):"
  echo
  echo "| stage | mAP | mP@1 | mP@5 | mP@10 |"
  echo "|---|---|---|---|---|"
  for stage in "${stages[@]}"; do
    # shellcheck disable=SC2086
    row "${stage%%|*}" "$("$P" eval "${c[@]}" --ground-truth data/photos/labels.json --nprobe 4 -k 100 --json ${stage#*|})"
  done
  echo
  python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["queries"]))' data/photos/labels.json >"$out/query-keys.txt"
  declare -A p50 p99
  for r in $(seq 1 "$rounds"); do
    for stage in "${stages[@]}"; do
      # shellcheck disable=SC2086
      line=$("$P" search "${c[@]}" --query-keys-file "$out/query-keys.txt" -k 10 --nprobe 4 ${stage#*|} 2>&1 | grep "latency p50")
      read -r a b <<<"$(sed -E 's/.*latency p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2/' <<<"$line")"
      p50[${stage%%|*}]+="$a "; p99[${stage%%|*}]+="$b "
    done
  done
  median() { python3 -c 'import statistics,sys; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
  base50=$(median ${p50[global]}); base99=$(median ${p99[global]})
  echo "Latency through the cluster (290 single-query searches by key, k 10, nprobe 4; median of $rounds interleaved rounds):"
  echo
  echo "| stage | p50 ms | p99 ms | added at p50 | added at p99 |"
  echo "|---|---|---|---|---|"
  for stage in "${stages[@]}"; do
    n=${stage%%|*}
    a=$(median ${p50[$n]}); b=$(median ${p99[$n]})
    echo "| $n | $a | $b | $(python3 -c "print('%+.2f' % ($a - $base50))") | $(python3 -c "print('%+.2f' % ($b - $base99))") |"
  done
} | tee "Benchmarks/results/rerank-$(date +%Y%m%d-%H%M%S).md"
