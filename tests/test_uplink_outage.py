"""Outages: cut and silent links, broker restarts, refusing brokers — every seq arrives, memory stays bounded."""

from __future__ import annotations

import os
import threading

import pytest

from buffer.outbox import Priority
from edge import topics
from edge.uplink import ALARM_SLOTS
from tests.mqtt_helpers import (
    GATEWAY,
    Subscriber,
    alarm,
    reading,
    uplink_config,
    wait_until,
)
from tests.tcp_proxy import TcpProxy

PROTOCOLS = ["3.1.1", "5"]


class InflightSampler:
    """Watches ``uplink.status()["inflight"]`` from another thread and keeps the largest value seen."""

    def __init__(self, uplink):
        self.uplink = uplink
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.0005):
            self.largest = max(self.largest, self.uplink.status()["inflight"])

    def close(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.largest


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fill_window_into_the_void(proxy: TcpProxy, uplink, writer, every: list[int], window: int) -> None:
    """Swallow the uplink's traffic, give it fresh rows, and wait until the readings' share of ``window`` hangs
    unacknowledged (they leave ``ALARM_SLOTS`` free for an alarm)."""
    proxy.cut(blackhole=True)      # first: readings are sent the moment they are added
    every += writer.add([(reading(20_000 + len(every) + i), Priority.TELEMETRY) for i in range(300)])
    share = window - ALARM_SLOTS    # an alarm still in flight may hold the other slots
    wait_until(lambda: uplink.status()["inflight"] >= share, 10, f"{share} messages in flight")


def test_an_alarm_overtakes_a_window_of_readings_that_hang(broker, writer, start_uplink):
    with TcpProxy(broker.host, broker.port) as proxy:
        uplink = start_uplink(uplink_config(proxy.host, proxy.port, inflight=6, batch_max_records=10), writer)
        wait_until(lambda: uplink.status()["connected"], 10, "connected")
        fill_window_into_the_void(proxy, uplink, writer, [], window=6)     # 4 batches of readings hang
        [seq] = writer.add([(alarm("pump-pressure", "low"), Priority.ALARM)])
        # The alarm and its retained state go out at once, into the two slots the readings left free.
        wait_until(lambda: uplink.status()["inflight"] == 6 and
                   any(seq in d.seqs for d in list(uplink._pending.values())), 10,
                   "the alarm and its state sent beside the hanging readings")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_link_cut_again_and_again_mid_stream_loses_nothing(protocol, broker, writer, start_uplink,
                                                            subscriber_factory):
    every = writer.add([(reading(i), Priority.TELEMETRY) for i in range(2000)])
    with TcpProxy(broker.host, broker.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, protocol=protocol, inflight=4, batch_max_records=40)
        central = subscriber_factory(broker.host, broker.port, base=config.base_topic, protocol=protocol)
        uplink = start_uplink(config, writer)
        sampler = InflightSampler(uplink)
        for cut in range(1, 5):
            wait_until(lambda: uplink.status()["connected"], 10, f"connected before cut {cut}")
            fill_window_into_the_void(proxy, uplink, writer, every, window=4)
            proxy.cut()         # reset: the 4 messages in flight are lost on the way
            wait_until(lambda: not uplink.status()["connected"], 10, "the uplink to notice the cut")
            # Data committed during the outage must follow once the link is back.
            every += writer.add([(alarm("pump-pressure", f"low{cut}"), Priority.ALARM)])
            every += writer.add([(reading(10_000 + cut * 10 + i), Priority.TELEMETRY) for i in range(10)])
            proxy.restore()
        seen = central.wait_for_seqs(every, timeout=60)
        assert set(seen) == set(every)                  # duplicates allowed, nothing missing
        wait_until(lambda: set(writer.acked) == set(every), 20, "every seq acknowledged")
        wait_until(lambda: writer.depth() == 0, 10, "the outbox to empty")
        assert sampler.close() <= 4                     # the window held through every outage
        status = uplink.status()
        assert status["reconnects"] >= 4 and status["inflight"] == 0


def test_failed_attempts_leak_no_file_descriptors(writer, start_uplink):
    with TcpProxy("127.0.0.1", 9) as proxy:           # nothing behind it: every attempt is reset
        proxy.cut()
        uplink = start_uplink(uplink_config(proxy.host, proxy.port, reconnect_min=0.01, reconnect_max=0.02),
                              writer)
        wait_until(lambda: uplink.status()["failed_attempts"] >= 5, 20, "5 failed attempts")
        before = open_fds()
        wait_until(lambda: uplink.status()["failed_attempts"] >= 45, 30, "45 failed attempts")
        assert open_fds() <= before + 3                 # one attempt may be in progress, no growth per attempt


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_broker_restarted_mid_stream_loses_nothing(how, broker, writer, start_uplink):
    every = writer.add([(reading(i), Priority.TELEMETRY) for i in range(1000)])
    with TcpProxy(broker.host, broker.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, keepalive=1.0, inflight=5, batch_max_records=40)
        with Subscriber(broker.host, broker.port, base=config.base_topic) as before:
            uplink = start_uplink(config, writer)
            wait_until(lambda: len(writer.acked) >= 200, 20, "the stream to flow")
            fill_window_into_the_void(proxy, uplink, writer, every, window=5)
            # What the broker acknowledged has reached the subscriber before the broker goes away (a broker
            # without persistence loses what it has not forwarded yet; that is not the uplink's doing).
            before.wait_for(lambda ms: set(writer.acked) <= set(before.seqs()), timeout=30,
                            what="acked seqs forwarded")
            broker.stop() if how == "stop" else broker.kill()
        wait_until(lambda: not uplink.status()["connected"], 10, "the uplink to notice")
        broker.start()
        # The new subscription exists before the link is restored, so it misses nothing.
        with Subscriber(broker.host, broker.port, base=config.base_topic) as after:
            proxy.restore()
            seen_after = after.wait_for_seqs(set(every) - set(before.seqs()), timeout=60)
            assert set(before.seqs()) | set(seen_after) == set(every)
            wait_until(lambda: set(writer.acked) == set(every), 20, "every seq acknowledged")


def test_silent_link_is_noticed_by_keepalive(broker, writer, start_uplink, subscriber_factory):
    with TcpProxy(broker.host, broker.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, keepalive=1.0)
        central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
        uplink = start_uplink(config, writer)
        wait_until(lambda: uplink.status()["connected"], 10, "connected")
        proxy.cut(blackhole=True)
        seqs = writer.add([(alarm("bed-3", "out-of-bed"), Priority.ALARM)])
        wait_until(lambda: not uplink.status()["connected"], 10, "keepalive to notice")
        assert "stopped answering" in uplink.status()["last_error"]
        assert writer.acked == []
        proxy.restore()
        central.wait_for_seqs(seqs)
        wait_until(lambda: writer.acked == seqs, 10, "the alarm acknowledged")


def test_refused_messages_stay_in_the_outbox_until_the_broker_accepts_them(tmp_path, broker_factory, writer,
                                                                           start_uplink):
    """MQTT 5 makes a refusal visible (PUBACK 0x87): nothing is deleted, sending resumes once allowed."""
    acl = tmp_path / "acl"
    base = uplink_config("127.0.0.1", 0).base_topic
    acl.write_text(f"topic read #\ntopic write {topics.status(base)}\n")
    strict = broker_factory(acl_file=str(acl))
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(20)] +
                      [(alarm("pump-pressure", "low"), Priority.ALARM)])
    with TcpProxy(strict.host, strict.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, protocol="5", reconnect_min=0.1, reconnect_max=0.5)
        uplink = start_uplink(config, writer)
        wait_until(lambda: "refused a message (not authorized)" in (uplink.status()["last_error"] or ""), 10,
                   "the refusal to be reported")
        assert uplink.status()["connected"] is True and writer.acked == []
        # Still refused on the next tries (held back between them), still nothing deleted.
        wait_until(lambda: uplink.status()["sent_messages"] >= 8, 10, "more attempts")
        assert writer.acked == [] and writer.depth() == len(seqs)

        proxy.cut()
        acl.write_text("topic readwrite #\n")
        strict.stop()
        strict.start()
        with Subscriber(strict.host, strict.port, base=config.base_topic, protocol="5") as central:
            proxy.restore()
            central.wait_for_seqs(seqs, timeout=30)
        wait_until(lambda: set(writer.acked) == set(seqs), 10, "all acknowledged")
        assert uplink.status()["last_error"] is None


def test_wrong_receive_maximum_is_not_exceeded(broker, writer, start_uplink):
    """mosquitto announces Receive Maximum 20 to MQTT 5 clients; a larger window is cut down to it."""
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(600)])
    config = uplink_config(broker.host, broker.port, protocol="5", inflight=100, batch_max_records=5)
    uplink = start_uplink(config, writer)
    sampler = InflightSampler(uplink)
    wait_until(lambda: set(writer.acked) == set(seqs), 30, "every seq acknowledged")
    assert sampler.close() <= 20
    assert f"Client linli-{GATEWAY} disconnected" not in broker.log_text()   # never kicked for exceeding it
    assert uplink.status()["reconnects"] == 0
