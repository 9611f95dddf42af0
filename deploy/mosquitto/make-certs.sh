#!/usr/bin/env bash
# A private CA and a server certificate for the broker's TLS listener (openssl CLI).
#   deploy/mosquitto/make-certs.sh OUT_DIR HOST [HOST...]
# HOST: each name or IP address devices connect to (the certificate's subjectAltName).
# Writes OUT_DIR/ca.crt (give it to devices), ca.key (keep offline), server.crt, server.key.
# An existing CA in OUT_DIR is reused, so renewing the server certificate keeps devices' trust.
# With a public or company CA, put its server.crt/server.key/ca.crt there instead.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR HOST [HOST...]}; shift
[ $# -ge 1 ] || { echo "make-certs.sh: give at least one HOST" >&2; exit 2; }
days=${CERT_DAYS:-825}
mkdir -p "$out"
umask 077
san=""
for h in "$@"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san=${san%,}
if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
        -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/CN=coldchain broker CA" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$out/server.key" -out "$out/server.csr" \
    -subj "/CN=$1" 2>/dev/null
openssl x509 -req -sha256 -days "$days" -in "$out/server.csr" -CA "$out/ca.crt" \
    -CAkey "$out/ca.key" -CAcreateserial -out "$out/server.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") 2>/dev/null
rm -f "$out/server.csr"
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "$out: ca.crt server.crt server.key for $*"
