"""Write docs/telemetry.schema.json from the contract models (run after changing them).

uv run python scripts/gen_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coldchain.contract import telemetry_json_schema  # noqa: E402

SCHEMA_PATH = ROOT / "docs" / "telemetry.schema.json"


def render() -> str:
    return json.dumps(telemetry_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
