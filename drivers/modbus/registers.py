"""The register map of a Modbus device: parsing and checking it, planning the reads, decoding the values.

Pure code — no I/O. A map is a list of :class:`Point`\\ s, one per published
quantity, each read from one register (``int16``, ``uint16``) or two
(``int32``, ``uint32``, ``float32``) of the holding or input table. The
published value is exact decimal arithmetic on what the device sent::

    value = raw × 10^-decimals × scale + offset

where ``raw`` of a ``float32`` is the shortest decimal that rounds to the same
float32 (a device showing 0.1 sends 0x3DCCCCCD, which is published as 0.1,
not 0.10000000149011612), then turned into the nearest binary float.

>>> flow = Point("flow", "m3/h", register=0x10, type="float32", word_order="little")
>>> words = {("holding", 0x10): 0x0000, ("holding", 0x11): 0x4120}
>>> flow.raw(words), flow.value(flow.raw(words), decimals=0)
(10.0, 10.0)
>>> Point("level", "m", register=3, type="int16", scale=0.1).value(-1234, decimals=1)
-12.34
>>> plan_reads([flow, Point("total", "L", register=0x12, type="uint32"), Point("d", "1", register=0x1A, type="uint16")])
[Block(table='holding', start=16, count=11, pieces=((16, 4), (26, 1)))]
"""

from __future__ import annotations

import difflib
import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping

from drivers.codecs.modbus import MAX_REGISTERS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS
from drivers.options import Option, validate_options

#: Type name → (registers it takes, struct format of its big-endian bytes).
TYPES: dict[str, tuple[int, str]] = {
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "float32": (2, ">f"),
}
#: Table name → the Modbus function that reads it.
TABLES: dict[str, int] = {"holding": READ_HOLDING_REGISTERS, "input": READ_INPUT_REGISTERS}
#: ``big``: high word first (ABCD, the Modbus convention); ``little``: low word first (CDAB).
WORD_ORDERS = ("big", "little")
#: Decimal places a device may claim. Transmitters and meters show 0–4, a few 5; a register
#: saying more is almost surely the wrong register.
MAX_DECIMALS = 6
#: Unused registers a merged read may bridge. A request costs about 20 characters on the line
#: besides its data (8-byte request, 5 bytes of answer framing, two 3.5-character gaps) plus
#: the device's turnaround (typically 5–50 ms); 8 unused registers cost 16 characters, so
#: bridging them is never slower at any baud rate.
MAX_GAP = 8

Words = Mapping[tuple[str, int], int]
"""Register values read from the device, by ``(table, register)``."""

_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


class InvalidValue(ValueError):
    """The device sent a value that is no number (NaN, infinity) or overflows once scaled."""


