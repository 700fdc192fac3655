"""A simulated I2C bus opened for the driver tests, and readings as comparable tuples."""

from __future__ import annotations

from drivers.transports.i2c import I2cBus
from edge.simulate.i2c_chips import FakeSMBus


def rig(*chips) -> tuple[FakeSMBus, I2cBus]:
    """``chips`` on a fake SMBus, and an open :class:`I2cBus` over it."""
    fake = FakeSMBus(*chips)
    bus = I2cBus("i2c", {"device": 1}, smbus=fake)
    bus.open()
    return fake, bus


def by_quantity(measurements) -> dict:
    return {m.quantity: (m.value, m.unit, m.quality, m.reason) for m in measurements}
