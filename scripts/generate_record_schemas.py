"""Write schemas/record-*.schema.json: the preference record shapes for LLaMA-Factory's default tags, as
launcher/check/data/record_schema.py builds them (tests/check/test_record_schema.py fails when they drift).

    .venv/bin/python scripts/generate_record_schemas.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from launcher.check.data.record_schema import SHIPPED, shipped_schema  # noqa: E402


def main() -> int:
    for file_name in SHIPPED:
        path = REPO / "schemas" / file_name
        path.write_text(json.dumps(shipped_schema(file_name), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
