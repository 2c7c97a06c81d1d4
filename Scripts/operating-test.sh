#!/usr/bin/env bash
# Runs the README's "Three machines, end to end" walkthrough as written: every ```sh mN block
# between the walkthrough markers, in order, on three network namespaces m1, m2, m3 with the
# README's addresses (10.0.0.11-13 on a private bridge, inside `unshare -n -m`: no packet
# leaves this machine), with this build's programs on PATH. Blocks tagged `server` start in the
# background (the test waits for "listening on"); the others must exit 0. After each step it
# checks what the README promises there (secrets refused and accepted, recall, readiness and
# metrics over TLS, a restorable backup, complete answers with a machine down, the node back
# and every copy re-made). The machines share one folder (the README copies secrets by scp).
# Needs root (skipped otherwise). Bounded: 10 minutes at most; about 1-2 minutes.
# Usage: Scripts/operating-test.sh [BINARY_DIR]   (default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inside" ]; then
  if [ "$(id -u)" != 0 ]; then echo "operating-test: skipped: network namespaces need root"; exit 0; fi
  for tool in ip unshare openssl curl; do
    command -v "$tool" >/dev/null || { echo "operating-test: $tool is missing (apt-get install iproute2 util-linux openssl curl)"; exit 1; }
  done
  bin=$(readlink -f "${1:-.build/debug}")
  [ -x "$bin/pharos-shard" ] || { echo "operating-test: no pharos-shard in $bin (swift build first)"; exit 1; }
  exec timeout 600 unshare -n -m bash "$0" --inside "$bin"
fi
bin=$2
name=operating-test
source Scripts/netns-lib.sh
netns_bridge 10.0.0
host m1 10.0.0.11; host m2 10.0.0.12; host m3 10.0.0.13
site="$work/site"
mkdir -p "$site" "$work/blocks"

# The walkthrough's blocks, each to NN.sh with its tags in NN.meta ("MACHINE KIND STEP").
/usr/bin/python3 - "$work/blocks" <<'PY'
import re, sys
text = open("README.md").read()
begin, end = "<!-- walkthrough:begin", "<!-- walkthrough:end -->"
if begin not in text or end not in text:
    sys.exit("operating-test: README.md has no walkthrough markers")
section = text.split(begin, 1)[1].split(end, 1)[0]
fences = re.findall(r"^```.*$", section, re.M)
blocks = re.findall(r"^```sh (m[123])((?: [a-z=]+)*)\n(.*?)^```$", section, re.S | re.M)
if len(blocks) * 2 != len(fences):
    sys.exit("operating-test: a code block in the walkthrough is not tagged ```sh mN [server] [step=NAME]")
for i, (machine, tags, code) in enumerate(blocks):
    tags = tags.split()
    kind = "server" if "server" in tags else "command"
    step = next((t[5:] for t in tags if t.startswith("step=")), "none")
    open(f"{sys.argv[1]}/{i:02d}.sh", "w").write(code)
    open(f"{sys.argv[1]}/{i:02d}.meta", "w").write(f"{machine} {kind} {step}\n")
print(f"operating-test: {len(blocks)} blocks in the README walkthrough")
PY

export PATH="$bin:$PATH"
on() {   # on MACHINE COMMAND...: a command on that machine, in the shared folder
  local machine=$1
  shift
  (cd "$site" && ip netns exec "$machine" "$@")
}
cli() {   # the CLI on m1 with the admin token, as the walkthrough's clients
  on m1 env PHAROS_TOKEN_FILE="$site/admin-token" timeout 60 pharos "$@" --coordinator 10.0.0.11:7700 --tls-ca "$site/tls/ca.pem"
}
status_field() {   # status_field PYTHON_EXPRESSION over the status document `s`
  cli status --json 2>/dev/null | /usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" || true
}
expect() {   # expect FILE REGEX WHAT
  grep -Eq -- "$2" "$1" || { echo "--- output of the step:"; cat "$1"; fail "step $step: $3"; }
}
recall10() { sed -n 's/.*recall@10 \([0-9.]*\).*/\1/p' "$1" | tail -n 1; }

