"""The uplink's pure parts: topic names, payload bytes and batching, backoff, wording of errors."""

from __future__ import annotations

import itertools
import json
import random
import socket
import ssl

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge import payloads, topics
from edge.config import MqttConfig
from edge.uplink import Backoff
from edge.uplink_client import (
    UplinkSetupError,
    describe_connect_error,
    describe_loss,
    describe_refusal,
    keepalive_seconds,
    make_client,
    read_password,
)
from tests.mqtt_helpers import reading, validator

BASE = "linli/shimen2/xinfukangli/b07/gw-0042"


# --- topics -----------------------------------------------------------------------------------------------------
def test_topics_under_the_base():
    assert topics.base_topic("linli", "shimen2/xinfukangli/b07", "gw-0042") == BASE
    assert topics.status(BASE) == BASE + "/status"
    assert topics.telemetry(BASE) == BASE + "/telemetry"
    assert topics.alarm(BASE) == BASE + "/alarm"
    assert topics.alarm_state(BASE, "pump-pressure/low") == BASE + "/alarm/pump-pressure/low"
    assert topics.health(BASE) == BASE + "/health"
    assert topics.command(BASE, "read-now") == BASE + "/cmd/read-now"
    assert topics.command_reply(BASE, "read-now") == BASE + "/cmd/read-now/reply"
    assert topics.command_filter(BASE) == BASE + "/cmd/+"


@pytest.mark.parametrize("bad", ["a+b", "a#", "a/b", "", "nul\0"])
def test_topic_parts_cannot_change_the_topic_structure(bad):
    with pytest.raises(topics.TopicError):
        topics.command(BASE, bad)
    with pytest.raises(topics.TopicError):
        topics.base_topic("linli", "grid", bad)


@pytest.mark.parametrize("alarm_id", ["pump", "a/b/c", "a/+", "#/low", "/low", "pump/", None])
def test_malformed_alarm_ids_are_refused(alarm_id):
    with pytest.raises(topics.TopicError):
        topics.alarm_state(BASE, alarm_id)


@pytest.mark.parametrize("grid", ["/shimen2", "shimen2/", "a//b", "a/+/b"])
def test_grid_paths_need_clean_levels(grid):
    with pytest.raises(topics.TopicError, match="grid path"):
        topics.base_topic("linli", grid, "gw-1")


@pytest.mark.parametrize("suffix, kind", [
    ("status", "status"), ("telemetry", "telemetry"), ("alarm", "alarm"), ("alarm/s/r", "alarm_state"),
    ("health", "health"), ("cmd/diag", "command"), ("cmd/diag/reply", "command_reply"),
    ("alarm/s", None), ("cmd/diag/other", None), ("telemetry/x", None), ("other", None),
])
def test_kind_of_names_the_schema_of_a_topic(suffix, kind):
    assert topics.kind_of(BASE, f"{BASE}/{suffix}") == kind


def test_kind_of_ignores_other_gateways():
    assert topics.kind_of(BASE, "linli/shimen2/xinfukangli/b07/gw-00421/status") is None


# --- payloads -----------------------------------------------------------------------------------------------------
def test_status_payload_matches_its_schema():
    body = json.loads(payloads.status("gw-1", "online", version="1.2", boot="b", ts=5))
    assert body == {"v": 1, "gateway": "gw-1", "state": "online", "version": "1.2", "boot": "b", "ts": 5}
    assert validator("status").is_valid(body)


def test_health_facts_cannot_override_the_envelope():
    body = json.loads(payloads.health("gw-1", 7, {"v": 99, "gateway": "x", "ts": 0, "uptime_s": 3}))
    assert (body["v"], body["gateway"], body["ts"], body["uptime_s"]) == (1, "gw-1", 7, 3)


def test_alarm_payload_drops_kind_and_keeps_extra_keys():
    body = {"kind": "alarm", "alarm": "p/low", "state": "raised", "severity": "critical", "value": 0.08,
            "limit": 0.1, "ts": 1, "message": "low", "moved_to": "x", "seq": 3, "gateway": "evil"}
    sent = json.loads(payloads.alarm("gw-1", 12, body))
    assert sent["seq"] == 12 and sent["gateway"] == "gw-1" and "kind" not in sent
    assert sent["moved_to"] == "x"
    assert validator("alarm").is_valid(sent)


def test_non_finite_numbers_become_null():
    assert json.loads(payloads.encode({"value": float("inf"), "list": [float("-inf"), 1.5]})) == \
        {"value": None, "list": [None, 1.5]}


def test_readings_lose_their_kind_dropped_records_keep_it():
    assert b'"kind"' not in payloads.telemetry_record(1, {"kind": "reading", "sensor": "s"})
    assert json.loads(payloads.telemetry_record(2, {"kind": "dropped", "count": 4}))["kind"] == "dropped"


