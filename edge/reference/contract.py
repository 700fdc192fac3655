"""The MQTT contract as Markdown tables: topics from :data:`edge.topics.CATALOGUE`, fields from ``edge/schemas``.

The central side builds on these tables, so they are made from the very data the
gateway and the tests use: the topic catalogue, and the JSON Schemas every
published message is validated against in the tests.

>>> print(payload_table({"properties": {"v": {"const": 1, "description": "version"}}, "required": ["v"]}))
| field | type | required | meaning |
|---|---|---|---|
| `v` | `1` | yes | version |
"""

from __future__ import annotations

import json
from typing import Any

from edge import schemas, topics
from edge.reference.markdown import cell, table


class UndocumentedField(ValueError):
    """A schema property without ``description``: the reference would have a row that says nothing."""


def topics_table() -> str:
    """Every topic the gateway uses, with QoS, retain flag and payload schema."""
    rows = []
    for use in topics.CATALOGUE:
        retained = "—" if use.retained is None else ("yes" if use.retained else "no")
        rows.append((f"`{use.pattern}`", use.direction, str(use.qos), retained, f"`{use.kind}`", cell(use.use)))
    return table(("topic under the base", "gateway", "QoS", "retained", "payload", "use"), rows)


def _resolve(prop: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``prop`` with a local ``$ref`` (``#/$defs/seq``) replaced by what it points to, keeping its own keys."""
    ref = prop.get("$ref")
    if not ref:
        return prop
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}


def type_text(prop: dict[str, Any]) -> str:
    """A property's JSON type as a person reads it.

    >>> type_text({"type": ["integer", "null"], "minimum": 0}), type_text({"enum": ["good", "bad"]})
    ('integer ≥ 0 or null', '`"good"`, `"bad"`')
    """
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return ", ".join(f"`{json.dumps(value)}`" for value in prop["enum"])
    kinds = prop.get("type")
    if kinds is None:
        return "any"
    names = []
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind in ("integer", "number") and "minimum" in prop:
            kind = f"{kind} ≥ {prop['minimum']}"
        names.append(kind)
    return " or ".join(names)


def payload_table(schema: dict[str, Any], root: dict[str, Any] | None = None) -> str:
    """The fields of an object schema: name, type, whether required, meaning (its ``description``)."""
    root = schema if root is None else root
    required = set(schema.get("required", ()))
    rows = []
    for name, raw in schema["properties"].items():
        prop = _resolve(raw, root)
        if not prop.get("description", "").strip():
            raise UndocumentedField(f"schema {root.get('title')!r}: field {name!r} has no description")
        rows.append((f"`{name}`", type_text(prop), "yes" if name in required else "", cell(prop["description"])))
    return table(("field", "type", "required", "meaning"), rows)


def _schema_block(name: str, definition: str | None = None):
    def render() -> str:
        schema = schemas.load(name)
        part = schema["$defs"][definition] if definition else schema
        return payload_table(part, schema)
    return render


def contract_blocks() -> dict[str, Any]:
    """Generated blocks of docs/design.md, by marker name."""
    blocks: dict[str, Any] = {"mqtt/topics": topics_table}
    for name in sorted(schemas.NAMES):
        blocks[f"payload/{name}"] = _schema_block(name)
    blocks["payload/telemetry/reading"] = _schema_block("telemetry", "reading")
    blocks["payload/telemetry/dropped"] = _schema_block("telemetry", "dropped")
    return blocks
