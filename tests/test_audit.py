"""``linli audit`` and the Auditor against a real broker and a real agent killed and cut off repeatedly.

The judgement of the audit: subscribed while a gateway is killed (SIGKILL, restarted on the same
outbox) and its link cut, it reports the same records and the same (zero) unexplained gaps as an
independent subscriber (tests.mqtt_helpers.Subscriber) that was there all along.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from edge.audit.ledger import Ledger
from edge.audit.listener import Auditor, BrokerUnreachable, publish_one
from edge.simulate.broker import TlsListener
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, ROOT, config_text, linli
from tests.mqtt_helpers import wait_until
from tests.tcp_proxy import TcpProxy
from tests.test_cli_json import check

KILLS = 4


def ranges(seqs: set[int]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if found and found[-1][1] == seq - 1:
            found[-1] = (found[-1][0], seq)
        else:
            found.append((seq, seq))
    return found


class AuditProcess:
    """``linli -vv audit ARGS`` as a process; its log (every message it took) is read as it comes."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = linli("-vv", "audit", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_log(lambda log: any("subscribed to" in line for line in log), "its subscription")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_log(self, predicate, what: str) -> None:
        def done() -> bool:
            if self.proc.poll() is not None and self._reader.is_alive() is False and not predicate(self.log):
                raise AssertionError(f"linli audit ended ({self.proc.returncode}): {''.join(self.log)}")
            return predicate(self.log)

        wait_until(done, 20, f"linli audit to log {what}")

    def took(self, topic: str) -> int:
        return sum(f"took {topic} " in line for line in self.log)

    def stop(self) -> tuple[int, str]:
        """SIGTERM ends the audit in order: it prints its report and exits with its verdict."""
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        self._reader.join(10)
        assert not any("Traceback" in line for line in self.log), "".join(self.log)
        return self.proc.returncode, out


