"""Shared fixtures: a real mosquitto per test on a free loopback port, validating subscribers, a test PKI,
the outbox's writer thread and uplinks that are always stopped."""

from __future__ import annotations

import pytest

from edge.simulate.broker import LocalBroker
from edge.uplink import Uplink
from tests.mqtt_helpers import BOOT, OutboxWriter, Subscriber, make_pki


@pytest.fixture
def broker():
    """A fresh mosquitto on ``127.0.0.1:<free port>`` for this test (anonymous, plain TCP)."""
    with LocalBroker(kind="mosquitto") as running:
        yield running


@pytest.fixture
def broker_factory():
    """``make(**LocalBroker options)`` → a started broker; all are closed after the test."""
    made: list[LocalBroker] = []

    def make(**options) -> LocalBroker:
        options.setdefault("kind", "mosquitto")
        local = LocalBroker(**options)
        made.append(local)
        local.start()
        return local

    yield make
    for local in made:
        local.close()


@pytest.fixture
def subscriber_factory():
    """``make(host, port, topic_filter, **Subscriber options)``; every subscriber is closed and checked after the test.

    A message that does not match its topic's schema fails the test here even if the test never looked.
    """
    made: list[Subscriber] = []

    def make(host: str, port: int, topic_filter: str | None = None, **options) -> Subscriber:
        sub = Subscriber(host, port, topic_filter, **options)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close(check=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN ``gw-test``), made with openssl."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def writer(tmp_path):
    """A real outbox in ``tmp_path`` with a thread playing the agent's core (its only writer)."""
    running = OutboxWriter(tmp_path / "outbox.db")
    yield running
    running.close()


@pytest.fixture
def start_uplink():
    """``start(config, writer, **Uplink options)`` → a running :class:`Uplink`; stopped (no drain) after the test."""
    started: list[Uplink] = []

    def start(config, writer: OutboxWriter, **options) -> Uplink:
        options.setdefault("version", "0.1.0-test")
        options.setdefault("boot_id", BOOT)
        uplink = Uplink(config, writer.outbox, writer.on_acked, **options)
        writer.outbox.on_available = uplink.wake     # as the agent wires them: no polling
        started.append(uplink)
        uplink.start()
        return uplink

    yield start
    for uplink in started:
        uplink.stop(0)
        assert uplink.error is None, f"the uplink thread failed: {uplink.error!r}"
