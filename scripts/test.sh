#!/usr/bin/env bash
# The whole test suite: lint, types, then unit, integration and e2e tests against real
# mosquitto, influxd and PostgreSQL started by the test harness.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
# The slowest tests are listed at the end, to keep the suite within its 20-minute budget.
exec uv run --frozen pytest -q -p no:cacheprovider --durations=20 "$@"
