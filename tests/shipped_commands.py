"""Every command line in a file the project ships, found by reading the files; tests/test_shipped_commands.py runs them.

Where command lines are:

- fenced code blocks marked ``sh``, ``shell``, ``bash`` or ``console`` in any Markdown file outside
  hidden and build folders: every line is a command (a ``\\`` continues it, ``#`` starts a comment;
  in ``console`` blocks only the lines after a ``$`` prompt);
- comment lines of the sample configurations (``**/sample.toml``, ``**/*.toml.example``) that hold
  nothing but a ``linli`` command: ``#     linli config check /etc/linli/edge.toml``;
- inline code spans of Markdown, in prose and in tables, that hold a ``linli`` command, optionally after
  ``VAR=value`` assignments. A span is a command when linli's own parser accepts it. A span that only
  names a command (``linli away``: its arguments are missing) or shows a synopsis with placeholders
  (``linli decode mbus HEX``, ``<alarm>``, ``[--json]``, ``…``) is not run; a span that is neither is
  reported, since it is a command line that cannot run.

:class:`Workspace` runs a line the way a reader would type it, by bash, after the few
:data:`SUBSTITUTIONS` that move it off the machine: into a temporary root standing for ``/``.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SHELL_FENCES = ("sh", "shell", "bash", "console")
SAMPLE_CONFIGS = ("sample.toml", ".toml.example")
_SKIPPED_FOLDERS = {"build", "dist", "node_modules", "__pycache__"}
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_PLACEHOLDER = re.compile(r"<[^>]+>|\[[^\]]+\]|…|\.\.\.|(?<![\w/.-])[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)*(?![\w/.=-])")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


@dataclass
class Command:
    """One command line, with every place it is written; ``before`` are the lines preceding it in its block."""

    text: str
    places: list[str] = field(default_factory=list)
    before: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.text}    ({', '.join(self.places)})"


@dataclass(frozen=True)
class Problem:
    place: str
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.place}: {self.text!r}: {self.why}"


def shipped_files(root: Path = ROOT) -> tuple[list[Path], list[Path]]:
    """The Markdown files and the sample configurations, outside hidden, build and test-output folders."""
    docs, samples = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in _SKIPPED_FOLDERS
                               and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(".md"):
                docs.append(path)
            elif name.endswith(SAMPLE_CONFIGS):
                samples.append(path)
    return docs, samples


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` that starts a word, outside quotes), as the shell reads it."""
    quote, out = None, []
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).strip()


