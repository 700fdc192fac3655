"""What a central subscriber has received, per gateway, checked against the delivery promise.

:class:`Ledger` is pure: it is fed what arrived (topic, payload bytes, whether the broker
retained it, when it came) and says, per gateway, which records arrived, which seqs are
missing without a record explaining them, which came twice, and the gateway's last status,
health and raised alarms (docs/audit.md). It does no I/O, so a test, a file of captured
messages or :class:`edge.audit.listener.Auditor` can feed it alike.

A gateway is known by its base topic, ``<prefix>/<grid path>/<gateway id>``: the levels of a
topic up to the first topic word (``status``, ``telemetry``…), which no grid level or gateway
id may be (docs/design.md, Topics and payloads). Two gateways with the same id in different
grids are two gateways.

>>> ledger = Ledger()
>>> topic = "linli/shimen2/b07/gw-1/telemetry"
>>> def batch(*records):
...     return json.dumps({"v": 1, "gateway": "gw-1", "boot": "b", "records": list(records)}).encode()
>>> ledger.feed(topic, batch({"seq": 1}, {"seq": 2}, {"seq": 5}), False, 1000)
>>> ledger.feed(topic, batch({"seq": 6, "kind": "dropped", "count": 1, "seq_from": 4, "seq_to": 4}), False, 1001)
>>> row = ledger.report()["gateways"][0]
>>> row["gateway"], row["records"], row["seq_first"], row["seq_last"], row["unexplained_gaps"], row["explained"]
('gw-1', 4, 1, 6, [[3, 3]], 1)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edge import topics
from edge.audit.ranges import SeqRanges
from edge.config import RESERVED_LEVELS

#: Alarms whose transition explains the jump in seq just below it: a fresh outbox after a damaged one,
#: or records numbered from the clock while no outbox file could be opened (docs/design.md, The delivery promise).
JUMP_ALARMS = ("gateway/outbox-corrupt", "gateway/outbox-unavailable")
#: Kinds whose payloads are records of the gateway's one sequence.
RECORD_KINDS = ("telemetry", "alarm", "event")


def base_of(topic: str) -> str | None:
    """The base topic of a gateway's topic: the levels before the first topic word; None if there is none.

    >>> base_of("linli/shimen2/xinfukangli/b07/gw-0042/alarm/pump-pressure/low")
    'linli/shimen2/xinfukangli/b07/gw-0042'
    >>> base_of("linli/status") is None      # a prefix alone names no gateway
    True
    """
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if level in RESERVED_LEVELS:
            # At least a prefix, a grid level and a gateway id come before the topic word.
            return "/".join(levels[:i]) if i >= 3 else None
    return None


@dataclass
class _Gateway:
    """What arrived from one gateway so far."""

    base: str
    seqs: SeqRanges = field(default_factory=SeqRanges)
    explained: SeqRanges = field(default_factory=SeqRanges)       # covered by dropped records
    jump_alarm_seqs: set[int] = field(default_factory=set)        # seqs of outbox-corrupt/unavailable alarms
    duplicates: int = 0
    status: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    alarms: dict[str, tuple[int, str]] = field(default_factory=dict)   # alarm id -> (seq, state) of the latest
    invalid: int = 0


class Ledger:
    """Per-gateway accounts of the records received; :meth:`feed` what arrives, :meth:`report` at any time.

    ``from_start``: count gaps from seq 1, for a subscriber that has been there since the
    gateways' first record (or whose persistent session kept everything since). Without it,
    gaps are counted from the lowest seq seen of each gateway: a subscriber that joins late
    cannot know what came before it.
    """

    def __init__(self, *, from_start: bool = False) -> None:
        self.from_start = from_start
        self._gateways: dict[str, _Gateway] = {}
        self.messages = 0
        self.ignored = 0       # topics that name no gateway, command requests, command replies

    def feed(self, topic: str, payload: bytes, retained: bool, received_ms: int) -> None:
        """Account for one message. Never raises for what a broker may carry; odd payloads are counted."""
        self.messages += 1
        base = base_of(topic)
        kind = topics.kind_of(base, topic) if base is not None else None
        if kind is None or kind in ("command", "command_reply"):
            self.ignored += 1         # requests and replies carry no seq; the promise is about records
            return
        gateway = self._gateways.get(base)
        if gateway is None:
            gateway = self._gateways[base] = _Gateway(base)
        if kind == "alarm_state" and not payload:
            return                    # an empty retained message deletes a retained state: nothing to account
        try:
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            self._take(gateway, kind, body, retained, received_ms)
        except (ValueError, TypeError, KeyError):
            gateway.invalid += 1

    def _take(self, gateway: _Gateway, kind: str, body: dict[str, Any], retained: bool, received_ms: int) -> None:
        if kind == "status":
            gateway.status = {"state": str(body["state"]), "since_ms": _int(body.get("ts", received_ms)),
                              "received_ms": received_ms, "retained": retained}
        elif kind == "health":
            outbox = body.get("outbox") or {}
            gateway.health = {"outbox_depth": outbox.get("depth"), "clock_synced": body.get("clock_synced"),
                              "ts": body.get("ts"), "received_ms": received_ms}
        elif kind == "alarm_state":
            # Retained state, not a record: it says where the alarm stands, and its seq was (or will be)
            # accounted for when its transition arrived on alarm.
            self._alarm(gateway, body)
        elif kind == "telemetry":
            for record in body["records"]:
                self._record(gateway, record)
                if record.get("kind") == "dropped":
                    gateway.explained.add(_seq(record["seq_from"]), _seq(record["seq_to"]))
        else:  # alarm transition or event: one record each
            self._record(gateway, body)
            if kind == "alarm":
                self._alarm(gateway, body)
                if body["alarm"] in JUMP_ALARMS and body["state"] == "raised":
                    gateway.jump_alarm_seqs.add(_seq(body["seq"]))

    @staticmethod
    def _record(gateway: _Gateway, record: dict[str, Any]) -> None:
        seq = _seq(record["seq"])
        if not gateway.seqs.add(seq, seq):
            gateway.duplicates += 1

    @staticmethod
    def _alarm(gateway: _Gateway, body: dict[str, Any]) -> None:
        alarm_id, seq, state = str(body["alarm"]), _seq(body["seq"]), str(body["state"])
        known = gateway.alarms.get(alarm_id)
        if known is None or seq >= known[0]:      # transitions may arrive out of seq order
            gateway.alarms[alarm_id] = (seq, state)

    def seq_ranges(self, base: str) -> list[tuple[int, int]]:
        """The seqs received from the gateway at ``base``, as merged ``(first, last)`` ranges."""
        gateway = self._gateways.get(base)
        return gateway.seqs.ranges() if gateway is not None else []

    def gateways(self) -> list[str]:
        """The base topics of the gateways heard from, in order."""
        return sorted(self._gateways)

    def report(self) -> dict[str, Any]:
        """``{"gateways": [...], "unexplained": N, "messages": N, "ignored": N}``; see docs/audit.md for each row."""
        rows = [self._row(self._gateways[base]) for base in sorted(self._gateways)]
        return {"from_start": self.from_start, "messages": self.messages, "ignored": self.ignored,
                "unexplained": sum(row["unexplained"] for row in rows), "gateways": rows}

    def _row(self, gateway: _Gateway) -> dict[str, Any]:
        unexplained, explained = self._gaps(gateway)
        raised = sorted(alarm_id for alarm_id, (_seq_, state) in gateway.alarms.items() if state != "cleared")
        return {
            "base": gateway.base,
            "gateway": gateway.base.rsplit("/", 1)[1],
            "records": len(gateway.seqs),
            "seq_first": gateway.seqs.lowest(),
            "seq_last": gateway.seqs.highest(),
            "unexplained_gaps": [[lo, hi] for lo, hi in unexplained],
            "unexplained": sum(hi - lo + 1 for lo, hi in unexplained),
            "explained": explained,
            "duplicates": gateway.duplicates,
            "status": gateway.status,
            "health": gateway.health,
            "alarms_raised": raised,
            "invalid": gateway.invalid,
        }

    def _gaps(self, gateway: _Gateway) -> tuple[list[tuple[int, int]], int]:
        """The missing ranges no record explains, and how many missing seqs one does."""
        highest = gateway.seqs.highest()
        if highest is None:
            return [], 0
        first = 1 if self.from_start else gateway.seqs.lowest()
        unexplained: list[tuple[int, int]] = []
        explained = 0
        for lo, hi in gateway.seqs.missing(first, highest):
            left = gateway.explained.missing(lo, hi)
            explained += (hi - lo + 1) - sum(b - a + 1 for a, b in left)
            unexplained += left
        # A jump alarm explains the nearest gap below its own seq: the numbers the fresh start skipped.
        for alarm_seq in sorted(gateway.jump_alarm_seqs):
            below = [gap for gap in unexplained if gap[1] < alarm_seq]
            if below:
                gap = below[-1]
                unexplained.remove(gap)
                explained += gap[1] - gap[0] + 1
        return unexplained, explained


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"seq {value!r} is not an integer >= 1")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
