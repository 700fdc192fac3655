"""Looking into an outbox file from the test's own SQLite connection, bypassing the Outbox class."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from buffer import chunks

TELEMETRY = 2


def raw_rows(path: Path) -> dict[int, tuple[int, dict]]:
    """{seq: (priority, body)} straight from the file: alarm/status rows and the records in telemetry chunks."""
    conn = sqlite3.connect(path)
    try:
        found = {seq: (prio, json.loads(body))
                 for seq, prio, body in conn.execute("SELECT seq, priority, body FROM outbox")}
        for (data,) in conn.execute("SELECT data FROM chunk"):
            found.update((seq, (TELEMETRY, body)) for seq, body in chunks.decode(data))
        return found
    finally:
        conn.close()
