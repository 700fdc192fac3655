"""Any Modbus RTU device on RS-485, described by a register map in config.

Each ``[[sensor.registers]]`` entry publishes one quantity (see
:mod:`drivers.modbus.registers` for types, word order, scale, offset and
decimals). The registers of all entries are read in as few requests as
possible — one per run of nearby registers in a table — and decoded together,
so a ``float32`` and the register saying its decimals come from one answer.

A read that bridges unused registers and is answered "illegal data address"
(what many devices say about holes in their map) is split into its gapless
pieces, and stays split for the life of the driver. Any other exception
answer is a :class:`~drivers.errors.DeviceFault` of the whole sensor naming
the registers of the request; "acknowledge" and "server device busy" are
retried first. A float that is NaN or infinite makes only its own quantity a
``bad`` reading (reason ``invalid_value``).

>>> Modbus.quantities_for({"registers": [{"quantity": "flow"}, {"quantity": "total"}]})
('flow', 'total')
"""

from __future__ import annotations

from typing import Any

from drivers.base import Bus, Driver, Measurement
from drivers.codecs.modbus import ModbusException, read_registers
from drivers.errors import DeviceFault, DriverError, FrameError, TransportTimeout
from drivers.modbus.registers import MAX_DECIMALS, Block, InvalidValue, Point, Words, parse_points, plan_reads
from drivers.options import Option
from drivers.retry import attempts_for, with_retries

# A device busy with itself answers the next try; other exceptions are definite.
RETRYABLE_EXCEPTION_CODES = (5, 6)  # acknowledge, server device busy
# What a device answers to a read that covers registers it does not have.
ILLEGAL_DATA_ADDRESS = 2


def retryable(exc: DriverError) -> bool:
    """Whether one request is worth repeating after ``exc``: timeouts, garbled answers, a busy device."""
    if isinstance(exc, ModbusException):
        return exc.code in RETRYABLE_EXCEPTION_CODES
    return isinstance(exc, (TransportTimeout, FrameError))


class Modbus(Driver):
    """A Modbus RTU device whose registers config maps to quantities; ``read()`` returns one reading each."""

    name = "modbus"
    bus_kind = "serial"
    #: What it reports depends on config: see :meth:`quantities_for` (and the instance's ``quantities``).
    quantities = ()
    #: The most decimal places a decimals register may claim before the driver calls it a fault.
    max_decimals = MAX_DECIMALS
    options = {
        "address": Option("int", required=True, min=1, max=247, help="Modbus unit id of the device"),
        "retries": Option("int", default=2, min=0, max=5,
                           help="extra attempts after a timeout, a garbled answer or a \"device busy\" answer"),
        "registers": Option("list", required=True, help="[[sensor.registers]] tables, one per quantity"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Every problem of the register map, keyed by path (``registers[1].type``), no I/O."""
        return parse_points(values.get("registers"))[1]

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The quantities a sensor with these options reports (what rules may refer to)."""
        entries = options.get("registers")
        if not isinstance(entries, list):
            return ()
        return tuple(e["quantity"] for e in entries if isinstance(e, dict) and isinstance(e.get("quantity"), str))

    @classmethod
    def points_for(cls, values: dict[str, Any]) -> list[Point]:
        """The register map of valid options (after :meth:`check_options` found nothing)."""
        return parse_points(values["registers"])[0]

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        merged = self.resolved_options(options)
        super().__init__(sensor_id, merged, bus)
        self.unit_id: int = merged["address"]
        self.retries: int = merged["retries"]
        self.points: list[Point] = self.points_for(merged)
        # Per instance: the class cannot know what a config maps (the sampler reports these when a read fails).
        self.quantities = self.quantities_for(merged)
        self.plan: list[Block] = plan_reads(self.points)

    def read(self) -> list[Measurement]:
        words = self.read_words()
        return [self.measure(point, words) for point in self.points]

    def measure(self, point: Point, words: Words) -> Measurement:
        """One point's reading from the registers read; ``bad`` (``invalid_value``) for a NaN or infinite value."""
        try:
            value = point.value(point.raw(words), self.decimals(point, words))
        except InvalidValue:
            return Measurement(point.quantity, None, point.unit, quality="bad", reason="invalid_value")
        return Measurement(point.quantity, value, point.unit)

    def decimals(self, point: Point, words: Words) -> int:
        """The decimal places of ``point``: fixed, or what its decimals register says (checked)."""
        if point.decimals_register is None:
            return point.decimals or 0
        register = point.decimals_register
        decimals = words[(point.table, register)]
        if decimals > self.max_decimals:
            raise DeviceFault(
                f"device {self.unit_id} reports {decimals} decimal places in register 0x{register:04X};"
                f" expected 0–{self.max_decimals} — check decimals_register")
        return decimals

    def read_words(self) -> dict[tuple[str, int], int]:
        """Every register of the plan, by ``(table, register)``: one request per block."""
        words: dict[tuple[str, int], int] = {}
        index = 0
        while index < len(self.plan):
            block = self.plan[index]
            try:
                values = self._read_block(block)
            except ModbusException as exc:
                if len(block.pieces) == 1 or exc.code != ILLEGAL_DATA_ADDRESS:
                    raise
                # The device refuses a read across registers it lacks: read around them from now on.
                self.plan[index:index + 1] = block.split()
                continue
            words.update(zip(((block.table, r) for r in range(block.start, block.start + block.count)),
                             values, strict=True))
            index += 1
        return words

    def _read_block(self, block: Block) -> list[int]:
        return with_retries(
            lambda: read_registers(self.bus, self.unit_id, block.start, block.count, block.function),
            attempts_for(self, self.retries),
            retryable,
        )
