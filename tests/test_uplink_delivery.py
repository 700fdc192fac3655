"""Draining the outbox: every seq arrives once, alarms first, batches bounded, deleted only after PUBACK."""

from __future__ import annotations

import pytest

from buffer.outbox import Priority
from edge import topics
from edge.clock import Clock
from tests.mqtt_helpers import BOOT, alarm, reading, uplink_config, wait_until

PROTOCOLS = ["3.1.1", "5"]


def dropped(seq_from: int, seq_to: int) -> dict:
    return {"kind": "dropped", "count": seq_to - seq_from + 1, "seq_from": seq_from, "seq_to": seq_to,
            "ts_from": 1_764_100_000_000, "ts_to": 1_764_150_000_000}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_backlog_arrives_complete_alarms_first_in_bounded_batches(protocol, broker, writer, start_uplink,
                                                                   subscriber_factory):
    reading_seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(3000)])
    [dropped_seq] = writer.add([(dropped(90_001, 90_500), Priority.STATUS)])
    alarm_seqs = writer.add([(alarm("pump-pressure", "low"), Priority.ALARM),
                             (alarm("bed-3", "out-of-bed", state="cleared"), Priority.ALARM),
                             (alarm("pump-pressure", "low", state="cleared", ts=1_764_201_700_000), Priority.ALARM)])
    every = reading_seqs + [dropped_seq] + alarm_seqs
    config = uplink_config(broker.host, broker.port, protocol=protocol, batch_max_records=200,
                           batch_max_bytes=20_000)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic, protocol=protocol)
    uplink = start_uplink(config, writer)

    seen = central.wait_for_seqs(every)
    assert sorted(seen) == sorted(every)                     # each exactly once: no outage, no duplicate

    data = [m for m in central.messages() if m.kind in ("alarm", "alarm_state", "telemetry")]
    kinds = [m.kind for m in data]
    first_telemetry = kinds.index("telemetry")
    assert set(kinds[:first_telemetry]) == {"alarm", "alarm_state"}      # alarms jumped the queue …
    assert "alarm" not in kinds[first_telemetry:]
    assert [m.payload["seq"] for m in data if m.kind == "alarm"] == alarm_seqs      # … in seq order
    batches = [m for m in data if m.kind == "telemetry"]
    # STATUS priority (the dropped record) before TELEMETRY
    assert batches[0].payload["records"][0] == {"seq": dropped_seq, **dropped(90_001, 90_500)}
    assert [r["seq"] for b in batches for r in b.payload["records"]] == [dropped_seq] + reading_seqs
    for batch in batches:
        assert len(batch.payload["records"]) <= 200 and batch.size <= 20_000
        assert batch.payload["boot"] == BOOT and batch.qos == 1 and not batch.retain
    # The byte bound, not only the count bound, cut batches (readings are ~200 bytes each).
    assert max(b.size for b in batches) > 15_000 and max(len(b.payload["records"]) for b in batches) < 200

    wait_until(lambda: len(writer.acked) == len(every), 10, "every seq acknowledged")
    assert sorted(writer.acked) == sorted(every)              # exactly all, none twice
    wait_until(lambda: writer.depth() == 0, 10, "the outbox to empty")
    status = uplink.status()
    assert status["acked_records"] == len(every) and status["inflight"] == 0
    assert status["sent_messages"] == 1 + len(batches) + 2 * len(alarm_seqs)   # online + batches + alarm pairs


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_alarm_state_is_retained_per_alarm_with_the_latest_transition(protocol, broker, writer, start_uplink,
                                                                       subscriber_factory):
    raised, _, cleared = writer.add([
        (alarm("pump-pressure", "low"), Priority.ALARM),
        (alarm("bed-3", "out-of-bed"), Priority.ALARM),
        (alarm("pump-pressure", "low", state="cleared", ts=1_764_201_700_000), Priority.ALARM)])
    config = uplink_config(broker.host, broker.port, protocol=protocol)
    uplink = start_uplink(config, writer)
    wait_until(lambda: len(writer.acked) == 3, 10, "three alarms acknowledged")
    assert uplink.status()["inflight"] == 0
    later = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                               topic_filter=f"{config.base_topic}/alarm/+/+", protocol=protocol)
    states = later.wait_for(lambda ms: len(ms) == 2, what="two retained alarm states")
    by_topic = {m.topic: m for m in states}
    pump = by_topic[topics.alarm_state(config.base_topic, "pump-pressure/low")]
    assert pump.retain and pump.payload["state"] == "cleared" and pump.payload["seq"] == cleared
    bed = by_topic[topics.alarm_state(config.base_topic, "bed-3/out-of-bed")]
    assert bed.retain and bed.payload["state"] == "raised"
    assert raised not in {m.payload["seq"] for m in states}


