"""Test helpers on the central side of MQTT: a validating subscriber, the outbox's writer thread, a test PKI.

:class:`Subscriber` plays a dashboard: a real paho client subscribed to a topic
filter. Every message it receives is parsed and validated against the schema of
its topic (``edge.topics.kind_of`` + ``edge/schemas``); one invalid message
fails the test at the next look at the messages, and at ``close()``.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
from jsonschema import Draft202012Validator

from buffer.outbox import Outbox, Priority
from edge import schemas, topics
from edge.config import Config, GatewayConfig, MqttConfig

_VALIDATORS: dict[str, Draft202012Validator] = {}


def validator(kind: str) -> Draft202012Validator:
    if kind not in _VALIDATORS:
        _VALIDATORS[kind] = Draft202012Validator(schemas.load(kind))
    return _VALIDATORS[kind]


class InvalidMessage(AssertionError):
    """A message that does not match the schema of its topic (or is not JSON, or not on a known topic)."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)      # the pause between polls of a condition nobody signals


@dataclass(frozen=True)
class Message:
    topic: str
    payload: Any            # the parsed JSON
    retain: bool
    qos: int
    kind: str | None        # schema name from the topic
    arrived: float          # time.monotonic() when paho handed it over
    size: int               # bytes of the payload on the wire
    received_ms: int = 0    # wall clock (epoch ms) when paho handed it over: for latency from a record's ts


