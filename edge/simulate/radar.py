"""Simulated 60 GHz vital-sign radars (MR60BHA1, MR60BHA2) streaming frames over a pseudo-terminal.

The driver opens :attr:`RadarSimulator.path` like ``/dev/ttyUSB0``. A thread
writes what the radar would send, one tick every ``period`` seconds, and
answers the MR60BHA1's presence query. With ``corruption`` > 0 a tick is, with
that probability, damaged the way a real UART line damages it:

* ``garbage`` — a few noise bytes (sometimes a false frame header) before the frames;
* ``checksum`` — one frame's checksum flipped;
* ``split`` — a frame split across two writes a few milliseconds apart;
* ``group`` — every frame of the tick in one write (otherwise one write per frame).

``stats`` counts what was sent and damaged, so a test can check that the
driver rejected exactly the damaged frames. A radar nobody reads loses bytes
(like a UART without flow control) instead of blocking the thread.

>>> with Mr60bha2Simulator(period=0.01, heart_rate=72.5) as radar:
...     port = os.open(radar.path, os.O_RDWR | os.O_NOCTTY)
...     parser = mr60bha2.StreamParser()
...     kinds = {}
...     while "heart_rate" not in kinds:
...         for frame in parser.feed(_read_some(port)):
...             kinds.update({v.kind: v.value for v in mr60bha2.values(frame)})
...     os.close(port)
>>> kinds["heart_rate"]
72.5
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import shutil
import struct
import tempfile
import threading
import time
from typing import Any

from drivers.codecs import mr60bha1, mr60bha2
from edge.simulate.pty import PtyPair

CORRUPTIONS = ("garbage", "checksum", "split", "group")
_STOP_TIMEOUT = 5.0


def _read_some(fd: int, timeout: float = 2.0) -> bytes:
    """Whatever ``fd`` has within ``timeout`` (for the doctest)."""
    if select.select([fd], [], [], timeout)[0]:
        return os.read(fd, 4096)
    return b""


class RadarSimulator:
    """Base: the tick thread, the pty and the corruption; subclasses say what a tick sends."""

    #: Values a subclass understands, with their defaults; ``None`` means "not sent at all".
    defaults: dict[str, Any] = {}

    def __init__(self, *, period: float = 0.125, corruption: float = 0.0, seed: int = 0,
                 name: str = "ttyRADAR", **values: Any):
        unknown = set(values) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown radar values: {', '.join(sorted(unknown))}")
        if not 0.0 <= corruption <= 1.0:
            raise ValueError(f"corruption is a probability between 0 and 1, got {corruption}")
        self.period = period
        self.corruption = corruption
        self._rng = random.Random(seed)
        self._name = name
        self._lock = threading.Lock()
        #: Held while bytes are written, so that :attr:`silent` takes effect at once.
        self._sending = threading.Lock()
        self._values = {**self.defaults, **values}
        self._silent = False
        self.stats = {"ticks": 0, "frames": 0, "answers": 0, "dropped_bytes": 0, **{kind: 0 for kind in CORRUPTIONS}}
        self.path = ""
        self._dir: str | None = None
        self._pty: PtyPair | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.tick = 0

    # --- control ---------------------------------------------------------------------------------
    def set(self, **values: Any) -> None:
        """Change what the radar measures from the next tick on (``None``: stop sending that value)."""
        unknown = set(values) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown radar values: {', '.join(sorted(unknown))}")
        with self._lock:
            self._values.update(values)

    def values(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    @property
    def silent(self) -> bool:
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        """A silent radar sends nothing: dead, unpowered, or its TX wire off. Once set, no byte follows."""
        with self._sending:
            self._silent = value

    # --- life cycle ------------------------------------------------------------------------------
    def start(self) -> RadarSimulator:
        self._dir = tempfile.mkdtemp(prefix="linli-radar-")
        self._pty = PtyPair()
        flags = fcntl.fcntl(self._pty.master_fd, fcntl.F_GETFL)
        fcntl.fcntl(self._pty.master_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.path.join(self._dir, self._name)
        os.symlink(self._pty.path, self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self._name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, close the pty, remove the path. Safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(_STOP_TIMEOUT)
        self._thread = None
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RadarSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        heard = b""
        while not self._stop.is_set():
            wait = max(0.0, next_tick - time.monotonic())
            ready, _, _ = select.select([self._pty.master_fd], [], [], wait)
            if ready:
                try:
                    heard = (heard + os.read(self._pty.master_fd, 4096))[-256:]
                except OSError:
                    heard = b""  # nobody has the port open
                with self._sending:
                    heard = self._answer(heard)
                continue
            next_tick += self.period
            with self._sending:
                if self._silent:
                    continue
                with self._lock:
                    values = dict(self._values)
                frames = self.frames_for_tick(self.tick, values)
                self.tick += 1
                self.stats["ticks"] += 1
                self._deliver(frames)

    def frames_for_tick(self, tick: int, values: dict[str, Any]) -> list[bytes]:  # pragma: no cover
        raise NotImplementedError

    def _answer(self, heard: bytes) -> bytes:
        """Answer queries found in ``heard``; return what is left to wait for."""
        return b""

    def _deliver(self, frames: list[bytes]) -> None:
        self.stats["frames"] += len(frames)
        damage = None
        if frames and self._rng.random() < self.corruption:
            damage = self._rng.choice(CORRUPTIONS)
            self.stats[damage] += 1
        if damage == "checksum":
            at = self._rng.randrange(len(frames))
            frames[at] = self.flip_checksum(frames[at])
        if damage == "garbage":
            noise = bytes(self._rng.randrange(256) for _ in range(self._rng.randint(1, 12)))
            if self._rng.random() < 0.5:
                noise += self.false_start()
            self._write(noise)
        if damage == "group":
            self._write(b"".join(frames))
            return
        for index, frame in enumerate(frames):
            if damage == "split" and index == 0:
                cut = self._rng.randint(1, len(frame) - 1)
                self._write(frame[:cut])
                time.sleep(0.003)
                self._write(frame[cut:])
            else:
                self._write(frame)

    def flip_checksum(self, frame: bytes) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def false_start(self) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self._pty.master_fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            written = 0  # the driver side hung up
        self.stats["dropped_bytes"] += len(data) - written


class Mr60bha1Simulator(RadarSimulator):
    """An MR60BHA1 in real-time mode, on the manual's cadence counted in ticks.

    Every tick: body-movement parameter. Every 2nd: distance. Every 3rd: heart
    rate, breathing rate and their waveforms. Presence, movement, in-bed and
    sleep state when they change (and presence when asked). With ``period = 1.0``
    this is the radar's real pace.
    """

    defaults = {"presence": True, "movement": 1, "distance": 62, "heart_rate": 68, "breathing_rate": 15,
                "in_bed": None, "sleep_state": None, "body_movement": 2}
    _CHANGE = {"presence": (mr60bha1.HUMAN, mr60bha1.PRESENCE), "movement": (mr60bha1.HUMAN, mr60bha1.MOTION),
               "in_bed": (mr60bha1.SLEEP, mr60bha1.IN_BED), "sleep_state": (mr60bha1.SLEEP, mr60bha1.SLEEP_STATE)}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._reported: dict[str, Any] = {}

    def frames_for_tick(self, tick: int, values: dict[str, Any]) -> list[bytes]:
        frames = []
        for kind, (control, command) in self._CHANGE.items():
            value = values[kind]
            if value is not None and self._reported.get(kind) != value:
                frames.append(mr60bha1.build_frame(control, command, bytes((int(value),))))
                self._reported[kind] = value
        if values["body_movement"] is not None:
            frames.append(mr60bha1.build_frame(mr60bha1.HUMAN, mr60bha1.BODY_MOVEMENT,
                                               bytes((values["body_movement"],))))
        if tick % 2 == 0 and values["distance"] is not None:
            frames.append(mr60bha1.build_frame(mr60bha1.HUMAN, mr60bha1.DISTANCE,
                                               int(values["distance"]).to_bytes(2, "big")))
        if tick % 3 == 0:
            for kind, control in (("heart_rate", mr60bha1.HEART), ("breathing_rate", mr60bha1.BREATH)):
                if values[kind] is not None:
                    frames.append(mr60bha1.build_frame(control, mr60bha1.RATE, bytes((int(values[kind]),))))
                    wave = bytes(128 + round(20 * ((i + tick) % 5 - 2) / 2) for i in range(5))
                    frames.append(mr60bha1.build_frame(control, 0x05, wave))
        return frames

    def _answer(self, heard: bytes) -> bytes:
        at = heard.find(mr60bha1.QUERY_PRESENCE)
        if at < 0:
            return heard
        presence = self.values()["presence"]
        if presence is not None and not self._silent:
            self.stats["answers"] += 1
            self._write(mr60bha1.build_frame(mr60bha1.HUMAN, mr60bha1.PRESENCE | mr60bha1.QUERY_REPLY_BIT,
                                             bytes((int(presence),))))
        return heard[at + len(mr60bha1.QUERY_PRESENCE):]

    def flip_checksum(self, frame: bytes) -> bytes:
        at = len(frame) - 3
        return frame[:at] + bytes((frame[at] ^ 0xFF,)) + frame[at + 1:]

    def false_start(self) -> bytes:
        return mr60bha1.HEADER + bytes((0x85, 0x02))


class Mr60bha2Simulator(RadarSimulator):
    """An MR60BHA2: every tick (about 8 per second on the real radar) phases, breathing rate, heart rate,
    distance, presence and the tracked targets, each frame with the next frame ID."""

    defaults = {"presence": True, "distance": 48.5, "heart_rate": 71.0, "breathing_rate": 14.5}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._frame_id = 0x8000

    def _frame(self, frame_type: int, data: bytes) -> bytes:
        frame = mr60bha2.build_frame(frame_type, data, self._frame_id)
        self._frame_id = (self._frame_id + 1) & 0xFFFF
        return frame

    def frames_for_tick(self, tick: int, values: dict[str, Any]) -> list[bytes]:
        frames = [self._frame(mr60bha2.PHASES, struct.pack("<3f", 0.8, 0.3, 0.05 * (tick % 7)))]
        if values["breathing_rate"] is not None:
            frames.append(self._frame(mr60bha2.BREATHING_RATE, struct.pack("<f", values["breathing_rate"])))
        if values["heart_rate"] is not None:
            frames.append(self._frame(mr60bha2.HEART_RATE, struct.pack("<f", values["heart_rate"])))
        if values["distance"] is not None:
            target = 1 if values["distance"] > 0 else 0
            frames.append(self._frame(mr60bha2.DISTANCE, struct.pack("<If", target, values["distance"])))
        if values["presence"] is not None:
            frames.append(self._frame(mr60bha2.PRESENCE, struct.pack("<I", int(values["presence"]))))
            targets = struct.pack("<I", 1) + struct.pack("<2f2i", 0.1, 0.5, 0, 1) if values["presence"] \
                else struct.pack("<I", 0)
            frames.append(self._frame(mr60bha2.POINT_CLOUD_TARGETS, targets))
        return frames

    def flip_checksum(self, frame: bytes) -> bytes:
        return frame[:-1] + bytes((frame[-1] ^ 0xFF,))

    def false_start(self) -> bytes:
        return bytes((mr60bha2.START, 0x80, 0x00, 0x00, 0x04, 0x0A, 0x15))
