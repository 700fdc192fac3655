"""The uplink: drains the outbox to the central MQTT broker, QoS 1, a row leaves only after its PUBACK.

One thread, owned by :class:`Uplink`, does everything: it drives paho through
its external-loop API (``loop_read``/``loop_write``/``loop_misc`` around our own
``select``), so the outbox's writer can wake it through a socket pair the moment
a record is ready (:meth:`Uplink.wake`) — there is no polling while idle.
paho's callbacks run inside ``loop_read`` and only append to a deque, which the
same thread works through after each turn. Nothing else touches the client.

What paho-mqtt 2.2 does with unacknowledged QoS 1 messages (client.py)
----------------------------------------------------------------------
* ``publish()`` while disconnected does not fail: the message is stored in the
  client's ``_out_messages`` (state "publish") and ``rc`` is ``MQTT_ERR_NO_CONN``;
  it is sent after the next CONNACK. With the default ``max_queued_messages = 0``
  that store is unbounded.
* On ``reconnect()``, ``_messages_reconnect_reset_out`` marks every QoS 1
  message still waiting for PUBACK ``dup = True`` and re-sends all of them after
  CONNACK — whatever ``clean_session`` / ``clean_start`` says (those only matter
  for QoS 2 and for the broker's session). Messages are kept only in memory, in
  that one ``Client`` object.
* ``on_publish`` is called for every PUBACK, including an MQTT 5 PUBACK whose
  reason code is a failure (e.g. 0x87 not authorized): paho forgets the
  message then, it is never retried.
* paho ignores the broker's MQTT 5 Receive Maximum; exceeding it makes the
  broker disconnect us.

Why this design delivers every unacknowledged seq again, with bounded memory
----------------------------------------------------------------------------
The outbox on disk is the only copy that matters; paho's in-memory store is
never relied upon across a connection:

* A fresh ``Client`` is built for every connection attempt and dropped when the
  connection ends, taking whatever paho had queued with it. ``publish`` is only
  called while the current client is connected, so paho's store never holds
  more than our window.
* The window: at most ``inflight`` QoS 1 messages (capped by the broker's
  Receive Maximum) are unacknowledged at any time. The map ``mid → delivery``
  (the seqs a message carries) is therefore bounded too, as is each message
  (``batch_max_records`` / ``batch_max_bytes``).
* Per priority, a cursor remembers the highest seq handed to paho, and
  ``outbox.fetch(after=cursors)`` continues from there, so while connected
  nothing is sent twice. When the connection ends, each cursor is moved back
  to just below the lowest seq still awaiting a PUBACK; the next connection
  fetches those rows again from disk (at least once: the broker may have got
  them before the link broke — the central side drops duplicates by seq).
  A PUBACK with a failure reason moves the cursor back the same way and holds
  sending for a growing pause, so a refusing broker is neither flooded nor
  allowed to lose data.
* Only a PUBACK with a success reason hands seqs to ``on_acked``; an alarm is
  acknowledged when both its ``alarm`` message and its retained state have been.

With MQTT 3.1.1 a broker acknowledges even a message its ACL refuses (mosquitto
does; the protocol has no way to say no), so that data is lost silently; with
MQTT 5 the refusal is visible and the data stays on the gateway. Prefer MQTT 5.
"""

from __future__ import annotations

import logging
import math
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edge import payloads, topics
from edge.config import Config
from edge.commands import Commands
from edge.i18n import _
from edge.uplink_client import (
    CONNECT_TIMEOUT,
    UplinkSetupError,
    connect,
    describe_connect_error,
    describe_early_close,
    describe_loss,
    describe_rc,
    describe_reason,
    describe_refusal,
    make_client,
    maximum_packet_size,
    receive_maximum,
)
from edge.uplink_pack import Delivery, Packer, Unit, single

log = logging.getLogger("linli.uplink")

