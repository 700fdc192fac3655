"""A running agent for the commands that talk to one: ``linli run`` as a real process on a simulated pump room.

The pressure transmitter is pymodbus's server behind a pseudo-terminal; the config has the rule
``pump-pressure/low`` so ``linli alarm ack pump-pressure/low`` has an alarm to name. The agent counts
as up once its control socket answers, which is what ``linli status`` needs.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.config import load_config
from edge.control import AgentUnreachable, request
from tests.agent_helpers import config_text, low_pressure_rule
from tests.mqtt_helpers import wait_until

PUMP_RULE = low_pressure_rule()


def write_agent_config(path: Path, *, broker_port: int, serial_port: str, state: Path) -> Path:
    """The pump room's config at ``path``; the outbox and the control socket in ``state``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(port=broker_port, outbox=state / "outbox.db", serial_port=serial_port,
                                extra_sensors=PUMP_RULE))
    return path


def _answers(socket_path: str, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the agent exited with status {proc.returncode}: {proc.stderr.read()}")
    try:
        return bool(request(socket_path, "health").get("ok"))
    except AgentUnreachable:
        return False


@contextmanager
def agent_process(argv: list[str], config: Path, **popen) -> Iterator[subprocess.Popen]:
    """Start ``argv`` (a ``linli run``), wait until its control socket answers, SIGTERM it at the end (exit 0)."""
    socket_path = load_config(config).control.socket
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
    try:
        wait_until(lambda: _answers(socket_path, proc), 20, "the agent's control socket", interval=0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"the agent exited with status {proc.returncode}: {err}"
