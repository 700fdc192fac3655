"""JSON Schemas (draft 2020-12) of every MQTT payload the gateway sends or receives.

One file per payload kind, named like :func:`edge.topics.kind_of` names the
topics: ``<kind>.schema.json``. They ship with the package so the central side
and the tests validate against the same text. Loading needs only the standard
library; validating needs ``jsonschema`` (a test dependency, not a runtime one).

>>> sorted(NAMES)[:3]
['alarm', 'alarm_state', 'command']
>>> load("status")["required"]
['v', 'gateway', 'state', 'version', 'boot', 'ts']
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

NAMES = frozenset({"status", "telemetry", "alarm", "alarm_state", "event", "health", "command", "command_reply"})


@cache
def _text(name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(sorted(NAMES))}")
    return resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def load(name: str) -> dict[str, Any]:
    """The schema ``name`` as a fresh dict (callers may modify it)."""
    return json.loads(_text(name))
