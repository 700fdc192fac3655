"""Everything shipped runs: each command line of the docs and sample configs is executed, none compared as a string.

tests/shipped_commands.py finds the lines (shell blocks of every Markdown file, ``linli`` code spans,
the command comments of the sample configurations). Each line is run by the runner whose pattern
it matches, against real things: a live agent on a simulated pump room, simulated meters behind
pseudo-terminals, a local mosquitto, the project's own scripts. A line no runner can take is
delegated, in DELEGATED below, to the test that covers what it does. A line that is neither run nor
delegated fails :func:`test_every_shipped_command_line_is_run_or_delegated`, so docs cannot grow
unrun commands.

Before a line runs, only these substitutions are made (SUBSTITUTIONS in tests/shipped_commands.py):

- a leading ``sudo`` is dropped: the test is already the user it runs as, and a line that needs
  root is skipped, with the reason, when the tests do not run as root;
- absolute paths under /etc, /var, /srv, /run, /tmp and /opt move into the test's temporary root
  (``LINLI_CONFIG`` names the moved ``/etc/linli/edge.toml``, the default a bare ``linli`` reads);
- ``/dev/ttyUSB0`` becomes the simulated line the runner starts;
- a date and time such as ``2026-12-01T18:00`` becomes the same time tomorrow, since the agent
  refuses an away time that has passed;
- ``--for N`` (the demo) becomes ``--for 4``, and a demo without it gets Ctrl-C once readings show;
- ``apt-get install`` gets ``--simulate``: no test changes the machine's packages;
- ``./dev test`` runs one small module: the whole suite is what is running this test;
- ``usermod`` gets ``--prefix <temporary root>``, so it edits that root's /etc/group.
"""

from __future__ import annotations

import contextlib
import datetime
import gettext
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.rules.kinds import kind

from edge.simulate.cjt188_meter import Cjt188WaterMeter
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE
from tests.install_helpers import ANSIBLE_COMMAND_LINES, INSTALL_COMMAND_LINES
from tests.live_agent import agent_process, write_agent_config
from tests.shipped_commands import ROOT, VENV_BIN, Command, Workspace, shipped_commands, shipped_files

IS_ROOT = os.geteuid() == 0

COMMANDS, PROBLEMS = shipped_commands()
SAMPLES = shipped_files()[1]


# --- runners: a pattern a shipped line must match in full, and what runs it -----------------------------------------
RUNNERS: list[tuple[re.Pattern, Callable]] = []


def runs(pattern: str):
    def register(function):
        RUNNERS.append((re.compile(pattern), function))
        return function
    return register


