#!/usr/bin/env bash
# Everything deploy/compose.yaml mounts or reads that is not in the repository, written once
# before the first `docker compose up` (docs/operations.md, Deploy). Idempotent: existing
# files are kept, so run it again after editing the fleet to refresh the broker users.
#   deploy/prepare.sh HOST [HOST...]     HOST: names/addresses devices use for the broker
# Needs the `coldchain` command (uv sync; or set COLDCHAIN="uv run coldchain") and openssl.
set -euo pipefail
cd "$(dirname "$0")"
[ $# -ge 1 ] || { echo "usage: deploy/prepare.sh HOST [HOST...]" >&2; exit 2; }
COLDCHAIN=${COLDCHAIN:-coldchain}
umask 077

# 1. The fleet file ingest and the API read (./fleet.yaml). Start from the demo's; replace it
#    with your own fleet before the first start.
if [ ! -f fleet.yaml ]; then
    cp ../fleet/demo.yaml fleet.yaml && chmod 644 fleet.yaml
    echo "prepare: wrote deploy/fleet.yaml from fleet/demo.yaml: put your fleet there" >&2
fi

# 2. Broker users and ACL from the fleet; missing secrets are generated into secrets.yaml.
$COLDCHAIN broker users --fleet fleet.yaml --passwd mosquitto/passwd --acl mosquitto/acl \
    --secrets mosquitto/secrets.yaml --ingest-user coldchain-ingest-1
chmod 644 mosquitto/acl

# 3. TLS for the devices' listener.
[ -f mosquitto/certs/server.crt ] || bash mosquitto/make-certs.sh mosquitto/certs "$@"
# The image's mosquitto user (uid 1883) reads the password file and the server key.
chown -R 1883:1883 mosquitto/passwd mosquitto/certs 2>/dev/null \
    || echo "prepare: run as root, or chown 1883:1883 mosquitto/passwd mosquitto/certs/*" >&2

# 4. .env: the secrets compose passes to ingest and the API.
if [ ! -f .env ]; then
    ingest=$(sed -n "s/^coldchain-ingest-1: *//p" mosquitto/secrets.yaml | tr -d "'\"")
    key=$(openssl rand -hex 24)
    printf "COLDCHAIN_MQTT_PASSWORD=%s\nCOLDCHAIN_API_KEYS='{\"%s\": \"admin\"}'\n" "$ingest" "$key" > .env
    echo "prepare: wrote deploy/.env (mode 0600); the API admin key is $key (shown once)" >&2
fi
mkdir -p backup
