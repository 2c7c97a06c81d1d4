#!/usr/bin/env bash
# Runs the test binary under strace and fails if Pharos code (tests, servers, tools) ever closes
# a file descriptor that is not open. Such a close is usually harmless (EBADF), but when another
# thread has reopened the number in between it closes that thread's file, and its next writes
# land somewhere else: the race behind a 0-byte segment file once seen in CI.
#
#   bash Scripts/fd-audit.sh            # builds the tests first if needed
#
# Needs strace built with stack tracing (-k; Debian's is). Children's close-all loops before
# exec (posix_spawn, bash) are expected and ignored: only stacks through Pharos binaries count.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || { echo "fd-audit: strace is not installed (apt-get install strace)" >&2; exit 2; }
if ! strace -f -k -o /dev/null true 2>/dev/null; then
    echo "fd-audit: skipped: strace cannot trace here (ptrace not permitted, or no -k stack support)" >&2
    exit 0
fi
swift build --build-tests >/dev/null
binary=$(find "$(swift build --show-bin-path)" -maxdepth 1 -name '*.xctest' | sed -n 1p)
[ -x "$binary" ] || { echo "fd-audit: no test binary under $(swift build --show-bin-path)" >&2; exit 2; }
trace=$(mktemp)
log=$(mktemp)
trap 'rm -f "$trace" "$log"' EXIT
status=0
OPENBLAS_NUM_THREADS=1 strace -f -k -Z -e trace=close -o "$trace" "$binary" --testing-library swift-testing >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fd-audit: the failing tests:" >&2
    grep -E -A8 "recorded an issue|✘ Test [^r]" "$log" | head -n 80 >&2 || true
    echo "fd-audit: the tests failed under strace (exit $status)" >&2
    exit 1
fi
python3 - "$trace" <<'PY'
import re, sys
bad, call, frames = [], None, []
def finish():
    if call and "EBADF" in call and any(re.search(r"/\.build/[^ ]*/(\w+\.xctest|pharos[-\w]*)\(", f) for f in frames):
        bad.append((call, frames))
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(" > "):
        frames.append(line.strip())
    else:
        finish()
        call, frames = line.strip(), []
finish()
for call, frames in bad[:5]:
    print("double close:", call)
    for f in frames[:12]: print("   ", f)
print(f"fd-audit: {len(bad)} closes of descriptors that were not open, from Pharos code")
sys.exit(1 if bad else 0)
PY