@runs(r"(\./dev|linli) demo( --lines)?( --for \d+)?( --json)?")
def run_demo(command: Command, ws: Workspace, request) -> None:
    line = ws.substitute(command.text)
    proc = subprocess.Popen(["bash", "-c", line], cwd=ROOT, env=ws.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if "--for" not in line:                      # it runs until Ctrl-C: press it once readings show
            for output in proc.stdout:
                if "telemetry" in output or " reading " in output:
                    break
            os.killpg(proc.pid, signal.SIGINT)      # a terminal sends Ctrl-C to the whole foreground group
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, f"{line!r} exited {proc.returncode}:\n{err}"
    assert "demo stopped" in out + err
    if "--json" in line:
        messages = [json.loads(text) for text in out.splitlines()]
        assert messages[0]["payload"]["state"] == "online" and messages[-1]["payload"]["state"] == "offline"


@runs(r"\./dev test")
def run_dev_test(command: Command, ws: Workspace, request) -> None:
    out = ws.run(command.text, cwd=ROOT, env={"PYTEST_ADDOPTS": f"--basetemp={ws.cwd / 'pytest'}"},
                 timeout=110).stdout
    assert re.search(r"\d+ passed", out), out


@runs(r"(LANGUAGE=zh_CN )?linli config check( \S+)?( --json)?")
def run_config_check(command: Command, ws: Workspace, request) -> None:
    named = re.search(r"check ([^-\s]\S*)", ws.substitute(command.text))
    ws.install_example(ws.cwd / named.group(1) if named else ws.config, request.getfixturevalue("pki"))
    out = ws.run(command.text).stdout
    assert "gw-0042" in out
    if command.text.startswith("LANGUAGE=zh_CN"):
        assert "网关" in out, out


def _pump_room_agent(ws: Workspace, request):
    """The live agent of tests/live_agent.py, its config where ``linli`` looks by default (LINLI_CONFIG)."""
    broker = request.getfixturevalue("broker")
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    transmitter = stack.enter_context(PressureTransmitterSim(unit_id=1, profile=0.35))
    write_agent_config(ws.config, broker_port=broker.port, serial_port=transmitter.port,
                       state=ws.root / "var" / "lib" / "linli")
    return broker


@runs(r"linli audit --broker 127\.0\.0\.1:1883 .+")
def run_audit(command: Command, ws: Workspace, request) -> None:
    """The audit subscribed to the test broker (for 1883) while the pump room's agent publishes to it."""
    broker = _pump_room_agent(ws, request)
    line = command.text.replace("127.0.0.1:1883", f"{broker.host}:{broker.port}")
    with agent_process([str(VENV_BIN / "linli"), "run"], ws.config, env=ws.env):
        out = ws.run(line).stdout       # exit 0: no unexplained gap
    written = ws.cwd / "audit.json"
    shown = written.read_text(encoding="utf-8") if ">" in line else out
    assert BASE in shown, shown
    if "--json" in line:
        assert json.loads(shown)["unexplained"] == 0


@runs(r"linli (status|away|alarm ack)( .+)?")
def run_agent_command(command: Command, ws: Workspace, request) -> None:
    _pump_room_agent(ws, request)
    with agent_process([str(VENV_BIN / "linli"), "run"], ws.config, env=ws.env):
        out = ws.run(command.text).stdout
    if command.text.startswith("linli status"):
        assert "pump-pressure" in out
    elif command.text.startswith("linli away"):
        assert ("away until" if " on " in command.text else "back home") in out
    else:
        assert out.startswith(command.text.split()[-1] + ":")


@runs(r"linli doctor( --json)?")
def run_doctor(command: Command, ws: Workspace, request) -> None:
    """The pump room, the agent stopped: the transmitter answers the doctor's request, the broker its CONNECT."""
    broker = _pump_room_agent(ws, request)
    out = ws.run(command.text).stdout         # exit 0: nothing failed
    if "--json" in command.text:
        found = {line["check"]: line for line in json.loads(out)["checks"]}
        assert found["device:pump-pressure"]["status"] == "pass", found
        assert f"127.0.0.1:{broker.port}" in found["broker"]["detail"], found
    else:
        assert re.search(r"^PASS\s+device:pump-pressure\s", out, re.MULTILINE), out


@runs(r"linli (alarm list|alarm test)")
def run_alarm_list_or_test(command: Command, ws: Workspace, request) -> None:
    _pump_room_agent(ws, request)
    with agent_process([str(VENV_BIN / "linli"), "run"], ws.config, env=ws.env):
        out = ws.run(command.text).stdout
    assert ("gateway/test raised" if command.text.endswith("test") else "no alarm is raised") in out, out


@runs(r"linli watch")
def run_watch(command: Command, ws: Workspace, request) -> None:
    _pump_room_agent(ws, request)
    with agent_process([str(VENV_BIN / "linli"), "run"], ws.config, env=ws.env):
        proc = subprocess.Popen(["bash", "-c", ws.substitute(command.text)], cwd=ws.cwd, env=ws.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            shown = next((line for line in proc.stdout if "pump-pressure" in line), None)
            os.killpg(proc.pid, signal.SIGINT)        # how a person leaves it: Ctrl-C (or q on a terminal)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert shown is not None and "MPa" in shown, err
    assert proc.returncode == 0, err


@runs(r"linli logs( -f)?( -n \d+)?")
def run_logs(command: Command, ws: Workspace, request) -> None:
    """The journal comes from a journalctl stand-in: the test machine's own journal has no linli-edge."""
    fakes = ws.cwd / "fake-bin"
    fakes.mkdir(exist_ok=True)
    journalctl = fakes / "journalctl"
    journalctl.write_text(f'#!/bin/sh\necho "$@" > {fakes}/args\necho "linli-edge agent started"\n')
    journalctl.chmod(0o755)
    (fakes / "systemctl").write_text("#!/bin/sh\necho loaded\n")
    (fakes / "systemctl").chmod(0o755)
    out = ws.run(command.text, env={"PATH": f"{fakes}:{ws.env['PATH']}"}).stdout
    assert "agent started" in out
    assert ("--follow" in (fakes / "args").read_text()) == ("-f" in command.text.split())


@runs(r"linli run")
def run_agent(command: Command, ws: Workspace, request) -> None:
    broker = _pump_room_agent(ws, request)
    sub = request.getfixturevalue("subscriber_factory")(broker.host, broker.port, BASE + "/#")
    with agent_process(["bash", "-c", ws.substitute(command.text)], ws.config, env=ws.env):
        sub.wait_for(lambda messages: any(m.kind == "telemetry" for m in messages), 15, "telemetry")


@runs(r"linli --help")
def run_help(command: Command, ws: Workspace, request) -> None:
    out = ws.run(command.text).stdout
    for name in ("run", "config", "status", "away", "alarm", "decode", "probe", "scan", "replay", "evaluate",
                 "explain", "demo", "doctor", "watch", "logs"):
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE), f"{name} is not listed:\n{out}"


@runs(r"linli completion bash")
def run_completion(command: Command, ws: Workspace, request) -> None:
    (ws.cwd / "linli.bash").write_text(ws.run(command.text).stdout)
    registered = ws.run("source ./linli.bash && complete -p linli").stdout   # relative: no path substitution
    assert "-F _linli linli" in registered, registered


@runs(r"linli decode (mbus|cjt188|modbus|mr60bha1|mr60bha2)( [0-9A-Fa-f]{2})+( --json)?")
def run_decode(command: Command, ws: Workspace, request) -> None:
    assert "protocol" in ws.run(command.text).stdout


@runs(r"linli decode cjt188 --file (\S+) --json")
def run_decode_capture(command: Command, ws: Workspace, request) -> None:
    frame = bytes.fromhex((ROOT / "tests/data/cjt188/published_reply_2004_with_clock.hex").read_text())
    (ws.cwd / command.text.split()[4]).write_bytes(b"\x00\x13\x77" + frame + b"\xff\x16")
    result = json.loads(ws.run(command.text).stdout)
    assert [(f["offset"], f["decoded"]["address"]) for f in result["frames"]] == [(3, "00201510270588")]
    assert result["skipped"] == [{"offset": 0, "length": 3}, {"offset": 3 + len(frame), "length": 2}]


@runs(r"linli outbox (stats|peek \d+|export .+)")
def run_outbox(command: Command, ws: Workspace, request) -> None:
    """The pump room's agent with no broker at its port: its readings wait in the outbox."""
    from edge.control import request as ask
    from edge.simulate.broker import free_port
    from tests.mqtt_helpers import wait_until

    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    transmitter = stack.enter_context(PressureTransmitterSim(unit_id=1, profile=0.35))
    state = ws.root / "var" / "lib" / "linli"
    write_agent_config(ws.config, broker_port=free_port(), serial_port=transmitter.port, state=state)
    with agent_process([str(VENV_BIN / "linli"), "run"], ws.config, env=ws.env):
        wait_until(lambda: ask(str(state / "control.sock"), "health")["result"]["outbox"]["depth"] >= 3, 20,
                   "readings waiting")
        out = ws.run(command.text).stdout
    if " stats" in command.text:
        assert "in file" in out and "agent      running" in out, out
    elif " peek" in command.text:
        assert "pump-pressure" in out, out
    else:
        target = ws.cwd / command.text.split("--out ")[1].split()[0]
        assert target.read_text().startswith("seq,priority,ts,time,kind,sensor")


@runs(r"linli probe serial /dev/ttyUSB0 --protocol mbus --address (\d+)")
def run_probe_mbus(command: Command, ws: Workspace, request) -> None:
    address = int(command.text.rsplit(" ", 1)[1])
    with SimulatedLine([MbusWaterMeter(address, "12345675", start_m3=42.125)]) as line:
        ws.device = line.path
        out = ws.run(command.text).stdout
    assert "42.125" in out


@runs(r"linli scan mbus /dev/ttyUSB0 --from (\d+) --to (\d+)")
def run_scan_mbus(command: Command, ws: Workspace, request) -> None:
    with SimulatedLine([MbusWaterMeter(5, "12345675")]) as line:
        ws.device = line.path
        out = ws.run(command.text).stdout
    assert re.search(r"^5\s+12345675\s+LNL\s+water", out, re.MULTILINE), out


@runs(r"linli scan cjt188 /dev/ttyUSB0")
def run_scan_cjt188(command: Command, ws: Workspace, request) -> None:
    with SimulatedLine([Cjt188WaterMeter("00000805000001")]) as line:
        ws.device = line.path
        out = ws.run(command.text).stdout
    assert "00000805000001" in out


@runs(r"linli replay --config \S+ \S+\.csv( --json)?")
def run_replay(command: Command, ws: Workspace, request) -> None:
    config, trace = ws.substitute(command.text).split()[3:5]
    ws.install_example(ws.cwd / config, request.getfixturevalue("pki"))
    # The pump room's pressure every 5 s: 0.35 MPa, a dip to 0.08 MPa for 40 s, back to 0.35.
    start = datetime.datetime(2026, 1, 5, 6, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
    rows = ["ts,sensor,quantity,value"]
    for step in range(60):
        value = 0.08 if 12 <= step < 20 else 0.35
        rows.append(f"{(start + datetime.timedelta(seconds=5 * step)).isoformat()},pump-pressure,pressure,{value}")
    (ws.cwd / trace).write_text("\n".join(rows) + "\n")
    out = ws.run(command.text).stdout
    if command.text.endswith("--json"):
        states = [(t["alarm"], t["state"]) for t in map(json.loads, out.splitlines())]
    else:
        states = re.findall(r"(pump-pressure/low)\s+(raised|cleared)", out)
    assert ("pump-pressure/low", "raised") in states, out


@runs(r"linli evaluate --config tests/data/traces/\S+\.toml tests/data/traces/\S+\.csv( --[a-z-]+( \w+)?)*")
def run_evaluate(command: Command, ws: Workspace, request) -> None:
    """The files named are the repository's own: the line runs from its root."""
    out = ws.run(command.text, cwd=ROOT).stdout
    if "--json" in command.text:
        assert json.loads(out)["homes"] >= 1, out
    else:
        assert "false alarms per home per 30 days: nuisance" in out, out
        # every rule's curve: a line per value its kind sweeps (both example configs have an inactivity rule)
        starts = [line.split()[0] for line in out.splitlines() if line.strip()]
        assert all(str(value) in starts for value in kind("inactivity").sensitivity.values), out


@runs(r"linli explain --config tests/data/traces/\S+\.toml --trace tests/data/traces/\S+\.csv \S+/\S+( --json)?")
def run_explain(command: Command, ws: Workspace, request) -> None:
    """The files named are the repository's own: the line runs from its root."""
    out = ws.run(command.text, cwd=ROOT).stdout
    alarm = command.text.split()[6]
    if "--json" in command.text:
        explained = json.loads(out)
        assert explained["alarm"] == alarm and len(explained["hours"]) == 24, out
    else:
        assert out.startswith(f"{alarm} (routine)"), out
        assert [line.split()[0] for line in out.splitlines()[-24:]] == [f"{hour:02d}" for hour in range(24)], out


@runs(r"pki/(make-ca|make-server-cert|make-gateway-cert|revoke-cert)\.sh --pki \S+ .+")
def run_pki(command: Command, ws: Workspace, request) -> None:
    """The PKI lines build on each other: the block up to this line runs, in order."""
    for line in (*command.before, command.text):
        out = ws.run(line, cwd=ROOT / "deploy").stdout
    pki = ws.root / "srv" / "linli-pki"
    name = command.text.split()[3] if " --name " not in command.text else None
    if "make-ca" in command.text:
        assert (pki / "ca.crt").exists()
    elif "make-server-cert" in command.text:
        assert (pki / "servers" / f"{name}.crt").exists()
    elif "make-gateway-cert" in command.text:
        assert (pki / "gateways" / f"{name}.crt").exists()
    else:
        assert f"revoked {name}" in out and not (pki / "gateways" / f"{name}.crt").exists()


@runs(r"pki/sign-csr\.sh --pki \S+ .+")
def run_sign_csr(command: Command, ws: Workspace, request) -> None:
    """A CA, and a request made as the gateway's cert_csr makes it, at the paths the line names."""
    pki = ws.root / "srv" / "linli-pki"
    ws.run("pki/make-ca.sh --pki /srv/linli-pki", cwd=ROOT / "deploy")
    csr, out = (ws.root / "tmp" / "gw-0042.csr"), (ws.root / "tmp" / "gw-0042.crt")
    csr.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=gw-0042", "-keyout", str(ws.root / "tmp" / "gw-0042.key"), "-out", str(csr)],
                   check=True, capture_output=True)
    ws.run(command.text, cwd=ROOT / "deploy")
    subject = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(out)], check=True,
                             capture_output=True, text=True).stdout
    assert subject.strip().endswith(": OK"), subject