# --- one entry of the map ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One quantity of the map: where it lies, how it is encoded, how it is scaled.

    ``decimals`` fixes the decimal places; ``decimals_register`` (in the same
    table) names a register where the device says how many; with neither, 0.
    """

    quantity: str
    unit: str
    register: int
    type: str
    table: str = "holding"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    decimals: int | None = None
    decimals_register: int | None = None

    @property
    def width(self) -> int:
        """How many registers the value takes."""
        return TYPES[self.type][0]

    @property
    def span(self) -> range:
        """The registers holding the value."""
        return range(self.register, self.register + self.width)

    def raw(self, words: Words) -> int | float:
        """The value as the device encoded it, from the registers read."""
        return decode_words([words[(self.table, r)] for r in self.span], self.type, self.word_order)

    def value(self, raw: int | float, decimals: int) -> float:
        """``raw × 10^-decimals × scale + offset``; :class:`InvalidValue` for NaN, infinity or an overflow."""
        return scaled(raw, decimals, self.scale, self.offset)


def decode_words(words: list[int], type_name: str, word_order: str = "big") -> int | float:
    """The value ``words`` (16-bit registers, in the order read) hold as ``type_name``.

    >>> decode_words([0x4120, 0x0000], "float32")
    10.0
    >>> decode_words([0x0000, 0x4120], "float32", "little")
    10.0
    >>> decode_words([0xFFFF, 0xFFFE], "int32"), decode_words([0xFFFE, 0xFFFF], "int32", "little")
    (-2, -2)
    >>> decode_words([0x8000], "int16"), decode_words([0x8000], "uint16")
    (-32768, 32768)
    """
    width, layout = TYPES[type_name]
    if len(words) != width:
        raise ValueError(f"{type_name} takes {width} register(s), got {len(words)}")
    ordered = words[::-1] if word_order == "little" else words
    return struct.unpack(layout, b"".join(w.to_bytes(2, "big") for w in ordered))[0]


def float32_decimal(value: float) -> Decimal:
    """The shortest decimal that rounds to the same float32 as ``value`` (a float32 widened to a float).

    >>> float32_decimal(struct.unpack(">f", bytes.fromhex("3dcccccd"))[0])
    Decimal('0.1')
    >>> float32_decimal(12.5)
    Decimal('12.5')
    """
    for digits in range(1, 10):  # 9 significant digits always identify a float32
        text = f"{value:.{digits}g}"
        try:
            if struct.unpack(">f", struct.pack(">f", float(text)))[0] == value:
                return Decimal(text)
        except OverflowError:
            continue  # rounded up past the largest float32 (3.403e+38): more digits are needed
    raise InvalidValue(f"{value!r} is not a float32 value")


def scaled(raw: int | float, decimals: int, scale: float = 1.0, offset: float = 0.0) -> float:
    """``raw × 10^-decimals × scale + offset`` computed in decimal, rounded once to a float.

    ``scale`` and ``offset`` count as the decimals they are written as in the
    config (0.1 is one tenth), so no binary noise creeps in.

    >>> scaled(350, 3), scaled(1234, 0, scale=0.1), scaled(0, 0, offset=-40.0)
    (0.35, 123.4, -40.0)
    >>> scaled(float("nan"), 0)
    Traceback (most recent call last):
    drivers.modbus.registers.InvalidValue: the device sent nan, which is not a number
    """
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise InvalidValue(f"the device sent {raw}, which is not a number")
        exact = float32_decimal(raw)
    else:
        exact = Decimal(raw)
    result = float(exact.scaleb(-decimals) * Decimal(repr(scale)) + Decimal(repr(offset)))
    if not math.isfinite(result):
        raise InvalidValue(f"{exact} × 10^-{decimals} × {scale!r} + {offset!r} does not fit a number")
    return result + 0.0  # -0.0 would be published as "-0.0"


# --- parsing and checking the map from config ---------------------------------------------------------------
def _snake_case(value: str) -> str | None:
    if _SNAKE_CASE.fullmatch(value):
        return None
    return f'expected a snake_case name like "volume_flow" (a-z, 0-9, "_"), got "{value}"'


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _scale(value: float) -> str | None:
    return "must not be 0 (every reading would be the offset)" if value == 0 else None


POINT_OPTIONS: dict[str, Option] = {
    "quantity": Option("str", required=True, check=_snake_case, help="snake_case name the reading is published as"),
    "unit": Option("str", required=True, check=_not_empty, help="unit published with the value, e.g. m3/h"),
    "register": Option("int", required=True, min=0, max=0xFFFF, help="first register of the value"),
    "table": Option("str", default="holding", choices=tuple(TABLES), help="holding (function 3) or input (4)"),
    "type": Option("str", required=True, choices=tuple(TYPES), help="how the registers encode the value"),
    "word_order": Option("str", choices=WORD_ORDERS,
                         help="32-bit types: big (high word first, default) or little (low word first)"),
    "scale": Option("float", default=1.0, check=_scale, help="value = raw × scale + offset, after decimals; not 0"),
    "offset": Option("float", default=0.0, help="added after scaling"),
    "decimals": Option("int", min=0, max=MAX_DECIMALS,
                       help="fixed decimal places of the raw value, instead of decimals_register"),
    "decimals_register": Option("int", min=0, max=0xFFFF,
                                help="register (same table) where the device says its decimal places"),
}


def parse_points(entries: Any) -> tuple[list[Point], list[tuple[str, str]]]:
    """Turn the ``registers`` array of a sensor's config into points; ``(points, problems)``.

    Each problem is ``(key path, message)`` with paths like ``registers[1].type``.
    Points come back only when there is no problem at all.

    >>> points, problems = parse_points([{"quantity": "flow", "unit": "m3/h", "register": 16, "type": "float32"}])
    >>> points[0].span, problems
    (range(16, 18), [])
    >>> parse_points([{"quantity": "flow", "unit": "m3/h", "register": 16, "typ": "float32"}])[1]
    [('registers[0].type', 'is required'), ('registers[0].typ', 'unknown key; did you mean "type"?')]
    """
    if not isinstance(entries, list):
        shown = "nothing" if entries is None else repr(entries)
        return [], [("registers", f"expected an array of [[sensor.registers]] tables, one per quantity, got {shown}")]
    if not entries:
        return [], [("registers", "must list at least one register ([[sensor.registers]])")]
    points: list[tuple[str, Point]] = []
    problems: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        path = f"registers[{index}]"
        if not isinstance(entry, dict):
            problems.append((path, f"expected a table with quantity, unit, register and type, got {entry!r}"))
            continue
        point, found = _parse_point(entry)
        problems += [(f"{path}.{key}", message) for key, message in found]
        if point is not None:
            points.append((path, point))
    problems += _check_together(points)
    return ([point for _path, point in points] if not problems else []), problems


def _parse_point(entry: dict[str, Any]) -> tuple[Point | None, list[tuple[str, str]]]:
    values, problems = validate_options(POINT_OPTIONS, entry)
    problems = [(key, _suggest(key, entry) if message == "unknown key" else message) for key, message in problems]
    if problems:
        return None, problems
    type_name, register = values["type"], values["register"]
    width = TYPES[type_name][0]
    if register + width - 1 > 0xFFFF:
        problems.append(("register", f"a {type_name} takes {width} registers; 0xFFFF is the last register there is"))
    if values["word_order"] is not None and width == 1:
        problems.append(("word_order", f"only applies to 32-bit types, not to {type_name}: remove it"))
    if values["decimals"] is not None and values["decimals_register"] is not None:
        problems.append(("decimals", 'conflicts with "decimals_register": give a fixed value or a register, not both'))
    if problems:
        return None, problems
    return Point(
        quantity=values["quantity"], unit=values["unit"], register=register, type=type_name, table=values["table"],
        word_order=values["word_order"] or "big", scale=values["scale"], offset=values["offset"],
        decimals=values["decimals"], decimals_register=values["decimals_register"],
    ), []


def _suggest(key: str, entry: dict[str, Any]) -> str:
    close = difflib.get_close_matches(key, [k for k in POINT_OPTIONS if k not in entry], n=1)
    return f'unknown key; did you mean "{close[0]}"?' if close else "unknown key"


@dataclass(frozen=True)
class _Use:
    """Registers one entry reads, and how (type, word order) — two uses may share registers only if alike."""

    entry: str
    key: str
    table: str
    start: int
    width: int
    how: str

    def overlaps(self, other: _Use) -> bool:
        return (self.table == other.table and self.start < other.start + other.width
                and other.start < self.start + self.width)

    def alike(self, other: _Use) -> bool:
        return (self.start, self.width, self.how) == (other.start, other.width, other.how)

    def where(self) -> str:
        last = self.start + self.width - 1
        return f"{self.table} 0x{self.start:04X}" + (f"–0x{last:04X}" if last != self.start else "")


def _check_together(points: list[tuple[str, Point]]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    quantities: dict[str, str] = {}
    uses: list[_Use] = []
    for path, point in points:
        first = quantities.setdefault(point.quantity, path)
        if first != path:
            problems.append((f"{path}.quantity", f'"{point.quantity}" is already used by {first}'))
        how = point.type if point.width == 1 else f"{point.type} ({point.word_order} word order)"
        mine = [_Use(path, "register", point.table, point.register, point.width, how)]
        if point.decimals_register is not None:
            mine.append(_Use(path, "decimals_register", point.table, point.decimals_register, 1, "uint16"))
        for use in mine:
            clash = next((u for u in uses if use.overlaps(u) and not use.alike(u)), None)
            if clash is not None:
                problems.append((f"{path}.{use.key}", (
                    f"reads {use.where()} as {use.how}, overlapping {clash.entry} ({clash.where()} as {clash.how}); "
                    "entries may share registers only when they read them alike (same first register and type)")))
        uses += mine
    return problems


# --- planning the reads -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers of ``table`` from ``start``.

    ``pieces`` are the gapless runs of wanted registers it covers; more than
    one means the read bridges registers nobody asked for.
    """

    table: str
    start: int
    count: int
    pieces: tuple[tuple[int, int], ...]

    @property
    def function(self) -> int:
        return TABLES[self.table]

    def split(self) -> list[Block]:
        """One block per piece: for a device that refuses to be read across its gaps."""
        return [Block(self.table, start, count, ((start, count),)) for start, count in self.pieces]