def test_a_record_larger_than_the_byte_bound_is_sent_alone(broker, writer, start_uplink, subscriber_factory):
    big = reading(1)
    big.update(quality="bad", value=None, reason="decode", error="frame: " + "7f" * 3000)
    seqs = writer.add([(reading(0), Priority.TELEMETRY), (big, Priority.TELEMETRY),
                       (reading(2), Priority.TELEMETRY), (reading(3), Priority.TELEMETRY)])
    config = uplink_config(broker.host, broker.port, batch_max_bytes=1500)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    start_uplink(config, writer)
    central.wait_for_seqs(seqs)
    batches = [[r["seq"] for r in m.payload["records"]] for m in central.messages("telemetry")]
    assert [seqs[1]] in batches
    assert all(m.size <= 1500 for m in central.messages("telemetry") if len(m.payload["records"]) > 1)
    wait_until(lambda: sorted(writer.acked) == seqs, 10, "all acknowledged")


def test_rows_committed_while_connected_follow_without_delay_or_repeat(broker, writer, start_uplink,
                                                                       subscriber_factory):
    config = uplink_config(broker.host, broker.port)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    start_uplink(config, writer)
    expected: list[int] = []
    for round_ in range(5):
        expected += writer.add([(reading(round_ * 100 + i), Priority.TELEMETRY) for i in range(50)])
        expected += writer.add([(alarm("p", f"rule{round_}"), Priority.ALARM)])
        central.wait_for_seqs(expected)
    assert sorted(central.seqs()) == sorted(expected)
    wait_until(lambda: sorted(writer.acked) == sorted(expected), 10, "all acknowledged")


def test_stop_drains_what_is_committed_before_saying_offline(broker, writer, start_uplink, subscriber_factory):
    config = uplink_config(broker.host, broker.port, batch_max_records=50)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    uplink = start_uplink(config, writer)
    wait_until(lambda: uplink.status()["connected"], 10, "connected")
    seqs = writer.add([(reading(i), Priority.TELEMETRY) for i in range(1500)])
    uplink.stop(drain_timeout=10.0)
    assert sorted(writer.acked) == seqs                  # acknowledged before stop() returned
    messages = central.wait_for(lambda ms: ms and ms[-1].kind == "status" and ms[-1].payload["state"] == "offline",
                                what="offline after the data")
    assert sorted(central.seqs()) == seqs
    assert [m.kind for m in messages].index("status", 1) == len(messages) - 1     # offline came last


def test_alarm_with_a_malformed_id_still_goes_out(broker, writer, start_uplink, subscriber_factory):
    """The transition is sent even when no retained topic can carry it; the schema flags the bad id."""
    [seq] = writer.add([(dict(alarm("pump", "low"), alarm="pump/low/extra"), Priority.ALARM)])
    config = uplink_config(broker.host, broker.port)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic,
                                 topic_filter=topics.alarm(config.base_topic))
    start_uplink(config, writer)
    wait_until(lambda: writer.acked == [seq], 10, "the alarm acknowledged")
    with pytest.raises(AssertionError, match="does not match"):
        central.wait_for(lambda ms: ms, what="the alarm")
    central.close(check=False)


def test_records_taken_before_clock_sync_are_corrected_on_the_way_out(broker, writer, start_uplink,
                                                                      subscriber_factory):
    state = {"synced": False, "wall": 1_000, "mono": 50}
    clock = Clock(synced_probe=lambda: state["synced"], wall_ms=lambda: state["wall"],
                  mono_ms=lambda: state["mono"], boot_id=BOOT, cache_s=0)
    early = dict(reading(0), **clock.stamp())
    later_boot = dict(reading(1), ts=2_000, synced=False, boot="another-boot", mono=70)
    state.update(synced=True, wall=1_764_201_600_000, mono=60_050)
    seqs = writer.add([(early, Priority.TELEMETRY), (later_boot, Priority.TELEMETRY)])
    config = uplink_config(broker.host, broker.port)
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    start_uplink(config, writer, correct=clock.correct)
    central.wait_for_seqs(seqs)
    records = {r["seq"]: r for m in central.messages("telemetry") for r in m.payload["records"]}
    # offset = 1_764_201_600_000 - 60_050 when the clock synced; ts = mono 50 + offset
    assert records[seqs[0]]["ts"] == 1_764_201_540_000 and records[seqs[0]]["synced"] is True
    assert records[seqs[0]]["ts_unsynced"] == 1_000
    assert records[seqs[1]]["ts"] == 2_000 and records[seqs[1]]["synced"] is False    # another boot: kept as is


def test_an_uplink_whose_sockets_lie_above_descriptor_1023_delivers(broker, writer, start_uplink, subscriber_factory):
    """select() cannot watch descriptors above 1023: a process holding many files (or hosting many uplinks) must not
    lose its link for it."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    config = uplink_config(broker.host, broker.port)
    # The subscriber first: paho's own loop, which it runs, still uses select().
    central = subscriber_factory(broker.host, broker.port, base=config.base_topic)
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert filler[-1] > 1023
        uplink = start_uplink(config, writer)
        expected = writer.add([(reading(i), Priority.TELEMETRY) for i in range(20)])
        central.wait_for_seqs(expected)
        assert uplink.status()["connected"] and uplink.status()["reconnects"] == 0
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
