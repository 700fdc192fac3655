"""The writer the kill -9 test shoots: adds records forever, printing what each commit made safe.

Usage: ``python outbox_writer.py DB SEED STATE_KEY``

After every ``commit()`` returns it prints the seqs it wrote and flushes, so
every line the test reads names seqs that were committed before the kill.
Before each commit it sets ``STATE_KEY`` to the number of records added so far,
so the committed state must always match the committed rows (same transaction).
"""

from __future__ import annotations

import random
import sys

from buffer.outbox import Outbox, Priority


def main() -> None:
    path, seed, state_key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    box = Outbox(path, commit_interval=3600, commit_max_records=1_000_000)
    added = 0
    while True:  # ends only by SIGKILL
        for _ in range(rng.randint(1, 40)):
            priority = Priority.STATUS if rng.random() < 0.1 else Priority.TELEMETRY
            box.add({"kind": "reading", "sensor": "meter-1", "quantity": "volume", "value": added / 10,
                     "unit": "m3", "quality": "good", "ts": 1_764_201_600_000 + added, "synced": True,
                     "pad": "x" * rng.randint(0, 400)}, priority)
            added += 1
        box.set_state(state_key, {"added": added})
        seqs = box.commit()
        sys.stdout.write(" ".join(map(str, seqs)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
