"""Self-update under systemd itself: releases built from this checkout, updated between over MQTT.

A systemd container (tests/test_systemd_container.py) with the three shipped units installed
unchanged. Four bundles are built as a release manager builds them: 0.2.0 and 0.3.0 work, 0.4.0
dies when the agent starts (its agent module raises at import) and 0.5.0 cannot even be imported.
The first is installed by the line README.md gives a technician (``sudo linli update
linli-edge-0.2.0.tar.gz``); then everything goes through ``cmd/update`` and ``linli-update.path``:
0.3.0 is taken, 0.4.0 is switched to and switched back, 0.5.0 is refused before any switch, and
after a restart 0.3.0 still runs.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.mqtt_helpers import wait_until
from tests.offline_index import build_index
from tests.release_helpers import build_bundle
from tests.test_cli_json import check
from tests.test_config_remote import Operator as RemoteOperator
from tests.test_systemd_container import ROOT, VENV, booted_gateway, why_not
from tests.test_systemd_unit import BASE, readings

GATEWAY = "gw-unit"
PACKAGES = "/srv/packages"
UNITS = ("linli-edge.service", "linli-update.path", "linli-update.service")
#: How README.md tells a technician to update a gateway; run here as written (as root, in the package's folder).
DOCUMENTED = "sudo linli update linli-edge-0.2.0.tar.gz"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    if why_not():
        pytest.skip(why_not())
    work = tmp_path_factory.mktemp("releases")
    index, cache = build_index(work / "index"), work / "pip-cache"
    built = {version: build_bundle(work, version, index, cache, crash)
             for version, crash in (("0.2.0", None), ("0.3.0", None), ("0.4.0", "agent"), ("0.5.0", "import"))}
    folder = work / "packages"
    folder.mkdir()
    for bundle in built.values():
        bundle.rename(folder / bundle.name)
    return folder


@pytest.fixture
def container(tmp_path, broker, bundles):
    """The three units installed and no release at all: the test installs the first one."""
    units = [(ROOT / "systemd" / unit, f"/etc/systemd/system/{unit}") for unit in UNITS]
    with booted_gateway(tmp_path, broker, [*units, (bundles, PACKAGES)]) as running:
        yield running


class Operator(RemoteOperator):
    """The central side of tests/test_config_remote.py, for this container's gateway."""

    def __init__(self, broker, sub):
        super().__init__(broker, sub, base=BASE, gateway=GATEWAY)

    def version(self):
        """The version that answers a ping, once one answers (the agent subscribes just after its start)."""
        for attempt in range(60):
            try:
                return self.ask("ping", f"ping-{len(self.sub.messages())}-{attempt}", timeout=1)["result"]["version"]
            except AssertionError:
                continue
        raise AssertionError("the agent never answered a ping")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update(operator, bundles, version, request_id, deadline=30):
    bundle = bundles / f"linli-edge-{version}.tar.gz"
    return operator.ask("update", request_id, {"path": f"{PACKAGES}/{bundle.name}", "sha256": sha256(bundle),
                                               "deadline_s": deadline}, timeout=240)


def current(container):
    return container.run("readlink /opt/linli/current").stdout.strip()


