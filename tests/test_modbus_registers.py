"""The register map of the `modbus` driver, without I/O: decoding, scaling, checking the config, planning reads."""

from __future__ import annotations

import doctest
import random

import pytest
from pymodbus.client.mixin import ModbusClientMixin

import drivers.modbus.registers
from drivers.modbus.registers import (
    MAX_GAP,
    Block,
    InvalidValue,
    Point,
    decode_words,
    float32_decimal,
    parse_points,
    plan_reads,
    scaled,
)


def words(hex_text: str) -> list[int]:
    """``"4120 0000"`` → ``[0x4120, 0x0000]``: registers as a sniffer or a manual shows them."""
    return [int(word, 16) for word in hex_text.split()]


# --- decoding known register patterns --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("registers", "type_name", "word_order", "expected"),
    [
        ("4120 0000", "float32", "big", 10.0),              # IEEE 754: 10.0 = 0x41200000
        ("0000 4120", "float32", "little", 10.0),           # the same, low word first (CDAB)
        ("3F80 0000", "float32", "big", 1.0),
        ("C2F6 E979", "float32", "big", -123.45600128173828),    # -123.456 as float32
        ("E979 C2F6", "float32", "little", -123.45600128173828),
        ("075B CD15", "uint32", "big", 123456789),          # 123456789 = 0x075BCD15
        ("CD15 075B", "uint32", "little", 123456789),
        ("FFFF FFFF", "uint32", "big", 4294967295),
        ("FFFF FFFE", "int32", "big", -2),
        ("FFFE FFFF", "int32", "little", -2),
        ("8000 0000", "int32", "big", -2147483648),
        ("0001 0000", "int32", "big", 65536),
        ("0001 0000", "int32", "little", 1),
        ("8000", "int16", "big", -32768),
        ("7FFF", "int16", "big", 32767),
        ("FF85", "int16", "big", -123),
        ("8000", "uint16", "big", 32768),
        ("FFFF", "uint16", "big", 65535),
    ],
)
def test_known_register_patterns(registers, type_name, word_order, expected):
    assert decode_words(words(registers), type_name, word_order) == expected


def test_decoding_agrees_with_pymodbus_on_random_registers():
    # pymodbus's own converter is an implementation written independently of ours.
    rng = random.Random(4)
    datatypes = {"int16": "INT16", "uint16": "UINT16", "int32": "INT32", "uint32": "UINT32", "float32": "FLOAT32"}
    for _ in range(2000):
        type_name = rng.choice(list(datatypes))
        order = rng.choice(("big", "little"))
        registers = [rng.randrange(0x10000) for _ in range(1 if type_name.endswith("16") else 2)]
        ours = decode_words(registers, type_name, order)
        theirs = ModbusClientMixin.convert_from_registers(
            registers, getattr(ModbusClientMixin.DATATYPE, datatypes[type_name]), word_order=order)
        assert ours == theirs or (ours != ours and theirs != theirs), (registers, type_name, order)  # NaN == NaN


def test_wrong_number_of_registers_is_refused():
    with pytest.raises(ValueError, match="float32 takes 2 register"):
        decode_words([0x4120], "float32")


# --- scaling ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "decimals", "scale", "offset", "expected"),
    [
        (350, 3, 1.0, 0.0, 0.35),
        (1234, 0, 0.1, 0.0, 123.4),          # 1234 * 0.1 in binary is 123.40000000000001
        (-1234, 1, 0.1, 0.0, -12.34),
        (65535, 0, 0.01, 0.0, 655.35),
        (3, 0, 0.1, 0.0, 0.3),               # 3 * 0.1 in binary is 0.30000000000000004
        (0, 0, 1.0, -40.0, -40.0),
        (520, 1, 1.0, -40.0, 12.0),          # 52.0 - 40
        (4000000000, 0, 0.001, 0.0, 4000000.0),
        (123456789, 6, 1.0, 0.0, 123.456789),
        (5, 0, -1.0, 0.0, -5.0),
        (0, 2, -1.0, 0.0, 0.0),
    ],
)
def test_scaling_is_exact_in_decimal(raw, decimals, scale, offset, expected):
    value = scaled(raw, decimals, scale, offset)
    assert value == expected
    assert repr(value) == repr(expected)


def test_negative_zero_is_published_as_zero():
    assert repr(scaled(0, 2, -1.0)) == "0.0"


@pytest.mark.parametrize(
    ("registers", "expected"),
    [
        ("3DCC CCCD", 0.1),        # what a device shows as 0.1
        ("4049 0FDB", 3.1415927),  # float32 pi, to the digits a float32 has
        ("4B18 9680", 10000000.0),
        ("0000 0001", 1e-45),      # the smallest subnormal float32
        ("8000 0000", 0.0),
    ],
)
def test_float32_counts_as_the_decimal_the_device_meant(registers, expected):
    raw = decode_words(words(registers), "float32")
    assert scaled(raw, 0) == expected


def test_float32_decimal_is_the_shortest_that_round_trips():
    raw = decode_words(words("3F9D F3B6"), "float32")  # 1.234 as float32 = 1.2339999675750732
    assert raw != 1.234
    assert str(float32_decimal(raw)) == "1.234"