#: Seconds one turn of the network loop waits at most while connecting or saying goodbye.
LOOP_TIMEOUT = 0.1
#: Window slots readings leave free for an alarm and its retained state, when the window allows.
ALARM_SLOTS = 2
ALARM = 0   # buffer.outbox.Priority.ALARM: the uplink reads the outbox through OutboxReader only
#: Seconds to wait for CONNACK after the TCP/TLS connection is up.
CONNACK_TIMEOUT = 10.0
#: A connection that stayed up this long resets the reconnect backoff.
STABLE_CONNECTION = 10.0
#: Connections in a row lost before any PUBACK after which the loss message suggests refused topics.
UNHEARD_LOSSES = 2
#: Seconds to wait for the PUBACK of the retained ``offline`` status when stopping.
OFFLINE_ACK_WAIT = 2.0
#: Longest single sleep while waiting, so the heartbeat stays fresh for the watchdog.
HEARTBEAT_SLICE = 1.0


class OutboxReader(Protocol):
    """What the uplink needs of ``buffer.outbox.Outbox``: the read side only."""

    def fetch(self, after: dict[int, int], limit: int) -> list[Any]: ...


def _unchanged(body: dict[str, Any]) -> dict[str, Any]:
    return body


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Backoff:
    """Exponential backoff with jitter: each delay is between half and all of ``min × 2ⁿ``, capped at ``max``.

    >>> b = Backoff(1.0, 8.0, rng=random.Random(7).random)
    >>> [round(b.next(), 2) for _ in range(6)]
    [0.66, 1.15, 3.3, 4.29, 6.14, 5.46]
    >>> b.reset(); b.next() <= 1.0
    True
    """

    def __init__(self, minimum: float, maximum: float, rng: Callable[[], float] = random.random):
        self.minimum = max(0.0, minimum)
        self.maximum = max(self.minimum, maximum)
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.minimum * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        # Jitter spreads the reconnects of a whole district after the broker restarts.
        return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        self._attempt = 0


