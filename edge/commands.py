"""Commands from the central side: ``<base>/cmd/<name>`` in, ``<base>/cmd/<name>/reply`` out.

A request is ``{"v": 1, "gateway": "<id>", "id": "<request id>", "name": "<name>", "args": {…}}``
(edge/schemas/command.schema.json); the reply carries the same id with
``ok`` and a ``result`` or an ``error``. QoS 1 may deliver a request twice:
a repeated id on the same command is answered again from memory, never
executed twice.

Every payload gets a reply, whatever its bytes: one that cannot be read far
enough to find its id (over :data:`MAX_REQUEST` bytes, not UTF-8, not JSON,
nested deeper than the parser goes, not an object, no usable id) is answered
with ``"id": null`` and an error saying why, so an operator sees what the
gateway made of it. The one exception is a command name over :data:`MAX_NAME`
bytes: its reply topic could be longer than MQTT carries, so it is logged and
dropped. :meth:`Commands.handle` never raises an ``Exception``: it runs on the
uplink's thread, and nothing a publisher sends may end it.

Handlers are registered by name. They run on the thread that calls
:meth:`Commands.handle` (the uplink's, or a control-socket client's), so a
handler must be quick and must hand anything that changes agent state to the
thread that owns it. A handler that must wait (``config_set`` waits up to a
minute for the new configuration to prove healthy) is wrapped in :class:`Slow`:
given a ``send`` callback, :class:`Commands` runs it on a thread of its own and
hands its reply to ``send`` when it is done, so the uplink's loop goes on; a
repeat of its id meanwhile is neither run nor answered (its one reply follows).
Without ``send`` (the control socket, whose client waits anyway) it runs inline.

Every request settled (not a repeat answered from memory) is offered to ``audit`` with
its outcome: ``applied``, the :class:`CommandError`'s own (``refused``, ``rolled_back``)
or ``failed`` for a handler bug. :mod:`edge.events` turns those of the commands that
change something into ``event`` records.
"""

from __future__ import annotations

import decimal
import json
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from edge import payloads

log = logging.getLogger("linli.commands")

Handler = Callable[[dict[str, Any]], Any]
#: ``audit(name, request_id, outcome, reply)``, called once per request actually run.
Audit = Callable[[str, str, str, dict[str, Any]], None]
#: Replies remembered for repeated ids; QoS 1 redelivery comes within seconds, not hundreds of requests.
REMEMBERED = 128
#: Largest request read. Today's commands need a few hundred bytes; this leaves room for a pushed config.
MAX_REQUEST = 64 * 1024
#: Longest request id, as in command.schema.json.
MAX_ID = 128
#: Longest command name answered, in UTF-8 bytes: ``<base>/cmd/<name>/reply`` must fit MQTT's 65,535.
MAX_NAME = 128


class Slow:
    """A handler that may take long: ``work(args, request_id)`` runs off the caller's thread when it can."""

    def __init__(self, work: Callable[[dict[str, Any], str], Any]):
        self.work = work


class CommandError(Exception):
    """A request that cannot be carried out; the message goes back in the reply's ``error``."""

    outcome = "refused"   # what the audit trail calls it (edge.events)


class RolledBack(CommandError):
    """A change that was carried out, judged unhealthy and undone."""

    outcome = "rolled_back"


class RequestError(ValueError):
    """A payload that cannot be read as a request: too large, not UTF-8, not JSON or nested too deep."""


def parse(payload: bytes) -> Any:
    """The JSON value in ``payload``; :class:`RequestError` saying why there is none.

    Any valid JSON is read, including integers longer than Python's int parser
    accepts (they become :class:`decimal.Decimal`, which no handler takes for
    an int).

    >>> parse(b'{"n": 1}')
    {'n': 1}
    >>> parse(b"[" * 100_000 + b"]" * 100_000)
    Traceback (most recent call last):
    edge.commands.RequestError: the request is 200000 bytes; at most 65536 are read
    >>> parse(b"[" * 30_000 + b"]" * 30_000)
    Traceback (most recent call last):
    edge.commands.RequestError: the request is nested too deeply to be read
    """
    if len(payload) > MAX_REQUEST:
        raise RequestError(f"the request is {len(payload)} bytes; at most {MAX_REQUEST} are read")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request is not UTF-8 text (byte {exc.start} is invalid)") from None
    try:
        return json.loads(text, parse_int=_integer)
    except RecursionError:
        raise RequestError("the request is nested too deeply to be read") from None
    except ValueError as exc:
        raise RequestError(f"the request is not JSON ({exc})") from None


def _integer(digits: str) -> int | decimal.Decimal:
    try:
        return int(digits)
    except ValueError:  # over sys.get_int_max_str_digits(): the limit exists because int() is quadratic here
        return decimal.Decimal(digits)