def test_updates_over_mqtt_and_switches_back_from_a_broken_release(container, broker, bundles,
                                                                                   subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    operator = Operator(broker, sub)
    try:
        # The first release, by a technician: nothing runs yet, nothing to go back to.
        first = container.run(f"cd {PACKAGES} && PATH={VENV}/bin:$PATH {DOCUMENTED.removeprefix('sudo ')}",
                              timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr + container.run("journalctl -b").stdout[-3000:]
        assert first.stdout.split()[:4] == ["updated", "-", "->", "0.2.0"], first.stdout
        assert re.fullmatch(r"releases/0\.2\.0-[0-9a-f]{12}", current(container))
        assert operator.version() == "0.2.0"
        assert container.run("systemctl enable --now linli-update.path").returncode == 0

        # 0.3.0 over MQTT: the updater takes it, the new agent answers.
        reply = update(operator, bundles, "0.3.0", "up-2")
        assert reply["ok"], reply
        assert reply["result"]["to"]["version"] == "0.3.0" and reply["result"]["from"]["version"] == "0.2.0"
        assert re.fullmatch(r"releases/0\.3\.0-[0-9a-f]{12}", current(container))
        assert container.run("readlink /opt/linli/previous").stdout.strip().startswith("releases/0.2.0-")
        assert operator.version() == "0.3.0"
        pid = container.run("systemctl show -p MainPID --value linli-edge").stdout.strip()
        assert container.run(f"ps -o user= -p {pid}").stdout.strip() == "linli"

        # 0.4.0 dies at start: switched to, found dead, switched back; the sensors go on.
        reply = update(operator, bundles, "0.4.0", "up-3", deadline=20)
        assert not reply["ok"]
        assert "rolled back" in reply["error"] and "broken on purpose" in reply["error"], reply
        assert current(container).startswith("releases/0.3.0-")
        assert not any(name.startswith("0.4.0") for name in container.run("ls /opt/linli/releases").stdout.split())
        count = len(readings(sub))
        sub.wait_for(lambda _m: len(readings(sub)) >= count + 3, 20, "readings after the switch back")
        health = operator.ask("health", "health-1")["result"]
        assert health["version"] == "0.3.0"
        assert health["update"]["outcome"] == "rolled_back" and health["update"]["id"] == "up-3"

        # 0.5.0 cannot be imported: refused before anything is switched; the same agent runs on.
        pid = container.run("systemctl show -p MainPID --value linli-edge").stdout.strip()
        reply = update(operator, bundles, "0.5.0", "up-4")
        assert not reply["ok"] and "0.5.0 does not start" in reply["error"], reply
        assert container.run("systemctl show -p MainPID --value linli-edge").stdout.strip() == pid
        assert current(container).startswith("releases/0.3.0-")

        # Every outcome is in the audit trail once.
        def events():
            return [m.payload for m in sub.messages("event") if m.payload["event"] == "update"]
        wait_until(lambda: len(events()) >= 3, 10, "three update events")
        assert [(e["request_id"], e["outcome"]) for e in events()] == \
            [("up-2", "applied"), ("up-3", "rolled_back"), ("up-4", "refused")], events()

        # A restart keeps the release that was switched to; asked for it again, the updater changes nothing.
        assert container.run("systemctl restart linli-edge").returncode == 0
        assert operator.version() == "0.3.0"
        # A power cut during a trial: at boot linli-update.service finds it and judges the release again.
        previous = container.run("readlink /opt/linli/previous").stdout.strip().removeprefix("releases/")
        cut = {"id": "cut-1", "via": "mqtt", "phase": "trial", "deadline_s": 60,
               "from": {"version": previous.split("-")[0], "release": previous},
               "to": {"version": "0.3.0", "release": current(container).removeprefix("releases/")}}
        container.run(f"echo '{json.dumps(cut)}' > /var/lib/linli/update/state.json")
        assert container.run("systemctl start linli-update.service", timeout=120).returncode == 0
        sub.wait_for(lambda _m: operator.replies("cut-1"), 60, "the answer to the interrupted update")
        reply = operator.replies("cut-1")[0]
        assert reply["ok"] and reply["result"]["outcome"] == "updated", reply
        assert current(container).startswith("releases/0.3.0-")

        again = container.run(f"{VENV}/bin/linli update --json {PACKAGES}/linli-edge-0.3.0.tar.gz", timeout=120)
        assert again.returncode == 0, again.stderr
        shown = json.loads(again.stdout)
        check("update", shown)
        assert shown["outcome"] == "unchanged" and shown["to"]["version"] == "0.3.0"
    finally:
        operator.close()
