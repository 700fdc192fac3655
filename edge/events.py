"""The audit trail: every command that changes something becomes an ``event`` record.

A ``config_set``, ``away``, ``alarm_ack`` or ``alarm_test`` request, over MQTT (``"via":
"mqtt"``) or the control socket (``"via": "local"``), is logged with its request id and
handed to the core as ``{"kind": "event", "event", "request_id", "via", "outcome",
"detail", "ts"}``. The core, the outbox's only writer, stores it like any record: it gets
its seq in the gateway's sequence and leaves on ``<base>/event``, so the central side
sees who changed what and how it ended, even for changes made while it was offline.

``outcome`` is ``applied``, ``refused`` (nothing changed), ``rolled_back`` (a
``config_set`` applied, judged unhealthy and undone) or ``failed`` (a fault of the
agent's, logged with its traceback). ``detail`` is the reply's error, or its result as
compact JSON, cut to :data:`MAX_DETAIL` characters.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

log = logging.getLogger("linli.events")

#: The commands that change something; the others only read.
CHANGING = frozenset({"config_set", "away", "alarm_ack", "alarm_test", "cert_csr", "cert_install", "update"})
#: Longest ``detail`` kept: an invalid config's list of problems can be long, the record must stay small.
MAX_DETAIL = 2000


def event_record(name: str, request_id: str, via: str, outcome: str, reply: dict[str, Any],
                 ts: int) -> dict[str, Any]:
    """The ``event`` record of one settled request.

    >>> event_record("away", "r1", "mqtt", "applied", {"ok": True, "result": {"away": False}}, 5)["detail"]
    '{"away":false}'
    """
    if reply.get("ok"):
        detail = json.dumps(reply.get("result"), separators=(",", ":"), ensure_ascii=False, default=str)
    else:
        detail = str(reply.get("error"))
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL - 3] + "..."
    return {"kind": "event", "event": name, "request_id": request_id, "via": via, "outcome": outcome,
            "detail": detail, "ts": ts}


class Audit:
    """``Commands``' audit hook for one way in (``via``): log the change, hand its record to the core.

    ``core()`` is the agent's core of the moment (a reload replaces it).
    """

    def __init__(self, via: str, core: Callable[[], Any], now_ms: Callable[[], int]):
        self.via = via
        self._core = core
        self._now_ms = now_ms

    def __call__(self, name: str, request_id: str, outcome: str, reply: dict[str, Any]) -> None:
        if name not in CHANGING:
            return
        record = event_record(name, request_id, self.via, outcome, reply, self._now_ms())
        log.info("%s %s via %s: %s — %s", name, request_id, self.via, outcome, record["detail"])
        core = self._core()
        if core is None or not core.submit_event(record):
            log.error("the event of %s %s could not reach the outbox; it is in this log only", name, request_id)
