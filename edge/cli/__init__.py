"""The ``linli`` command: for a technician under a sink with a laptop.

One module per command group, each declaring its options next to its handler
(``run``, ``config``, ``demo``, ``replay``, ``evaluate``, ``explain``, ``status``, ``watch``,
``doctor``, ``outbox``, ``away``, ``alarm``, ``decode``, ``probe``, ``scan``, ``version``,
``completion``, ``logs``); :mod:`edge.cli.main`
builds the parser from the list of groups and runs the command; :mod:`edge.cli.render` prints
for all of them; :mod:`edge.cli.common` holds what they share (``--config``, asking the agent).

Exit statuses follow sysexits(3) so scripts can tell problems apart (:mod:`edge.exits`):
0 ok, 1 the agent refused, 64 usage, 65 bad data, 66 a missing file, 69 a service (broker)
unavailable, 70 internal error (for ``linli run`` also: a worker thread died), 73 a file in
the way of the outbox's lock, 74 I/O error, 75 another agent already runs on this outbox,
78 bad configuration, 130 interrupted.
"""

from edge.cli.common import config_path
from edge.cli.main import build_parser, main

__all__ = ["build_parser", "config_path", "main"]
