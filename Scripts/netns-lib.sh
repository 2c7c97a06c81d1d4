# What the network-namespace scenarios share (Scripts/multihost-test.sh, elastic-test.sh,
# etcd-test.sh), sourced inside their `unshare -n -m`: a private /run/netns, a work folder,
# the processes started (stopped in the end, however the script ends), a bridge with
# "hosts" (network namespaces with one address each), and waiting for a server to listen.
# The sourcing script sets `name` (for messages) before, and calls `netns_bridge CIDR_BASE`.
mount --make-rprivate /
mkdir -p /run/netns && mount -t tmpfs netns /run/netns   # our namespaces stay ours
work=$(mktemp -d)
pids=()
cleanup() {
  set +e   # a process may be gone already: keep cleaning
  touch "$work/stop"
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' TERM INT
export OPENBLAS_NUM_THREADS=1

# The failure, with the last lines of every log of the run.
fail() { echo "$name: $*"; for f in "$work"/*.log; do [ -e "$f" ] || continue; echo "--- $f"; tail -n 25 "$f"; done; exit 1; }

# A bridge br0 at BASE.1/24 (BASE like 10.77.0).
netns_bridge() {
  bridge_base=$1
  ip link set lo up
  ip link add br0 type bridge && ip link set br0 up && ip addr add "$bridge_base.1/24" dev br0
}

# A "host": network namespace NAME with ADDRESS on the bridge.
host() {
  ip netns add "$1"
  ip link add "v-$1" type veth peer name eth0 netns "$1"
  ip link set "v-$1" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
}

# Waits (10 s at most) until the server logging to FILE says it is listening.
wait_listening() {
  for _ in $(seq 1 100); do grep -q "listening on" "$1" && return 0; sleep 0.1; done
  fail "a server did not start: $1"
}
