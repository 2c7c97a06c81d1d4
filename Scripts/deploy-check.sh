#!/usr/bin/env bash
# Validates the deployment files offline with their own tools:
#   Deploy/prometheus: `promtool check config` and `promtool check rules`;
#   Deploy/systemd: `systemd-analyze verify` (with ExecStart pointed at the built binaries,
#   since /usr/local/bin is not installed here) and `systemd-analyze security --offline`,
#   whose exposure score must be at most 3.0 for every unit;
#   Deploy/kubernetes: `kubernetes-validate --strict` against Kubernetes 1.33.0 (pip, in a
#   local venv), any warning counted as a failure (it warns, and exits 0, on a kind it has no
#   schema for).
# Usage: Scripts/deploy-check.sh [BIN_DIR]   (default .build/debug, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-.build/debug}" 2>/dev/null && pwd) || { swift build; bin=$PWD/.build/debug; }
[ -x "$bin/pharos-shard" ] && [ -x "$bin/pharos-coordinator" ] || swift build
for tool in promtool systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: bash Scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

promtool check config Deploy/prometheus/prometheus.yml
promtool check rules Deploy/prometheus/alerts.yml

venv=.venv-deploy
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
report=$("$venv/bin/kubernetes-validate" --strict -k 1.33.0 Deploy/kubernetes/*.yaml 2>&1) || { echo "$report" >&2; exit 1; }
echo "$report"
if grep -q "WARN" <<<"$report"; then echo "kubernetes-validate warned: failing" >&2; exit 1; fi

most=3.0
for unit in Deploy/systemd/*.service; do
  name=$(basename "$unit")
  instance=${name/@.service/@s0.service}   # a template is verified as one of its instances
  sed "s|/usr/local/bin/|$bin/|g" "$unit" >"$work/$instance"
  systemd-analyze verify --man=no "$work/$instance"
  score=$(systemd-analyze security --offline=true --no-pager "$unit" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  [ -n "$score" ] || { echo "$name: systemd-analyze security printed no score" >&2; exit 1; }
  awk -v s="$score" -v m="$most" 'BEGIN { exit !(s <= m) }' || { echo "$name: exposure $score, at most $most allowed" >&2; exit 1; }
  echo "$name: verify clean, exposure $score (at most $most)"
done
