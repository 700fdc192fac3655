"""Command requests: parsing, de-duplication and the error a central operator gets back."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from edge import schemas
from edge.commands import MAX_NAME, MAX_REQUEST, REMEMBERED, CommandError, Commands, RolledBack

REPLY_SCHEMA = Draft202012Validator(schemas.load("command_reply"))


def request(name="ping", rid="r1", **extra):
    return json.dumps({"v": 1, "gateway": "gw-1", "id": rid, "name": name, **extra}).encode()


@pytest.mark.parametrize("payload, error", [
    (b"{not json", "the request is not JSON (Expecting property name"),
    (b'{"v": 1, "name": "ping"}', "the request must be an object with an id of 1 to 128 characters"),
    (request(rid=""), "the request must be an object with an id of 1 to 128 characters"),
    (request(rid="r" * 129), "the request must be an object with an id of 1 to 128 characters"),
    (b'{"v": 1, "id": 7, "name": "ping"}', "the request must be an object with an id"),
    (b"[1, 2]", "the request must be a JSON object with an id"),
    (b'"ping"', "the request must be a JSON object with an id"),
    (b"\xff\xfe{}", "the request is not UTF-8 text (byte 0 is invalid)"),
    (b"[" * 100_000 + b"]" * 100_000, f"the request is 200000 bytes; at most {MAX_REQUEST} are read"),
    (b"[" * 30_000 + b"]" * 30_000, "the request is nested too deeply to be read"),
    (b'{"id": "r1", "args": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "the request is nested too deeply"),
])
def test_an_unreadable_request_is_answered_with_id_null_and_why(payload, error):
    runs = []
    cmds = Commands("gw-1", {"ping": lambda a: runs.append(a)})
    reply = cmds.handle("ping", payload)
    assert reply["id"] is None and reply["ok"] is False and reply["error"].startswith(error)
    assert (reply["gateway"], reply["name"]) == ("gw-1", "ping") and runs == []
    assert list(REPLY_SCHEMA.iter_errors(reply)) == []


def test_an_integer_longer_than_pythons_int_parser_takes_is_still_json():
    cmds = Commands("gw-1", {"ping": lambda a: type(a["n"]).__name__})
    digits = "9" * 5_000
    reply = cmds.handle("ping", request(args={"n": 0}).replace(b'"n": 0', f'"n": {digits}'.encode()))
    assert (reply["id"], reply["ok"]) == ("r1", True)
    assert reply["result"] == "Decimal", "no handler mistakes it for an int it could compute with"


def test_a_repeated_id_on_another_command_runs_that_command():
    runs = []
    cmds = Commands("gw-1", {"ping": lambda a: runs.append("ping") or "pong",
                             "health": lambda a: runs.append("health") or {"ok": 1}})
    assert cmds.handle("ping", request("ping", rid="same"))["result"] == "pong"
    health = cmds.handle("health", request("health", rid="same"))
    assert (health["name"], health["result"]) == ("health", {"ok": 1}) and runs == ["ping", "health"]
    assert cmds.handle("ping", request("ping", rid="same"))["result"] == "pong" and len(runs) == 2


def test_a_result_that_cannot_be_sent_as_json_is_an_error_reply():
    cmds = Commands("gw-1", {"ping": lambda a: {"when": object()}})
    reply = cmds.handle("ping", request())
    assert reply["ok"] is False and reply["error"].startswith("internal error")
    json.dumps(reply)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"v": st.just(1), "gateway": st.just("gw-1"), "id": st.text(max_size=140),
                           "name": st.sampled_from(["ping", "crash"]),
                           "args": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)}).map(
        lambda v: json.dumps(v).encode()),
))
def test_any_bytes_get_a_reply_that_matches_the_schema(payload):
    cmds = Commands("gw-1", {"ping": lambda a: 1, "crash": lambda a: 1 / 0})
    reply = cmds.handle("ping", payload)
    assert list(REPLY_SCHEMA.iter_errors(reply)) == [], reply
    json.dumps(reply, allow_nan=False)


@pytest.mark.parametrize("payload, error", [
    (request(v=2), "unsupported request version 2"),
    (request(args=[1]), "args must be a JSON object"),
    (request(name="nope"), 'unknown command "nope"; this gateway knows: fail, ping'),
])
def test_bad_requests_get_a_specific_error(payload, error):
    body = json.loads(payload)
    cmds = Commands("gw-1", {"ping": lambda a: 1, "fail": lambda a: 1})
    reply = cmds.handle(body["name"], payload)
    assert reply["ok"] is False and reply["error"].startswith(error)


def test_handler_errors_are_replies_not_crashes():
    def refuse(args):
        raise CommandError("until must be in the future")

    def crash(args):
        raise KeyError("x")

    cmds = Commands("gw-1", {"away": refuse, "crash": crash})
    assert cmds.handle("away", request("away"))["error"] == "until must be in the future"
    assert cmds.handle("crash", request("crash", rid="r2"))["error"].startswith("internal error")


def test_a_repeated_id_is_answered_again_without_running_twice():
    runs = []
    cmds = Commands("gw-1", {"ping": lambda a: runs.append(a) or len(runs)})
    first = cmds.handle("ping", request(args={"n": 1}))
    again = cmds.handle("ping", request(args={"n": 1}))
    assert first == again and first["result"] == 1 and len(runs) == 1


def test_memory_of_answered_ids_is_bounded():
    runs = []
    cmds = Commands("gw-1", {"ping": lambda a: runs.append(1)})
    for i in range(REMEMBERED + 1):
        cmds.handle("ping", request(rid=f"r{i}"))
    cmds.handle("ping", request(rid="r0"))     # forgotten: the oldest id runs again
    assert len(runs) == REMEMBERED + 2


def test_a_command_name_too_long_to_reply_under_is_dropped():
    runs = []
    cmds = Commands("gw-1", {"n" * (MAX_NAME + 1): lambda a: runs.append(a)})
    assert cmds.handle("n" * (MAX_NAME + 1), request(name="n" * (MAX_NAME + 1))) is None
    assert runs == []
    assert cmds.handle("ü" * (MAX_NAME // 2), b"{}")["id"] is None, "128 bytes is still answered"


def test_every_request_run_is_audited_once_with_its_outcome_and_an_audit_fault_keeps_the_reply():
    def refuse(_args):
        raise CommandError("no")

    def roll_back(_args):
        raise RolledBack("undone")

    def crash(_args):
        raise KeyError("bug")

    audited = []

    def audit(name, request_id, outcome, reply):
        audited.append((name, request_id, outcome, reply["ok"]))
        if name == "crash":
            raise RuntimeError("the audit trail is broken")

    cmds = Commands("gw-1", {"ping": lambda _args: {}, "refuse": refuse, "roll_back": roll_back, "crash": crash},
                    audit=audit)
    for name in ("ping", "refuse", "roll_back", "crash"):
        cmds.handle(name, request(name, rid=f"{name}-1"))
    assert cmds.handle("ping", request("ping", rid="ping-1"))["ok"] is True   # a repeat: answered, not audited
    assert cmds.handle("ping", b"{not json")["ok"] is False                    # no id: nothing was run
    assert audited == [("ping", "ping-1", "applied", True), ("refuse", "refuse-1", "refused", False),
                       ("roll_back", "roll_back-1", "rolled_back", False), ("crash", "crash-1", "failed", False)]
    assert cmds.handle("crash", request("crash", rid="crash-1"))["error"] == "internal error: 'bug'"
