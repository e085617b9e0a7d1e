"""JSON Schema export of the event contract: one file per event type."""

from __future__ import annotations

import json
from pathlib import Path

from modelmon.events import EVENT_TYPES


def export_schemas(directory: Path | str) -> list[Path]:
    """Write ``<EventName>.json`` (JSON Schema draft 2020-12) for every event type; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.json", **schema}
        path = out / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=False) + "\n")
        written.append(path)
    return written
