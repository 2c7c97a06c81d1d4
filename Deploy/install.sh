#!/usr/bin/env bash
# Installs Pharos on this host for systemd: the release binaries in /usr/local/bin, the units,
# a `pharos` system user owning /var/lib/pharos, and example settings in /etc/pharos (never
# overwriting ones already there). Run from a checkout, as root:
#   Deploy/install.sh shard s0 10.0.0.11     a shard node named s0 listening on 10.0.0.11:7701
#   Deploy/install.sh coordinator 10.0.0.10  the coordinator on 10.0.0.10:7700 (edit /etc/pharos/cluster.json)
#   Deploy/install.sh binaries /out          only build the three programs into /out/bin (Deploy/Containerfile)
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:?usage: Deploy/install.sh shard NAME HOST | coordinator HOST | binaries PREFIX}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# The build, the same on a host and in the container image: the Debian libraries Pharos links,
# then release binaries with the Swift runtime linked in (they need no Swift installed to run).
build_binaries() {   # build_binaries BINDIR
  local packages=(libopenblas-dev libprotobuf-c-dev liblz4-dev libjpeg62-turbo-dev libpng-dev pkg-config git) missing=()
  for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  for product in pharos-shard pharos-coordinator pharos; do
    swift build -c release --static-swift-stdlib --product "$product"
  done
  install -d "$1"
  install -m 0755 .build/release/pharos-shard .build/release/pharos-coordinator .build/release/pharos "$1/"
}

if [ "$role" = binaries ]; then
  build_binaries "${2:?usage: Deploy/install.sh binaries PREFIX}/bin"
  exit 0
fi
build_binaries /usr/local/bin
id pharos >/dev/null 2>&1 || useradd --system --home /var/lib/pharos --shell /usr/sbin/nologin pharos
install -d -o pharos -g pharos -m 0750 /var/lib/pharos
install -d -m 0755 /etc/pharos
install -m 0644 Deploy/systemd/pharos-shard@.service Deploy/systemd/pharos-coordinator.service /etc/systemd/system/
install -D -m 0644 Deploy/README.md /usr/local/share/doc/pharos/Deploy/README.md
write_once() { [ -e "$1" ] && echo "kept $1" || { printf '%s\n' "$2" > "$1"; echo "wrote $1"; }; }
case "$role" in
  shard)
    name=${2:?shard name}; host=${3:?listen address}
    write_once "/etc/pharos/shard-$name.env" "PHAROS_DATA=/var/lib/pharos/$name
PHAROS_HOST=$host
PHAROS_PORT=7701
PHAROS_SEARCH_THREADS=1
# The admin port (/metrics, /livez, /readyz) has no authentication: loopback, or a private
# address your Prometheus scrapes.
PHAROS_ADMIN_HOST=127.0.0.1
PHAROS_ADMIN_PORT=8701
# Other pharos-shard serve flags, split on spaces (e.g. --log-format json --max-requests 128).
PHAROS_FLAGS=\"\""
    systemctl daemon-reload 2>/dev/null || echo "systemd is not running here: run systemctl daemon-reload once it is" >&2
    echo "start it: systemctl enable --now pharos-shard@$name" ;;
  coordinator)
    host=${2:?listen address}
    write_once /etc/pharos/coordinator.env "PHAROS_HOST=$host
PHAROS_PORT=7700
PHAROS_STATE=/var/lib/pharos/coordinator
PHAROS_DEADLINE_MS=5000
PHAROS_ADMIN_HOST=127.0.0.1
PHAROS_ADMIN_PORT=8700
# Other flags, split on spaces: hosts new shard nodes may live on (pharos cluster add-shard), the write deadline, ...
PHAROS_FLAGS=\"--write-deadline 60000 --allow-node-host 10.0.0.14\""
    [ -e /etc/pharos/cluster.json ] || install -m 0644 Deploy/cluster.example.json /etc/pharos/cluster.json
    systemctl daemon-reload 2>/dev/null || echo "systemd is not running here: run systemctl daemon-reload once it is" >&2
    echo "edit /etc/pharos/cluster.json, then: systemctl enable --now pharos-coordinator" ;;
  *) echo "unknown role $role: shard or coordinator" >&2; exit 2 ;;
esac
