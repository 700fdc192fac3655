"""The audit's ledger fed bytes as a broker would deliver them: gaps, explanations, duplicates, state."""

from __future__ import annotations

import json

from edge.audit.ledger import Ledger, base_of
from edge.audit.ranges import SeqRanges

BASE = "linli/shimen2/xinfukangli/b07/gw-0042"


def telemetry(*records: dict) -> bytes:
    return json.dumps({"v": 1, "gateway": "gw-0042", "boot": "b", "records": list(records)}).encode()


def reading(seq: int) -> dict:
    return {"seq": seq, "sensor": "pump-pressure", "quantity": "pressure", "value": 0.4, "unit": "MPa",
            "quality": "good", "ts": 1_764_201_600_000 + seq, "synced": True}


def dropped(seq: int, seq_from: int, seq_to: int, reason: str = "restart") -> dict:
    return {"seq": seq, "kind": "dropped", "count": seq_to - seq_from + 1, "seq_from": seq_from, "seq_to": seq_to,
            "ts_from": None, "ts_to": None, "reason": reason}


def alarm(seq: int, alarm_id: str, state: str) -> bytes:
    return json.dumps({"v": 1, "gateway": "gw-0042", "seq": seq, "alarm": alarm_id, "state": state,
                       "severity": "critical", "value": 0.08, "limit": 0.1, "ts": 1_764_201_630_000,
                       "message": "m"}).encode()


def fed(*messages: tuple[str, bytes] | tuple[str, bytes, bool], from_start: bool = False) -> dict:
    ledger = Ledger(from_start=from_start)
    for i, message in enumerate(messages):
        topic, payload, *retained = message
        ledger.feed(f"{BASE}/{topic}" if topic else "linli/odd", payload, bool(retained and retained[0]), 1000 + i)
    report = ledger.report()
    return report["gateways"][0] if report["gateways"] else report


def test_contiguous_records_have_no_gap():
    row = fed(("telemetry", telemetry(*map(reading, range(1, 51)))), ("telemetry", telemetry(reading(51))))
    assert (row["records"], row["seq_first"], row["seq_last"], row["unexplained_gaps"]) == (51, 1, 51, [])


def test_a_hole_is_an_unexplained_gap_and_a_dropped_record_explains_one():
    row = fed(("telemetry", telemetry(reading(1), reading(2), reading(6), reading(9), reading(10))),
              ("telemetry", telemetry(dropped(11, 3, 5))))
    assert row["unexplained_gaps"] == [[7, 8]]
    assert (row["unexplained"], row["explained"]) == (2, 3)


def test_a_dropped_range_covering_seqs_that_did_arrive_explains_only_the_rest():
    row = fed(("telemetry", telemetry(reading(1), reading(3), dropped(5, 1, 4))))
    assert (row["unexplained_gaps"], row["explained"], row["records"]) == ([], 2, 3)


def test_a_restart_jump_is_explained_by_the_restart_dropped_record_or_not_at_all():
    before = ("telemetry", telemetry(*map(reading, range(1, 5))))
    assert fed(before, ("telemetry", telemetry(reading(65))))["unexplained_gaps"] == [[5, 64]]
    after = ("telemetry", telemetry(dropped(65, 5, 64), reading(66)))
    assert fed(before, after)["unexplained_gaps"] == []


def test_the_outbox_corrupt_alarm_explains_the_jump_below_it():
    messages = [("telemetry", telemetry(reading(1), reading(2))), ("alarm", alarm(1000, "gateway/outbox-corrupt",
                                                                                 "raised"))]
    row = fed(*messages, ("telemetry", telemetry(reading(1001))))
    assert (row["unexplained_gaps"], row["explained"]) == ([], 997)
    other = fed(messages[0], ("alarm", alarm(1000, "pump-pressure/low", "raised")))
    assert other["unexplained_gaps"] == [[3, 999]]