def wanted_registers(points: Iterable[Point]) -> dict[str, set[int]]:
    """Every register the points need (values and decimal-place registers), per table."""
    wanted: dict[str, set[int]] = {table: set() for table in TABLES}
    for point in points:
        wanted[point.table].update(point.span)
        if point.decimals_register is not None:
            wanted[point.table].add(point.decimals_register)
    return wanted


def _runs(registers: Iterable[int], max_count: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for register in sorted(registers):
        if runs and runs[-1][0] + runs[-1][1] == register and runs[-1][1] < max_count:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((register, 1))
    return runs


def plan_reads(points: Iterable[Point], max_gap: int = MAX_GAP, max_count: int = MAX_REGISTERS) -> list[Block]:
    """As few reads as cover every wanted register: holding table first, each read at most ``max_count``
    registers and bridging at most ``max_gap`` unwanted registers at a time.

    >>> [(b.start, b.count) for b in plan_reads([Point("a", "1", 0, "uint16"), Point("b", "1", 20, "uint16")])]
    [(0, 1), (20, 1)]
    """
    blocks: list[Block] = []
    for table, registers in wanted_registers(points).items():
        current: list[tuple[int, int]] = []
        for start, count in _runs(registers, max_count):
            if current:
                first, (last_start, last_count) = current[0][0], current[-1]
                gap = start - (last_start + last_count)
                if gap <= max_gap and start + count - first <= max_count:
                    current.append((start, count))
                    continue
                blocks.append(_block(table, current))
            current = [(start, count)]
        if current:
            blocks.append(_block(table, current))
    return blocks


def _block(table: str, pieces: list[tuple[int, int]]) -> Block:
    start = pieces[0][0]
    end = pieces[-1][0] + pieces[-1][1]
    return Block(table, start, end - start, tuple(pieces))
