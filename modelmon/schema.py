"""JSON Schema export of the event contract: one file per event type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _type_of(prop: dict[str, Any] | bool) -> str:
    if isinstance(prop, bool):
        return "any"
    if "anyOf" in prop:
        return " or ".join(_type_of(option) for option in prop["anyOf"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop:
        return f"object of {_type_of(prop['additionalProperties'])}"
    if "enum" in prop:
        return " / ".join(f"`{value}`" for value in prop["enum"])
    fmt = prop.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def schemas_markdown() -> str:
    """The contract as Markdown tables, one per event type (docs/events.md is generated from this)."""
    lines = []
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(mode="validation")
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        lines += [f"### {name}", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
        for field, prop in schema["properties"].items():
            if "$ref" in prop:
                prop = {**defs.get(prop["$ref"].rsplit("/", 1)[-1], {}), **prop}
            default = prop.get("default", "")
            shown_default = f"`{json.dumps(default)}`" if field not in required and default != "" else ""
            description = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| `{field}` | {_type_of(prop)} | {'yes' if field in required else 'no'} | "
                f"{shown_default} | {description} |"
            )
        lines.append("")
    return "\n".join(lines)