@runs(r"apt-get install mosquitto|install (-d )?-m \d+ .+")
def run_broker_install(command: Command, ws: Workspace, request) -> None:
    """deploy/mosquitto/README.md's block up to this line, into the temporary root's /etc/mosquitto."""
    if not IS_ROOT and command.text.startswith("install"):
        pytest.skip("installs files owned by root and group mosquitto: needs root")
    if command.text.startswith("install") and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed, so its group does not exist")
    pki = ws.root / "srv" / "pki"
    for script in ("make-ca.sh --pki {pki}", "make-server-cert.sh --pki {pki} 127.0.0.1"):
        subprocess.run(["bash", "-c", f"deploy/pki/{script.format(pki=pki)}"], cwd=ROOT, check=True,
                       capture_output=True, timeout=60)
    shutil.copy(pki / "ca.crt", ws.cwd / "ca.crt")
    shutil.copy(pki / "crl.pem", ws.cwd / "crl.pem")
    shutil.copy(pki / "servers" / "127.0.0.1.crt", ws.cwd / "server.crt")
    shutil.copy(pki / "servers" / "127.0.0.1.key", ws.cwd / "server.key")
    (ws.cwd / "deploy").symlink_to(ROOT / "deploy")
    (ws.root / "etc" / "mosquitto" / "conf.d").mkdir(parents=True)     # what the mosquitto package made
    for line in (*command.before, command.text):
        out = ws.run(line).stdout
    if command.text.startswith("apt-get"):
        assert "mosquitto" in out
        return
    installed = Path(ws.substitute(command.text).split()[-1])
    if command.text.endswith("/"):
        installed = installed / Path(command.text.split()[-2]).name
    assert installed.exists(), installed
    mode = re.search(r"-m (\d+)", command.text).group(1)
    assert oct(installed.stat().st_mode & 0o7777) == oct(int(mode, 8))


