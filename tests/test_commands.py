"""Command requests: parsing, de-duplication and the error a central operator gets back."""

import json

import pytest

from edge.commands import REMEMBERED, CommandError, Commands


def request(name="ping", rid="r1", **extra):
    return json.dumps({"v": 1, "gateway": "gw-1", "id": rid, "name": name, **extra}).encode()


def test_unanswerable_requests_are_ignored():
    cmds = Commands("gw-1", {"ping": lambda a: 1})
    assert cmds.handle("ping", b"{not json") is None
    assert cmds.handle("ping", b'{"v": 1, "name": "ping"}') is None
    assert cmds.handle("ping", b"[1, 2]") is None


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
