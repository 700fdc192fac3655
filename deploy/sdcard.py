#!/usr/bin/env python3
"""The file edits behind install.sh's SD-card options, kept out of bash so that they are exact and tested.

    sdcard.py fstab-options FSTAB [--noatime] [--commit SECONDS] [--holder-of PATH] MOUNTPOINT...
        print FSTAB with noatime (and commit=SECONDS) on the entries of those mount points and of the
        file system that holds PATH
    sdcard.py outbox-home FSTAB PATH
        print the fstab entries PATH lives on after boot, "MOUNTPOINT<TAB>FSTYPE" per line, the file
        system that holds it last; or exit 3 with the reason why the RAM overlay would swallow PATH
    sdcard.py cmdline FILE on|off
        print the kernel command line FILE with overlayroot=tmpfs:recurse=0 first, or with no overlayroot=

Nothing is written: install.sh compares the output with the file and decides (dry run, backup, atomic
replace). A line of fstab that is not an entry this understands is passed through byte for byte.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Linux file systems on a disk partition: they take noatime and keep Unix owners, which the agent's
# state directory needs (systemd chowns it to the linli user).
DISK_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
COMMIT_FILE_SYSTEMS = frozenset({"ext3", "ext4"})
RAM_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs", "overlay"})
ATIME_OPTIONS = frozenset({"atime", "relatime", "norelatime", "strictatime", "nostrictatime", "noatime"})
# With overlayroot's default recurse=1 every other file system in fstab gets a RAM overlay of its own
# too; recurse=0 leaves them writable, which is what keeps /var/lib/linli on the SD card.
OVERLAY_TOKEN = "overlayroot=tmpfs:recurse=0"
MAX_BIND_HOPS = 8

# Leading blank, then the first four fields with the blanks between them; the rest (dump, pass, a
# trailing comment, the line end) is carried over untouched.
_ENTRY = re.compile(r"^(\s*)(\S+)(\s+)(\S+)(\s+)(\S+)(\s+)(\S+)(.*)$", re.DOTALL)


class Refused(Exception):
    """The change asked for would be unsafe; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]

    @property
    def is_bind(self) -> bool:
        return "bind" in self.options or "rbind" in self.options


def _normal(path: str) -> str:
    return posixpath.normpath(path) if path.startswith("/") else path


