"""The agent's typed errors: each knows the exit status the ``linli`` command returns for it.

Exit statuses follow sysexits(3). A :class:`LinliError` is shown to the user
as its message alone, never as a traceback.

>>> err = ConfigError(["mqtt.hots: unknown key"], source="/etc/linli/edge.toml")
>>> err.exit_code
78
>>> print(err)
/etc/linli/edge.toml has 1 problem:
  mqtt.hots: unknown key
"""

from __future__ import annotations

from drivers.options import escape_controls
from edge.i18n import ngettext
from edge.exits import EX_CONFIG, EX_SOFTWARE



class LinliError(Exception):
    """Base of the errors the agent reports to a person; ``exit_code`` is the process exit status."""

    exit_code = EX_SOFTWARE


class ConfigError(LinliError):
    """The configuration cannot be used. ``problems`` lists every problem found, one line each.

    Each problem starts with the key path it concerns (``sensor[2].interval: …``),
    except problems with the file itself (missing, unreadable, not TOML). A key or value
    with a control character in it is shown escaped (``gw\\x00``): a problem must never send
    an ESC or a NUL to the terminal that shows it.
    """

    exit_code = EX_CONFIG

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = [escape_controls(problem) for problem in problems]
        self.source = None if source is None else escape_controls(source)
        super().__init__(self._describe())

    def _describe(self) -> str:
        count = len(self.problems)
        if self.source is None:
            head = ngettext("the configuration has {count} problem:",
                            "the configuration has {count} problems:", count).format(count=count)
        else:
            head = ngettext("{source} has {count} problem:",
                            "{source} has {count} problems:", count).format(source=self.source, count=count)
        return "\n  ".join([head, *self.problems])