@runs(r'sudo usermod -aG linli "\$USER"')
def run_usermod(command: Command, ws: Workspace, request) -> None:
    if not IS_ROOT:
        pytest.skip("usermod needs root, even for another root's /etc/group")
    etc = ws.root / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\nlinli:x:998:998::/var/lib/linli:/usr/sbin/nologin\n"
                                "tech:x:1000:1000::/home/tech:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nlinli:x:998:\ntech:x:1000:\n")
    (etc / "shadow").write_text("root:*:20000::::::\nlinli:!:20000::::::\ntech:!:20000::::::\n")
    (etc / "gshadow").write_text("root:*::\nlinli:!::\ntech:!::\n")
    ws.run(command.text, env={"USER": "tech"})
    assert "linli:x:998:tech" in (etc / "group").read_text().splitlines()


@runs(r"(xgettext|msgmerge|msgfmt) .+")
def run_catalogue_update(command: Command, ws: Workspace, request) -> None:
    """edge/locale/README.md's steps on a copy of edge/: the catalogue must already be up to date with the code."""
    missing = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gettext)")
    from tests.test_i18n import read_po

    shutil.copytree(ROOT / "edge", ws.cwd / "edge", ignore=shutil.ignore_patterns("__pycache__"))
    for line in (*command.before, command.text):
        ws.run(line)
    messages = ws.cwd / "edge" / "locale" / "zh_CN" / "LC_MESSAGES"
    if command.text.startswith("msgmerge"):
        catalogue, fuzzy = read_po(messages / "linli.po")
        untranslated = [key for key, text in catalogue.items() if key and not (text if isinstance(text, str)
                                                                                 else all(text))]
        assert not untranslated and not fuzzy, f"not translated: {untranslated}; fuzzy: {sorted(fuzzy)}"
        assert "#~" not in (messages / "linli.po").read_text(), "the catalogue keeps messages the code lost"
    elif command.text.startswith("msgfmt"):
        def catalogue(path):
            with open(path, "rb") as mo:
                return {k: v for k, v in gettext.GNUTranslations(mo)._catalog.items() if k != ""}
        assert catalogue(messages / "linli.mo") == catalogue(ROOT / messages.relative_to(ws.cwd) / "linli.mo")


