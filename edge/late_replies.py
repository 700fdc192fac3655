"""Replies that are ready after the request's turn of the uplink loop: sent by the uplink thread, later.

A :class:`~edge.commands.Slow` command (``config_set``) is answered from its own thread once
it is settled. paho is not thread-safe and nothing may be published inside its callbacks, so
the reply is queued here and published by the uplink thread at the start of its next turn,
exactly as :meth:`edge.uplink.Uplink._answer` publishes a quick reply. While the link is down
the reply waits in the queue; the uplink that is current when the reply is ready sends it (a
``config_set`` replaces the uplink it arrived on).

This is the one addition :class:`~edge.uplink.Uplink` needs for slow commands; it belongs in
``edge/uplink.py`` itself and is kept apart only while that module is being reworked.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from edge import payloads, topics
from edge.uplink import Uplink
from edge.uplink_pack import single


class LateReplyUplink(Uplink):
    """An :class:`~edge.uplink.Uplink` that also publishes replies handed over by :meth:`send_reply`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._late: deque[tuple[str, dict[str, Any]]] = deque()   # appended by any thread, popped by this one

    def send_reply(self, name: str, reply: dict[str, Any]) -> None:
        """Publish ``reply`` on ``cmd/<name>/reply`` from the uplink thread; any thread, never blocks."""
        self._late.append((name, reply))
        self.wake()

    def _handle_events(self) -> str | None:
        while self._late:
            name, reply = self._late.popleft()
            self._publish_unit(single(topics.command_reply(self.base, name), payloads.encode(reply), retain=False))
        return super()._handle_events()
