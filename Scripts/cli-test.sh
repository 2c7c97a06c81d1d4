#!/usr/bin/env bash
# The `pharos` command line as a script uses it, against a live local cluster: JSON output of
# search (stdout and --out), fetch, delete, ingest and eval, keys with spaces and commas kept
# intact, --query-key and --query-keys-file agreeing, exit statuses (fetch of a missing key
# 1, a usage error 64 with the subcommand's usage), --version, and progress as plain lines
# when standard error is not a terminal. Loopback only; bounded (about 15 s).
# Usage: Scripts/cli-test.sh [BIN_DIR]   (default .build/debug, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug}
[ -x "$bin/pharos" ] || swift build
work=$(mktemp -d)
port=${PORT:-7940}
cluster=""
cleanup() {
  [ -z "$cluster" ] || { kill -INT "$cluster" 2>/dev/null; wait "$cluster" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "cli-test: $*" >&2; exit 1; }

/usr/bin/python3 - "$work" <<'PY'
import json, struct, sys, random
random.seed(11)
work = sys.argv[1]
rows = [[random.gauss(0, 1) for _ in range(16)] for _ in range(600)]
rows[500:510] = [list(r) for r in rows[0:10]]   # duplicates: each of the first 10 has a twin
with open(work + "/base.fvecs", "wb") as f:
    for row in rows:
        f.write(struct.pack("<i16f", 16, *row))
# Keys with spaces and commas: the JSON output must carry them unchanged.
keys = ["photo %d, view a.jpg" % i if i % 2 else "img/%04d.jpg" % i for i in range(600)]
open(work + "/keys.txt", "w").write("\n".join(keys) + "\n")
open(work + "/query-keys.txt", "w").write(keys[1] + "\n" + keys[2] + "\n")
# A labelled ground truth: each of the first 10 keys and its twin share a label.
labels = {keys[i]: "l%d" % i for i in range(10)}
labels.update({keys[500 + i]: "l%d" % i for i in range(10)})
json.dump({"protocol": "labelled", "labels": labels, "queries": keys[:10]}, open(work + "/truth.json", "w"))
PY

"$bin/pharos" --version | grep -Eq '^pharos [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]+(-dirty)?\)$' || fail "--version: $("$bin/pharos" --version)"
set +e
"$bin/pharos" search --queries "$work/base.fvecs" --query-key x >"$work/usage.out" 2>"$work/usage.err"
status=$?
set -e
[ "$status" = 64 ] && grep -q "Usage: pharos search" "$work/usage.err" || fail "a usage error exited $status: $(cat "$work/usage.err")"

"$bin/pharos" cluster up --shards 2 --data "$work/cluster" --port "$port" --dimension 16 --factory "IVF8,PQ8" >"$work/cluster.log" 2>&1 &
cluster=$!
for _ in $(seq 1 150); do grep -q "cluster ready" "$work/cluster.log" && break; sleep 0.1; done
grep -q "cluster ready" "$work/cluster.log" || { cat "$work/cluster.log"; exit 1; }
c=(--coordinator "127.0.0.1:$port")
"$bin/pharos" train "${c[@]}" --train "$work/base.fvecs" --train-count 600 >/dev/null 2>&1
# Not a terminal: progress comes as plain lines and a final line, no carriage returns.
"$bin/pharos" ingest "${c[@]}" --vectors "$work/base.fvecs" --keys "$work/keys.txt" --batch 100 --json >"$work/ingest.json" 2>"$work/ingest.err"
! grep -q $'\r' "$work/ingest.err" || fail "progress wrote carriage returns to a log"

/usr/bin/python3 - "$bin" "$port" "$work" <<'PY'
import json, subprocess, sys
bin, port, work = sys.argv[1], sys.argv[2], sys.argv[3]
cli = ["--coordinator", "127.0.0.1:" + port]
keys = open(work + "/keys.txt").read().split("\n")[:-1]

def pharos(*args, status=0):
    run = subprocess.run([bin + "/pharos", *args, *cli], capture_output=True, text=True)
    assert run.returncode == status, "%s exited %d: %s" % (args, run.returncode, run.stderr)
    return run

ingest = json.loads(open(work + "/ingest.json").read())
assert ingest["sent"] == 600 and ingest["replaced"] == 0, ingest

# search --json: one object per query on stdout, the same lines in --out, the summary on stderr.
run = pharos("search", "--queries", work + "/base.fvecs", "--limit", "20", "-k", "3", "--nprobe", "8", "--json", "--out", work + "/hits.jsonl")
lines = [json.loads(l) for l in run.stdout.splitlines()]
assert len(lines) == 20 and [l["query"] for l in lines] == list(range(20)), run.stdout[:300]
assert sum(l["hits"][0]["key"] in (keys[l["query"]], keys[l["query"] + 500]) for l in lines[10:]) >= 9, lines[10:13]
assert open(work + "/hits.jsonl").read() == run.stdout, "--out differs from --json"
assert "searched 20 queries" in run.stderr, run.stderr

# Keys with spaces and commas, by --query-key and by --query-keys-file: the same answers.
by_flag = pharos("search", "--query-key", keys[1], "--query-key", keys[2], "-k", "2", "--nprobe", "8", "--json").stdout
by_file = pharos("search", "--query-keys-file", work + "/query-keys.txt", "-k", "2", "--nprobe", "8", "--json").stdout
assert by_flag == by_file, (by_flag, by_file)
first = [json.loads(l) for l in by_flag.splitlines()]
assert first[0]["query_key"] == keys[1] == "photo 1, view a.jpg", first
assert {h["key"] for h in first[0]["hits"]} & {keys[1], keys[501]}, first

# fetch and delete, then fetch again: found, deleted, missing (exit 1), all as JSON.
fetched = [json.loads(l) for l in pharos("fetch", "--key", keys[13], "--key", keys[14], "--json").stdout.splitlines()]
assert [f["key"] for f in fetched] == [keys[13], keys[14]] and all(f["found"] and len(f["vector"]) == 16 for f in fetched), fetched
deleted = json.loads(pharos("delete", "--key", keys[13], "--key", "never stored", "--json").stdout)
assert deleted == {"requested": 2, "deleted": 1}, deleted
after = [json.loads(l) for l in pharos("fetch", "--key", keys[13], "--key", keys[14], "--json", "--no-vectors", status=1).stdout.splitlines()]
assert not after[0]["found"] and after[1]["found"] and "vector" not in after[1], after

# eval --json: the labelled protocol on the keys' own rankings.
result = json.loads(pharos("eval", "--ground-truth", work + "/truth.json", "-k", "10", "--nprobe", "8", "--json", "--label", "cli").stdout)
assert result["label"] == "cli" and result["setup"] == "labelled" and result["map"] > 0.8, result

# --rerank: diffusion through the cluster answers with k hits; what it cannot do is a usage
# error (64) naming the setting.
run = pharos("search", "--query-key", keys[3], "-k", "5", "--nprobe", "8", "--rerank", "diffusion:shortlist=40,k=8", "--json")
hits = json.loads(run.stdout)["hits"]
assert len(hits) == 5 and "rerank diffusion:shortlist=40,k=8" in run.stderr, (hits, run.stderr)
for bad, said in (("verify", "runs offline only so far"), ("diffusion:alpha=1", "alpha is 1.0"), ("diffusion:shortlist=3", "more than Search.rerank.shortlist 3"),
                  ("diffusion:gamma=x", "gamma=x is not a number"), ("diffusion:beta=2", "unknown setting beta")):
    run = pharos("search", "--query-key", keys[3], "-k", "5", "--rerank", bad, status=64)
    assert said in run.stderr, (bad, run.stderr)
result = json.loads(pharos("eval", "--ground-truth", work + "/truth.json", "-k", "10", "--nprobe", "8", "--json", "--rerank", "diffusion:k=5").stdout)
assert result["map"] > 0.5, result
# Verification needs the local features (offline, --database and --local): otherwise, and with
# settings out of range, a usage error naming the problem, before anything is read.
for args, said in ((["--rerank", "verify"], "give --database and --local"),
                   (["--rerank", "verify:model=cubic", "--database", "x.npy", "--database-keys", "x.keys", "--local", "x.local"], "expected affine or similarity"),
                   (["--rerank", "verify:inliers=1", "--database", "x.npy", "--database-keys", "x.keys", "--local", "x.local"], "inliers is 1"),
                   (["--local", "x.local"], "read by --rerank verify only")):
    run = pharos("eval", "--ground-truth", work + "/truth.json", *args, status=64)
    assert said in run.stderr, (args, run.stderr)
print("cli-test: search/fetch/delete/ingest/eval --json, keys with spaces and commas, --query-key = --query-keys-file, exit statuses, --rerank")
PY