class Commands:
    """Parses, de-duplicates and dispatches command requests for one gateway; safe to call from several threads.

    >>> cmds = Commands("gw-1", {"ping": lambda args: {"pong": True}})
    >>> cmds.handle("ping", b'{"v": 1, "gateway": "gw-1", "id": "r1", "name": "ping"}')
    {'v': 1, 'gateway': 'gw-1', 'id': 'r1', 'name': 'ping', 'ok': True, 'result': {'pong': True}}
    >>> cmds.handle("ping", b'{"v": 1, "gateway": "gw-1", "id": "r2", "name": "reboot"}')["error"]
    'the request names command "reboot" but arrived on cmd/ping'
    >>> cmds.handle("ping", b'\\xff')["id"] is None
    True
    """

    def __init__(self, gateway: str, handlers: dict[str, Handler | Slow],
                 send: Callable[[str, dict[str, Any]], None] | None = None, audit: Audit | None = None):
        self.gateway = gateway
        self.handlers = dict(handlers)
        self.send = send     # where a Slow handler's reply goes once it is done; None: run it inline
        self.audit = audit
        # Keyed by (command, id): an id reused on another command is a new request, not a repeat.
        self._answered: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._running: set[tuple[str, str]] = set()   # Slow requests under way on their own thread
        self._lock = threading.Lock()  # guards _answered only; handlers run outside it

    def handle(self, topic_name: str, payload: bytes) -> dict[str, Any] | None:
        """The reply for the bytes that arrived on ``cmd/<topic_name>``; ``None`` for a name too long to answer."""
        if len(topic_name.encode()) > MAX_NAME:
            log.warning("command on cmd/%s... dropped: a name over %d bytes cannot be answered", topic_name[:32],
                        MAX_NAME)
            return None
        try:
            request = parse(payload)
        except RequestError as exc:
            log.warning("command on cmd/%s refused: %s", topic_name, exc)
            return self._reply(topic_name, None, ok=False, error=str(exc))
        return self.answer(topic_name, request)

    def answer(self, topic_name: str, request: Any) -> dict[str, Any] | None:
        """The reply for an already parsed request that arrived on ``cmd/<topic_name>``.

        ``None`` when a :class:`Slow` handler took it on its own thread (or already had it):
        its reply goes to ``send`` when it is done.
        """
        request_id = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID:
            what = "an object" if isinstance(request, dict) else "a JSON object"
            log.warning("command on cmd/%s has no usable id; answered with id null", topic_name)
            return self._reply(topic_name, None, ok=False,
                               error=f"the request must be {what} with an id of 1 to {MAX_ID} characters")
        key = (topic_name, request_id)
        with self._lock:
            if key in self._answered:
                return self._answered[key]
            if key in self._running:
                return None
            slow = isinstance(self.handlers.get(topic_name), Slow) and self.send is not None
            if slow:
                self._running.add(key)
        if slow:
            threading.Thread(target=self._answer_later, args=(topic_name, request_id, request),
                             name=f"linli-cmd-{topic_name}", daemon=True).start()
            return None
        return self._settle(topic_name, request_id, request)

    def _answer_later(self, topic_name: str, request_id: str, request: dict[str, Any]) -> None:
        try:
            reply = self._settle(topic_name, request_id, request)
        finally:
            with self._lock:
                self._running.discard((topic_name, request_id))
        try:
            self.send(topic_name, reply)
        except Exception:  # the reply stays remembered: a repeat of the id gets it
            log.exception("the reply to %s (id %s) could not be handed over", topic_name, request_id)

    def _settle(self, topic_name: str, request_id: str, request: Any) -> dict[str, Any]:
        """Run the request, remember its reply for repeats of its id, return it."""
        key = (topic_name, request_id)
        outcome = "applied"
        try:
            reply = self._reply(topic_name, request_id, ok=True, result=self._run(topic_name, request))
            payloads.encode(reply)  # a result that cannot travel is a handler bug, answered like one
        except CommandError as exc:
            outcome = exc.outcome
            reply = self._reply(topic_name, request_id, ok=False, error=str(exc))
        except Exception as exc:  # a handler bug answers with an error instead of taking the uplink down
            log.exception("command %s (id %s) failed", topic_name, request_id)
            outcome = "failed"
            reply = self._reply(topic_name, request_id, ok=False,
                                error=f"internal error: {exc}" if str(exc) else f"internal error: {exc!r}")
        if self.audit is not None:
            try:
                self.audit(topic_name, request_id, outcome, reply)
            except Exception:  # the reply still goes out: the change happened whether or not it is audited
                log.exception("command %s (id %s) could not be audited", topic_name, request_id)
        with self._lock:
            self._answered[key] = reply
            while len(self._answered) > REMEMBERED:
                self._answered.popitem(last=False)
        return reply

    def _reply(self, topic_name: str, request_id: str | None, **outcome: Any) -> dict[str, Any]:
        return {"v": 1, "gateway": self.gateway, "id": request_id, "name": topic_name, **outcome}

    def _run(self, topic_name: str, request: dict[str, Any]) -> Any:
        if request.get("v") != 1:
            raise CommandError(f"unsupported request version {_short(request.get('v'))}; this gateway speaks v 1")
        if request.get("gateway") != self.gateway:
            raise CommandError(f'the request is for gateway {_short(request.get("gateway"))}, '
                               f'this is "{self.gateway}"')
        if request.get("name") != topic_name:
            raise CommandError(f'the request names command {_short(request.get("name"))} '
                               f'but arrived on cmd/{topic_name}')
        handler = self.handlers.get(topic_name)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise CommandError(f'unknown command "{topic_name}"; this gateway knows: {known}')
        args = request.get("args", {})
        if not isinstance(args, dict):
            raise CommandError("args must be a JSON object")
        if isinstance(handler, Slow):
            return handler.work(args, request["id"])
        return handler(args)


def _short(value: Any) -> str:
    """A request's value as an error shows it: JSON spelling, a container by its kind, cut at 80 characters."""
    if isinstance(value, str):
        shown = f'"{value}"'
    elif isinstance(value, (dict, list)):
        shown = "an object" if isinstance(value, dict) else "an array"
    else:
        shown = str(value) if isinstance(value, decimal.Decimal) else json.dumps(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
