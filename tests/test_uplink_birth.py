"""Birth and death of the uplink's connection: retained online, the Will on an abrupt loss, offline on a clean stop."""

from __future__ import annotations

import pytest

from edge import topics
from tests.mqtt_helpers import BOOT, GATEWAY, uplink_config, wait_until
from tests.tcp_proxy import TcpProxy

PROTOCOLS = ["3.1.1", "5"]


def states(messages) -> list[str]:
    return [m.payload["state"] for m in messages if m.kind == "status"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_online_is_retained_for_late_subscribers(protocol, broker, writer, start_uplink, subscriber_factory):
    config = uplink_config(broker.host, broker.port, protocol=protocol)
    uplink = start_uplink(config, writer, version="9.8.7")
    # Connected is not enough: the birth must have been acknowledged, or a fast subscriber gets it live.
    wait_until(lambda: uplink.status()["connected"] and uplink.status()["sent_messages"] >= 1
               and uplink.status()["inflight"] == 0, 10, "the birth message acknowledged")
    late = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                              topic_filter=topics.status(config.base_topic), protocol=protocol)
    [status] = late.wait_for(lambda ms: ms, what="the retained status")
    assert status.retain
    assert status.payload["state"] == "online"
    assert (status.payload["gateway"], status.payload["version"], status.payload["boot"]) == (GATEWAY, "9.8.7", BOOT)
    assert uplink.status()["since"] is not None and uplink.status()["last_error"] is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_will_says_offline_when_the_link_breaks(protocol, broker, writer, start_uplink, subscriber_factory):
    with TcpProxy(broker.host, broker.port) as proxy:
        config = uplink_config(proxy.host, proxy.port, protocol=protocol)
        watcher = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                                     topic_filter=topics.status(config.base_topic))
        uplink = start_uplink(config, writer)
        watcher.wait_for(lambda ms: states(ms) == ["online"], what="online")
        proxy.cut()     # the broker sees the TCP connection die without a DISCONNECT
        watcher.wait_for(lambda ms: states(ms) == ["online", "offline"], what="the Will")
        will = watcher.last("status")
        assert not will.retain    # a live subscription gets it as a normal message …
        wait_until(lambda: not uplink.status()["connected"], 10, "the uplink to notice")
        assert "lost the connection" in uplink.status()["last_error"]
    late = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                              topic_filter=topics.status(config.base_topic))
    [retained] = late.wait_for(lambda ms: ms, what="the retained status")
    assert retained.retain and retained.payload["state"] == "offline"     # … and it stays for later ones
    assert retained.payload["boot"] == BOOT


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clean_stop_publishes_offline_and_disconnects_without_will(protocol, broker, writer, start_uplink,
                                                                    subscriber_factory):
    config = uplink_config(broker.host, broker.port, protocol=protocol)
    watcher = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                                 topic_filter=topics.status(config.base_topic))
    uplink = start_uplink(config, writer)
    watcher.wait_for(lambda ms: states(ms) == ["online"], what="online")
    uplink.stop(drain_timeout=1.0)
    assert not uplink.is_alive()
    watcher.wait_for(lambda ms: states(ms) == ["online", "offline"], what="offline")
    # mosquitto logs a DISCONNECT packet as "disconnected."; a dead socket (which fires the Will) otherwise.
    wait_until(lambda: f"Client linli-{GATEWAY} disconnected." in broker.log_text(), 5, "a clean DISCONNECT")
    assert f"linli-{GATEWAY} closed its connection" not in broker.log_text()
    assert uplink.status()["connected"] is False
    late = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                              topic_filter=topics.status(config.base_topic))
    [retained] = late.wait_for(lambda ms: ms, what="the retained status")
    assert retained.retain and retained.payload["state"] == "offline"


def test_stop_before_any_connection_returns_promptly(writer, start_uplink):
    # Nothing listens on this port: the uplink keeps retrying until stopped.
    from edge.simulate.broker import free_port
    uplink = start_uplink(uplink_config("127.0.0.1", free_port()), writer)
    wait_until(lambda: uplink.status()["failed_attempts"] >= 2, 10, "two failed attempts")
    assert "connection refused" in uplink.status()["last_error"]
    uplink.stop(drain_timeout=5.0)
    assert not uplink.is_alive()


def test_stop_of_an_uplink_never_started_is_harmless(broker, writer):
    from edge.uplink import Uplink
    uplink = Uplink(uplink_config(broker.host, broker.port), writer.outbox, writer.on_acked,
                    version="1", boot_id=BOOT)
    uplink.stop(0)
    assert not uplink.is_alive()