class Uplink(threading.Thread):
    """Sends the outbox to the broker from its own thread; see the module docstring for the guarantees.

    ``config``      the gateway's :class:`~edge.config.Config` (gateway id, ``mqtt`` options, base topic);
    ``outbox``      the outbox; the uplink only calls ``fetch`` (the read side) on it;
    ``on_acked``    called on the uplink thread with the seqs the broker acknowledged; it must only
                    hand them over (to the outbox's writer thread), never block;
    ``health``      returns the facts of the periodic ``health`` message (called on the uplink thread);
                    ``None`` sends no health messages;
    ``version``     the agent's version, in the ``status`` messages;
    ``boot_id``     this boot's id, in ``status`` and telemetry batches;
    ``correct``     fixes a record's ``ts`` once the clock is synced (``Clock.correct``); identity by default.
    ``commands``    answers requests on ``cmd/<name>`` (:class:`edge.commands.Commands`); ``None``
                    subscribes to nothing.

    ``start()`` runs the thread; ``stop(drain_timeout)`` delivers what it can, says ``offline`` and ends it.
    ``heartbeat`` is the ``time.monotonic()`` of the thread's last loop iteration.
    """

    def __init__(self, config: Config, outbox: OutboxReader, on_acked: Callable[[list[int]], None], *,
                 health: Callable[[], dict[str, Any]] | None = None, version: str, boot_id: str,
                 correct: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged,
                 commands: Commands | None = None, start_after: dict[int, int] | None = None):
        super().__init__(name="linli-uplink", daemon=True)
        self.config = config
        self.mqtt = config.mqtt
        self.gateway = config.gateway.id
        self.base = topics.base_topic(self.mqtt.topic_prefix, config.gateway.grid, self.gateway)
        self.client_id = self.mqtt.client_id or f"linli-{self.gateway}"
        self.outbox = outbox
        self.on_acked = on_acked
        self.health = health
        self.version = version
        self.boot_id = boot_id
        self.commands = commands
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None

        self._stopping = threading.Event()
        self._drain_deadline = 0.0
        self._events: deque[tuple[Any, ...]] = deque()
        #: Replies of slow commands (``config_set``), settled on their own threads: published by this one.
        self._late_replies: deque[tuple[str, dict[str, Any]]] = deque()
        self._client: mqtt.Client | None = None
        # Where the uplink before this one on the same outbox stopped (a reload): rows it had delivered stay
        # in the outbox until the next batched delete, and must not be sent again.
        self._cursor: dict[int, int] = dict(start_after or {})
        self._pending: dict[int, Delivery] = {}        # mid → delivery, only for the current client
        self._window = max(1, self.mqtt.inflight)
        self._packer = Packer(self.base, self.gateway, self._make_batcher(None), correct)
        self._backlog = False                          # the last fill left rows in the outbox
        self._hold_until = 0.0                         # after a refusal or a read error: send nothing before
        self._refusals = Backoff(self.mqtt.reconnect_min, self.mqtt.reconnect_max)
        self._next_health = 0.0
        # Written by wake() from any thread, read by this one's select(): "the outbox has something new".
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        # Read by status() from other threads; plain attribute reads are atomic in CPython.
        self._connected = False
        self._since: int | None = None
        self._connections = 0
        self._failed_attempts = 0
        self._sent_messages = 0
        self._acked_records = 0
        self._last_error: str | None = None
        # A broker that closes every connection before acknowledging even the online status is most likely
        # refusing this gateway's topics (RabbitMQ closes on a denied publish; MQTT 3.1.1 cannot say why).
        self._pubacks_this_connection = 0
        self._unheard_losses = 0

    # --- any thread ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """A snapshot for ``linli status`` and the agent: connection, counters, last error."""
        return {
            "connected": self._connected,
            "since": self._since,
            "broker": f"{self.mqtt.host}:{self.mqtt.port}",
            "reconnects": max(0, self._connections - 1),
            "failed_attempts": self._failed_attempts,
            "sent_messages": self._sent_messages,
            "acked_records": self._acked_records,
            "inflight": len(self._pending),
            "last_error": self._last_error,
        }

    def send_reply(self, name: str, reply: dict[str, Any]) -> None:
        """Publish ``reply`` on ``cmd/<name>/reply`` from the uplink thread at its next turn; any thread, never blocks.

        How a slow command (:class:`edge.commands.Slow`) answers once it is settled: nothing is published
        inside paho's callbacks or from another thread. While the link is down the reply waits.
        """
        self._late_replies.append((name, reply))
        self.wake()

    def wake(self) -> None:
        """Tell the uplink there is something to send; any thread, never blocks (the outbox's ``on_available``)."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing): nothing is lost

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is committed until ``drain_timeout`` passes, publish ``offline``, disconnect, end.

        If the broker is unreachable when this is called, nothing more is attempted: the broker
        already saw the Last Will, and the outbox keeps the rest for the next start.
        """
        self._drain_deadline = time.monotonic() + max(0.0, drain_timeout)
        self._stopping.set()
        self.wake()
        if not self.is_alive():
            return
        # Worst case: a connect attempt in progress (TCP + TLS), then the drain, then the offline status.
        self.join(max(0.0, drain_timeout) + 2 * CONNECT_TIMEOUT + OFFLINE_ACK_WAIT + 2.0)
        if self.is_alive():
            log.error("the uplink thread did not stop in time; abandoning it")

    # --- the thread ------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the agent's watchdog sees the dead thread; say why first
            self.error = exc
            log.exception("uplink thread failed")
        finally:
            self._drop_client()
            self._wake_r.close()
            self._wake_w.close()

    def _run(self) -> None:
        backoff = Backoff(self.mqtt.reconnect_min, self.mqtt.reconnect_max)
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            if self._connect():
                connected_at = time.monotonic()
                self._serve()
                if time.monotonic() - connected_at >= STABLE_CONNECTION:
                    backoff.reset()
            if self._stopping.is_set():
                return
            self._wait(backoff.next())

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            left = deadline - self.heartbeat
            if left <= 0:
                return
            self._stopping.wait(min(left, HEARTBEAT_SLICE))

    # --- connecting ------------------------------------------------------------------------------------
    def _connect(self) -> bool:
        """One attempt: build a client, connect, wait for CONNACK. ``True`` once connected."""
        self._events.clear()
        will = (topics.status(self.base), self._status_payload("offline"))
        try:
            client = make_client(self.mqtt, self.client_id, will, {
                "on_connect": self._on_connect, "on_disconnect": self._on_disconnect,
                "on_publish": self._on_publish, "on_message": self._on_message})
        except UplinkSetupError as exc:
            self._attempt_failed(str(exc))
            return False
        if log.isEnabledFor(logging.DEBUG):
            # paho's own log repeats, less clearly, what we log about each failure; show it only to debug.
            client.enable_logger(logging.getLogger("linli.uplink.paho"))
        self._client = client
        try:
            rc = connect(client, self.mqtt)
        except (OSError, ValueError) as exc:      # ssl.SSLError and socket errors are OSErrors
            failure = describe_connect_error(exc, self.mqtt.host, self.mqtt.port)
        else:
            # CONNECT not even written: the broker closed the fresh connection at once.
            failure = self._await_connack(client) if rc == mqtt.MQTT_ERR_SUCCESS else describe_early_close(self.mqtt)
        if failure is None:
            return True
        if failure:                                # "" means: stop was requested meanwhile
            self._attempt_failed(failure)
        self._drop_client()
        return False

    def _await_connack(self, client: mqtt.Client) -> str | None:
        """``None`` once the broker accepted us, else why not ("" if stop was requested)."""
        deadline = time.monotonic() + CONNACK_TIMEOUT
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            rc = self._turn(client, LOOP_TIMEOUT)
            while self._events:
                event = self._events.popleft()
                if event[0] == "connack":
                    _kind, reason, properties = event
                    if reason.is_failure:
                        return describe_refusal(reason, self.mqtt.host, self.mqtt.port)
                    self._connected_with(properties)
                    return None
                if event[0] == "disconnect":
                    _kind, flags, reason = event
                    if flags.is_disconnect_packet_from_server:
                        return describe_refusal(reason, self.mqtt.host, self.mqtt.port)
                    return describe_early_close(self.mqtt, reason)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return _("broker {host}:{port} did not accept the connection: {reason}").format(
                    host=self.mqtt.host, port=self.mqtt.port, reason=describe_rc(rc))
            if time.monotonic() > deadline:
                return _("broker {host}:{port} did not answer CONNECT within {seconds:g} s").format(
                    host=self.mqtt.host, port=self.mqtt.port, seconds=CONNACK_TIMEOUT)
        return ""

    def _attempt_failed(self, message: str) -> None:
        self._failed_attempts += 1
        if message != self._last_error:
            log.warning("%s", message)
        else:
            log.debug("%s (again)", message)
        self._last_error = message

    def _connected_with(self, properties: Any) -> None:
        self._connections += 1
        self._connected = True
        self._since = _wall_ms()
        self._last_error = None
        self._window = receive_maximum(properties, max(1, self.mqtt.inflight))
        self._packer.batcher = self._make_batcher(maximum_packet_size(properties))
        self._next_health = time.monotonic()
        self._hold_until = 0.0
        self._pubacks_this_connection = 0
        log.info("connected to broker %s:%d as %s (MQTT %s%s), window %d",
                 self.mqtt.host, self.mqtt.port, self.client_id, self.mqtt.protocol,
                 ", TLS" if self.mqtt.tls else "", self._window)
        self._publish_unit(single(topics.status(self.base), self._status_payload("online"), retain=True))
        if self.commands is not None:
            self._client.subscribe(topics.command_filter(self.base), qos=1)

    def _make_batcher(self, max_packet: int | None) -> payloads.TelemetryBatcher:
        limit = self.mqtt.batch_max_bytes
        if max_packet:
            # The broker's limit is on the whole packet: fixed header, topic, packet id, properties.
            limit = max(1, min(limit, max_packet - len(topics.telemetry(self.base).encode()) - 16))
        return payloads.TelemetryBatcher(self.gateway, self.boot_id, max_records=self.mqtt.batch_max_records,
                                         max_bytes=limit)

    def _status_payload(self, state: str) -> bytes:
        return payloads.status(self.gateway, state, version=self.version, boot=self.boot_id, ts=_wall_ms())

    # --- paho callbacks: they run inside client.loop() on this thread and only enqueue --------------------
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self._events.append(("connack", reason, properties))

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._events.append(("disconnect", flags, reason))

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self._events.append(("puback", mid, reason))

    def _on_message(self, client, userdata, message) -> None:
        self._events.append(("command", message.topic, message.payload))

    # --- connected ---------------------------------------------------------------------------------------
    def _serve(self) -> None:
        """Run one connection until it is lost or the uplink has said goodbye."""
        client = self._client
        while True:
            self.heartbeat = time.monotonic()
            # Seen before this iteration's fill, so the fill that decides "drained" started after stop()
            # was called and saw everything committed before it.
            stop_requested = self._stopping.is_set()
            rc = self._turn(client, self._idle_timeout(stop_requested))
            loss = self._handle_events()
            if loss is None and (rc != mqtt.MQTT_ERR_SUCCESS or not client.is_connected()):
                loss = _("lost the connection to broker {host}:{port} ({reason})").format(
                    host=self.mqtt.host, port=self.mqtt.port, reason=describe_rc(rc))
            if loss is not None:
                self._lost(loss)
                return
            if time.monotonic() >= self._hold_until:
                self._fill_window()
            if stop_requested and self._drained_or_late():
                self._goodbye()
                return
            if not stop_requested:
                self._maybe_send_health()

    def _idle_timeout(self, stop_requested: bool) -> float:
        """How long the next turn may wait for traffic or a wake-up: until something is due, at most 1 s."""
        if stop_requested:
            return LOOP_TIMEOUT
        now = time.monotonic()
        if self._backlog and self._room() > self._alarm_reserve() and now >= self._hold_until:
            return 0.0          # more rows wait and the window has room for them: only look at the socket, go on
        due = [HEARTBEAT_SLICE]
        if self._hold_until > now:
            due.append(self._hold_until - now)
        if self.health is not None:
            due.append(self._next_health - now)
        return max(0.0, min(due))

    def _turn(self, client: mqtt.Client, timeout: float) -> mqtt.MQTTErrorCode:
        """One turn of paho's network loop, woken early by traffic or by :meth:`wake`.

        The same steps as paho's own ``loop()``, with our wake-up socket in the select
        (paho's external-loop API, so paho never creates its own socket pair).
        """
        sock = client.socket()
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        # Bytes TLS already decrypted are not visible to poll(): read them without waiting.
        pending = sock.pending() if hasattr(sock, "pending") else 0
        # poll(), not select(): select() cannot watch a descriptor above 1023, which a process hosting
        # many connections (or holding many files) reaches.
        poller = select.poll()
        try:
            poller.register(sock, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
            poller.register(self._wake_r, select.POLLIN)
            ready = dict(poller.poll(0 if pending else math.ceil(timeout * 1000)))
        except (OSError, ValueError, TypeError):   # the socket was closed under us: the connection is gone
            return mqtt.MQTT_ERR_CONN_LOST
        if ready.get(self._wake_r.fileno(), 0):
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        # A hang-up or an error is read too: loop_read() then finds the connection gone and says why.
        if ready.get(sock.fileno(), 0) & (select.POLLIN | select.POLLHUP | select.POLLERR) or pending:
            rc = client.loop_read()
            if rc or client.socket() is None:
                return rc or mqtt.MQTT_ERR_CONN_LOST
        if client.want_write():
            rc = client.loop_write()
            if rc or client.socket() is None:
                return rc or mqtt.MQTT_ERR_CONN_LOST
        return client.loop_misc()

    def _handle_events(self) -> str | None:
        """Publish the slow commands' replies, settle PUBACKs; return why the connection ended if it did."""
        while self._late_replies:
            name, reply = self._late_replies.popleft()
            self._publish_unit(single(topics.command_reply(self.base, name), payloads.encode(reply), retain=False))
        loss = None
        while self._events:
            event = self._events.popleft()
            if event[0] == "puback":
                self._pubacks_this_connection += 1
                self._settle(event[1], event[2])
            elif event[0] == "disconnect":
                loss = describe_loss(event[1], event[2], self.mqtt.host, self.mqtt.port, self.mqtt.keepalive)
            elif event[0] == "command" and loss is None:
                self._answer(event[1], event[2])
        return loss

    def _answer(self, topic: str, payload: bytes) -> None:
        """Run a command request and publish its reply (QoS 1, not retained, not through the outbox)."""
        name = topic.rsplit("/", 1)[-1]
        if self.commands is None or topics.kind_of(self.base, topic) != "command":
            return
        reply = self.commands.handle(name, payload)
        if reply is not None:
            self._publish_unit(single(topics.command_reply(self.base, name), payloads.encode(reply), retain=False))

    def _settle(self, mid: int, reason: Any) -> None:
        delivery = self._pending.pop(mid, None)
        if delivery is None:
            return      # a QoS 0 health message: paho reports those as "published" once written
        delivery.awaiting -= 1
        if reason.is_failure:
            delivery.failed = True
            self._rewind(delivery.floors)
            pause = self._refusals.next()
            self._hold_until = time.monotonic() + pause
            what = (_("records {first}–{last} stay in the outbox").format(first=min(delivery.seqs),
                                                                          last=max(delivery.seqs))
                    if delivery.seqs else _("a status message"))
            self._last_error = _("broker {host}:{port} refused a message ({reason}): {what}; sending again in "
                                 "{pause:.1f} s").format(host=self.mqtt.host, port=self.mqtt.port,
                                                        reason=describe_reason(reason), what=what, pause=pause)
            log.error("%s", self._last_error)
            return
        if delivery.awaiting == 0 and not delivery.failed and delivery.seqs:
            self._refusals.reset()
            self._acked_records += len(delivery.seqs)
            try:
                self.on_acked(list(delivery.seqs))
            except Exception:
                log.exception("handing over %d acknowledged seqs failed; they stay in the outbox and will be "
                              "sent again", len(delivery.seqs))

    def resume_point(self) -> dict[int, int] | None:
        """Per priority, the seq an uplink that follows this one on the same outbox may start after.

        Below every seq still awaiting a PUBACK, so nothing unacknowledged is skipped; None while
        this thread runs (its cursors still move).
        """
        if self.is_alive():
            return None
        cursor = dict(self._cursor)
        for delivery in self._pending.values():
            for priority, lowest in delivery.floors.items():
                cursor[priority] = min(cursor.get(priority, 0), lowest - 1)
        return cursor

    def _rewind(self, floors: dict[int, int]) -> None:
        for priority, lowest in floors.items():
            self._cursor[priority] = min(self._cursor.get(priority, 0), lowest - 1)

    def _lost(self, why: str) -> None:
        self._unheard_losses = 0 if self._pubacks_this_connection else self._unheard_losses + 1
        if self._unheard_losses >= UNHEARD_LOSSES:
            why += _("; it closed the last {count} connections before acknowledging anything, the online status "
                     "included: it may refuse this gateway's topics (its ACL or topic permissions)").format(
                count=self._unheard_losses)
        for delivery in self._pending.values():
            self._rewind(delivery.floors)
        unacked = len(self._pending)
        self._pending.clear()
        self._connected = False
        self._since = _wall_ms()
        self._last_error = why
        log.warning("%s; %d message(s) unacknowledged will be sent again", why, unacked)
        self._drop_client()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is None:
            return
        client.on_connect = client.on_disconnect = client.on_publish = None
        # Still open only when we give up on a connection paho has not closed (no CONNACK in time, a
        # DISCONNECT that could not be written): the broker then treats it as lost and sends the Will.
        sock = client.socket()
        if sock is not None:
            sock.close()

    # --- draining the outbox -----------------------------------------------------------------------------
    def _room(self) -> int:
        return self._window - len(self._pending)

    def _alarm_reserve(self) -> int:
        """Window slots readings leave free for an alarm (none when the window is a single slot)."""
        return min(ALARM_SLOTS, self._window - 1)

    def _fill_window(self) -> None:
        """Publish one fetch's worth of rows from the outbox, as far as the window has room.

        One fetch per turn of the loop, not until the window is full: between two fetches the
        loop settles PUBACKs and sees the core's wake-up, so an alarm raised while a backlog
        drains waits for one fetch at most, never for a whole window of readings to be packed.
        """
        if self._room() <= 0:
            self._backlog = True
            return
        # Twice a batch, so that a full fetch always yields a full batch; its short tail is fetched again.
        limit = 2 * max(1, self.mqtt.batch_max_records)
        try:
            rows = self.outbox.fetch(after=dict(self._cursor), limit=limit)
        except Exception as exc:  # noqa: BLE001 - a read error must not end the uplink; retry later
            self._last_error = _("cannot read the outbox: {reason}").format(reason=exc)
            log.error("%s", self._last_error)
            self._hold_until = time.monotonic() + self._refusals.next()
            return
        more_in_outbox = len(rows) == limit
        self._backlog = more_in_outbox
        for unit in self._packer.units(rows):
            if unit.tail and more_in_outbox:
                break           # a batch cut short by the fetch limit; the next fetch fills it up
            # A unit larger than the whole window (an alarm with its state, window 1) goes alone.
            # Readings leave room for an alarm (message + retained state): one raised while a backlog
            # drains goes at once instead of waiting for a window of readings to be acknowledged.
            spare = 0 if ALARM in unit.tops else self._alarm_reserve()
            if len(unit.messages) > self._room() - spare and self._pending:
                self._backlog = True
                return
            published = self._publish_unit(unit)
            # Advance even after a failed write: the unit is tracked, and the loss rewinds to it.
            for priority, top in unit.tops.items():
                self._cursor[priority] = max(self._cursor.get(priority, 0), top)
            if not published:
                return

    def _publish_unit(self, unit: Unit) -> bool:
        """Hand a unit's messages to paho; ``False`` if the connection broke while doing so."""
        client = self._client
        for topic, payload, retain in unit.messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            # Track it even if the write failed: paho keeps it, and a later loss rewinds to it.
            self._pending[info.mid] = unit.delivery
            self._sent_messages += 1
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.debug("publish on %s returned %s", topic, describe_rc(info.rc))
                return False
        return True

    def _maybe_send_health(self) -> None:
        if self.health is None or time.monotonic() < self._next_health:
            return
        self._next_health = time.monotonic() + max(0.1, self.mqtt.health_interval)
        try:
            facts = self.health()
        except Exception:
            log.exception("gathering health facts failed; no health message this time")
            return
        self._client.publish(topics.health(self.base), payloads.health(self.gateway, _wall_ms(), facts), qos=0)

    # --- stopping ----------------------------------------------------------------------------------------
    def _drained_or_late(self) -> bool:
        if time.monotonic() >= self._drain_deadline:
            if self._pending or self._backlog:
                log.warning("stopping with %d message(s) unacknowledged%s; the outbox keeps them",
                            len(self._pending), " and rows not yet sent" if self._backlog else "")
            return True
        return not self._pending and not self._backlog

    def _goodbye(self) -> None:
        """Publish the retained ``offline`` status, wait briefly for its PUBACK, then DISCONNECT (no Will)."""
        client = self._client
        info = client.publish(topics.status(self.base), self._status_payload("offline"), qos=1, retain=True)
        deadline = time.monotonic() + OFFLINE_ACK_WAIT
        acked = False
        while not acked and time.monotonic() < deadline and client.is_connected():
            self.heartbeat = time.monotonic()
            self._turn(client, LOOP_TIMEOUT)
            while self._events:
                event = self._events.popleft()
                if event[0] == "puback" and event[1] == info.mid:
                    acked = True
                elif event[0] == "puback":
                    self._settle(event[1], event[2])
        if not acked:
            log.warning("the broker did not acknowledge the offline status within %.0f s", OFFLINE_ACK_WAIT)
        client.disconnect()
        # disconnect() writes DISCONNECT at once unless the socket is congested; give it a moment.
        deadline = time.monotonic() + 1.0
        while client.want_write() and time.monotonic() < deadline:
            self._turn(client, LOOP_TIMEOUT)
        log.info("disconnected from broker %s:%d", self.mqtt.host, self.mqtt.port)
        self._connected = False
        self._since = _wall_ms()
        self._drop_client()
