"""The exit statuses of ``linli`` and the agent, in one place: sysexits(3) so scripts can tell problems apart.

Outside the ``edge.cli`` package so that the errors that carry them (:mod:`edge.errors`,
:mod:`edge.trace`, :mod:`edge.probe` …) can import them without importing the command line.
"""

from __future__ import annotations

#: All went well.
EX_OK = 0
#: The running agent understood the request and said no (an alarm no rule makes, away on without --until).
EX_REFUSED = 1
#: A check failed (``linli doctor``): the same 1, named for what it means there.
EX_FAILED = 1
#: The command line was wrong.
EX_USAGE = 64
#: The input data was wrong: a bad frame, a bad trace row, a garbled answer.
EX_DATAERR = 65
#: An input file is missing.
EX_NOINPUT = 66
#: A service or device did not answer: the broker, the agent's control socket, a meter.
EX_UNAVAILABLE = 69
#: An internal error; for ``linli run`` also a worker thread that died.
EX_SOFTWARE = 70
#: A file that is not the agent's is in the way of the outbox's lock.
EX_CANTCREAT = 73
#: Reading or writing failed: a port, a file.
EX_IOERR = 74
#: Try again later: another agent already runs on this outbox.
EX_TEMPFAIL = 75
#: Not allowed: the command needs root (``linli update``).
EX_NOPERM = 77
#: The configuration is wrong.
EX_CONFIG = 78
#: Ctrl-C (128 + SIGINT, as a shell reports it).
EX_INTERRUPTED = 130
