"""The fleet benchmark's central subscriber: every seq per gateway, latencies, and when gateways came online.

A real paho client with a persistent session (clean session off, fixed client id,
QoS 1) on ``linli/#``: across a broker restart the broker keeps what it queued for
it, as a central platform's consumer would have it. Its callback only parses and
records; the benchmark reads the figures under the lock.

Gaps are judged as docs/design.md's delivery promise states: a seq missing from a
gateway's contiguous range is explained only by a ``dropped`` record covering it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt


@dataclass
class GatewayLedger:
    seqs: list[int] = field(default_factory=list)           # in arrival order, duplicates included
    seen: set[int] = field(default_factory=set)
    explained: set[int] = field(default_factory=set)
    online_ts: list[int] = field(default_factory=list)      # the ts of each ``online`` status (set when sent)
    contiguous: int = 0                                      # every seq up to this one arrived or is explained

    def advance(self) -> None:
        while self.contiguous + 1 in self.seen or self.contiguous + 1 in self.explained:
            self.contiguous += 1


def percentile(values: list[int], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Watcher:
    """Subscribes to ``<prefix>/#`` on ``host:port`` and keeps a :class:`GatewayLedger` per gateway."""

    def __init__(self, host: str, port: int, prefix: str = "linli"):
        self.ledgers: dict[str, GatewayLedger] = defaultdict(GatewayLedger)
        self.latencies_ms: list[int] = []      # arrival − reading ts, for readings since reset_latencies()
        self.messages = 0
        self.records = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="linli-fleet-bench-watch", clean_session=False)
        self.client.max_inflight_messages_set(100)
        # Back as soon as the broker is: the figures measure the gateways' reconnects, not ours.
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the fleet subscriber got no SUBACK within 10 s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, message) -> None:
        arrived = time.time_ns() // 1_000_000
        kind = message.topic.rsplit("/", 1)[-1]
        if kind not in ("telemetry", "status"):
            return
        body = json.loads(message.payload)
        with self.lock:
            self.messages += 1
            ledger = self.ledgers[body["gateway"]]
            if kind == "status":
                if body["state"] == "online":
                    ledger.online_ts.append(body["ts"])
                return
            for record in body["records"]:
                ledger.seqs.append(record["seq"])
                ledger.seen.add(record["seq"])
                if record.get("kind") == "dropped":
                    ledger.explained.update(range(record["seq_from"], record["seq_to"] + 1))
                elif "ts" in record:
                    self.latencies_ms.append(arrived - record["ts"])
            self.records += len(body["records"])
            ledger.advance()

    # --- figures ---------------------------------------------------------------------------------------
    def reset_latencies(self) -> None:
        with self.lock:
            self.latencies_ms = []

    def latency(self) -> tuple[float | None, float | None, int]:
        with self.lock:
            values = list(self.latencies_ms)
        return percentile(values, 0.50), percentile(values, 0.99), len(values)

    def online_since(self, since_ms: int) -> list[int]:
        """The send times of the first ``online`` status of each gateway at or after ``since_ms``."""
        with self.lock:
            firsts = [min((ts for ts in ledger.online_ts if ts >= since_ms), default=None)
                      for ledger in self.ledgers.values()]
        return sorted(ts for ts in firsts if ts is not None)

    def behind(self, tops: dict[str, int]) -> int:
        """How many gateways have a seq up to their ``tops`` entry that neither arrived nor is explained yet."""
        with self.lock:
            return sum(self.ledgers[gw].contiguous < top for gw, top in tops.items())

    def audit(self, tops: dict[str, int]) -> dict[str, int]:
        """Unexplained gaps and duplicates per the delivery promise, up to each gateway's stored top seq."""
        gaps = duplicates = records = gateways_with_gaps = 0
        with self.lock:
            for gw, top in tops.items():
                ledger = self.ledgers.get(gw, GatewayLedger())
                seen = ledger.seen
                records += len(seen)
                duplicates += len(ledger.seqs) - len(seen)
                missing = set(range(1, top + 1)) - seen - ledger.explained
                gaps += len(missing)
                gateways_with_gaps += bool(missing)
        return {"records": records, "unexplained_gaps": gaps, "gateways_with_gaps": gateways_with_gaps,
                "duplicates": duplicates}
