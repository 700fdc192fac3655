"""The periodic health message and the uplink's own status()."""

from __future__ import annotations

import itertools
import logging
import time

from buffer.outbox import Priority
from edge.clock import Clock
from edge.health import gather
from tests.mqtt_helpers import BOOT, GATEWAY, reading, uplink_config, wait_until
from tests.tcp_proxy import TcpProxy


def test_health_is_published_every_interval_with_real_facts(broker, writer, start_uplink, subscriber_factory):
    started = time.monotonic()
    clock = Clock(boot_id=BOOT)
    config = uplink_config(broker.host, broker.port, health_interval=0.3)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    writer.add([(reading(i), Priority.TELEMETRY) for i in range(3)])
    start_uplink(config, writer, health=lambda: gather(writer.outbox.stats(), clock, started, {"version": "t"},
                                                       outbox_path=writer.outbox.path))
    messages = central.wait_for(lambda ms: len([m for m in ms if m.kind == "health"]) >= 4, what="4 health messages")
    health = [m for m in messages if m.kind == "health"]
    assert all(m.qos == 0 and not m.retain for m in health)      # QoS 0, never through the outbox
    first = health[0].payload
    assert first["gateway"] == GATEWAY and first["v"] == 1 and first["version"] == "t"
    assert first["rss_kb"] > 0 and first["disk_free_bytes"] > 0 and "depth" in first["outbox"]
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(health)]
    # Scheduling, not speed: one message per interval, not one per loop iteration.
    assert min(gaps) > 0.15 and sum(gaps) / len(gaps) >= 0.25
    assert health[-1].payload["ts"] > first["ts"]


def test_health_is_off_when_no_facts_are_given(broker, writer, start_uplink, subscriber_factory):
    config = uplink_config(broker.host, broker.port, health_interval=0.05)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    seqs = writer.add([(reading(0), Priority.TELEMETRY)])
    start_uplink(config, writer, health=None)
    central.wait_for_seqs(seqs)
    writer.add([(reading(1), Priority.TELEMETRY)])        # a later message proves time passed on the link
    central.wait_for(lambda ms: len(central.seqs()) == 2, what="the second reading")
    assert central.messages("health") == []


def test_failing_health_facts_do_not_stop_the_data(broker, writer, start_uplink, subscriber_factory, caplog):
    calls = []

    def broken() -> dict:
        calls.append(1)
        raise OSError("thermal zone vanished")

    config = uplink_config(broker.host, broker.port, health_interval=0.05)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(100)])
    with caplog.at_level(logging.ERROR, logger="linli.uplink"):
        uplink = start_uplink(config, writer, health=broken)
        central.wait_for_seqs(seqs)
        wait_until(lambda: len(calls) >= 3, 10, "health to be tried again")
    assert uplink.is_alive() and uplink.error is None
    assert "gathering health facts failed" in caplog.text
    assert central.messages("health") == []


def test_status_counts_connections_messages_and_records(broker, writer, start_uplink):
    with TcpProxy(broker.host, broker.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, batch_max_records=10)
        uplink = start_uplink(config, writer)
        wait_until(lambda: uplink.status()["connected"], 10, "connected")
        first = uplink.status()
        assert first["reconnects"] == 0 and first["last_error"] is None and first["since"] > 0
        assert first["broker"] == f"127.0.0.1:{proxy.port}"
        seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(25)])
        wait_until(lambda: uplink.status()["acked_records"] == 25, 10, "25 records acknowledged")
        # online + the batches: at most 10 records each, and readings go as soon as they are added, so 3 to 25
        assert 1 + 3 <= uplink.status()["sent_messages"] <= 1 + 25
        assert uplink.status()["inflight"] == 0 and sorted(writer.acked) == seqs
        proxy.cut()
        wait_until(lambda: not uplink.status()["connected"], 10, "disconnected")
        down = uplink.status()
        assert down["last_error"] and down["since"] >= first["since"]
        proxy.restore()
        wait_until(lambda: uplink.status()["connected"], 10, "connected again")
        assert uplink.status()["reconnects"] == 1 and uplink.status()["last_error"] is None


def test_heartbeat_stays_fresh_while_waiting_to_reconnect(writer, start_uplink):
    with TcpProxy("127.0.0.1", 9) as proxy:
        proxy.cut()
        # A long backoff must not look like a hung thread to the agent's watchdog.
        uplink = start_uplink(uplink_config(proxy.host, proxy.port, reconnect_min=8.0, reconnect_max=8.0), writer)
        wait_until(lambda: uplink.status()["failed_attempts"] == 1, 10, "the first failure")
        beats = set()
        wait_until(lambda: beats.add(uplink.heartbeat) or len(beats) >= 3, 5, "three heartbeats during the wait")
        assert uplink.status()["failed_attempts"] == 1
