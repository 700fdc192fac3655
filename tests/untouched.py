"""Proof that a folder was left alone: every entry's type, size, mtime and (for regular files) content."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def snapshot(folder: Path) -> dict[str, tuple]:
    """``{relative path: (mode, size, mtime_ns, sha256 of the content or None)}`` for everything under ``folder``.

    Links are not followed and FIFOs, sockets and devices are never opened: looking must not change anything.
    """
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            found[str(path.relative_to(folder))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return found