def run_audit(*args: str) -> tuple[int, str, str]:
    proc = linli("audit", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_audit_agrees_with_an_independent_subscriber_while_the_agent_is_killed_and_cut_off(
        tmp_path, broker, transmitter, subscriber_factory):
    rng = random.Random(20261213)
    outbox = tmp_path / "outbox.db"
    config = tmp_path / "edge.toml"
    with TcpProxy(broker.host, broker.port) as proxy:
        config.write_text(config_text(port=proxy.port, outbox=outbox, serial_port=transmitter.port,
                                      interval="100ms"))
        sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
        cli = AuditProcess("--broker", f"{broker.host}:{broker.port}", "--from-start", "--json")
        with Auditor(broker.host, broker.port, ledger=Ledger(from_start=True)) as auditor:
            for _kill in range(KILLS):
                proxy.restore()
                before = max(sub.seqs(), default=0)
                agent = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                # Killed once it publishes: a kill during start-up alone (a loaded machine) would prove little.
                sub.wait_for(lambda _m, before=before: max(sub.seqs(), default=0) > before, 30, "new seqs")
                for _ in range(rng.randint(1, 3)):
                    with pytest.raises(subprocess.TimeoutExpired):
                        agent.wait(timeout=rng.uniform(0.3, 1.0))
                    proxy.cut() if rng.random() < 0.5 else proxy.restore()
                with pytest.raises(subprocess.TimeoutExpired):
                    agent.wait(timeout=rng.uniform(0.2, 1.0))
                agent.kill()
                assert agent.wait(timeout=10) == -signal.SIGKILL
            proxy.restore()
            before = max(sub.seqs(), default=0)
            agent = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                def settled(_messages) -> bool:
                    seqs = set(sub.seqs())
                    return max(seqs, default=0) > before + 5 and \
                        not set(range(1, max(seqs) + 1)) - seqs - sub.explained_seqs()

                sub.wait_for(settled, 60, "new seqs, and every seq arrived or explained")
            finally:
                agent.send_signal(signal.SIGTERM)
                _, err = agent.communicate(timeout=60)
            assert agent.returncode == 0, err.decode()
            sub.wait_for(lambda _m: sub.last("status").payload["state"] == "offline", 10, "the offline status")
            seqs = set(sub.seqs())
            row = auditor.wait_for(lambda r: r["gateways"] and r["gateways"][0]["seq_last"] == max(seqs)
                                   and r["gateways"][0]["status"]["state"] == "offline", 10)["gateways"][0]
        statuses = len(sub.messages("status"))     # the last one, offline, was sent after every record
        cli.wait_log(lambda _log: cli.took(BASE + "/status") == statuses, f"{statuses} status messages")
        code, out = cli.stop()

    assert max(seqs) > 20 and sub.dropped(), "too little happened to prove anything"
    assert not set(range(1, max(seqs) + 1)) - seqs - sub.explained_seqs()
    assert auditor.ledger.seq_ranges(BASE) == ranges(seqs)
    assert (row["records"], row["seq_first"], row["seq_last"]) == (len(seqs), min(seqs), max(seqs))
    assert (row["unexplained_gaps"], row["duplicates"]) == ([], len(sub.seqs()) - len(seqs))
    assert row["explained"] == len(set(range(1, max(seqs) + 1)) - seqs)
    report = json.loads(out)
    check("audit", report)
    assert code == 0, out
    [cli_row] = report["gateways"]
    assert {key: cli_row[key] for key in ("base", "records", "seq_first", "seq_last", "unexplained_gaps",
                                         "explained", "duplicates")} == \
        {key: row[key] for key in ("base", "records", "seq_first", "seq_last", "unexplained_gaps", "explained",
                                   "duplicates")}
    assert cli_row["status"]["state"] == "offline"
    health = sub.last("health")         # the agent sends one as it connects
    assert cli_row["health"] == (None if health is None else {
        "outbox_depth": health.payload["outbox"].get("depth"), "clock_synced": health.payload["clock_synced"],
        "ts": health.payload["ts"], "received_ms": cli_row["health"]["received_ms"]})


def _telemetry(gateway: str, *seqs: int, dropped: tuple[int, int, int] | None = None) -> bytes:
    records: list[dict] = [{"seq": seq, "sensor": "s", "quantity": "volume", "value": 1.0, "unit": "m3",
                            "quality": "good", "ts": 1_764_201_600_000, "synced": True} for seq in seqs]
    if dropped:
        seq, lo, hi = dropped
        records.append({"seq": seq, "kind": "dropped", "count": hi - lo + 1, "seq_from": lo, "seq_to": hi,
                        "ts_from": None, "ts_to": None, "reason": "bound"})
    return json.dumps({"v": 1, "gateway": gateway, "boot": "b", "records": records}).encode()


def test_exit_status_1_names_the_gap_no_record_explains(broker):
    cli = AuditProcess("--broker", f"{broker.host}:{broker.port}", "--json")
    publish_one(broker.host, broker.port, "linli/shimen2/b07/gw-a/telemetry", _telemetry("gw-a", 1, 2, 5))
    publish_one(broker.host, broker.port, "linli/shimen2/b07/gw-b/telemetry",
                _telemetry("gw-b", 1, 4, dropped=(5, 2, 3)))
    cli.wait_log(lambda _log: cli.took("linli/shimen2/b07/gw-b/telemetry"), "gw-b's telemetry")
    code, out = cli.stop()
    report = json.loads(out)
    check("audit", report)
    assert code == 1
    assert [(row["gateway"], row["unexplained_gaps"], row["explained"]) for row in report["gateways"]] == \
        [("gw-a", [[3, 4]], 0), ("gw-b", [], 2)]


def test_the_table_in_chinese_and_exit_0_when_every_gap_is_explained(broker):
    cli = AuditProcess("--broker", f"{broker.host}:{broker.port}", env={"LANGUAGE": "zh_CN"})
    publish_one(broker.host, broker.port, "linli/shimen2/b07/gw-b/telemetry",
                _telemetry("gw-b", 1, 4, dropped=(5, 2, 3)))
    cli.wait_log(lambda _log: cli.took("linli/shimen2/b07/gw-b/telemetry"), "gw-b's telemetry")
    code, out = cli.stop()
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["网关", "记录", "序号"]
    assert lines[1].split()[:4] == ["linli/shimen2/b07/gw-b", "3", "1..5", "0"]
    assert "没有未解释的缺口" in lines[-1]


def test_a_broker_that_cannot_be_reached_is_exit_69():
    with socket.socket() as probe:          # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run_audit("--broker", f"127.0.0.1:{port}", "--for", "1")
    assert (code, out) == (69, "")
    assert f"127.0.0.1:{port}" in err
    with pytest.raises(BrokerUnreachable):
        Auditor("127.0.0.1", port).start()


def test_for_ends_the_audit_by_itself(broker):
    code, out, err = run_audit("--broker", f"{broker.host}:{broker.port}", "--for", "0.5", "--json")
    assert code == 0, err
    assert json.loads(out)["gateways"] == []


def test_the_library_example_in_the_docs_runs_as_written():
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    exec(compile(example, "docs/audit.md", "exec"), {})      # its asserts are the test


def test_a_persistent_session_keeps_what_was_published_while_the_audit_was_away(broker):
    topic = "linli/shimen2/b07/gw-p/telemetry"
    with Auditor(broker.host, broker.port, client_id="audit-persistent", persistent=True) as first:
        publish_one(broker.host, broker.port, topic, _telemetry("gw-p", 1, 2))
        first.wait_for(lambda r: r["gateways"] and r["gateways"][0]["records"] == 2, 10)
    publish_one(broker.host, broker.port, topic, _telemetry("gw-p", 3, 4))      # nobody connected
    with Auditor(broker.host, broker.port, client_id="audit-clean") as clean, \
            Auditor(broker.host, broker.port, client_id="audit-persistent", persistent=True,
                    ledger=first.ledger) as again:
        row = again.wait_for(lambda r: r["gateways"][0]["records"] == 4, 10)["gateways"][0]
        assert clean.report()["gateways"] == []        # a clean session starts with what comes next
    assert (row["seq_first"], row["seq_last"], row["unexplained_gaps"]) == (1, 4, [])


def test_tls_with_a_client_certificate_and_a_broker_it_cannot_trust(pki, broker_factory):
    secured = broker_factory(tls=TlsListener(str(pki.ca_cert), str(pki.server_cert), str(pki.server_key)))
    where = ["--broker", f"{secured.host}:{secured.port}", "--cert", str(pki.client_cert), "--key",
             str(pki.client_key), "--for", "0.3", "--json"]
    trusted = run_audit(*where, "--tls-ca", str(pki.ca_cert))
    untrusted = run_audit(*where, "--tls-ca", str(pki.other_ca_cert))
    assert trusted[0] == 0 and json.loads(trusted[1])["gateways"] == [], trusted[2]
    assert untrusted[0] == 69 and "certificate verify failed" in untrusted[2], untrusted[2]


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed")
def test_a_password_from_a_file_and_one_the_broker_refuses(tmp_path, broker_factory):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "audit", "right"], check=True)
    secured = broker_factory(password_file=str(passwords))
    for name, text in (("right.txt", "right\n"), ("wrong.txt", "wrong\n"), ("empty.txt", "")):
        (tmp_path / name).write_text(text)
    where = ["--broker", f"{secured.host}:{secured.port}", "--username", "audit", "--for", "0.3", "--password-file"]
    right, wrong, empty = (run_audit(*where, str(tmp_path / name)) for name in ("right.txt", "wrong.txt", "empty.txt"))
    assert right[0] == 0, right[2]
    assert wrong[0] == 69 and "refused" in wrong[2], wrong[2]
    assert empty[0] == 66 and "holds no password" in empty[2], empty[2]


