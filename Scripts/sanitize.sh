#!/usr/bin/env bash
# The C kernels and the storage, index, shard and wire paths under AddressSanitizer (Swift and
# C) and UndefinedBehaviorSanitizer (C), in their own build folder. Any report fails the run:
# ASan stops at the first error, and UBSan's checks are compiled as traps (Swift on Linux has
# no UBSan runtime to link, and a trap fails the test binary just as surely).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/install-deps.sh
export OPENBLAS_NUM_THREADS=1
# Leak detection is off: the Swift runtime keeps metadata caches for the life of the process.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
flags=(--build-path .build-sanitize --sanitize=address -Xcc -fsanitize=undefined -Xcc -fsanitize-trap=undefined)
swift build --build-tests "${flags[@]}"
for suite in PharosVectorsTests PharosIndexTests PharosStorageTests PharosWireTests PharosShardTests; do
    log=$(mktemp)
    if ! swift test --skip-build "${flags[@]}" --filter "$suite" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "sanitize: $suite failed under the sanitizers" >&2
        exit 1
    fi
    if grep -q "Sanitizer" "$log"; then
        grep -B2 -A30 -m1 "Sanitizer" "$log"
        echo "sanitize: $suite produced a sanitizer report" >&2
        exit 1
    fi
    echo "sanitize: $suite: $(grep -E 'Test run with' "$log" | tail -n 1)"
done
