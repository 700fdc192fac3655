"""An MQTT subscriber that feeds a :class:`~edge.audit.ledger.Ledger`: the audit as a library.

paho's network thread only enqueues what arrives; a thread of the auditor's own parses it
into the ledger, so a slow report never holds up the broker connection. QoS 1 on the
subscription: the broker delivers each record at least once, which the ledger's duplicate
count sees.

``persistent=True`` asks for a persistent session (MQTT 3.1.1 ``clean_session`` false) under a
fixed ``client_id``: while the auditor is away the broker keeps its subscription and queues
every QoS 1 message for it, so an audit that reconnects — or is run again with the same id —
misses nothing (up to the broker's queue limits, ``max_queued_messages`` in mosquitto). Without
it a reconnect may lose what was published meanwhile, and the ledger shows that as gaps.

>>> from edge.simulate.broker import LocalBroker
>>> with LocalBroker(kind="mosquitto") as broker, Auditor(broker.host, broker.port) as auditor:
...     publish_one(broker.host, broker.port, "linli/shimen2/b07/gw-9/telemetry",
...                 b'{"v":1,"gateway":"gw-9","boot":"b","records":[{"seq":1},{"seq":3}]}')
...     row = auditor.wait_for(lambda report: report["gateways"], 10)["gateways"][0]
>>> row["gateway"], row["records"], row["unexplained_gaps"]
('gw-9', 2, [[2, 2]])
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as mqtt

from edge.audit.ledger import Ledger
from edge.errors import LinliError
from edge.exits import EX_NOINPUT, EX_UNAVAILABLE
from edge.i18n import _

log = logging.getLogger(__name__)


class BrokerUnreachable(LinliError):
    """No connection to the broker, or it refused ours (exit 69)."""

    exit_code = EX_UNAVAILABLE


class TlsFilesUnusable(LinliError):
    """A CA, certificate or key file that cannot be read or used (exit 66)."""

    exit_code = EX_NOINPUT


@dataclass(frozen=True)
class Tls:
    """Files for a TLS connection: the CA that signed the broker's certificate, and ours if the broker asks."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class Auditor:
    """Subscribes to ``topic_filter`` at ``host:port`` and keeps :attr:`ledger` up to date.

    Use it as a context manager (or :meth:`start` / :meth:`close`). :meth:`start` returns once
    the broker acknowledged the subscription and raises :class:`BrokerUnreachable` when it cannot
    within ``timeout``. After a lost connection paho reconnects by itself, waiting
    ``reconnect_min`` doubling to ``reconnect_max`` seconds, and the subscription is made again.
    """

    def __init__(self, host: str, port: int, *, topic_filter: str = "linli/#", tls: Tls | None = None,
                 username: str | None = None, password: str | None = None, client_id: str | None = None,
                 persistent: bool = False, ledger: Ledger | None = None, timeout: float = 10.0,
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0):
        if persistent and not client_id:
            raise ValueError("a persistent session needs a fixed client_id")
        self.host, self.port, self.topic_filter, self.timeout = host, port, topic_filter, timeout
        self.ledger = ledger if ledger is not None else Ledger()
        self.connects = 0           # successful connections, the first included
        self.subscriptions = 0      # subscriptions the broker acknowledged, one per connection
        self.received = 0           # messages the ledger has taken
        self._lock = threading.Lock()            # around the ledger: fed by one thread, read by any
        self._fed_changed = threading.Condition(self._lock)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._feeder = threading.Thread(target=self._feed_loop, name="linli-audit-feeder", daemon=True)
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"linli-audit-{id(self):x}-{int(time.time())}",
                                   clean_session=not persistent, protocol=mqtt.MQTTv311)
        self._client.reconnect_delay_set(reconnect_min, reconnect_max)
        if tls is not None:
            try:
                self._client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFilesUnusable(_("cannot use the TLS files: {error}").format(error=exc)) from None
        if username:
            self._client.username_pw_set(username, password)
        # Callbacks run on paho's thread: they only enqueue and signal.
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = lambda _c, _u, m: self._inbox.put(
            (m.topic, m.payload, m.retain, time.time_ns() // 1_000_000))

    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        self.connects += 1
        client.subscribe(self.topic_filter, qos=1)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        log.info("subscribed to %s at %s:%s (%s)", self.topic_filter, self.host, self.port, reason_codes[0])
        self.subscriptions += 1
        self._subscribed.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        log.info("disconnected from %s:%s (%s)", self.host, self.port, reason_code)

    # --- running ------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Connect, subscribe and start feeding the ledger; :class:`BrokerUnreachable` if that fails."""
        where = f"{self.host}:{self.port}"
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise BrokerUnreachable(_("cannot reach the MQTT broker at {where}: {error}").format(
                where=where, error=exc)) from None
        self._client.loop_start()
        self._feeder.start()
        deadline = time.monotonic() + self.timeout
        while not self._subscribed.wait(0.05):
            if self._refused is not None or time.monotonic() >= deadline:
                self.close()
                reason = self._refused or _("no answer within {seconds:g} s").format(seconds=self.timeout)
                raise BrokerUnreachable(_("the MQTT broker at {where} refused the audit: {reason}").format(
                    where=where, reason=reason))

    def close(self) -> None:
        """Disconnect, then let the ledger take every message that had arrived."""
        self._client.disconnect()
        self._client.loop_stop()
        if self._feeder.is_alive():
            self._inbox.put(None)
            self._feeder.join()

    def _feed_loop(self) -> None:
        while (item := self._inbox.get()) is not None:
            with self._fed_changed:
                self.received += 1
                self.ledger.feed(*item)
                self._fed_changed.notify_all()
            log.debug("took %s (%d bytes%s)", item[0], len(item[1]), ", retained" if item[2] else "")

    # --- looking ------------------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The ledger's report of everything taken so far."""
        with self._lock:
            return self.ledger.report()

    def gateways(self) -> int:
        with self._lock:
            return len(self.ledger.gateways())

    def wait_for(self, predicate: Callable[[dict[str, Any]], Any], timeout: float) -> dict[str, Any]:
        """The first report for which ``predicate`` is truthy, checked each time a message is taken.

        Raises :class:`TimeoutError` with the last report when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        with self._fed_changed:
            while True:
                report = self.ledger.report()
                if predicate(report):
                    return report
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no report as wanted within {timeout:g} s; the last: {report}")
                self._fed_changed.wait(min(left, 0.5))


def publish_one(host: str, port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one QoS 1 message and wait for its PUBACK: for examples and tests of the audit."""
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
