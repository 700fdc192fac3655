"""Modbus RTU register reads, framed and checked by pymodbus's own classes.

pymodbus builds the request frames (``FramerRTU`` + the request PDUs),
computes and checks the CRC and decodes the response PDUs; this module adds
what a field gateway needs on top: a precise error for every way an answer
can be wrong, and a :func:`transact` over our own serial bus (one thread per
bus, exclusive port, hard deadlines) instead of pymodbus's client.

>>> read_registers_request(unit=1, address=0x0002, count=3).hex(" ")
'01 03 00 02 00 03 a4 0b'
>>> decode_registers_response(bytes.fromhex("01 03 06 00 00 00 00 01 5e a1 1d"), unit=1, function=3, count=3)
[0, 0, 350]
>>> decode_registers_response(bytes.fromhex("01 83 02 c0 f1"), unit=1, function=3, count=1, address=4)
Traceback (most recent call last):
drivers.codecs.modbus.ModbusException: device 1 answered Modbus exception 2 (illegal data address) for register 0x0004
"""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NotImplementedException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
)

from drivers.codecs import ByteLink
from drivers.errors import DeviceFault, FrameError, TransportTimeout

READ_HOLDING_REGISTERS = 3
READ_INPUT_REGISTERS = 4
_REQUESTS = {READ_HOLDING_REGISTERS: ReadHoldingRegistersRequest, READ_INPUT_REGISTERS: ReadInputRegistersRequest}
MAX_REGISTERS = ReadHoldingRegistersRequest.MAX_COUNT

#: Every RTU answer starts with unit, function code and one more byte (the
#: byte count, or the exception code) — enough to know its full length.
HEADER_LENGTH = 3
_CRC_LENGTH = 2
_EXCEPTION_BIT = 0x80

# The names the Modbus Application Protocol v1.1b3 (§7) gives the codes.
EXCEPTION_NAMES = {
    ExcCodes.ILLEGAL_FUNCTION: "illegal function",
    ExcCodes.ILLEGAL_ADDRESS: "illegal data address",
    ExcCodes.ILLEGAL_VALUE: "illegal data value",
    ExcCodes.DEVICE_FAILURE: "server device failure",
    ExcCodes.ACKNOWLEDGE: "acknowledge",
    ExcCodes.DEVICE_BUSY: "server device busy",
    ExcCodes.NEGATIVE_ACKNOWLEDGE: "negative acknowledge",
    ExcCodes.MEMORY_PARITY_ERROR: "memory parity error",
    ExcCodes.GATEWAY_PATH_UNAVIABLE: "gateway path unavailable",
    ExcCodes.GATEWAY_NO_RESPONSE: "gateway target device failed to respond",
}

_decoder = DecodePDU(is_server=False)
_framer = FramerRTU(_decoder)


class ModbusException(DeviceFault):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, unit: int, code: int):
        super().__init__(message)
        self.unit = unit
        self.code = code


def _check_function(function: int) -> None:
    if function not in _REQUESTS:
        raise ValueError(f"function must be 3 (holding registers) or 4 (input registers), got {function!r}")


def read_registers_request(unit: int, address: int, count: int, function: int = READ_HOLDING_REGISTERS) -> bytes:
    """The RTU frame (with CRC) asking ``unit`` for ``count`` registers from ``address``."""
    _check_function(function)
    if not 1 <= unit <= 247:
        raise ValueError(f"unit must be 1–247 for a read, got {unit!r}")
    if not 1 <= count <= MAX_REGISTERS:
        raise ValueError(f"count must be 1–{MAX_REGISTERS}, got {count!r}")
    if not 0 <= address <= 0xFFFF - (count - 1):
        raise ValueError(f"registers {address}…{address + count - 1} lie outside 0–65535")
    return _framer.buildFrame(_REQUESTS[function](address=address, count=count, dev_id=unit))


def expected_response_length(function: int, count: int) -> int:
    """Bytes in a normal answer to a read of ``count`` registers (an exception answer has 5).

    >>> expected_response_length(3, 3)
    11
    """
    _check_function(function)
    return ReadHoldingRegistersResponse.calculateRtuFrameSize(bytes((0, function, 2 * count)))


def _registers_text(address: int | None, count: int, function: int) -> str:
    if address is None:
        return f"a function {function} read of {count} register(s)"
    if count == 1:
        return f"register 0x{address:04X}"
    return f"registers 0x{address:04X}–0x{address + count - 1:04X}"


