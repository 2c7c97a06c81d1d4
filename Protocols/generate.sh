#!/usr/bin/env bash
# Regenerates the committed protoc-c code from pharos.proto:
#   Protocols/generate.sh            writes Sources/PharosWireC/{pharos.pb-c.c,include/pharos.pb-c.h}
#   Protocols/generate.sh --check    fails when the committed files differ from a fresh generation
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc-c >/dev/null || { echo "protoc-c is missing: apt-get install protobuf-c-compiler" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd Protocols && protoc-c --c_out="$out" pharos.proto)
target=Sources/PharosWireC
if [ "${1:-}" = "--check" ]; then
  diff -u "$target/pharos.pb-c.c" "$out/pharos.pb-c.c" && diff -u "$target/include/pharos.pb-c.h" "$out/pharos.pb-c.h" \
    || { echo "Sources/PharosWireC is stale: run Protocols/generate.sh" >&2; exit 1; }
  echo "PharosWireC matches Protocols/pharos.proto"
  exit 0
fi
mkdir -p "$target/include"
cp "$out/pharos.pb-c.c" "$target/pharos.pb-c.c"
cp "$out/pharos.pb-c.h" "$target/include/pharos.pb-c.h"
echo "regenerated $target from Protocols/pharos.proto"
