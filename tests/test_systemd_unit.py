"""systemd/linli-edge.service run as systemd would run it: ExecStart= and ExecReload= as written.

Only the install prefix and the config path are swapped (tests/unit_harness.py); the config points
at temporary state and runtime directories and at a real mosquitto on loopback. The harness runs on
any machine; booting systemd itself needs root, systemd-nspawn and a checkout and interpreter outside
/home, /root and /tmp (the unit's ProtectHome= and PrivateTmp= hide those), so the real thing is
tests/test_systemd_container.py, which runs where those hold and is skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import stat
from itertools import pairwise

import pytest

from tests.mqtt_helpers import wait_until
from tests.unit_harness import Service, timespan

GRID = "shimen2/xinfukangli/b07"
BASE = f"linli/{GRID}/gw-unit"

#: A gateway without hardware: a pulse meter on gpiozero's mock pins, read five times a second.
CONFIG = f"""
[gateway]
id = "gw-unit"
grid = "{GRID}"

[mqtt]
host = "127.0.0.1"
port = {{port}}
reconnect_min = "100ms"
reconnect_max = "500ms"

[buffer]
path = "{{root}}/var/lib/linli/outbox.db"

[control]
socket = "{{root}}/run/linli/control.sock"

[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "flat-302-water"
driver = "pulse_meter"
bus = "gpio"
pin = 17
litres_per_pulse = 1.0
interval = "200ms"
"""


def readings(sub) -> list[dict]:
    return [r for m in sub.messages("telemetry") for r in m.payload["records"] if r.get("kind", "reading") == "reading"]


@pytest.fixture
def service(broker):
    running = Service(CONFIG.replace("{port}", str(broker.port)))
    yield running
    running.close()


def test_the_unit_starts_notifies_reloads_and_stops_as_written(service, broker, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    watchdog = timespan(service.service["WatchdogSec"])
    service.start()                                              # READY=1 from the main process
    sub.wait_for(lambda _m: len(readings(sub)) >= 3, 15, "three readings at the broker")

    # The environment is systemd's, not the test's; WATCHDOG_PID names the main process itself.
    environ = dict(item.split("=", 1) for item in
                   open(f"/proc/{service.main_pid}/environ", "rb").read().decode().split("\0") if item)
    assert environ["WATCHDOG_PID"] == str(service.main_pid)
    assert environ["WATCHDOG_USEC"] == str(int(watchdog * 1_000_000))
    assert environ["NOTIFY_SOCKET"] == str(service.notify.path)
    assert not {"PYTEST_CURRENT_TEST", "VIRTUAL_ENV", "PYTHONPATH"} & environ.keys()

    # WATCHDOG=1 at least every WatchdogSec/2, from READY=1 on.
    ready = service.wait_for_state("READY=1")
    wait_until(lambda: sum("WATCHDOG=1" in n.fields for n in service.accepted()) >= 3, 15, "three WATCHDOG=1")
    pings = [ready.at] + [n.at for n in service.accepted() if "WATCHDOG=1" in n.fields]
    assert max(b - a for a, b in pairwise(pings)) <= watchdog / 2

    # ExecReload=/bin/kill -HUP $MAINPID, executed: RELOADING=1, then READY=1, and the agent carries on.
    before = len(service.notify.received())
    reload = service.reload()
    assert reload.returncode == 0, reload.stderr
    reloading = service.wait_for_state("RELOADING=1", after=before)
    assert any(field.startswith("MONOTONIC_USEC=") for field in reloading.fields)
    after_reload = service.wait_for_state("READY=1", after=before)
    assert reloading.at <= after_reload.at
    count = len(readings(sub))
    sub.wait_for(lambda _m: len(readings(sub)) >= count + 3, 15, "readings after the reload")
    assert service.proc.poll() is None, "the agent must keep running after a reload"
    assert "reloading config from" in service.journal()

    # Stop: SIGTERM to the main process (KillMode=mixed), exit 0 well within TimeoutStopSec, nothing left behind.
    assert service.stop() == 0, service.journal()
    assert service.stop_seconds < timespan(service.service["TimeoutStopSec"])
    assert service.leftovers == []
    assert any("STOPPING=1" in n.fields for n in service.accepted())
    sub.wait_for(lambda m: any(x.kind == "status" and x.payload["state"] == "offline" for x in m), 10,
                 "the offline status")
    # NotifyAccess=main: systemd would have ignored anything from another process; nothing came from one.
    assert {n.pid for n in service.notify.received()} == {service.main_pid}


def test_the_agent_runs_with_the_units_account_and_without_privileges(service):
    if service.account is None:
        pytest.skip(service.account_note)
    service.start()
    status = dict(line.split(":", 1) for line in open(f"/proc/{service.main_pid}/status").read().splitlines())
    assert status["Uid"].split() == [str(service.account.uid)] * 4
    assert status["Gid"].split() == [str(service.account.gid)] * 4
    assert {int(g) for g in status["Groups"].split()} == set(service.account.groups)
    assert status["NoNewPrivs"].strip() == "1"                       # NoNewPrivileges=yes
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0   # CapabilityBoundingSet=
    outbox = service.directories["STATE_DIRECTORY"] / "outbox.db"
    wait_until(outbox.exists, 10, "the outbox in the state directory")
    info = outbox.stat()
    assert info.st_uid == service.account.uid
    assert stat.S_IMODE(info.st_mode) == 0o666 & ~int(service.service["UMask"], 8)   # UMask=0027: 0640
    assert stat.S_IMODE(service.config_path.stat().st_mode) == 0o640
    assert service.stop() == 0, service.journal()
