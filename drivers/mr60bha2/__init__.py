"""MR60BHA2 60 GHz breathing-and-heartbeat radar (Seeed XIAO kit) on a UART, publishing at ``interval``.

Publishes (``publish`` chooses which) ``presence`` (true/false), ``distance``
(cm), ``heart_rate`` (bpm) and ``breathing_rate`` (1/min); the radar sends all
of them about eight times a second. See README.md for when each is ``bad``.

>>> Mr60bha2.quantities_for({})
('presence', 'distance', 'heart_rate', 'breathing_rate')
"""

from __future__ import annotations

from drivers.codecs import mr60bha2
from drivers.radar_stream import StreamingRadar, publish_option

DEFAULT_PUBLISH = ("presence", "distance", "heart_rate", "breathing_rate")


class Mr60bha2(StreamingRadar):
    """The MR60BHA2's frames through :mod:`drivers.codecs.mr60bha2`."""

    name = "mr60bha2"
    codec = mr60bha2
    model = "MR60BHA2"
    quantities = DEFAULT_PUBLISH
    options = {"publish": publish_option(mr60bha2.KINDS, DEFAULT_PUBLISH), **StreamingRadar.common_options}
