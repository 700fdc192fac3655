"""An I2C bus of the Raspberry Pi (``/dev/i2c-N``) through smbus2.

Drivers use :attr:`I2cBus.smbus`, an object with the ``smbus2.SMBus`` API.
Tests and simulators inject their own register model instead of a device:

>>> class Registers:                      # a stand-in with the smbus2 API
...     def read_byte_data(self, address, register):
...         return 0x42
>>> with I2cBus("i2c", {"device": 1}, smbus=Registers()) as bus:
...     hex(bus.smbus.read_byte_data(0x48, 0x00))
'0x42'

A simulated bus can also be named in config (``simulator = "demo"``) once a
simulator has registered it in :data:`SIMULATED` — the way ``linli demo`` and
the end-to-end tests put a simulated ADS1115 under the real agent, as
pyserial's ``loop://`` does for serial ports.
"""

from __future__ import annotations

import errno
from typing import Any

import smbus2

from drivers.base import Bus
from drivers.errors import TransportError
from drivers.options import Option, validate_options


#: Simulated buses by name, registered by ``edge.simulate`` for ``simulator = "<name>"`` in config.
SIMULATED: dict[str, Any] = {}


def i2c_error(exc: OSError, address: int, bus: Any) -> TransportError:
    """A :class:`TransportError` a technician can act on, for an ``OSError`` from an I2C transfer."""
    path = getattr(bus, "path", "the I2C bus")
    device = getattr(bus, "device", 1)
    if exc.errno in (errno.EREMOTEIO, errno.ENXIO):
        return TransportError(f"no device at 0x{address:02X} on {path}: check wiring / ADDR pin / "
                              f"i2cdetect -y {device}")
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    return TransportError(f"I2C transfer with 0x{address:02X} on {path} failed: {reason} — check wiring, "
                          f"pull-ups and cable length")


class I2cBus(Bus):
    """``/dev/i2c-<device>`` opened with smbus2 (or an injected object with its API)."""

    kind = "i2c"
    options = {
        "device": Option("int", default=1, min=0, max=255, help="bus number: 1 is /dev/i2c-1 on the GPIO header"),
        "simulator": Option("str", help="a simulated bus of this process (linli demo, tests) instead of a device"),
    }

    def __init__(self, name: str, options: dict[str, Any], smbus: Any = None):
        defaults, _ = validate_options(self.options, {})
        super().__init__(name, {**defaults, **options})
        self.device: int = self.config["device"]
        self._injected = smbus
        self._smbus: Any = None

    @property
    def path(self) -> str:
        return f"/dev/i2c-{self.device}"

    @property
    def smbus(self) -> Any:
        """The open bus; a :class:`TransportError` before :meth:`open`."""
        if self._smbus is None:
            raise TransportError(f"I2C bus {self.path} is not open")
        return self._smbus

    def open(self) -> None:
        """Open the bus; a no-op when it is open already."""
        if self._smbus is not None:
            return
        if self._injected is None and self.config.get("simulator") is not None:
            name = self.config["simulator"]
            if name not in SIMULATED:
                raise TransportError(f"no simulated I2C bus named {name!r} in this process")
            self._injected = SIMULATED[name]
        if self._injected is not None:
            self._smbus = self._injected
            return
        try:
            self._smbus = smbus2.SMBus(self.device)
        except FileNotFoundError as exc:
            raise TransportError(
                f"I2C bus {self.path} does not exist — enable I2C with raspi-config "
                "(Interface Options → I2C) and reboot") from exc
        except PermissionError as exc:
            raise TransportError(
                f"no permission to open I2C bus {self.path} — add the service user to group i2c") from exc
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            raise TransportError(f"cannot open I2C bus {self.path}: {reason}") from exc

    def close(self) -> None:
        """Close the bus if this object opened it (an injected one belongs to its owner); safe twice."""
        bus, self._smbus = self._smbus, None
        if bus is not None and bus is not self._injected:
            bus.close()