@pytest.mark.parametrize("max_records, max_bytes", [(1, 10_000), (7, 10_000), (500, 2_000), (50, 900), (3, 400)])
def test_batches_respect_both_bounds_and_keep_every_record_in_order(max_records, max_bytes):
    rng = random.Random(max_records * 1000 + max_bytes)
    rows = []
    for seq in range(1, 400):
        body = reading(seq)
        body["note"] = "x" * rng.randrange(0, 300)
        rows.append((seq, body))
    batcher = payloads.TelemetryBatcher("gw-1", "boot", max_records=max_records, max_bytes=max_bytes)
    batches = list(batcher.batches(rows))
    assert [s for b in batches for s in b.seqs] == [seq for seq, _ in rows]
    for batch in batches:
        decoded = json.loads(batch.payload)
        assert [r["seq"] for r in decoded["records"]] == batch.seqs
        assert len(batch.seqs) <= max_records
        assert len(batch.payload) <= max_bytes or len(batch.seqs) == 1
        assert validator("telemetry").is_valid(decoded)
    assert all(b.full for b in batches[:-1])
    assert batches[-1].full == (len(batches[-1].seqs) == max_records)
    # Greedy: a batch is only closed when the next record would not fit.
    for batch, following in itertools.pairwise(batches):
        next_seq = following.seqs[0]
        grown = len(batch.payload) + 1 + len(payloads.telemetry_record(next_seq, dict(rows)[next_seq]))
        assert len(batch.seqs) == max_records or grown > max_bytes


def test_a_record_bigger_than_the_byte_bound_goes_alone():
    big = reading(2)
    big["error"] = "e" * 5000
    rows = [(1, reading(1)), (2, big), (3, reading(3))]
    batches = list(payloads.TelemetryBatcher("gw-1", "b", max_records=10, max_bytes=1000).batches(rows))
    assert [b.seqs for b in batches] == [[1], [2], [3]]
    assert len(batches[1].payload) > 1000


def test_batch_bounds_must_be_positive():
    with pytest.raises(ValueError):
        payloads.TelemetryBatcher("gw", "b", max_records=0, max_bytes=100)


# --- backoff ------------------------------------------------------------------------------------------------------
def test_backoff_grows_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(0.5, 8.0, rng=random.Random(1).random)
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2 ** i) for i in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 8.0 and delays[-1] >= 4.0
    assert len({round(d, 6) for d in delays[6:]}) > 1          # jitter: capped delays still differ
    backoff.reset()
    assert backoff.next() <= 0.5


# --- client building and error wording ----------------------------------------------------------------------------
def test_password_file_is_read_without_its_trailing_newline(tmp_path):
    path = tmp_path / "pw"
    path.write_text("p4ss word\r\n")
    assert read_password(str(path)) == "p4ss word"


def test_missing_password_file_is_a_clear_setup_error(tmp_path):
    with pytest.raises(UplinkSetupError, match=r"cannot read the MQTT password file .*pw: No such file"):
        read_password(str(tmp_path / "pw"))


def test_password_without_user_name_is_refused(tmp_path):
    (tmp_path / "pw").write_text("x")
    cfg = MqttConfig(password_file=str(tmp_path / "pw"))
    with pytest.raises(UplinkSetupError, match="username"):
        make_client(cfg, "c", ("t/status", b"{}"), {})


def test_unreadable_tls_files_are_a_clear_setup_error(tmp_path):
    cfg = MqttConfig(tls=True, ca_file=str(tmp_path / "missing-ca.crt"))
    with pytest.raises(UplinkSetupError, match="cannot load the TLS files .*missing-ca.crt"):
        make_client(cfg, "c", ("t/status", b"{}"), {})


def test_unknown_protocol_is_a_setup_error():
    with pytest.raises(UplinkSetupError, match='"3.1.1" or "5"'):
        make_client(MqttConfig(protocol="4"), "c", ("t/status", b"{}"), {})


def test_keepalive_rounds_up_to_whole_seconds():
    assert [keepalive_seconds(k) for k in (0, 0.2, 1.0, 1.5, 60)] == [0, 1, 1, 2, 60]


@pytest.mark.parametrize("exc, expected", [
    (ConnectionRefusedError(111, "Connection refused"), "connection refused (is the broker running?)"),
    (TimeoutError("timed out"), "no answer from broker 10.0.0.1:8883 within 10 s"),
    (socket.gaierror(-2, "Name or service not known"), "cannot resolve the broker host 10.0.0.1"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS handshake with broker 10.0.0.1:8883"),
    (OSError(113, "No route to host"), "cannot connect to broker 10.0.0.1:8883: no route to host"),
])
def test_connect_errors_name_the_broker_and_the_cause(exc, expected):
    assert expected in describe_connect_error(exc, "10.0.0.1", 8883)


def test_refusal_and_loss_are_worded_for_a_person():
    refused = describe_refusal(ReasonCode(PacketTypes.CONNACK, "Not authorized"), "127.0.0.1", 1883)
    assert refused == "broker 127.0.0.1:1883 refused the connection: not authorized"
    lost = describe_loss(mqtt.DisconnectFlags(False), ReasonCode(PacketTypes.DISCONNECT, "Keep alive timeout"),
                         "h", 1, 1.5)
    assert lost == "broker h:1 stopped answering (no reply within the 2 s keepalive)"
    closed = describe_loss(mqtt.DisconnectFlags(True), ReasonCode(PacketTypes.DISCONNECT, "Session taken over"),
                           "h", 1, 60)
    assert closed == "broker h:1 closed the connection: session taken over"
