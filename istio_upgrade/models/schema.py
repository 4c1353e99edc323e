"""Publish the JSON schema of ``UpgradeSpec`` (the Start Workflow form's input).

Run ``python -m istio_upgrade.models.schema`` to rewrite ``docs/examples/upgrade-spec.schema.json``;
a unit test fails when the published file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from istio_upgrade.models.spec import UpgradeSpec

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "examples" / "upgrade-spec.schema.json"


def upgrade_spec_schema() -> dict[str, Any]:
    """The JSON schema of ``UpgradeSpec`` with a title and an ``$id``-free, stable layout."""
    schema = UpgradeSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "UpgradeSpec"
    return schema


def render() -> str:
    """The schema file's exact text."""
    return json.dumps(upgrade_spec_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema to the path given, or to ``docs/examples/upgrade-spec.schema.json``."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else SCHEMA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
