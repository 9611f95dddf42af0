#!/usr/bin/env bash
# The main job: services up, a simulated fleet, ingest, and a summary read back from InfluxDB.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec uv run --frozen coldchain demo "$@"
