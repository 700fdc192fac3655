"""``cmd/update`` on the agent's side, against a running ``linli run`` and a real mosquitto, through MQTT.

The updater's half is played by the test through :class:`edge.update.handoff.Handoff`, the same
code the updater uses: it takes the request the agent leaves and writes the outcome. The whole
flow with systemd and real releases is tests/test_systemd_update.py.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile

import pytest

from edge.update.handoff import Handoff
from edge.update.remote import CLAIM_TIMEOUT, UpdateReports, UpdateRequests
from tests.mqtt_helpers import wait_until
from tests.test_events import gateway  # noqa: F401  (the fixture: a running agent, its subscriber, an operator)


def release_wheel(folder, version="9.9.9"):
    """A wheel file with the agent's name: enough for the agent's checks, which never run what it holds."""
    path = folder / f"linli_edge-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"linli_edge-{version}.dist-info/METADATA", f"Name: linli-edge\nVersion: {version}\n")
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_folder(config):
    return Handoff(config.parent.parent / "update")    # beside the outbox: no $STATE_DIRECTORY here


def events(sub, request_id):
    return [m.payload for m in sub.messages("event") if m.payload["request_id"] == request_id]


@pytest.mark.parametrize("args, error", [
    ({"sha256": "0" * 64}, "exactly one of args.url or args.path"),
    ({"url": "http://127.0.0.1/x.whl", "path": "/x.whl", "sha256": "0" * 64}, "exactly one of"),
    ({"path": "/x.whl", "sha256": "abc"}, "args.sha256: the sha256 must be 64 hexadecimal digits"),
    ({"url": "ftp://127.0.0.1/x.whl", "sha256": "0" * 64}, "args.url must be an http:// or https:// address"),
    ({"path": "/x.whl", "sha256": "0" * 64, "deadline_s": 5}, "args.deadline_s must be a number of seconds from 10"),
    ({"path": "/nonexistent/linli_edge-1.0-py3-none-any.whl", "sha256": "0" * 64}, "cannot fetch the package"),
])
def test_a_bad_request_is_refused_saying_why(gateway, args, error):  # noqa: F811
    config, _socket, sub, operator = gateway
    reply = operator.ask("update", f"bad-{error[:12]}", args)
    assert not reply["ok"] and error in reply["error"], reply
    assert not update_folder(config).request_path.exists()


def test_a_file_that_is_no_release_or_not_the_one_asked_for_is_refused(gateway, tmp_path):  # noqa: F811
    config, _socket, sub, operator = gateway
    text = tmp_path / "linli_edge-9.9.9-py3-none-any.whl"
    text.write_text("not a zip file")
    reply = operator.ask("update", "not-a-wheel", {"path": str(text), "sha256": sha256(text)})
    assert not reply["ok"] and "is not a readable wheel" in reply["error"], reply
    (tmp_path / "release").mkdir()
    wheel = release_wheel(tmp_path / "release")
    reply = operator.ask("update", "wrong-hash", {"path": str(wheel), "sha256": "ab" * 32})
    assert not reply["ok"] and f"has sha256 {sha256(wheel)}, not the {'ab' * 32} asked for" in reply["error"]
    handoff = update_folder(config)
    assert not handoff.request_path.exists() and list(handoff.incoming.iterdir()) == []
    wait_until(lambda: events(sub, "wrong-hash"), 10, "the refusal in the audit trail")
    assert events(sub, "wrong-hash")[0]["outcome"] == "refused"


def test_the_request_goes_to_the_updater_and_its_answer_comes_back(gateway, tmp_path):  # noqa: F811
    config, _socket, sub, operator = gateway
    wheel = release_wheel(tmp_path)
    handoff = update_folder(config)
    operator.send("update", "up-1", {"path": str(wheel), "sha256": sha256(wheel), "deadline_s": 90})
    wait_until(lambda: handoff.request_path.exists(), 10, "the request for the updater")
    request = handoff.take()                                   # as linli update --requested does
    assert (request.id, request.sha256, request.deadline_s, request.via) == ("up-1", sha256(wheel), 90.0, "mqtt")
    assert request.package == str(handoff.incoming / wheel.name)
    assert (handoff.incoming / wheel.name).read_bytes() == wheel.read_bytes()
    handoff.set_state({"id": "up-1", "via": "mqtt", "phase": "done", "outcome": "refused",
                       "reason": "9.9.9 does not start (version exited 1): ImportError: no module",
                       "from": {"version": "0.1.0", "release": "0.1.0-aaaaaaaaaaaa"},
                       "to": {"version": "9.9.9", "release": "9.9.9-bbbbbbbbbbbb"}, "finished": "2026-12-06T10:00:00Z"})
    sub.wait_for(lambda _m: operator.replies("up-1"), 10, "the reply to up-1")
    reply = operator.replies("up-1")[0]
    assert not reply["ok"] and reply["error"] == "not updated: 9.9.9 does not start (version exited 1): " \
                                                 "ImportError: no module"
    wait_until(lambda: events(sub, "up-1"), 10, "the update's event")
    assert [e["outcome"] for e in events(sub, "up-1")] == ["refused"]
    assert handoff.reported() == "up-1"        # the agent answered it: no agent after it answers again
    health = operator.ask("health", "h-1")["result"]
    assert health["update"]["id"] == "up-1" and health["update"]["outcome"] == "refused"
    status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--config", str(config)],
                            capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "LANG": "C"})
    assert "update     0.1.0 -> 9.9.9: refused at 2026-12-06T10:00:00Z\n" \
           "           9.9.9 does not start" in status.stdout, status.stdout

    operator.send("update", "up-2", {"path": str(wheel), "sha256": sha256(wheel)})
    wait_until(lambda: handoff.request_path.exists(), 10, "the second request")
    reply = operator.ask("update", "up-3", {"path": str(wheel), "sha256": sha256(wheel)})
    assert not reply["ok"] and "is under way" in reply["error"], reply


@pytest.mark.slow
def test_an_updater_that_never_starts_is_reported_and_the_request_withdrawn(gateway, tmp_path):  # noqa: F811
    config, _socket, sub, operator = gateway
    wheel = release_wheel(tmp_path)
    reply = operator.ask("update", "up-lonely", {"path": str(wheel), "sha256": sha256(wheel)},
                         timeout=CLAIM_TIMEOUT + 15)
    assert not reply["ok"] and "the updater did not start within 30 s" in reply["error"]
    assert "systemctl enable --now linli-update.path" in reply["error"]
    assert not update_folder(config).request_path.exists()


def test_an_outcome_found_after_a_restart_is_answered_and_audited_once(tmp_path):
    handoff = Handoff(tmp_path / "update")
    handoff.set_state({"id": "up-7", "via": "mqtt", "phase": "done", "outcome": "rolled_back",
                       "reason": "switched back to 0.1.0: 0.2.0 was not healthy within 60 s: sensor x: timeout"})
    sent, audited = [], []

    def audit(via):
        return lambda *event: audited.append((via, *event[:3]))

    def reporter():
        return UpdateReports(UpdateRequests(handoff, "0.1.0"), lambda *reply: sent.append(reply), audit, "gw-1")

    assert reporter().report_once()
    ((name, reply),) = sent
    assert name == "update" and reply["id"] == "up-7" and not reply["ok"]
    assert reply["error"].startswith("rolled back: switched back to 0.1.0")
    assert audited == [("mqtt", "update", "up-7", "rolled_back")]
    assert not reporter().report_once()          # the next agent (a restart) finds it answered
    handoff.set_state({"id": "local-1", "via": "local", "phase": "done", "outcome": "updated"})
    assert reporter().report_once()
    assert len(sent) == 1 and audited[-1] == ("local", "update", "local-1", "applied")   # no MQTT reply, an event


def test_a_package_is_fetched_over_http(gateway, tmp_path):  # noqa: F811
    config, _socket, sub, operator = gateway
    served = tmp_path / "served"
    served.mkdir()
    wheel = release_wheel(served)

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{wheel.name}"
        reply = operator.ask("update", "by-url-wrong", {"url": url, "sha256": "cd" * 32})
        assert not reply["ok"] and "has sha256" in reply["error"]
        reply = operator.ask("update", "by-url-missing", {"url": url + ".gone", "sha256": sha256(wheel)})
        assert not reply["ok"] and "cannot fetch the package" in reply["error"] and "HTTP 404" in reply["error"]
        handoff = update_folder(config)
        operator.send("update", "by-url", {"url": url, "sha256": sha256(wheel)})
        wait_until(lambda: handoff.request_path.exists(), 10, "the request for the updater")
        assert (handoff.incoming / wheel.name).read_bytes() == wheel.read_bytes()
        assert handoff.withdraw()
    finally:
        server.shutdown()
        server.server_close()