def _unescape(field: str) -> str:
    """fstab writes a space in a path as \\040 (octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _parse(line: str) -> tuple[re.Match, Entry] | None:
    if line.lstrip().startswith("#"):
        return None
    match = _ENTRY.match(line)
    if match is None:
        return None
    _, source, _, mountpoint, _, fstype, _, options, _ = match.groups()
    return match, Entry(_unescape(source), _normal(_unescape(mountpoint)), fstype, tuple(options.split(",")))


def entries(text: str) -> list[Entry]:
    """The mount entries of an fstab in order; comments, swap and lines that are not entries left out."""
    found = []
    for line in text.splitlines(keepends=True):
        parsed = _parse(line)
        if parsed is not None and parsed[1].fstype != "swap":
            found.append(parsed[1])
    return found


def _with_options(options: tuple[str, ...], noatime: bool, commit: int | None) -> tuple[str, ...]:
    """The options with noatime in place of any other atime choice and commit= replaced, else appended."""
    out: list[str] = []
    for option in options:
        if noatime and option in ATIME_OPTIONS:
            option = "noatime"
        elif commit is not None and option.startswith("commit="):
            option = f"commit={commit}"
        else:
            out.append(option)
            continue
        if option not in out:
            out.append(option)
    if noatime and "noatime" not in out:
        out.append("noatime")
    if commit is not None and f"commit={commit}" not in out:
        out.append(f"commit={commit}")
    return tuple(out)


def fstab_options(text: str, mountpoints: list[str], *, noatime: bool, commit: int | None) -> tuple[str, list[str]]:
    """``text`` with noatime and commit= set on the entries mounted at ``mountpoints``, and notes for people."""
    wanted = {_normal(mp) for mp in mountpoints}
    found: set[str] = set()
    notes: list[str] = []
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        parsed = _parse(line)
        if parsed is None or parsed[1].mountpoint not in wanted:
            out.append(line)
            continue
        match, entry = parsed
        found.add(entry.mountpoint)
        if entry.fstype not in DISK_FILE_SYSTEMS:
            notes.append(f"{entry.mountpoint} is {entry.fstype}, not a Linux disk file system: left as it is")
            out.append(line)
            continue
        entry_commit = commit
        if commit is not None and entry.fstype not in COMMIT_FILE_SYSTEMS:
            notes.append(f"{entry.mountpoint} is {entry.fstype}: commit= is for ext3/ext4, not set there")
            entry_commit = None
        options = _with_options(entry.options, noatime, entry_commit)
        start, end = match.span(8)
        out.append(line if options == entry.options else line[:start] + ",".join(options) + line[end:])
    notes += [f"{mp} has no entry in fstab: left as it is" for mp in sorted(wanted - found)]
    return "".join(out), notes


def _covers(mountpoint: str, path: str) -> bool:
    return mountpoint == "/" or path == mountpoint or path.startswith(mountpoint + "/")


def holder_chain(text: str, path: str) -> list[Entry]:
    """The fstab entries ``path`` depends on after boot, following bind mounts; the last one holds it.

    Empty when no entry covers ``path`` (an fstab without a line for /).
    """
    all_entries = entries(text)
    chain: list[Entry] = []
    where = _normal(path)
    for _ in range(MAX_BIND_HOPS):
        covering = [e for e in all_entries if _covers(e.mountpoint, where)]
        if not covering:
            return chain
        # The deepest mount point wins; of two at the same place the later one is mounted on top.
        entry = max(reversed(covering), key=lambda e: len(e.mountpoint))
        chain.append(entry)
        if not entry.is_bind:
            return chain
        where = _normal(entry.source + "/" + where[len(entry.mountpoint):])
    raise Refused(f"more than {MAX_BIND_HOPS} bind mounts lead to {path}")


def outbox_home(text: str, path: str) -> list[Entry]:
    """:func:`holder_chain`, refused when the RAM overlay would hold ``path`` at some boot."""
    chain = holder_chain(text, path)
    if not chain or chain[-1].mountpoint == "/":
        raise Refused(f"{path} is on the root file system: with the overlay it would be in RAM and lost at "
                      "every reboot. Give it a partition of its own first (deploy/README.md says how)")
    holder = chain[-1]
    if holder.fstype in RAM_FILE_SYSTEMS:
        raise Refused(f"{path} is on {holder.mountpoint}, a {holder.fstype} file system: in RAM")
    if holder.fstype not in DISK_FILE_SYSTEMS:
        raise Refused(f"{path} is on {holder.mountpoint} ({holder.fstype}): it needs a Linux file system "
                      "such as ext4, named as such in /etc/fstab")
    for entry in chain:
        risky = {"nofail", "noauto"} & set(entry.options)
        if risky:
            raise Refused(f"the fstab entry for {entry.mountpoint} says {','.join(sorted(risky))}: at a boot "
                          f"where it is not mounted, {path} would silently be in the RAM overlay")
    return chain


def cmdline(text: str, overlay: bool) -> str:
    """The kernel command line with the overlay root turned on (our token first) or off (no overlayroot=)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise Refused("cmdline.txt must hold exactly one line (the firmware reads only the first)")
    tokens = lines[0].split()
    kept = [t for t in tokens if not t.startswith("overlayroot=")]
    wanted = [OVERLAY_TOKEN, *kept] if overlay else kept
    if wanted == tokens:
        return text
    return " ".join(wanted) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fstab-options")
    p.add_argument("fstab", type=Path)
    p.add_argument("--noatime", action="store_true")
    p.add_argument("--commit", type=int)
    p.add_argument("--holder-of", action="append", default=[], metavar="PATH",
                   help="also the file system that holds PATH (when it is not /)")
    p.add_argument("mountpoints", nargs="*")
    p = sub.add_parser("outbox-home")
    p.add_argument("fstab", type=Path)
    p.add_argument("path")
    p = sub.add_parser("cmdline")
    p.add_argument("file", type=Path)
    p.add_argument("state", choices=("on", "off"))
    args = parser.parse_args(argv)
    try:
        if args.command == "fstab-options":
            text = args.fstab.read_text()
            holders = []
            for path in args.holder_of:
                chain = holder_chain(text, path)
                if chain:
                    holders.append(chain[-1].mountpoint)
            text, notes = fstab_options(text, [*args.mountpoints, *holders], noatime=args.noatime,
                                        commit=args.commit)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            sys.stdout.write(text)
        elif args.command == "outbox-home":
            for entry in outbox_home(args.fstab.read_text() if args.fstab.exists() else "", args.path):
                print(f"{entry.mountpoint}\t{entry.fstype}")
        else:
            sys.stdout.write(cmdline(args.file.read_text(), args.state == "on"))
    except Refused as exc:
        print(exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
