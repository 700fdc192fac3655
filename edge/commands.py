"""Commands from the central side: ``<base>/cmd/<name>`` in, ``<base>/cmd/<name>/reply`` out.

A request is ``{"v": 1, "gateway": "<id>", "id": "<request id>", "name": "<name>", "args": {…}}``
(edge/schemas/command.schema.json); the reply carries the same id with
``ok`` and a ``result`` or an ``error``. QoS 1 may deliver a request twice:
a repeated id is answered again from memory, never executed twice.

Handlers are registered by name. They run on the thread that calls
:meth:`Commands.handle` (the uplink's), so a handler must be quick and must
hand anything that changes agent state to the thread that owns it.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any, Callable

log = logging.getLogger("linli.commands")

Handler = Callable[[dict[str, Any]], Any]
#: Replies remembered for repeated ids; QoS 1 redelivery comes within seconds, not hundreds of requests.
REMEMBERED = 128


class CommandError(Exception):
    """A request that cannot be carried out; the message goes back in the reply's ``error``."""


class Commands:
    """Parses, de-duplicates and dispatches command requests for one gateway.

    >>> cmds = Commands("gw-1", {"ping": lambda args: {"pong": True}})
    >>> cmds.handle("ping", b'{"v": 1, "gateway": "gw-1", "id": "r1", "name": "ping"}')
    {'v': 1, 'gateway': 'gw-1', 'id': 'r1', 'name': 'ping', 'ok': True, 'result': {'pong': True}}
    >>> cmds.handle("ping", b'{"v": 1, "gateway": "gw-1", "id": "r2", "name": "reboot"}')["error"]
    'the request names command "reboot" but arrived on cmd/ping'
    """

    def __init__(self, gateway: str, handlers: dict[str, Handler]):
        self.gateway = gateway
        self.handlers = dict(handlers)
        self._answered: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def handle(self, topic_name: str, payload: bytes) -> dict[str, Any] | None:
        """The reply for a request that arrived on ``cmd/<topic_name>``; ``None`` if it cannot be answered."""
        try:
            request = json.loads(payload)
        except ValueError:
            log.warning("command on cmd/%s is not JSON; ignored", topic_name)
            return None
        if not isinstance(request, dict) or not isinstance(request.get("id"), str) or not request["id"]:
            log.warning("command on cmd/%s has no id; ignored (a reply could not be matched)", topic_name)
            return None
        request_id = request["id"]
        if request_id in self._answered:
            return self._answered[request_id]
        reply = {"v": 1, "gateway": self.gateway, "id": request_id, "name": topic_name}
        try:
            reply.update(ok=True, result=self._run(topic_name, request))
        except CommandError as exc:
            reply.update(ok=False, error=str(exc))
        except Exception as exc:  # a handler bug answers with an error instead of taking the uplink down
            log.exception("command %s (id %s) failed", topic_name, request_id)
            reply.update(ok=False, error=f"internal error: {exc}")
        self._answered[request_id] = reply
        while len(self._answered) > REMEMBERED:
            self._answered.popitem(last=False)
        return reply

    def _run(self, topic_name: str, request: dict[str, Any]) -> Any:
        if request.get("v") != 1:
            raise CommandError(f"unsupported request version {request.get('v')!r}; this gateway speaks v 1")
        if request.get("gateway") != self.gateway:
            raise CommandError(f'the request is for gateway "{request.get("gateway")}", this is "{self.gateway}"')
        if request.get("name") != topic_name:
            raise CommandError(f'the request names command "{request.get("name")}" but arrived on cmd/{topic_name}')
        handler = self.handlers.get(topic_name)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise CommandError(f'unknown command "{topic_name}"; this gateway knows: {known}')
        args = request.get("args", {})
        if not isinstance(args, dict):
            raise CommandError("args must be a JSON object")
        return handler(args)
