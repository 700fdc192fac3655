"""What every driver and bus looks like to the agent.

A driver turns bytes on a bus into :class:`Measurement` values. It is built
from validated options with no I/O (``__init__``), then ``open()``-ed, read
periodically with ``read()`` on its bus's thread, and ``close()``-d. The bus
(transport) is created by the caller and injected, so a driver can be tested
over a pseudo-terminal, a fake I2C bus or gpiozero's ``MockFactory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.options import Option, validate_options


@dataclass(frozen=True)
class Measurement:
    """One value read from a device, before the agent stamps time on it.

    ``state`` is optional driver state (JSON-able) that the agent persists
    together with this measurement and hands back through
    :meth:`Driver.restore_state` after a restart (e.g. a pulse total).
    """

    quantity: str
    value: float | bool | None
    unit: str | None
    quality: str = "good"  # good | uncertain | bad
    reason: str | None = None
    state: dict[str, Any] | None = None


class Bus:
    """A shared transport (serial port, I2C bus, GPIO chip) owned by one thread."""

    kind: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.config = options

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Judge keys together after each passed on its own; ``[(key, message)]``, no I/O."""
        return []

    def open(self) -> None:  # pragma: no cover - overridden where I/O exists
        pass

    def close(self) -> None:  # pragma: no cover - overridden where I/O exists
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class Driver:
    """Base class of device drivers.

    Subclasses set ``name`` (the registry key used in config), ``bus_kind``
    (``serial``, ``i2c`` or ``gpio``) and ``options`` (their own config keys;
    ``id``, ``driver``, ``bus`` and ``interval`` are handled by the agent).
    """

    name: ClassVar[str]
    bus_kind: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    #: The quantities ``read()`` normally returns; a failed read is reported
    #: as a ``bad`` reading of each of them.
    quantities: ClassVar[tuple[str, ...]] = ()
    #: True for drivers that count between reads (pulses, contact changes): the
    #: bus thread reads them once more on a clean stop or reload, so nothing
    #: counted since the last read is lost.
    read_at_stop: ClassVar[bool] = False

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        self.sensor_id = sensor_id
        self.config = options
        self.bus = bus
        #: Set by the bus thread while this device's last read failed. A driver
        #: then tries each request once instead of retrying (see
        #: :func:`drivers.retry.attempts_for`), so a dead device on a shared
        #: line delays its neighbours by at most one timeout per sweep.
        self.failing = False

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Judge keys together after each passed on its own; ``[(key, message)]``, no I/O."""
        return []

    @classmethod
    def resolved_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with every default filled in, judged by :meth:`check_options`.

        For drivers built outside the config path (tests, tools): a problem
        the config check would have reported raises ``ValueError`` here.
        """
        defaults, _ = validate_options(cls.options, {})
        merged = {**defaults, **options}
        problems = cls.check_options(merged)
        if problems:
            raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
        return merged

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The quantities a sensor with these (validated) options reports, known without I/O.

        Rules are checked against it. ``()`` means "not known before the
        device answers" (e.g. whatever records an M-Bus meter sends), and no
        rule quantity is refused.
        """
        return cls.quantities

    def open(self) -> None:
        """Prepare the device (may do I/O). Raise a DriverError on failure."""

    def read(self) -> list[Measurement]:
        """Read the device once. Raise a DriverError subclass on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; must be safe to call twice."""

    def restore_state(self, state: dict[str, Any]) -> None:
        """Receive the ``state`` last persisted with one of this driver's measurements."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