# --- delegations: lines another test covers, and why they are not run here -----------------------------------------
SYSTEMD_TEST = "tests/test_systemd_container.py::test_the_unit_and_the_docs_systemctl_lines_run_under_systemd"
UPDATE_TEST = "tests/test_systemd_update.py::test_updates_over_mqtt_and_switches_back_from_a_broken_release"
#: The test of tests/test_ansible.py that runs each command line of deploy/ansible/README.md.
ANSIBLE_TESTS = {"syntax": "test_syntax_check_passes_on_the_example_inventory",
                 "preview": "test_role_installs_a_gateway_then_a_second_run_changes_nothing",
                 "roll out": "test_role_installs_a_gateway_then_a_second_run_changes_nothing",
                 "batches": "test_a_batch_with_an_unhealthy_gateway_stops_the_roll_out"}
DELEGATED: dict[str, tuple[str, str]] = {
    **{re.escape(line): ("tests/test_install.py::test_every_documented_install_line_is_one_the_tests_run",
                         "run as written into a temporary root (--root added) by tests/test_install.py, "
                         "whose INSTALL_COMMAND_LINES lists it")
       for line in INSTALL_COMMAND_LINES.values()},
    r"sudoedit /etc/linli/edge\.toml": (
        "tests/test_shipped_commands.py::test_sample_config_passes_config_check",
        "a person edits the file; what it holds after the installer, the example, is checked there"),
    r"(sudo )?systemctl (start|restart|reload|status) linli-edge|journalctl -u linli-edge -b": (
        SYSTEMD_TEST, "run as written in a booted systemd container; where none can boot, "
                      "tests/test_systemd_unit.py runs the unit's ExecStart= and ExecReload= under a harness"),
    r"systemd-analyze security linli-edge": (
        "tests/test_deploy.py::test_unit_sandbox_exposure_stays_low",
        "run there on the unit file itself (--offline), since the unit is not installed here"),
    r"linli decode (mbus|cjt188|modbus|mr60bha1|mr60bha2)": (
        "tests/test_decode_capture.py::test_hex_on_standard_input_alone_or_with_a_dash",
        "prose naming the command; without bytes it reads hex from standard input, which that test feeds"),
    r"sudo linli update linli-edge-0\.2\.0\.tar\.gz": (
        UPDATE_TEST, "run as written (as root, beside the bundle) in a booted systemd container, then updated "
                     "from over MQTT; it needs systemd to restart the agent"),
    r"tar -czf linli-edge-0\.2\.0\.tar\.gz -C wheelhouse \.": (
        UPDATE_TEST, "tests/release_helpers.py packs every bundle of that test with this line"),
    **{re.escape(line): (f"tests/test_ansible.py::{ANSIBLE_TESTS[name]}",
                         "run as written (ANSIBLE_COMMAND_LINES) with a test inventory of throwaway roots, "
                         "connection local, as inventory.yml")
       for name, line in ANSIBLE_COMMAND_LINES.items()},
    r"systemctl daemon-reload": (
        "tests/test_systemd_container.py::test_the_brokers_open_file_drop_in_takes_under_systemd",
        "run as written in a booted systemd container, after the broker's drop-in is installed"),
    r"systemctl restart mosquitto": (
        "tests/test_deploy.py::test_gateway_publishes_under_its_own_id_and_nowhere_else",
        "mosquitto is started there with deploy/mosquitto's configuration, ACL and certificates"),
}


