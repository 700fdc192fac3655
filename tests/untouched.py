"""Proof that files were left alone: every entry's type, size, mtime and (for regular files) content."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def fingerprint(path: Path) -> tuple:
    """``(mode, size, mtime_ns, sha256 of the content or None)`` of ``path`` itself (a link is not followed).

    FIFOs, sockets and devices are never opened: looking must not change anything.
    """
    info = os.lstat(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
    return info.st_mode, info.st_size, info.st_mtime_ns, digest


def snapshot(folder: Path) -> dict[str, tuple]:
    """``{relative path: fingerprint}`` of everything under ``folder``."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = fingerprint(path)
    return found
