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
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
