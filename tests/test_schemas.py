"""The payload schemas in edge/schemas/: valid JSON Schema, strict where it matters, open to new keys."""

from __future__ import annotations

import copy
import json
from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from edge import schemas

# One payload of each kind (docs/design.md, Topics and payloads).
EXAMPLES = {
    "telemetry": {"v": 1, "gateway": "gw-0042", "boot": "3f2a", "records": [
        {"seq": 1207, "sensor": "pump-pressure", "quantity": "pressure", "value": 0.42, "unit": "MPa",
         "ts": 1764201600123, "synced": True, "quality": "good"},
        {"seq": 1208, "kind": "dropped", "count": 5000, "seq_from": 1, "seq_to": 5000,
         "ts_from": 1764100000000, "ts_to": 1764150000000}]},
    "alarm": {"v": 1, "gateway": "gw-0042", "seq": 1209, "alarm": "pump-pressure/low", "state": "raised",
              "severity": "critical", "value": 0.08, "limit": 0.10, "ts": 1764201630000, "synced": True,
              "message": "pressure 0.08 MPa below 0.10 MPa"},
    "alarm_state": {"v": 1, "gateway": "gw-0042", "seq": 1209, "alarm": "pump-pressure/low", "state": "cleared",
                    "severity": "critical", "value": 0.12, "limit": 0.10, "ts": 1764201690000, "message": "ok"},
    "event": {"v": 1, "gateway": "gw-0042", "seq": 1210, "event": "alarm_ack", "request_id": "c-18", "via": "mqtt",
              "outcome": "applied", "detail": '{"alarm":"pump-pressure/low","states":["acknowledged"]}',
              "ts": 1764201700000},
    "status": {"v": 1, "gateway": "gw-0042", "state": "online", "version": "0.1.0", "boot": "3f2a",
               "ts": 1764201600000},
    "health": {"v": 1, "gateway": "gw-0042", "ts": 1764201600000, "uptime_s": 3600, "disk_free_bytes": 10**9,
               "cpu_temp_c": 48.3, "load1": 0.12, "rss_kb": 31000, "clock_synced": True,
               "outbox": {"depth": 12, "dropped_total": 0, "disk_full": False}},
    "command": {"v": 1, "gateway": "gw-0042", "id": "c-17", "name": "read-now", "args": {"sensor": "p"}},
    "command_reply": {"v": 1, "gateway": "gw-0042", "id": "c-17", "name": "read-now", "ok": True,
                      "result": {"value": 0.42}},
}


def test_every_schema_has_an_example_here():
    assert set(EXAMPLES) == set(schemas.NAMES)
    files = {p.name for p in resources.files("edge.schemas").iterdir() if p.name.endswith(".schema.json")}
    assert files == {f"{name}.schema.json" for name in schemas.NAMES}


@pytest.mark.parametrize("name", sorted(schemas.NAMES))
def test_schema_is_valid_draft_2020_12(name):
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", sorted(schemas.NAMES))
def test_example_is_valid_and_extra_keys_are_allowed(name):
    validator = Draft202012Validator(schemas.load(name))
    example = copy.deepcopy(EXAMPLES[name])
    assert list(validator.iter_errors(example)) == []
    example["added_in_a_later_version"] = {"anything": [1, 2]}
    assert validator.is_valid(example)


@pytest.mark.parametrize("name", sorted(schemas.NAMES))
@pytest.mark.parametrize("key", ["v", "gateway"])
def test_payload_without_envelope_key_is_rejected(name, key):
    payload = copy.deepcopy(EXAMPLES[name])
    del payload[key]
    assert not Draft202012Validator(schemas.load(name)).is_valid(payload)


@pytest.mark.parametrize("name", sorted(schemas.NAMES))
def test_another_version_is_rejected(name):
    payload = dict(EXAMPLES[name], v=2)
    assert not Draft202012Validator(schemas.load(name)).is_valid(payload)


def _telemetry_valid(record: dict) -> bool:
    payload = dict(EXAMPLES["telemetry"], records=[record])
    return Draft202012Validator(schemas.load("telemetry")).is_valid(payload)


def test_reading_needs_its_documented_fields():
    reading = EXAMPLES["telemetry"]["records"][0]
    assert _telemetry_valid(reading)
    for key in ("seq", "sensor", "quantity", "value", "unit", "ts", "synced", "quality"):
        assert not _telemetry_valid({k: v for k, v in reading.items() if k != key}), key


def test_reading_that_is_not_good_needs_a_reason():
    reading = dict(EXAMPLES["telemetry"]["records"][0], quality="bad", value=None)
    assert not _telemetry_valid(reading)
    assert _telemetry_valid(dict(reading, reason="timeout"))


def test_dropped_record_needs_its_range():
    dropped = EXAMPLES["telemetry"]["records"][1]
    for key in ("count", "seq_from", "seq_to", "ts_from", "ts_to"):
        assert not _telemetry_valid({k: v for k, v in dropped.items() if k != key}), key


def test_empty_batch_is_rejected():
    assert not Draft202012Validator(schemas.load("telemetry")).is_valid(dict(EXAMPLES["telemetry"], records=[]))


@pytest.mark.parametrize("alarm_id", ["pump", "a/b/c", "a/+", "#/x"])
def test_alarm_id_must_be_sensor_slash_rule(alarm_id):
    for name in ("alarm", "alarm_state"):
        assert not Draft202012Validator(schemas.load(name)).is_valid(dict(EXAMPLES[name], alarm=alarm_id))


def test_alarm_state_and_severity_are_closed_sets():
    validator = Draft202012Validator(schemas.load("alarm"))
    assert validator.is_valid(dict(EXAMPLES["alarm"], state="acknowledged"))
    assert not validator.is_valid(dict(EXAMPLES["alarm"], state="open"))
    assert not validator.is_valid(dict(EXAMPLES["alarm"], severity="fatal"))


def test_health_facts_may_be_null_but_not_missing():
    validator = Draft202012Validator(schemas.load("health"))
    assert validator.is_valid(dict(EXAMPLES["health"], cpu_temp_c=None, disk_free_bytes=None))
    assert not validator.is_valid({k: v for k, v in EXAMPLES["health"].items() if k != "cpu_temp_c"})


def test_command_reply_carries_a_result_or_an_error():
    validator = Draft202012Validator(schemas.load("command_reply"))
    reply = EXAMPLES["command_reply"]
    assert not validator.is_valid({k: v for k, v in reply.items() if k != "result"})
    failed = {k: v for k, v in reply.items() if k != "result"} | {"ok": False}
    assert not validator.is_valid(failed)
    assert validator.is_valid(failed | {"error": "unknown sensor p"})


def test_load_returns_a_fresh_copy_and_refuses_unknown_names():
    schemas.load("status")["required"].append("mutated")
    assert "mutated" not in schemas.load("status")["required"]
    with pytest.raises(KeyError, match="no schema named 'nope'"):
        schemas.load("nope")


def test_schema_files_are_plain_json():
    for name in schemas.NAMES:
        text = resources.files("edge.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
        assert json.loads(text)["title"] == name
