"""M-Bus value information (EN 13757-3 VIF/VIFE): what a record measures, its unit and decimal scale.

Every value comes out in one unit per quantity, whatever decade or unit the meter
chose: energy ``Wh`` (or ``J`` for the joule VIFs), volume ``m3``, mass ``kg``,
power ``W`` (or ``J/h``), volume flow ``m3/h``, mass flow ``kg/h``, temperatures
``degC``, temperature difference ``K``, pressure ``bar``, and every duration in
``s`` — except months and years, which have no fixed length and keep ``month``
and ``year``. Units the standard gives in another system (US gallons, cubic feet,
degrees Fahrenheit) are reported as sent: ``US_gal``, ``ft3``, ``degF``.

>>> describe_vif(0x13)
VifInfo(quantity='volume', unit='m3', exponent=-3, kind='number', factor=1, offset=0)
>>> describe_vif(0x5A).quantity, describe_vif(0x5A).unit, describe_vif(0x5A).exponent
('flow_temperature', 'degC', -1)
>>> describe_vif(0x23).unit, describe_vif(0x23).factor        # on time in days, reported in seconds
('s', 86400)
>>> meaning = apply_vifes(describe_vif(0x13), [0x3C])         # volume, accumulated only if negative
>>> meaning.info.quantity, meaning.error
('volume_accumulated_if_negative', None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence


@dataclass(frozen=True)
class VifInfo:
    """How to read one record's data.

    ``kind``: ``number`` (signed, scaled), ``unsigned`` (bit fields and counters such as
    error flags or a fabrication number: never negative, never scaled), ``time_point``
    (a date or date-time of types G, F, I or J, chosen by the data size) or ``raw``
    (a meaning only the manufacturer knows: the number or bytes as sent).
    A number becomes ``number * factor * 10**exponent + offset`` in ``unit``.
    """

    quantity: str
    unit: str = ""
    exponent: int = 0
    kind: str = "number"
    factor: int = 1
    offset: float = 0


class Meaning(NamedTuple):
    """A VIF with its VIFEs applied; ``error`` names the record error a VIFE 0x01–0x1F reports."""

    info: VifInfo
    error: str | None


# Seconds per unit of the two-bit time-unit field "nn" (EN 13757-3: 00 s, 01 min, 10 h, 11 d).
_SECONDS = (1, 60, 3600, 86400)
# The second duration table (0xFD 0x68–0x6F): 00 hours, 01 days, 10 months, 11 years.
_HOURS_TO_YEARS = ((3600, "s"), (86400, "s"), (1, "month"), (1, "year"))


def _duration(quantity: str, nn: int) -> VifInfo:
    return VifInfo(quantity, "s", factor=_SECONDS[nn & 0x03])


def _long_duration(quantity: str, pp: int) -> VifInfo:
    factor, unit = _HOURS_TO_YEARS[pp & 0x03]
    return VifInfo(quantity, unit, factor=factor)


# (first code, last code, quantity, unit, exponent of the first code); each following code is one decade up.
_PRIMARY_RANGES = (
    (0x00, 0x07, "energy", "Wh", -3),
    (0x08, 0x0F, "energy", "J", 0),
    (0x10, 0x17, "volume", "m3", -6),
    (0x18, 0x1F, "mass", "kg", -3),
    (0x28, 0x2F, "power", "W", -3),
    (0x30, 0x37, "power", "J/h", 0),
    (0x38, 0x3F, "volume_flow", "m3/h", -6),
    (0x50, 0x57, "mass_flow", "kg/h", -3),
    (0x58, 0x5B, "flow_temperature", "degC", -3),
    (0x5C, 0x5F, "return_temperature", "degC", -3),
    (0x60, 0x63, "temperature_difference", "K", -3),
    (0x64, 0x67, "external_temperature", "degC", -3),
    (0x68, 0x6B, "pressure", "bar", -3),
)

_PRIMARY_SINGLE = {
    0x6C: VifInfo("date", kind="time_point"),
    0x6D: VifInfo("datetime", kind="time_point"),
    0x6E: VifInfo("hca_units"),
    0x78: VifInfo("fabrication_no", kind="unsigned"),
    0x79: VifInfo("enhanced_identification", kind="unsigned"),
    0x7A: VifInfo("bus_address", kind="unsigned"),
    0x7E: VifInfo("any", kind="raw"),
    0x7F: VifInfo("manufacturer_specific", kind="raw"),
}

# Main extension table, after VIF 0xFD (EN 13757-3 table 14).
_FD_SINGLE = {
    0x08: VifInfo("access_no", kind="unsigned"),
    0x09: VifInfo("medium", kind="unsigned"),
    0x0A: VifInfo("manufacturer", kind="unsigned"),
    0x0B: VifInfo("parameter_set_id", kind="unsigned"),
    0x0C: VifInfo("model_version", kind="unsigned"),
    0x0D: VifInfo("hardware_version", kind="unsigned"),
    0x0E: VifInfo("firmware_version", kind="unsigned"),
    0x0F: VifInfo("software_version", kind="unsigned"),
    0x10: VifInfo("customer_location", kind="unsigned"),
    0x11: VifInfo("customer", kind="unsigned"),
    0x12: VifInfo("access_code_user", kind="unsigned"),
    0x13: VifInfo("access_code_operator", kind="unsigned"),
    0x14: VifInfo("access_code_system_operator", kind="unsigned"),
    0x15: VifInfo("access_code_developer", kind="unsigned"),
    0x16: VifInfo("password", kind="unsigned"),
    0x17: VifInfo("error_flags", kind="unsigned"),
    0x18: VifInfo("error_mask", kind="unsigned"),
    0x1A: VifInfo("digital_output", kind="unsigned"),
    0x1B: VifInfo("digital_input", kind="unsigned"),
    0x1C: VifInfo("baudrate", "Bd", kind="unsigned"),
    0x1D: VifInfo("response_delay_time", "bit_times", kind="unsigned"),
    0x1E: VifInfo("retry", kind="unsigned"),
    0x20: VifInfo("first_storage_no", kind="unsigned"),
    0x21: VifInfo("last_storage_no", kind="unsigned"),
    0x22: VifInfo("storage_block_size", kind="unsigned"),
    0x28: VifInfo("storage_interval", "month"),
    0x29: VifInfo("storage_interval", "year"),
    0x30: VifInfo("tariff_start", kind="time_point"),
    0x38: VifInfo("tariff_period", "month"),
    0x39: VifInfo("tariff_period", "year"),
    0x3A: VifInfo("dimensionless"),
    0x60: VifInfo("reset_counter", kind="unsigned"),
    0x61: VifInfo("cumulation_counter", kind="unsigned"),
    0x62: VifInfo("control_signal", kind="unsigned"),
    0x63: VifInfo("day_of_week", kind="unsigned"),
    0x64: VifInfo("week_number", kind="unsigned"),
    0x65: VifInfo("day_change_time_point", kind="unsigned"),
    0x66: VifInfo("parameter_activation_state", kind="unsigned"),
    0x67: VifInfo("special_supplier_information", kind="unsigned"),
    0x70: VifInfo("battery_change_datetime", kind="time_point"),
    0x71: VifInfo("rf_level", "dBm"),
    0x74: VifInfo("remaining_battery_life", "s", factor=86400),
    0x75: VifInfo("meter_stop_count", kind="unsigned"),
}

# Alternate extension table, after VIF 0xFB (EN 13757-3 table 12), in our units: MWh -> Wh, GJ -> J, t -> kg, MW -> W.
_FB_RANGES = (
    (0x00, 0x01, "energy", "Wh", 5),
    (0x08, 0x09, "energy", "J", 8),
    (0x10, 0x11, "volume", "m3", 2),
    (0x18, 0x19, "mass", "kg", 5),
    (0x1A, 0x1B, "relative_humidity", "%RH", -1),
    (0x22, 0x23, "volume", "US_gal", -1),
    (0x28, 0x29, "power", "W", 5),
    (0x30, 0x31, "power", "J/h", 8),
    (0x58, 0x5B, "flow_temperature", "degF", -3),
    (0x5C, 0x5F, "return_temperature", "degF", -3),
    (0x60, 0x63, "temperature_difference", "degF", -3),
    (0x64, 0x67, "external_temperature", "degF", -3),
    (0x70, 0x73, "temperature_limit", "degF", -3),
    (0x74, 0x77, "temperature_limit", "degC", -3),
    (0x78, 0x7F, "cumulative_max_power", "W", -3),
)

_FB_SINGLE = {
    0x21: VifInfo("volume", "ft3", -1),
    0x24: VifInfo("volume_flow", "US_gal/min", -3),
    0x25: VifInfo("volume_flow", "US_gal/min"),
    0x26: VifInfo("volume_flow", "US_gal/h"),
}


def _from_ranges(code: int, ranges: tuple) -> VifInfo | None:
    for first, last, quantity, unit, exponent in ranges:
        if first <= code <= last:
            return VifInfo(quantity, unit, exponent + code - first)
    return None


def describe_vif(vif: int) -> VifInfo:
    """The primary VIF (extension bit ignored); unknown or reserved codes become ``unknown_vif_0xNN``."""
    code = vif & 0x7F
    found = _from_ranges(code, _PRIMARY_RANGES)
    if found:
        return found
    if 0x20 <= code <= 0x27:
        return _duration("on_time" if code < 0x24 else "operating_time", code)
    if 0x40 <= code <= 0x47:  # m3/min, 10^(nnn-7): brought to m3/h
        return VifInfo("volume_flow", "m3/h", code - 0x40 - 7, factor=60)
    if 0x48 <= code <= 0x4F:  # m3/s, 10^(nnn-9): brought to m3/h
        return VifInfo("volume_flow", "m3/h", code - 0x48 - 9, factor=3600)
    if 0x70 <= code <= 0x77:
        return _duration("averaging_duration" if code < 0x74 else "actuality_duration", code)
    return _PRIMARY_SINGLE.get(code, VifInfo(f"unknown_vif_0x{code:02X}", kind="raw"))


def describe_fd(vife: int) -> VifInfo:
    """An entry of the 0xFD extension table."""
    code = vife & 0x7F
    if code <= 0x07:  # credit / debit of 10^(nn-3) local currency units
        return VifInfo("credit" if code < 0x04 else "debit", "currency_units", (code & 0x03) - 3)
    if 0x24 <= code <= 0x27:
        return _duration("storage_interval", code)
    if 0x2C <= code <= 0x2F:
        return _duration("duration_since_last_readout", code)
    if 0x31 <= code <= 0x33:
        return _duration("tariff_duration", code)
    if 0x34 <= code <= 0x37:
        return _duration("tariff_period", code)
    if 0x40 <= code <= 0x4F:
        return VifInfo("voltage", "V", code - 0x40 - 9)
    if 0x50 <= code <= 0x5F:
        return VifInfo("current", "A", code - 0x50 - 12)
    if 0x68 <= code <= 0x6B:
        return _long_duration("duration_since_last_cumulation", code)
    if 0x6C <= code <= 0x6F:
        return _long_duration("battery_operating_time", code)
    return _FD_SINGLE.get(code, VifInfo(f"unknown_vif_fd_0x{code:02X}", kind="raw"))


def describe_fb(vife: int) -> VifInfo:
    """An entry of the 0xFB extension table."""
    code = vife & 0x7F
    found = _from_ranges(code, _FB_RANGES) or _FB_SINGLE.get(code)
    return found or VifInfo(f"unknown_vif_fb_0x{code:02X}", kind="raw")


# --- combinable VIFEs (EN 13757-3 table 15) -------------------------------------------------------------------

#: Record errors a VIFE 0x00–0x1F reports (slave to master); 0x00 means "no error".
RECORD_ERRORS = {
    0x01: "too_many_difes", 0x02: "storage_number_not_implemented", 0x03: "unit_number_not_implemented",
    0x04: "tariff_number_not_implemented", 0x05: "function_not_implemented", 0x06: "data_class_not_implemented",
    0x07: "data_size_not_implemented", 0x0B: "too_many_vifes", 0x0C: "illegal_vif_group",
    0x0D: "illegal_vif_exponent", 0x0E: "vif_dif_mismatch", 0x0F: "unimplemented_action",
    0x15: "no_data_available", 0x16: "data_overflow", 0x17: "data_underflow", 0x18: "data_error",
    0x1C: "premature_end_of_record",
}  # fmt: skip

_PERIODS = (("second", "s"), ("minute", "min"), ("hour", "h"), ("day", "d"), ("week", "week"), ("month", "month"),
            ("year", "year"), ("measurement", "measurement"))
_PER_UNIT = {
    0x2C: ("litre", "L"), 0x2D: ("m3", "m3"), 0x2E: ("kg", "kg"), 0x2F: ("kelvin", "K"), 0x30: ("kwh", "kWh"),
    0x31: ("gj", "GJ"), 0x32: ("kw", "kW"), 0x33: ("kelvin_litre", "(K*L)"), 0x34: ("volt", "V"),
    0x35: ("ampere", "A"),
}  # fmt: skip
_TIMES_UNIT = {0x36: ("times_s", "*s"), 0x37: ("times_s_per_v", "*s/V"), 0x38: ("times_s_per_a", "*s/A")}
_SUFFIXES = {
    0x3A: "uncorrected", 0x3B: "accumulated_if_positive", 0x3C: "accumulated_if_negative",
    0x3E: "at_base_conditions", 0x7E: "future",
}  # fmt: skip
#: Orthogonal VIFE extension after VIFE 0x7C (EN 13757-3:2013 table 16): phases, neutral, quadrants.
_FC_SUFFIXES = {
    0x01: "at_phase_l1", 0x02: "at_phase_l2", 0x03: "at_phase_l3", 0x04: "at_neutral",
    0x05: "between_phases_l1_l2", 0x06: "between_phases_l2_l3", 0x07: "between_phases_l3_l1",
    0x08: "at_quadrant_q1", 0x09: "at_quadrant_q2", 0x0A: "at_quadrant_q3", 0x0B: "at_quadrant_q4",
    0x0C: "delta_import_export",
}  # fmt: skip

_VIFE_MANUFACTURER = 0x7F
_VIFE_FC_TABLE = 0x7C


def _limit(code: int) -> tuple[str, str]:
    """(first|last, lower|upper) of a limit-exceed VIFE: bit 3 upper, bit 2 last."""
    return ("last" if code & 0x04 else "first"), ("upper" if code & 0x08 else "lower")


def _combine(info: VifInfo, code: int) -> VifInfo | None:
    """``info`` changed by one combinable VIFE; ``None`` when the code is reserved (meaning unknown)."""
    q, unit = info.quantity, info.unit
    if 0x20 <= code <= 0x27:
        name, symbol = _PERIODS[code - 0x20]
        return replace(info, quantity=f"{q}_per_{name}", unit=f"{unit or '1'}/{symbol}")
    if 0x28 <= code <= 0x2B:
        direction = "input" if code < 0x2A else "output"
        return replace(info, quantity=f"{q}_per_{direction}_pulse_{code & 0x01}")
    if code in _PER_UNIT:
        name, symbol = _PER_UNIT[code]
        return replace(info, quantity=f"{q}_per_{name}", unit=f"{unit or '1'}/{symbol}")
    if code in _TIMES_UNIT:
        name, symbol = _TIMES_UNIT[code]
        return replace(info, quantity=f"{q}_{name}", unit=f"{unit or '1'}{symbol}")
    if code in _SUFFIXES:
        return replace(info, quantity=f"{q}_{_SUFFIXES[code]}")
    if code == 0x39:
        return VifInfo(f"{q}_start", kind="time_point")
    if code == 0x3F:
        return VifInfo(f"{q}_obis_declaration", kind="raw")
    if code in (0x40, 0x48):
        return replace(info, quantity=f"{q}_{_limit(code)[1]}_limit")
    if code in (0x41, 0x49):
        return VifInfo(f"{q}_{_limit(code)[1]}_limit_exceed_count", kind="unsigned")
    if code & 0x72 == 0x42:  # E100 uf1b: date(/time) of begin or end of the first or last limit exceed
        first, bound = _limit(code)
        return VifInfo(f"{q}_{first}_{bound}_limit_exceed_{'end' if code & 0x01 else 'begin'}", kind="time_point")
    if 0x50 <= code <= 0x5F:
        first, bound = _limit(code)
        return _duration(f"{q}_{first}_{bound}_limit_exceed_duration", code)
    if 0x60 <= code <= 0x67:
        return _duration(f"{q}_{_limit(code)[0]}_duration", code)
    if code in (0x68, 0x6C):
        return replace(info, quantity=f"{q}_during_{_limit(code << 1)[1]}_limit_exceed")
    if code & 0x7A == 0x6A:  # E110 1f1b: date(/time) of begin or end of the first or last ...
        return VifInfo(f"{q}_{_limit(code)[0]}_{'end' if code & 0x01 else 'begin'}", kind="time_point")
    if 0x70 <= code <= 0x77:  # multiplicative correction factor 10^(nnn-6)
        return replace(info, exponent=info.exponent + (code & 0x07) - 6)
    if 0x78 <= code <= 0x7B:  # additive correction constant 10^(nn-3), taken in the unit reported
        return replace(info, offset=info.offset + 10.0 ** ((code & 0x03) - 3))
    if code == 0x7D:  # multiplicative correction factor 10^3
        return replace(info, exponent=info.exponent + 3)
    return None


def apply_vifes(info: VifInfo, vifes: Sequence[int]) -> Meaning:
    """The meaning of a record whose VIF reads ``info`` once its combinable VIFEs (extension bit cleared) apply.

    A VIFE that turns the value into something else — a rate, a pulse weight, a
    date, a limit, a backflow register — renames the quantity, so it can never
    be taken for the plain reading; a correction factor rescales the value; a
    record-error code (0x01–0x1F) is returned as ``error``; after 0x7F (and for
    a reserved code) the rest belongs to the manufacturer and the record says so.
    """
    error = None
    if info.quantity == "manufacturer_specific":
        return Meaning(info, error)
    codes = iter(vifes)
    for code in codes:
        if code < 0x20:
            if code:
                error = RECORD_ERRORS.get(code, f"error_0x{code:02X}")
            continue
        if code == _VIFE_MANUFACTURER:
            return Meaning(replace(info, quantity="manufacturer_specific"), error)
        if code == _VIFE_FC_TABLE:
            extension = next(codes, None)
            suffix = _FC_SUFFIXES.get(extension) if extension is not None else None
            if suffix is None:
                return Meaning(VifInfo(f"{info.quantity}_unknown_vife_0xfc", kind="raw"), error)
            info = replace(info, quantity=f"{info.quantity}_{suffix}")
            continue
        combined = _combine(info, code)
        if combined is None:
            return Meaning(VifInfo(f"{info.quantity}_unknown_vife_0x{code:02X}", kind="raw"), error)
        info = combined
    return Meaning(info, error)