def decode_registers_response(
    frame: bytes, unit: int, function: int, count: int, address: int | None = None
) -> list[int]:
    """The register values in ``frame``, the answer to a read of ``count`` registers from ``unit``.

    Raises :class:`FrameError` (with the offset of the first bad byte) for a
    truncated or overlong frame, a CRC mismatch, an answer from another unit
    or for another function, and :class:`ModbusException` (a
    :class:`DeviceFault`) when the device answered with an exception.
    ``address`` only makes the messages name the registers.
    """
    _check_function(function)
    exception = len(frame) > 1 and frame[1] == function | _EXCEPTION_BIT
    size = ExceptionResponse.rtu_frame_size if exception else expected_response_length(function, count)
    if len(frame) < size:
        raise FrameError(f"answer truncated: {len(frame)} of {size} bytes", offset=len(frame))
    if len(frame) > size:
        raise FrameError(f"answer too long: {len(frame) - size} byte(s) after the {size}-byte frame", offset=size)
    crc_at = size - _CRC_LENGTH
    received_crc = int.from_bytes(frame[crc_at:], "big")
    if not FramerRTU.check_CRC(frame[:crc_at], received_crc):
        computed = FramerRTU.compute_CRC(frame[:crc_at])
        raise FrameError(f"CRC mismatch: frame carries {received_crc:04X}, contents give {computed:04X}", offset=crc_at)
    if frame[0] != unit:
        raise FrameError(f"answer came from unit {frame[0]}, but unit {unit} was asked", offset=0)
    if exception:
        code = frame[2]
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        raise ModbusException(
            f"device {unit} answered Modbus exception {code} ({name}) for {_registers_text(address, count, function)}",
            unit=unit,
            code=code,
        )
    if frame[1] != function:
        raise FrameError(f"answer is for function {frame[1]}, but function {function} was asked", offset=1)
    if frame[2] != 2 * count:
        raise FrameError(f"answer says {frame[2]} data bytes, {2 * count} expected for {count} register(s)", offset=2)
    pdu = _decoder.decode(frame[1:crc_at])
    if pdu is None:
        raise FrameError(f"pymodbus could not decode the answer {frame.hex(' ')}", offset=1)
    return list(pdu.registers)


def _answer_length(header: bytes) -> int:
    """Full length of the answer that starts with ``header``, as pymodbus reckons it."""
    try:
        pdu_class = _decoder.lookupPduClass(header)
        size = pdu_class.calculateRtuFrameSize(header) if pdu_class else 0
    except (IndexError, ValueError, NotImplementedException):
        size = 0  # a function code whose length needs more than the header: not an answer to a read
    if not size:
        raise FrameError(f"answer from unit {header[0]} has unexpected function code {header[1]}", offset=1)
    return size


def transact(bus: ByteLink, request: bytes, unit: int) -> bytes:
    """Send ``request`` and return the complete answer frame (not yet checked).

    Waits for the inter-frame gap, drops stale input, sends, then reads the
    header to learn the answer's length (5 bytes for an exception) and the
    rest. Each of the two reads may take up to ``bus.timeout``. Nothing or
    only part of an answer in time is a :class:`TransportTimeout`.
    """
    bus.wait_frame_gap()
    bus.reset_input_buffer()
    bus.write(request)
    header = bus.read(HEADER_LENGTH, bus.timeout)
    if not header:
        raise TransportTimeout(f"no answer from Modbus unit {unit} within {bus.timeout:g} s")
    if len(header) < HEADER_LENGTH:
        raise TransportTimeout(
            f"Modbus unit {unit} sent only {len(header)} byte(s) within {bus.timeout:g} s: {header.hex(' ')}")
    size = _answer_length(header)
    rest = bus.read(size - HEADER_LENGTH, bus.timeout)
    frame = header + rest
    if len(frame) < size:
        raise TransportTimeout(
            f"Modbus unit {unit} sent {len(frame)} of {size} bytes within {bus.timeout:g} s: {frame.hex(' ')}")
    return frame


def read_registers(
    bus: ByteLink, unit: int, address: int, count: int, function: int = READ_HOLDING_REGISTERS
) -> list[int]:
    """Read ``count`` registers from ``address`` of ``unit``: request, exchange, checked answer."""
    request = read_registers_request(unit, address, count, function)
    frame = transact(bus, request, unit)
    return decode_registers_response(frame, unit, function, count, address=address)