# What each step promises.
before_degraded() {   # m3 loses power
  pkill -KILL -f -- "--data data/s2 " || fail "no s2 process to kill"
  sleep 0.5
}
after_load() {
  expect "$1" '"sent" *: *20000' "the ingest summary does not count 20000 vectors"
  first_recall=$(recall10 "$1")
  [ -n "$first_recall" ] && awk -v r="$first_recall" 'BEGIN { exit !(r >= 0.8) }' || fail "recall@10 $first_recall after loading"
  [ "$(status_field 'sum(n["entries"] for n in s["nodes"])')" = 40000 ] || fail "the copies hold $(status_field 'sum(n["entries"] for n in s["nodes"])') entries, expected 2 x 20000"
  # Secrets are enforced: no token, a wrong token, no CA, plain TCP to a shard.
  on m1 timeout 20 pharos status --coordinator 10.0.0.11:7700 --tls-ca "$site/tls/ca.pem" >"$work/probe" 2>&1 && fail "status without a token was served"
  expect "$work/probe" "nauthori|token" "a request without a token was not refused for its token"
  on m1 timeout 20 pharos status --coordinator 10.0.0.11:7700 >"$work/probe" 2>&1 && fail "a plain-TCP client was served by a TLS coordinator"
  on m2 timeout 20 curl -sf --cacert "$site/tls/ca.pem" https://10.0.0.13:8701/livez >/dev/null 2>&1 && fail "a shard's admin port served a client without a certificate"
  true
}
after_roles() {
  expect "$1" '"row-7"' "the read token's search by key did not find row-7"
  expect "$1" "refused, as it should be" "the read token was allowed to delete"
  expect "$1" "nauthori" "the delete was not refused as unauthorized"
}
after_watch() {
  [ "$(grep -c '^ready' "$1")" = 2 ] || fail "the coordinator and s1 are not both ready: $(cat "$1")"
  expect "$1" "^pharos_coordinator_partial_answers_total 0" "the coordinator counts partial answers before any failure"
  expect "$1" '^pharos_cluster_buckets_unserved 0' "the coordinator's metrics do not show every bucket served"
  expect "$1" '^pharos_shard_entries\{state="live"\} [1-9]' "s2's metrics show no live entries"
}
after_backup() {
  entries=$(on m2 pharos-shard stats --data "$site/restore-check/s1" 2>&1 | sed -n 's/.*live \([0-9]*\).*/\1/p' || true)
  [ -n "$entries" ] && [ "$entries" -gt 0 ] || fail "the restored copy of s1 holds no entries"
  serving=$(status_field '[n["entries"] for n in s["nodes"] if n["name"] == "s1"][0]')
  [ "$entries" = "$serving" ] || fail "the restored copy of s1 holds $entries entries, the serving one $serving"
}
after_degraded() {
  expect "$1" 'searched 100 queries' "the search with m3 down did not finish"
  grep -q partial "$1" && fail "answers were partial with one copy of each bucket down: $(cat "$1")"
  # The same entries are probed; only how buckets group into nodes (each node's refined
  # shortlist) differs, so recall moves a little but must not drop.
  awk -v r="$(recall10 "$1")" -v f="$first_recall" 'BEGIN { exit !(r >= f - 0.02) }' || fail "recall@10 dropped with m3 down: $(recall10 "$1") (was $first_recall)"
  expect "$1" 's2 .*down' "status does not show s2 down after a write"
  down_recall=$(recall10 "$1")
}
after_server() {   # a server started: it listens; a returning s2 becomes active again
  wait_listening "$1"
  if grep -q -- "--name s2 " "$2" && [ -n "${first_recall:-}" ]; then
    for _ in $(seq 1 150); do
      [ "$(status_field '[n["state"] for n in s["nodes"] if n["name"] == "s2"][0]')" = active ] && return 0
      sleep 0.2
    done
    fail "s2 did not become active again within 30 s of restarting"
  fi
}
after_recovered() {
  [ "$(status_field 'sorted(n["state"] for n in s["nodes"])')" = "['active', 'active', 'active']" ] || fail "not every node is active: $(cat "$1")"
  [ "$(status_field 's["bucketsUnderReplicated"]')" = 0 ] || fail "buckets are still under-replicated: $(cat "$1")"
  [ "$(status_field 'sum(n["entries"] for n in s["nodes"])')" = 39996 ] || fail "the copies hold $(status_field 'sum(n["entries"] for n in s["nodes"])') entries, expected 2 x 19998"
  [ "$(status_field 'min(n["entries"] for n in s["nodes"])')" -gt 0 ] || fail "s2 got no share back: $(cat "$1")"
  expect "$1" '^\{"found":false,"key":"row-1"\}$' "row-1 is still found after its delete"
  expect "$1" "row-1 is gone" "fetch of a deleted key did not exit 1"
  expect "$1" '^\{"found":true,"key":"row-3",' "row-3 is not found"
}

first_recall=
for meta in "$work"/blocks/*.meta; do
  read -r machine kind step <"$meta"
  code=${meta%.meta}.sh
  number=$(basename "$meta" .meta)
  out="$work/step-$number.log"
  if declare -F "before_$step" >/dev/null; then "before_$step"; fi
  if [ "$kind" = server ]; then
    # exec: the process started is the server itself, so the cleanup's SIGTERM reaches it.
    (cd "$site" && exec ip netns exec "$machine" bash -c 'eval "exec $(cat "$1")"' _ "$code") >"$out" 2>&1 &
    pids+=("$!")
    after_server "$out" "$code"
  else
    on "$machine" timeout 180 bash -euo pipefail "$code" >"$out" 2>&1 || { cat "$out"; fail "block $number on $machine failed"; }
    if declare -F "after_$step" >/dev/null; then "after_$step" "$out"; fi
  fi
  label=$kind
  [ "$step" = none ] || label+=", $step"
  echo "operating-test: block $number on $machine ($label) ok"
done
echo "operating-test: the README walkthrough ran as written on three namespaces: recall@10 $first_recall with every machine, $down_recall with m3 down, secrets enforced, backup restorable, s2 back and every copy re-made"
