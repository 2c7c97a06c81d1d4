#!/usr/bin/env bash
# Makes throw-away TLS material for tests in DIR (valid 2 days, P-256 keys):
#   ca.pem            a test CA; server.pem/.key (SAN 127.0.0.1, localhost) and client.pem/.key
#                     signed by it
#   other-ca.pem      another CA; stranger.pem/.key, a client certificate it signed (refused)
# Usage: Scripts/make-test-certificates.sh DIR
set -euo pipefail
dir=${1:?usage: make-test-certificates.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=pharos test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
}
leaf() {   # leaf NAME CA USAGE SAN
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=pharos test $1" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$3" "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca
ca other-ca
leaf server ca serverAuth "IP:127.0.0.1,DNS:localhost"
leaf client ca clientAuth "DNS:pharos-client"
leaf stranger other-ca clientAuth "DNS:pharos-stranger"
rm -f ./*.srl
