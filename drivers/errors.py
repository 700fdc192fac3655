"""Typed errors raised by transports, codecs and drivers.

Every error carries a short machine ``reason`` (``timeout``, ``frame``,
``device_fault``, ``transport``) that the agent puts on a ``quality: "bad"``
reading, and a human message a technician can act on.
"""


class DriverError(Exception):
    """Base of everything a driver may raise while talking to a device."""

    reason = "driver_error"


class TransportError(DriverError):
    """The bus itself failed: port missing, held by another process, unplugged."""

    reason = "transport"


class TransportTimeout(TransportError):
    """The device did not answer within the configured timeout."""

    reason = "timeout"


class FrameError(DriverError):
    """Bytes arrived but do not form a valid frame (checksum, length, stop byte).

    ``offset`` is the index of the first offending byte in the frame, when known.
    """

    reason = "frame"

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


class DeviceFault(DriverError):
    """The device answered, but with an error (e.g. a Modbus exception response)."""

    reason = "device_fault"
