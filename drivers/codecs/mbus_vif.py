"""M-Bus value information (EN 13757-3 VIF/VIFE): what a record measures, its unit and decimal scale.

>>> describe_vif(0x13)
VifInfo(quantity='volume', unit='m3', exponent=-3, kind='number')
>>> describe_vif(0x5A)
VifInfo(quantity='flow_temperature', unit='degC', exponent=-1, kind='number')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VifInfo:
    """``kind`` tells how to read the data: ``number`` (scaled by 10**exponent), ``date``, ``datetime`` or ``raw``."""

    quantity: str
    unit: str = ""
    exponent: int = 0
    kind: str = "number"


_TIME_UNITS = ("s", "min", "h", "d")

# (first code, last code, quantity, unit, exponent of the first code); each following code is one decade up.
_PRIMARY_RANGES = (
    (0x00, 0x07, "energy", "Wh", -3),
    (0x08, 0x0F, "energy", "J", 0),
    (0x10, 0x17, "volume", "m3", -6),
    (0x18, 0x1F, "mass", "kg", -3),
    (0x28, 0x2F, "power", "W", -3),
    (0x30, 0x37, "power", "J/h", 0),
    (0x38, 0x3F, "volume_flow", "m3/h", -6),
    (0x40, 0x47, "volume_flow", "m3/min", -7),
    (0x48, 0x4F, "volume_flow", "m3/s", -9),
    (0x50, 0x57, "mass_flow", "kg/h", -3),
    (0x58, 0x5B, "flow_temperature", "degC", -3),
    (0x5C, 0x5F, "return_temperature", "degC", -3),
    (0x60, 0x63, "temperature_difference", "K", -3),
    (0x64, 0x67, "external_temperature", "degC", -3),
    (0x68, 0x6B, "pressure", "bar", -3),
)

_PRIMARY_SINGLE = {
    0x6C: VifInfo("date", kind="date"),
    0x6D: VifInfo("datetime", kind="datetime"),
    0x6E: VifInfo("hca_units"),
    0x78: VifInfo("fabrication_no"),
    0x79: VifInfo("enhanced_identification"),
    0x7A: VifInfo("bus_address"),
}

# Second table after VIF 0xFD: the common entries only.
_FD_SINGLE = {
    0x08: VifInfo("access_no"),
    0x09: VifInfo("medium"),
    0x0A: VifInfo("manufacturer"),
    0x0B: VifInfo("parameter_set_id"),
    0x0C: VifInfo("model_version"),
    0x0D: VifInfo("hardware_version"),
    0x0E: VifInfo("firmware_version"),
    0x0F: VifInfo("software_version"),
    0x10: VifInfo("customer_location"),
    0x11: VifInfo("customer"),
    0x16: VifInfo("password"),
    0x17: VifInfo("error_flags"),
    0x18: VifInfo("error_mask"),
    0x1A: VifInfo("digital_output"),
    0x1B: VifInfo("digital_input"),
    0x1C: VifInfo("baudrate", "Bd"),
    0x3A: VifInfo("dimensionless"),
    0x60: VifInfo("reset_counter"),
    0x61: VifInfo("cumulation_counter"),
}

_FB_RANGES = (
    (0x00, 0x01, "energy", "MWh", -1),
    (0x08, 0x09, "energy", "GJ", -1),
    (0x10, 0x11, "volume", "m3", 2),
    (0x18, 0x19, "mass", "t", 2),
    (0x1A, 0x1B, "relative_humidity", "%RH", -1),
    (0x28, 0x29, "power", "MW", -1),
    (0x30, 0x31, "power", "GJ/h", -1),
)


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
        return VifInfo("on_time" if code < 0x24 else "operating_time", _TIME_UNITS[code & 0x03])
    if 0x70 <= code <= 0x77:
        name = "averaging_duration" if code < 0x74 else "actuality_duration"
        return VifInfo(name, _TIME_UNITS[code & 0x03])
    return _PRIMARY_SINGLE.get(code, VifInfo(f"unknown_vif_0x{code:02X}", kind="raw"))


def describe_fd(vife: int) -> VifInfo:
    """An entry of the 0xFD extension table."""
    code = vife & 0x7F
    if 0x20 <= code <= 0x23:
        return VifInfo("storage_interval", _TIME_UNITS[code & 0x03])
    if 0x40 <= code <= 0x4F:
        return VifInfo("voltage", "V", code - 0x40 - 9)
    if 0x50 <= code <= 0x5F:
        return VifInfo("current", "A", code - 0x50 - 12)
    if 0x74 <= code <= 0x77:
        return VifInfo("remaining_battery_life", _TIME_UNITS[code & 0x03])
    return _FD_SINGLE.get(code, VifInfo(f"unknown_vif_fd_0x{code:02X}", kind="raw"))


def describe_fb(vife: int) -> VifInfo:
    """An entry of the 0xFB extension table (the energy, volume, mass, humidity and power entries)."""
    code = vife & 0x7F
    return _from_ranges(code, _FB_RANGES) or VifInfo(f"unknown_vif_fb_0x{code:02X}", kind="raw")