def test_a_terminal_gets_a_progress_line(broker):
    leader, follower = pty.openpty()
    proc = linli("audit", "--broker", f"{broker.host}:{broker.port}", "--for", "1.5", stdout=subprocess.PIPE,
                 stderr=follower, text=True)
    os.close(follower)
    out, _ = proc.communicate(timeout=30)
    shown = b""
    with contextlib.suppress(OSError):        # EIO once the process has gone and everything is read
        while chunk := os.read(leader, 4096):
            shown += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"messages/s, 0 gateways" in shown and "no unexplained gap" in out


def test_the_auditor_reconnects_and_subscribes_again_after_its_link_is_cut(broker):
    topic = "linli/shimen2/b07/gw-r/telemetry"
    with TcpProxy(broker.host, broker.port) as proxy, \
            Auditor(proxy.host, proxy.port, reconnect_min=0.05, reconnect_max=0.2) as auditor:
        proxy.cut()
        proxy.restore()
        wait_until(lambda: auditor.subscriptions == 2, 10, "the auditor's second subscription")
        publish_one(broker.host, broker.port, topic, _telemetry("gw-r", 7))
        row = auditor.wait_for(lambda r: r["gateways"], 10)["gateways"][0]
    assert (row["records"], row["seq_first"], auditor.connects) == (1, 7, 2)
