"""``linli`` with one test-only driver more: ``python -m tests.fatal_driver ARGS`` is ``linli ARGS``.

The ``fatal`` driver reads a level of 1 m until the file named by its ``fatal_file`` option
exists, then raises :class:`ThreadKiller` — a BaseException, which no driver error path
catches, as a ``SystemExit`` or ``KeyboardInterrupt`` from a library would — and its bus
thread ends. The supervision tests run the real agent this way and watch it end the process.
"""

from __future__ import annotations

import os
import sys

from drivers.base import Driver, Measurement
from drivers.options import Option
from drivers.registry import DRIVERS
from edge.cli import main


class ThreadKiller(BaseException):
    """What the driver raises once its file exists."""


class FatalDriver(Driver):
    name = "fatal"
    bus_kind = "gpio"
    quantities = ("level",)
    options = {"fatal_file": Option("str", required=True, help="raise ThreadKiller once this file exists")}

    def read(self) -> list[Measurement]:
        if os.path.exists(self.config["fatal_file"]):
            raise ThreadKiller(f"{self.config['fatal_file']} appeared")
        return [Measurement("level", 1.0, "m")]


if __name__ == "__main__":
    DRIVERS["fatal"] = "tests.fatal_driver:FatalDriver"
    sys.exit(main())
