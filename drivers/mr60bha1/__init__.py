"""MR60BHA1 60 GHz breathing-and-heartbeat radar (MicRadar/Seeed) on a UART, publishing at ``interval``.

Publishes (``publish`` chooses which) ``presence`` (true/false), ``movement``
(0 none, 1 stationary, 2 active), ``distance`` (cm), ``heart_rate`` (bpm),
``breathing_rate`` (1/min), ``in_bed`` (true/false) and ``sleep_state``
(0 deep sleep, 1 light sleep, 2 awake) — see README.md for what each means
and when it is ``bad``. The radar reports presence, movement, in-bed and
sleep state only when they change, so the driver asks for presence when it
does not know it yet.

>>> Mr60bha1.quantities_for({"publish": ["presence", "heart_rate"]})
('presence', 'heart_rate')
>>> validate_options(Mr60bha1.options, {"publish": ["pulse"]})[1]
[('publish', "unknown quantity 'pulse'; this radar reports presence, movement, distance, heart_rate, \
breathing_rate, in_bed, sleep_state")]
"""

from __future__ import annotations

from drivers.codecs import mr60bha1
from drivers.radar_stream import StreamingRadar, publish_option
from drivers.options import validate_options  # noqa: F401  (used by the doctest)

DEFAULT_PUBLISH = ("presence", "movement", "distance", "heart_rate", "breathing_rate")


#: Reads between two presence queries while presence is known (at a 5 s interval: every minute).
REASK_EVERY = 12


class Mr60bha1(StreamingRadar):
    """The MR60BHA1's frames through :mod:`drivers.codecs.mr60bha1`."""

    name = "mr60bha1"
    codec = mr60bha1
    model = "MR60BHA1"
    held_kinds = frozenset({"presence", "movement", "in_bed", "sleep_state"})
    quantities = DEFAULT_PUBLISH
    options = {"publish": publish_option(mr60bha1.KINDS, DEFAULT_PUBLISH), **StreamingRadar.common_options}

    def open(self) -> None:
        super().open()
        self._ask_presence()

    def after_read(self) -> None:
        # Presence comes only on change: after opening, or after an outage made us forget it, ask — and
        # every REASK_EVERY reads anyway, so a change frame lost to a bad checksum is not believed for ever.
        if not self.known("presence") or self._reads % REASK_EVERY == 0:
            self._ask_presence()

    def _ask_presence(self) -> None:
        if "presence" in self.publish:
            self.bus.write(mr60bha1.QUERY_PRESENCE)