def runner_for(text: str) -> Callable | None:
    found = [function for pattern, function in RUNNERS if pattern.fullmatch(text)]
    return found[0] if found else None


def delegation_for(text: str) -> tuple[str, str] | None:
    found = [entry for pattern, entry in DELEGATED.items() if re.fullmatch(pattern, text)]
    return found[0] if found else None


def test_every_shipped_command_line_is_run_or_delegated():
    assert len(COMMANDS) > 30, "the extraction found suspiciously few command lines"
    unhandled = [str(c) for c in COMMANDS if runner_for(c.text) is None and delegation_for(c.text) is None]
    twice = [str(c) for c in COMMANDS if runner_for(c.text) and delegation_for(c.text)]
    assert not (unhandled or PROBLEMS or twice), "\n".join(
        ["shipped command lines that no test runs (add a runner or a delegation):", *unhandled,
         "code spans that cannot run:", *map(str, PROBLEMS), "lines both run and delegated:", *twice])


def test_each_runner_and_delegation_is_in_use_and_each_delegate_test_exists():
    for pattern, _function in RUNNERS:
        assert any(pattern.fullmatch(c.text) for c in COMMANDS), f"runner {pattern.pattern!r} runs no shipped line"
    for pattern, (test_id, _why) in DELEGATED.items():
        assert any(re.fullmatch(pattern, c.text) for c in COMMANDS), f"delegation {pattern!r} matches no line"
        path, name = test_id.split("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{test_id} does not exist"


def test_a_line_nobody_runs_is_caught(tmp_path):
    (tmp_path / "README.md").write_text("```sh\nlinli frobnicate --now   # new\n```\n\nSee `linli run --bogus`.\n")
    commands, problems = shipped_commands(tmp_path)
    assert [c.text for c in commands] == ["linli frobnicate --now"]
    assert runner_for(commands[0].text) is None and delegation_for(commands[0].text) is None
    assert [p.text for p in problems] == ["linli run --bogus"]


@pytest.mark.parametrize("command", [c for c in COMMANDS if runner_for(c.text)], ids=lambda c: c.text[:70])
def test_shipped_command_runs(command, tmp_path, request):
    runner_for(command.text)(command, Workspace(tmp_path), request)


MINIMAL_HEAD = '[gateway]\nid = "gw-sample"\ngrid = "shimen2/xinfukangli/b07"\n\n[mqtt]\nhost = "127.0.0.1"\n\n'


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_sample_config_passes_config_check(sample, tmp_path, pki):
    """A driver's sample.toml is a fragment "to copy into edge.toml": it is checked inside a minimal one."""
    ws = Workspace(tmp_path)
    if sample.name.endswith(".toml.example"):
        config = ws.install_example(ws.config, pki) if sample.name == "edge.toml.example" else None
        assert config is not None, f"no way to install {sample} yet"
    else:
        config = ws.cwd / "edge.toml"
        config.write_text(MINIMAL_HEAD + sample.read_text())
    result = subprocess.run([VENV_BIN / "linli", "config", "check", config], capture_output=True, text=True,
                            env=ws.env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok") and not re.search(r"\b0 sensors", result.stdout), result.stdout