class Subscriber:
    """Subscribes to ``topic_filter`` (default: everything under ``base``) and collects validated messages.

    ``base`` is the gateway's base topic, used to know each message's schema; by
    default it is ``topic_filter`` without its trailing ``/#``.
    """

    def __init__(self, host: str, port: int, topic_filter: str | None = None, *, base: str | None = None,
                 protocol: str = "3.1.1", tls: dict[str, str] | None = None, username: str | None = None,
                 password: str | None = None, client_id: str | None = None, timeout: float = 10.0):
        if base is None and (topic_filter is None or not topic_filter.endswith("/#")):
            raise ValueError("give base, or a topic_filter ending in /#")
        self.base = base if base is not None else topic_filter[:-2]
        self.topic_filter = topic_filter or f"{self.base}/#"
        self._raw: queue.SimpleQueue = queue.SimpleQueue()
        self._messages: list[Message] = []
        self._errors: list[str] = []
        self._subscribed = threading.Event()
        self._closed = False
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"test-sub-{id(self):x}",
                                   protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
        if tls:
            self._client.tls_set(ca_certs=tls.get("ca_file"), certfile=tls.get("cert_file"),
                                 keyfile=tls.get("key_file"))
        if username:
            self._client.username_pw_set(username, password)
        # Callbacks only enqueue; parsing and validation happen on the test thread.
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic_filter, qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self._client.on_message = lambda c, u, m: self._raw.put(
            (m.topic, m.payload, m.retain, m.qos, time.monotonic(), time.time_ns() // 1_000_000))
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self._client.loop_stop()
            raise AssertionError(f"subscriber did not get SUBACK for {self.topic_filter} within {timeout:g} s")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(check=exc_type is None)

    def close(self, check: bool = True) -> None:
        """Disconnect; with ``check``, fail if any message seen was invalid. Only the first call counts."""
        if self._closed:
            return
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()
        if check:
            self._take()

    # --- looking at what arrived ----------------------------------------------------------------------------
    def _take(self, wait: float = 0.0) -> list[Message]:
        """Validate what arrived; with ``wait``, first block up to that long for one more message."""
        block = wait > 0
        while True:
            try:
                topic, raw, retain, qos, arrived, received_ms = self._raw.get(block, wait if block else None)
            except queue.Empty:
                break
            block = False
            self._messages.append(self._check(topic, raw, retain, qos, arrived, received_ms))
        if self._errors:
            raise InvalidMessage("invalid MQTT message(s):\n  " + "\n  ".join(self._errors[:10]))
        return self._messages

    def _check(self, topic: str, raw: bytes, retain: bool, qos: int, arrived: float, received_ms: int) -> Message:
        kind = topics.kind_of(self.base, topic)
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            self._errors.append(f"{topic}: not JSON ({exc}): {raw[:120]!r}")
            return Message(topic, None, retain, qos, kind, arrived, len(raw), received_ms)
        if kind is None:
            self._errors.append(f"{topic}: not a topic of gateway {self.base}")
        else:
            for error in validator(kind).iter_errors(payload):
                path = "/".join(str(p) for p in error.absolute_path) or "(root)"
                self._errors.append(f"{topic} [{kind}] at {path}: {error.message}")
        return Message(topic, payload, retain, qos, kind, arrived, len(raw), received_ms)

    def messages(self, kind: str | None = None) -> list[Message]:
        """All valid messages so far (of one schema ``kind`` if given), in arrival order."""
        return [m for m in self._take() if kind is None or m.kind == kind]

    def wait_for(self, predicate: Callable[[list[Message]], Any], timeout: float = 10.0,
                 what: str = "a condition on the messages") -> list[Message]:
        """Wait until ``predicate(messages)`` is truthy; returns the messages then."""
        deadline = time.monotonic() + timeout
        messages = self._take()
        while not predicate(messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                     f"({len(messages)} messages received)")
            # Woken by the next message, or after a short slice: a predicate may also look at other state.
            messages = self._take(wait=min(left, 0.05))
        return messages

    def seqs(self) -> list[int]:
        """Every seq seen in telemetry, alarm and event messages, in arrival order (duplicates included)."""
        found: list[int] = []
        for m in self._take():
            if m.kind == "telemetry":
                found += [r["seq"] for r in m.payload["records"]]
            elif m.kind in ("alarm", "event"):
                found.append(m.payload["seq"])
        return found

    def dropped(self) -> list[dict]:
        """Every ``dropped`` record seen: each explains the seqs in its range that never arrive."""
        return [r for m in self._take() if m.kind == "telemetry" for r in m.payload["records"]
                if r.get("kind") == "dropped"]

    def explained_seqs(self) -> set[int]:
        """The seqs some ``dropped`` record covers."""
        return {seq for d in self.dropped() for seq in range(d["seq_from"], d["seq_to"] + 1)}

    def wait_for_seqs(self, expected: Iterable[int], timeout: float = 20.0) -> list[int]:
        """Wait until every seq in ``expected`` has arrived; returns :meth:`seqs`."""
        wanted = set(expected)
        try:
            self.wait_for(lambda _messages: wanted <= set(self.seqs()), timeout, f"{len(wanted)} seqs")
        except AssertionError:
            missing = sorted(wanted - set(self.seqs()))
            raise AssertionError(f"{len(missing)} of {len(wanted)} seqs never arrived, e.g. {missing[:10]}") from None
        return self.seqs()

    def last(self, kind: str) -> Message | None:
        found = self.messages(kind)
        return found[-1] if found else None


class OutboxWriter:
    """Plays the agent's core thread: the one thread that calls the outbox's writer methods.

    ``on_acked`` is what the uplink gets; ``acked`` lists every seq it was given, in order.
    """

    def __init__(self, path: Path, **outbox_options: Any):
        self.acked: list[int] = []
        self.ack_calls = 0
        self._inbox: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.outbox: Outbox | None = None
        self._thread = threading.Thread(target=self._run, args=(path, outbox_options), name="test-writer",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def on_acked(self, seqs: list[int]) -> None:
        self.acked.extend(seqs)
        self.ack_calls += 1
        self._inbox.put(("ack", list(seqs)))

    def call(self, fn: Callable[[Outbox], Any], timeout: float = 30.0) -> Any:
        """Run ``fn(outbox)`` on the writer thread and return its result."""
        done: queue.Queue = queue.Queue()
        self._inbox.put(("call", fn, done))
        ok, value = done.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def add(self, records: Iterable[tuple[dict[str, Any], Priority]]) -> list[int]:
        """Add and commit; returns the seqs assigned."""
        items = list(records)

        def add_all(outbox: Outbox) -> list[int]:
            # An alarm commits at once inside add(), so commit()'s return value alone may miss seqs.
            first = outbox.stats()["next_seq"]
            for record, priority in items:
                outbox.add(record, priority)
            outbox.commit()
            return list(range(first, outbox.stats()["next_seq"]))

        return self.call(add_all)

    def depth(self) -> int:
        return self.outbox.stats()["depth"]

    def close(self) -> None:
        self._inbox.put(("stop",))
        self._thread.join(10)

    def _run(self, path: Path, options: dict[str, Any]) -> None:
        try:
            self.outbox = Outbox(path, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                item = self._inbox.get()
                if item[0] == "stop":
                    break
                if item[0] == "ack":
                    self.outbox.ack(item[1])
                    self.outbox.commit()
                else:
                    try:
                        item[2].put((True, item[1](self.outbox)))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        item[2].put((False, exc))
        finally:
            self.outbox.close()


# --- an uplink's configuration for the tests ---------------------------------------------------------------------
GATEWAY = "gw-test"
GRID = "shimen2/xinfukangli/b07"


def uplink_config(host: str, port: int, **mqtt_options: Any) -> Config:
    """A config for gateway ``gw-test`` talking to ``host:port``; quick reconnects, no health unless asked."""
    options: dict[str, Any] = {"reconnect_min": 0.05, "reconnect_max": 0.3, "keepalive": 5.0,
                               "health_interval": 3600.0}
    options.update(mqtt_options)
    return Config(GatewayConfig(id=GATEWAY, grid=GRID), MqttConfig(host=host, port=port, **options))


# --- records like the core stores them -----------------------------------------------------------------------
BOOT = "7d5f4c1e-0b7e-4a53-9d55-3f2a9c1b0e42"


def reading(i: int, sensor: str = "flat-302-water", ts0: int = 1_764_201_600_000) -> dict[str, Any]:
    return {"kind": "reading", "sensor": sensor, "quantity": "volume", "value": round(1000 + i * 0.001, 3),
            "unit": "m3", "quality": "good", "ts": ts0 + i * 1000, "synced": True, "boot": BOOT, "mono": 5000 + i}


def alarm(sensor: str, rule: str, state: str = "raised", ts: int = 1_764_201_630_000) -> dict[str, Any]:
    return {"kind": "alarm", "alarm": f"{sensor}/{rule}", "state": state, "severity": "critical", "value": 0.08,
            "limit": 0.10, "ts": ts, "synced": True, "message": f"{sensor} {rule}: 0.08 MPa below 0.10 MPa"}


# --- a small PKI made with the openssl command ------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path       # a CA the broker does not trust


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_pki(directory: Path, client_cn: str = "gw-test") -> Pki:
    """A CA, a server certificate for 127.0.0.1 (as IP SAN) and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates: apt-get install openssl")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=linli test {name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "127.0.0.1"), ("client", client_cn)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
               d / "other-ca.crt")
