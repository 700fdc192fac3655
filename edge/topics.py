"""MQTT topic names under a gateway's base topic (docs/design.md, Topics and payloads).

Pure functions: they build and recognise topic strings and refuse parts that
would change a topic's meaning — a ``/`` adds a level, ``+`` and ``#`` are
wildcards that a broker rejects in a PUBLISH topic (and that would let one
sensor name match another's subscription).

>>> base = base_topic("linli", "shimen2/xinfukangli/b07", "gw-0042")
>>> base
'linli/shimen2/xinfukangli/b07/gw-0042'
>>> alarm_state(base, "pump-pressure/low")
'linli/shimen2/xinfukangli/b07/gw-0042/alarm/pump-pressure/low'
>>> command_reply(base, "read-now")
'linli/shimen2/xinfukangli/b07/gw-0042/cmd/read-now/reply'
>>> kind_of(base, base + "/alarm/pump-pressure/low")
'alarm_state'
"""

from __future__ import annotations

from dataclasses import dataclass

#: Characters that may not appear inside one topic level we build.
_FORBIDDEN_IN_PART = ("/", "+", "#", "\0")


class TopicError(ValueError):
    """A topic or topic part that would not name exactly one topic level."""


def _check_part(what: str, part: str) -> str:
    if not isinstance(part, str) or not part:
        raise TopicError(f"{what} must be a non-empty string, got {part!r}")
    bad = [c for c in _FORBIDDEN_IN_PART if c in part]
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise TopicError(f"{what} {part!r} contains {shown}, which MQTT topic levels cannot carry")
    return part


def _check_path(what: str, path: str) -> str:
    if not isinstance(path, str) or not path:
        raise TopicError(f"{what} must be a non-empty string, got {path!r}")
    for level in path.split("/"):
        if not level:
            raise TopicError(f"{what} {path!r} has an empty level (leading, trailing or double '/')")
        _check_part(f"{what} level", level)
    return path


def base_topic(prefix: str, grid: str, gateway: str) -> str:
    """``<prefix>/<grid path>/<gateway id>``; the grid path may have several levels."""
    return "/".join((_check_path("topic prefix", prefix), _check_path("grid path", grid),
                     _check_part("gateway id", gateway)))


def status(base: str) -> str:
    """Retained ``online``/``offline`` birth and Last Will."""
    return f"{base}/status"


def telemetry(base: str) -> str:
    """Batches of readings (and ``dropped`` records)."""
    return f"{base}/telemetry"


def alarm(base: str) -> str:
    """One message per alarm transition."""
    return f"{base}/alarm"


def split_alarm(alarm_id: str) -> tuple[str, str]:
    """``"<sensor>/<rule>"`` → ``(sensor, rule)``; anything else is a :class:`TopicError`.

    >>> split_alarm("bed-3/out-of-bed")
    ('bed-3', 'out-of-bed')
    """
    if not isinstance(alarm_id, str) or alarm_id.count("/") != 1:
        raise TopicError(f"alarm id {alarm_id!r} is not of the form '<sensor>/<rule>'")
    sensor, rule = alarm_id.split("/")
    return _check_part("alarm sensor", sensor), _check_part("alarm rule", rule)


def alarm_state(base: str, alarm_id: str) -> str:
    """Retained current state of one alarm: ``alarm/<sensor>/<rule>``."""
    sensor, rule = split_alarm(alarm_id)
    return f"{base}/alarm/{sensor}/{rule}"


def event(base: str) -> str:
    """One change made by a command (the audit trail, :mod:`edge.events`)."""
    return f"{base}/event"


def health(base: str) -> str:
    """Periodic QoS 0 health facts."""
    return f"{base}/health"


def command(base: str, name: str) -> str:
    """A command request for this gateway."""
    return f"{base}/cmd/{_check_part('command name', name)}"


def command_filter(base: str) -> str:
    """The subscription that receives every command for this gateway."""
    return f"{base}/cmd/+"


def command_reply(base: str, name: str) -> str:
    """Where the result of command ``name`` is published."""
    return f"{command(base, name)}/reply"


def kind_of(base: str, topic: str) -> str | None:
    """Which payload schema a topic under ``base`` carries, or ``None`` if it is not one of ours.

    The names match the schema files in ``edge/schemas/``: ``status``,
    ``telemetry``, ``alarm``, ``alarm_state``, ``event``, ``health``, ``command``,
    ``command_reply``.

    >>> kind_of("linli/g/gw-1", "linli/g/gw-1/cmd/diag/reply")
    'command_reply'
    >>> kind_of("linli/g/gw-1", "linli/g/gw-2/status") is None
    True
    """
    if not topic.startswith(base + "/"):
        return None
    levels = topic[len(base) + 1:].split("/")
    if len(levels) == 1 and levels[0] in ("status", "telemetry", "alarm", "event", "health"):
        return levels[0]
    if len(levels) == 3 and levels[0] == "alarm" and all(levels[1:]):
        return "alarm_state"
    if len(levels) == 2 and levels[0] == "cmd" and levels[1]:
        return "command"
    if len(levels) == 3 and levels[0] == "cmd" and levels[1] and levels[2] == "reply":
        return "command_reply"
    return None


@dataclass(frozen=True)
class TopicUse:
    """How the gateway uses one topic under its base topic: part of the contract with the central side."""

    kind: str               # the payload's schema (edge/schemas/<kind>.schema.json), as kind_of() names it
    pattern: str            # the topic under the base; <…> is one variable level
    direction: str          # "publishes" or "subscribes", what the gateway does
    qos: int
    retained: bool | None   # None for a subscription: whether the sender retains is not the gateway's choice
    use: str                # when it is sent, and what for


#: Every topic the gateway publishes or subscribes to. docs/design.md shows this table, and
#: tests/test_design_doc.py checks it against what a running uplink really sends.
CATALOGUE: tuple[TopicUse, ...] = (
    TopicUse("status", "status", "publishes", 1, True,
             "online once connected; offline at a clean stop, and as the Last Will the broker publishes when "
             "the connection is lost"),
    TopicUse("telemetry", "telemetry", "publishes", 1, False,
             "batches of readings and dropped records, in seq order within a priority"),
    TopicUse("alarm", "alarm", "publishes", 1, False, "one alarm transition, ahead of waiting telemetry"),
    TopicUse("alarm_state", "alarm/<sensor>/<rule>", "publishes", 1, True,
             "the same payload as the latest transition of that alarm, kept by the broker for late subscribers"),
    TopicUse("event", "event", "publishes", 1, False,
             "one change made by a command (config_set, away, alarm_ack, alarm_test, cert_csr, cert_install), "
             "over MQTT or locally: the audit trail, in seq order with telemetry"),
    TopicUse("health", "health", "publishes", 0, False,
             "gateway facts every mqtt.health_interval while connected; never stored in the outbox"),
    TopicUse("command", "cmd/<name>", "subscribes", 1, None, "a request from the central side"),
    TopicUse("command_reply", "cmd/<name>/reply", "publishes", 1, False,
             "the answer to one request, matched by its id; never stored in the outbox"),
)