@pytest.mark.parametrize("registers", ["7FC0 0000", "7F80 0000", "FF80 0000", "7FBF FFFF"])
def test_nan_and_infinity_are_invalid_values(registers):
    raw = decode_words(words(registers), "float32")
    with pytest.raises(InvalidValue, match="which is not a number"):
        scaled(raw, 0)


def test_overflow_after_scaling_is_an_invalid_value():
    largest = decode_words(words("7F7F FFFF"), "float32")  # 3.4028235e38
    assert scaled(largest, 0) == 3.4028235e38
    with pytest.raises(InvalidValue, match="does not fit a number"):
        scaled(largest, 0, scale=1e300)


def test_a_point_reads_its_own_registers_of_its_own_table():
    point = Point("flow", "m3/h", register=0x10, type="float32", table="input", word_order="little", scale=2.0)
    read = {("holding", 0x10): 0xFFFF, ("holding", 0x11): 0xFFFF, ("input", 0x10): 0x0000, ("input", 0x11): 0x4120}
    assert point.raw(read) == 10.0
    assert point.value(point.raw(read), decimals=1) == 2.0
    assert list(point.span) == [0x10, 0x11]


# --- checking the map from config ---------------------------------------------------------------------------

FLOW = {"quantity": "flow", "unit": "m3/h", "register": 0x10, "type": "float32"}
TOTAL = {"quantity": "total", "unit": "L", "register": 0x12, "type": "uint32"}


def problems(*entries, raw=None):
    return parse_points(list(entries) if raw is None else raw)[1]


def test_a_valid_map_becomes_points():
    points, found = parse_points([FLOW, {**TOTAL, "word_order": "little", "scale": 0.001, "offset": 5,
                                         "decimals_register": 3, "table": "input"}])
    assert found == []
    assert points == [
        Point("flow", "m3/h", 0x10, "float32"),
        Point("total", "L", 0x12, "uint32", table="input", word_order="little", scale=0.001, offset=5.0,
              decimals_register=3),
    ]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], [("registers", "must list at least one register ([[sensor.registers]])")]),
        ([5], [("registers[0]", "expected a table with quantity, unit, register and type, got 5")]),
        ([{}], [("registers[0].quantity", "is required"), ("registers[0].unit", "is required"),
                ("registers[0].register", "is required"), ("registers[0].type", "is required")]),
        ([FLOW, {**TOTAL, "type": "float64"}],
         [("registers[1].type",
           'expected one of "int16", "uint16", "int32", "uint32", "float32", got "float64"')]),
        ([{"quantity": "flow", "unit": "m3/h", "register": 0x10, "typ": "float32"}],
         [("registers[0].type", "is required"), ("registers[0].typ", 'unknown key; did you mean "type"?')]),
        ([{**FLOW, "colour": "red"}], [("registers[0].colour", "unknown key")]),
        ([{**FLOW, "quantity": "Flow Rate"}],
         [("registers[0].quantity",
           'expected a snake_case name like "volume_flow" (a-z, 0-9, "_"), got "Flow Rate"')]),
        ([{**FLOW, "unit": " "}], [("registers[0].unit", "must not be empty")]),
        ([{**FLOW, "register": 65536}], [("registers[0].register", "must be at most 65535, got 65536")]),
        ([{**FLOW, "register": 0xFFFF}],
         [("registers[0].register", "a float32 takes 2 registers; 0xFFFF is the last register there is")]),
        ([{**FLOW, "table": "coils"}], [("registers[0].table", 'expected one of "holding", "input", got "coils"')]),
        ([{**FLOW, "word_order": "middle"}],
         [("registers[0].word_order", 'expected one of "big", "little", got "middle"')]),
        ([{**FLOW, "type": "int16", "word_order": "big"}],
         [("registers[0].word_order", "only applies to 32-bit types, not to int16: remove it")]),
        ([{**FLOW, "scale": 0}], [("registers[0].scale", "must not be 0 (every reading would be the offset)")]),
        ([{**FLOW, "offset": float("inf")}], [("registers[0].offset", "expected a finite number, got inf")]),
        ([{**FLOW, "decimals": 7}], [("registers[0].decimals", "must be at most 6, got 7")]),
        ([{**FLOW, "decimals": 2, "decimals_register": 3}],
         [("registers[0].decimals", 'conflicts with "decimals_register": give a fixed value or a register, not both')]),
        ([FLOW, {**TOTAL, "quantity": "flow"}], [("registers[1].quantity", '"flow" is already used by registers[0]')]),
    ],
)
def test_map_problems_carry_their_key_path(entries, expected):
    assert problems(raw=entries) == expected