def test_a_seq_seen_twice_is_a_duplicate_not_a_record():
    row = fed(("telemetry", telemetry(reading(1), reading(2))), ("telemetry", telemetry(reading(2), reading(3))),
              ("alarm", alarm(3, "pump-pressure/low", "raised")))
    assert (row["records"], row["duplicates"]) == (3, 2)


def test_a_late_subscriber_counts_from_the_lowest_seq_seen_unless_from_start():
    messages = [("alarm", alarm(120, "pump-pressure/low", "raised")), ("telemetry", telemetry(reading(100)))]
    assert fed(*messages)["unexplained_gaps"] == [[101, 119]]   # telemetry behind the alarm came later, lower
    assert fed(*messages, from_start=True)["unexplained_gaps"] == [[1, 99], [101, 119]]


def test_retained_messages_are_state_not_records():
    status = json.dumps({"v": 1, "gateway": "gw-0042", "state": "offline", "version": "1", "boot": "b",
                         "ts": 1_764_000_000_000}).encode()
    row = fed(("status", status, True), ("alarm/pump-pressure/low", alarm(7, "pump-pressure/low", "raised"), True),
              ("alarm/bed-3/out-of-bed", alarm(5, "bed-3/out-of-bed", "cleared"), True))
    assert (row["records"], row["seq_first"], row["unexplained_gaps"]) == (0, None, [])
    assert row["status"] == {"state": "offline", "since_ms": 1_764_000_000_000, "received_ms": 1000,
                             "retained": True}
    assert row["alarms_raised"] == ["pump-pressure/low"]


def test_the_latest_transition_by_seq_decides_whether_an_alarm_is_raised():
    cleared, raised = alarm(9, "pump-pressure/low", "cleared"), alarm(8, "pump-pressure/low", "raised")
    assert fed(("alarm", cleared), ("alarm", raised))["alarms_raised"] == []     # arrived out of order
    acked = alarm(10, "pump-pressure/low", "acknowledged")
    assert fed(("alarm", raised), ("alarm", acked))["alarms_raised"] == ["pump-pressure/low"]


def test_health_gives_the_outbox_depth_and_clock_sync():
    health = json.dumps({"v": 1, "gateway": "gw-0042", "ts": 5, "clock_synced": False,
                         "outbox": {"depth": 312}}).encode()
    assert fed(("health", health))["health"] == {"outbox_depth": 312, "clock_synced": False, "ts": 5,
                                                "received_ms": 1000}


def test_odd_payloads_are_counted_and_foreign_topics_and_commands_ignored():
    report = fed(("", b"{}"), ("cmd/diag", b'{"v":1}'), ("cmd/diag/reply", b"not json"))
    assert (report["ignored"], report["gateways"]) == (3, [])
    row = fed(("telemetry", b"\xff"), ("telemetry", telemetry({"seq": 0})), ("event", b"[1]"),
              ("telemetry", telemetry(reading(4))))
    assert (row["invalid"], row["records"]) == (3, 1)


def test_gateways_are_told_apart_by_base_topic():
    ledger = Ledger()
    for grid in ("shimen2/b07", "shimen2/b08"):
        ledger.feed(f"linli/{grid}/gw-1/telemetry", telemetry(reading(1)), False, 0)
    report = ledger.report()
    assert [row["base"] for row in report["gateways"]] == ["linli/shimen2/b07/gw-1", "linli/shimen2/b08/gw-1"]
    assert base_of("linli/gw-1/status") is None


def test_seq_ranges_merge_and_report_what_is_missing():
    seen = SeqRanges()
    assert [seen.add(lo, hi) for lo, hi in ((5, 9), (1, 2), (3, 4), (20, 20), (6, 7))] == [True] * 4 + [False]
    assert (seen.ranges(), len(seen), 10 in seen, 20 in seen) == ([(1, 9), (20, 20)], 10, False, True)
    assert seen.missing(0, 25) == [(0, 0), (10, 19), (21, 25)]
    assert seen.missing(3, 8) == []
