"""A loopback TCP proxy the test controls, to break the link between the uplink and the broker.

``cut()`` resets every connection (both ends see it at once, the broker fires the
client's Will) and resets new ones as soon as they arrive; ``cut(blackhole=True)``
instead keeps connections open and silently swallows everything, like a mobile
link that died without a FIN (only keepalives can notice). ``restore()`` forwards
again.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Self

_RESET = struct.pack("ii", 1, 0)      # SO_LINGER on, 0 s: close() sends RST instead of FIN


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    except OSError:
        pass
    sock.close()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket | None):
        self.client = client
        self.upstream = upstream
        self.aborted = threading.Event()

    def abort(self) -> None:
        """Wake the pump (shutdown interrupts its select); the pump closes the sockets with RST."""
        self.aborted.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class TcpProxy:
    """Listens on ``127.0.0.1:<free port>`` and forwards to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.mode = "forward"             # "forward" | "refuse" | "blackhole"
        self.accepted = 0
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-proxy-accept", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy."""
        with self._lock:
            return len(self._pairs)

    def cut(self, *, blackhole: bool = False) -> None:
        """Break the link: reset every connection and new ones, or (``blackhole``) swallow all traffic."""
        self.mode = "blackhole" if blackhole else "refuse"
        if not blackhole:
            with self._lock:
                pairs = list(self._pairs)
            for pair in pairs:
                pair.abort()

    def restore(self) -> None:
        """Forward again (new connections; blackholed ones stay useless until their owner gives up)."""
        self.mode = "forward"

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        for thread in [self._acceptor, *self._threads]:
            thread.join(5)

    # --- threads ------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                client, _addr = self._listener.accept()
            except OSError:
                return          # the listener was closed
            self.accepted += 1
            if self.mode == "refuse":
                _reset(client)
                continue
            upstream = None
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)          # the broker is down: the client sees what it would see directly
                    continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            thread = threading.Thread(target=self._pump, args=(pair,), name="tcp-proxy-pump", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _pump(self, pair: _Pair) -> None:
        ends = [s for s in (pair.client, pair.upstream) if s is not None]
        try:
            while not pair.aborted.is_set():
                ready, _, _ = select.select(ends, [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    other = pair.upstream if sock is pair.client else pair.client
                    if self.mode == "blackhole" or other is None:
                        continue        # swallowed: the sender never learns
                    other.sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in ends:
                _reset(sock)