def test_registers_must_be_an_array():
    assert parse_points(None)[1] == [
        ("registers", "expected an array of [[sensor.registers]] tables, one per quantity, got nothing")]
    assert parse_points({"quantity": "flow"})[1] == [
        ("registers", "expected an array of [[sensor.registers]] tables, one per quantity, got {'quantity': 'flow'}")]


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        # One value published twice (different scales): same start, same type, same word order.
        ({**FLOW, "quantity": "flow_l_s", "unit": "L/s", "scale": 0.2777777777777778}, []),
        # The same registers in the other table are other registers.
        ({**FLOW, "quantity": "other", "table": "input"}, []),
        ({**FLOW, "quantity": "other", "register": 0x11},
         [("registers[1].register",
           "reads holding 0x0011–0x0012 as float32 (big word order), overlapping registers[0] "
           "(holding 0x0010–0x0011 as float32 (big word order)); entries may share registers only when "
           "they read them alike (same first register and type)")]),
        ({**FLOW, "quantity": "other", "word_order": "little"},
         [("registers[1].register",
           "reads holding 0x0010–0x0011 as float32 (little word order), overlapping registers[0] "
           "(holding 0x0010–0x0011 as float32 (big word order)); entries may share registers only when "
           "they read them alike (same first register and type)")]),
        ({"quantity": "low_word", "unit": "1", "register": 0x11, "type": "uint16"},
         [("registers[1].register",
           "reads holding 0x0011 as uint16, overlapping registers[0] (holding 0x0010–0x0011 as float32 "
           "(big word order)); entries may share registers only when they read them alike "
           "(same first register and type)")]),
        ({**TOTAL, "decimals_register": 0x11},
         [("registers[1].decimals_register",
           "reads holding 0x0011 as uint16, overlapping registers[0] (holding 0x0010–0x0011 as float32 "
           "(big word order)); entries may share registers only when they read them alike "
           "(same first register and type)")]),
    ],
)
def test_overlapping_registers_only_when_read_alike(second, expected):
    assert problems(FLOW, second) == expected


def test_several_values_may_share_one_decimals_register_and_publish_it():
    level = {"quantity": "level", "unit": "m", "register": 4, "type": "int16", "decimals_register": 3}
    head = {"quantity": "head", "unit": "m", "register": 5, "type": "int16", "decimals_register": 3}
    decimals = {"quantity": "decimals", "unit": "1", "register": 3, "type": "uint16"}
    assert problems(level, head, decimals) == []
    assert problems(level, {**decimals, "type": "int16"})[0][0] == "registers[1].register"


def test_every_problem_is_reported_at_once():
    found = problems({**FLOW, "type": "double"}, TOTAL, {**TOTAL, "unit": ""}, {**TOTAL, "register": 0x20})
    assert [key for key, _message in found] == ["registers[0].type", "registers[2].unit", "registers[3].quantity"]


# --- planning reads -----------------------------------------------------------------------------------------

def uint16(register: int, table: str = "holding", **keys) -> Point:
    return Point(f"q{register}_{table}", "1", register, "uint16", table=table, **keys)


def test_contiguous_values_are_one_read():
    plan = plan_reads([Point("a", "1", 0x10, "float32"), Point("b", "1", 0x12, "uint32"), uint16(0x14)])
    assert plan == [Block("holding", 0x10, 5, ((0x10, 5),))]


def test_gaps_up_to_max_gap_are_bridged():
    assert MAX_GAP == 8
    bridged = plan_reads([uint16(0), uint16(1 + MAX_GAP)])
    assert bridged == [Block("holding", 0, MAX_GAP + 2, ((0, 1), (MAX_GAP + 1, 1)))]
    apart = plan_reads([uint16(0), uint16(2 + MAX_GAP)])
    assert apart == [Block("holding", 0, 1, ((0, 1),)), Block("holding", MAX_GAP + 2, 1, ((MAX_GAP + 2, 1),))]


def test_tables_are_read_apart_holding_first():
    plan = plan_reads([uint16(5, "input"), uint16(5), uint16(6, "input")])
    assert [(b.table, b.function, b.start, b.count) for b in plan] == [("holding", 3, 5, 1), ("input", 4, 5, 2)]


def test_decimals_registers_are_read_with_the_values():
    plan = plan_reads([Point("level", "m", 4, "int16", decimals_register=3), Point("head", "m", 9, "int16",
                                                                                  decimals_register=3)])
    assert plan == [Block("holding", 3, 7, ((3, 2), (9, 1)))]


def test_reads_never_exceed_max_count():
    points = [uint16(r) for r in range(0, 300, 2)]  # every other register: gaps of 1, all bridgeable
    plan = plan_reads(points, max_count=125)
    assert [(b.start, b.count) for b in plan] == [(0, 125), (126, 125), (252, 47)]
    assert plan_reads([uint16(r) for r in range(130)], max_count=125)[1] == Block("holding", 125, 5, ((125, 5),))


def test_a_shared_register_is_read_once():
    assert plan_reads([uint16(7), Point("again", "1", 7, "uint16", scale=2.0)]) == [Block("holding", 7, 1, ((7, 1),))]


def test_a_block_splits_into_its_gapless_pieces():
    block = Block("input", 0x10, 11, ((0x10, 4), (0x1A, 1)))
    assert block.split() == [Block("input", 0x10, 4, ((0x10, 4),)), Block("input", 0x1A, 1, ((0x1A, 1),))]


def test_documentation_examples_hold():
    results = doctest.testmod(drivers.modbus.registers)
    assert results.attempted > 0
    assert results.failed == 0
