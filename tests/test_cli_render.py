"""The rendering layer every ``linli`` command prints through: colour only on a terminal and never with NO_COLOR,
columns aligned by terminal width (a Chinese character takes two), one JSON line."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys

import pytest

from buffer.outbox import Outbox, Priority
from edge.cli import render
from tests.test_rules_scenarios import ROOT, TRACES

GREEN_OK = "\033[32mok\033[0m"


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, as sys.stdout does on one."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("1", False), ("", True)])
def test_colour_on_a_terminal_unless_no_color_is_set_and_not_empty(monkeypatch, no_color, coloured):
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert (render.paint("ok", render.GREEN, _Terminal()) == GREEN_OK) is coloured
    assert render.paint("ok", render.GREEN, io.StringIO()) == "ok"


def test_columns_line_up_by_terminal_width_with_chinese_cells_and_colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    rows = [["传感器", "状态", "读数"], ["flat-302-water", render.Painted("正常", render.GREEN), "12"]]
    lines = render.table(rows, right={2}, stream=_Terminal()).split("\n")
    plain = [text.replace("\033[32m", "").replace("\033[0m", "") for text in lines]
    assert plain == ["传感器          状态  读数", "flat-302-water  正常    12"]
    assert "\033[32m正常\033[0m" in lines[1]
    widths = {render.display_width(text) for text in plain}
    assert widths == {26}


def test_json_is_one_line_and_keeps_chinese_unless_asked(capsys):
    render.emit_json({"sensor": "水表", "n": 1})
    render.emit_json({"sensor": "水表"}, ascii_only=True)
    first, second = capsys.readouterr().out.splitlines()
    assert json.loads(first) == {"sensor": "水表", "n": 1} and "水表" in first
    assert "\\u6c34" in second


def _on_a_terminal(*args: str, env: dict[str, str], status: int = 0) -> str:
    """``linli ARGS`` with its stdout on a real pseudo-terminal; what it printed there; it exits with ``status``."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, stdout=terminal,
                                stderr=subprocess.PIPE, env={**os.environ, **env})
        os.close(terminal)
        shown = b""
        while chunk := _read(controller):
            shown += chunk
        assert proc.wait(timeout=60) == status, proc.stderr.read()
    finally:
        os.close(controller)
    return shown.decode()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:   # EIO: the command has exited and closed the terminal
        return b""


def test_a_command_colours_its_output_on_a_terminal_but_not_with_no_color_nor_in_a_pipe():
    config = str(TRACES / "daiad_routine.toml")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert GREEN_OK in _on_a_terminal("config", "check", config, env={**env, "NO_COLOR": ""})
    assert GREEN_OK not in _on_a_terminal("config", "check", config, env={"NO_COLOR": "1"})
    piped = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", config], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, env=env)
    assert piped.returncode == 0 and piped.stdout.startswith("ok  ") and "\033[" not in piped.stdout


#: Where an SGR colour starts: ESC [ 3x (the foreground colours render paints with).
COLOUR = re.compile(r"\033\[3[0-7]")


def test_doctor_colours_its_verdicts_on_a_terminal_and_never_with_no_color():
    # The routine trace's config names a serial port this machine lacks: that check fails (status 1).
    config = str(TRACES / "daiad_routine.toml")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal("doctor", "--config", config, env=env, status=1)
    plain = _on_a_terminal("doctor", "--config", config, env={"NO_COLOR": "1"}, status=1)
    assert COLOUR.search(coloured) and "\033[31mFAIL" in coloured
    assert "FAIL" in plain and "\033" not in plain
    assert COLOUR.sub("", coloured).replace("\033[0m", "").splitlines()[0] == plain.splitlines()[0]


def test_outbox_stats_colours_the_agent_line_on_a_terminal_and_never_with_no_color(tmp_path):
    box = tmp_path / "outbox.db"
    with Outbox(box) as outbox:
        outbox.add({"kind": "reading", "sensor": "m", "ts": 1_700_000_000_000}, Priority.TELEMETRY)
    args = ("outbox", "stats", "--outbox", str(box), "--config", str(TRACES / "daiad_routine.toml"))
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(*args, env=env)
    plain = _on_a_terminal(*args, env={"NO_COLOR": "1"})
    assert "\033[33magent      not answering" in coloured
    assert "agent      not answering" in plain and "1 records waiting" in plain and "\033" not in plain
