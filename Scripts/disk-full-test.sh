#!/usr/bin/env bash
# Fills a real (tiny) file system under a shard: in a private mount namespace, mounts a 4 MiB
# tmpfs, lets `pharos-crash-test --disk-full` write until the disk is full, and checks
# that the failed write names the full disk and that everything acknowledged is intact,
# verifiable and searchable. Needs root (mount); the namespace vanishes with the command.
set -euo pipefail
binary=${1:-.build/debug/pharos-crash-test}
binary=$(readlink -f "$binary")
export OPENBLAS_NUM_THREADS=1
exec unshare -m bash -c '
  set -euo pipefail
  mount --make-rprivate /
  work=$(mktemp -d)
  mount -t tmpfs -o size=4m tmpfs "$work"
  trap "umount $work; rmdir $work" EXIT
  "$0" --disk-full --data "$work/shard" --batch-size 100
' "$binary"