def fenced_commands(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """``(line number, command, commands before it in the block)`` for each command line of the shell blocks."""
    found: list[tuple[int, str, tuple[str, ...]]] = []
    fence = language = None
    block: list[str] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None:
            if opening:
                fence, language, block = opening.group(2), opening.group(3).lower(), []
            continue
        if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            fence = None
            continue
        if language not in SHELL_FENCES:
            continue
        text = line.strip()
        if language == "console":
            if not text.startswith("$ "):
                continue
            text = text[2:]
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        command = _strip_comment(pending + text)
        pending = ""
        if command:
            command = " ".join(shlex.split(command, posix=False))   # one space between words, quotes kept
            found.append((start, command, tuple(block)))
            block.append(command)
    return found


def sample_config_commands(path: Path) -> list[tuple[int, str]]:
    """Comment lines of a sample configuration that hold only a ``linli`` command."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = re.match(r"\s*#\s+(linli\s.*)$", line)
        if match:
            found.append((number, match.group(1).strip()))
    return found


def inline_spans(path: Path) -> list[tuple[int, str]]:
    """Inline code spans holding ``linli …`` (after optional ``VAR=value``), outside fenced blocks."""
    text = path.read_text(encoding="utf-8")
    lines, fence = [], None
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(2)
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            lines.append("")
        else:
            lines.append(line)
    prose = "\n".join(lines)
    found = []
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        span = " ".join(match.group(1).split())
        words = span.split()
        while words and _ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words[:1] == ["linli"] and len(words) > 1:
            found.append((prose.count("\n", 0, match.start()) + 1, span))
    return found


def classify_linli(span: str) -> str:
    """``"command"``, ``"name"`` (arguments missing), ``"synopsis"`` (placeholders) or ``"broken"``."""
    from edge.cli import build_parser

    words = shlex.split(span)
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    if _PLACEHOLDER.search(" ".join(words[1:])):
        return "synopsis"
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(words[1:])
    except SystemExit as exc:
        if exc.code == 0:                                    # --help
            return "command"
        return "name" if "the following arguments are required" in errors.getvalue() else "broken"
    return "command" if getattr(args, "func", None) else "name"


def shipped_commands(root: Path = ROOT) -> tuple[list[Command], list[Problem]]:
    """Every command line shipped, each once (with all its places), and the spans that cannot run."""
    by_text: dict[str, Command] = {}
    problems: list[Problem] = []

    def add(text: str, place: str, before: tuple[str, ...] = ()) -> None:
        by_text.setdefault(text, Command(text, before=before)).places.append(place)

    docs, samples = shipped_files(root)
    for path in docs:
        rel = path.relative_to(root).as_posix()
        for number, text, before in fenced_commands(path):
            add(text, f"{rel}:{number}", before)
        for number, span in inline_spans(path):
            kind = classify_linli(span)
            if kind == "command":
                add(span, f"{rel}:{number}")
            elif kind == "broken":
                problems.append(Problem(f"{rel}:{number}", span, "linli does not accept it and it shows no "
                                        "placeholder: write it so it runs, or mark what the reader fills in"))
    for path in samples:
        rel = path.relative_to(root).as_posix()
        for number, text in sample_config_commands(path):
            add(text, f"{rel}:{number}")
    return list(by_text.values()), problems


# --- running a line: the temporary root and the only substitutions made -----------------------------------------
def _tomorrow(match: re.Match) -> str:
    return f"{datetime.date.today() + datetime.timedelta(days=1)}T{match.group(2)}"


#: (pattern, replacement, why): the only changes made to a shipped line before it runs, in this order
#: (tests/test_shipped_commands.py's docstring says why each is needed).
SUBSTITUTIONS: list[tuple[str, Callable[[re.Match, Workspace], str], str]] = [
    (r"(?<![\w.~/-])/(etc|var|srv|run|tmp|opt)/", lambda m, ws: f"{ws.root}/{m.group(1)}/",
     "absolute paths move into the temporary root"),
    (r"^sudo ", lambda m, ws: "", "the test already is the user it runs as"),
    (r"/dev/ttyUSB0\b", lambda m, ws: ws.device, "the serial port is a simulated line"),
    (r"\b(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})\b", lambda m, ws: _tomorrow(m), "a time that has not passed yet"),
    (r"--for \d+", lambda m, ws: "--for 4", "the demo runs 4 s"),
    (r"^apt-get install ", lambda m, ws: "apt-get --simulate install ", "packages stay as they are"),
    (r"^\./dev test$", lambda m, ws: "./dev test tests/test_layout.py", "not the whole suite from inside it"),
    (r"^usermod ", lambda m, ws: f"usermod --prefix {ws.root} ", "the temporary root's /etc/group"),
]


class Workspace:
    """A temporary root standing for ``/``, a working folder, and how a shipped line is run there."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "root"
        for folder in ("etc/linli", "var/lib/linli", "run/linli", "srv", "tmp", "opt"):
            (self.root / folder).mkdir(parents=True)
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.device = "/dev/ttyUSB0 (no simulated line started)"
        self.config = self.root / "etc" / "linli" / "edge.toml"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
        self.env.update(PATH=f"{VENV_BIN}:{os.environ['PATH']}", LINLI_CONFIG=str(self.config), NO_COLOR="1")

    def substitute(self, line: str) -> str:
        for pattern, replace, _why in SUBSTITUTIONS:
            line = re.sub(pattern, lambda m, replace=replace: replace(m, self), line)
        return line

    def run(self, line: str, *, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """The line, substituted, run by bash; fails the test unless it exits 0."""
        result = subprocess.run(["bash", "-c", self.substitute(line)], cwd=cwd or self.cwd,
                                env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
                                check=False)
        assert result.returncode == 0, (f"{line!r} ran as {self.substitute(line)!r} and exited {result.returncode}:\n"
                                        f"{result.stdout}\n{result.stderr}")
        return result

    def install_example(self, target: Path, pki) -> Path:
        """deploy/edge.toml.example at ``target`` with its paths moved, and the TLS files it names in place."""
        text = self.substitute((ROOT / "deploy" / "edge.toml.example").read_text())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        for name, source in (("ca.pem", pki.ca_cert), ("gw-0042.crt", pki.client_cert),
                             ("gw-0042.key", pki.client_key)):
            shutil.copy(source, self.root / "etc" / "linli" / name)
        return target
