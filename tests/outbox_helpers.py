"""Looking into an outbox file from the test's own SQLite connection, bypassing the Outbox class."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def raw_rows(path: Path) -> dict[int, tuple[int, dict]]:
    """{seq: (priority, body)} straight from the file."""
    conn = sqlite3.connect(path)
    try:
        return {seq: (prio, json.loads(body))
                for seq, prio, body in conn.execute("SELECT seq, priority, body FROM outbox")}
    finally:
        conn.close()
