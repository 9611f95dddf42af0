#!/usr/bin/env bash
# The whole test suite: lint, types, then unit, integration and e2e tests against real
# mosquitto and influxd started by the test harness.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
exec uv run --frozen pytest -q -p no:cacheprovider "$@"
