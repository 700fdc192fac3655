"""ADS1115 register arithmetic: config words, codes to volts, the OS bit, telling an ADS1015 apart.

Sources: TI SBAS444D (ADS1113/4/5, "ADS111x") and SBAS473E (ADS1013/4/5,
"ADS101x"). Both chips have the same four 16-bit registers behind an 8-bit
pointer (SBAS444D §9.6, SBAS473E §8.6): 0 conversion, 1 config, 2 Lo_thresh,
3 Hi_thresh. Registers travel most significant byte first (SBAS444D §9.5.3,
"Reading/Writing Registers"), while an SMBus word transfer puts the *first*
byte in the *low* half of the word — so a word read through smbus must be
byte-swapped (:func:`swap16`).

Config register (SBAS444D §9.6.3, reset 0x8583)::

    15 OS | 14:12 MUX | 11:9 PGA | 8 MODE | 7:5 DR | 4 COMP_MODE | 3 COMP_POL | 2 COMP_LAT | 1:0 COMP_QUE

>>> hex(config_word(mux=MUX_SINGLE[0], pga=4.096, data_rate=128))  # AIN0–GND, ±4.096 V, 128 SPS, start
'0xc383'
>>> lsb_volts(4.096) * 1e6                                           # SBAS444D Table 3: 125 µV
125.0
>>> code_to_volts(0x7FFF, 4.096), code_to_volts(0x8000, 4.096)       # full-scale codes
(4.095875, -4.096)
>>> signed16(swap16(0x3412))       # smbus read_word_data gives 0x3412 for the bytes 12 34
4660
"""

from __future__ import annotations

from dataclasses import dataclass

REG_CONVERSION = 0x00
REG_CONFIG = 0x01
REG_LO_THRESH = 0x02
REG_HI_THRESH = 0x03

#: Reset values (SBAS444D §9.6.3 and §9.6.4; the same in SBAS473E §8.6.3–8.6.4).
CONFIG_RESET = 0x8583
LO_THRESH_RESET = 0x8000
HI_THRESH_RESET = 0x7FFF

#: OS, written 1: start a single conversion (only from power-down); read: 0 = converting, 1 = idle.
OS = 1 << 15
#: MODE = 1: single-shot (power-down after each conversion); 0: continuous.
MODE_SINGLE_SHOT = 1 << 8
#: COMP_QUE = 11: comparator off, ALERT/RDY high impedance (the reset value).
COMP_QUE_DISABLE = 0b11

#: MUX[2:0] codes: single-ended AINx against GND, and the four differential pairs (SBAS444D §9.6.3).
MUX_SINGLE = {0: 0b100, 1: 0b101, 2: 0b110, 3: 0b111}
MUX_DIFFERENTIAL = {"0-1": 0b000, "0-3": 0b001, "1-3": 0b010, "2-3": 0b011}
#: MUX code → (positive input, negative input or None for GND).
MUX_INPUTS = {0b000: (0, 1), 0b001: (0, 3), 0b010: (1, 3), 0b011: (2, 3),
              0b100: (0, None), 0b101: (1, None), 0b110: (2, None), 0b111: (3, None)}

#: PGA[2:0] → full-scale range in volts (codes 110 and 111 are ±0.256 V too).
FULL_SCALE = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256, 6: 0.256, 7: 0.256}
PGA_CODES = {6.144: 0, 4.096: 1, 2.048: 2, 1.024: 3, 0.512: 4, 0.256: 5}

#: DR[2:0] → samples per second. The codes are shared but the rates differ (SBAS444D vs SBAS473E §8.6.3).
ADS1115_DATA_RATES = (8, 16, 32, 64, 128, 250, 475, 860)
ADS1015_DATA_RATES = (128, 250, 490, 920, 1600, 2400, 3300, 3300)

#: The oscillator, hence every data rate, may be off by up to ±10 % (SBAS444D §7.5, "Data rate variation").
DATA_RATE_TOLERANCE = 0.10

#: Written in turn to Lo_thresh to tell the chips apart: on an ADS1015 bits 3:0 of Lo_thresh are read-only 0
#: (SBAS473E §8.6.4, Figure 22) while all 16 bits are read/write on an ADS1115 (SBAS444D §9.6.4, Figure 37).
#: Two different patterns, so that a chip that always answers the same word is not taken for either.
#: Bit 15 stays as at reset; with the comparator off (COMP_QUE = 11) the thresholds have no effect anyway.
THRESHOLD_PROBES = (0x800F, 0x8A55)


@dataclass(frozen=True)
class Config:
    """A decoded config register."""

    idle: bool          # OS as read: True when no conversion is running
    mux: int
    pga: float          # full-scale volts
    single_shot: bool
    data_rate_code: int
    comp_que: int


def encode(config: Config) -> int:
    """The register word of ``config`` (OS set when ``idle``)."""
    pga_code = PGA_CODES[config.pga]
    return ((OS if config.idle else 0) | config.mux << 12 | pga_code << 9
            | (MODE_SINGLE_SHOT if config.single_shot else 0) | config.data_rate_code << 5 | config.comp_que)


def decode_config(word: int) -> Config:
    """The fields of a config register word.

    >>> decode_config(CONFIG_RESET)
    Config(idle=True, mux=0, pga=2.048, single_shot=True, data_rate_code=4, comp_que=3)
    """
    return Config(idle=bool(word & OS), mux=word >> 12 & 0b111, pga=FULL_SCALE[word >> 9 & 0b111],
                  single_shot=bool(word & MODE_SINGLE_SHOT), data_rate_code=word >> 5 & 0b111,
                  comp_que=word & 0b11)


def config_word(mux: int, pga: float, data_rate: int, start: bool = True) -> int:
    """Config for one single-shot conversion of ``mux`` at ``pga`` volts and ``data_rate`` SPS, comparator off."""
    if pga not in PGA_CODES:
        raise ValueError(f"no PGA setting for ±{pga} V; the ADS1115 has " + ", ".join(f"{v:g}" for v in PGA_CODES))
    if data_rate not in ADS1115_DATA_RATES:
        raise ValueError(f"no ADS1115 data rate of {data_rate} SPS; it has "
                         + ", ".join(str(r) for r in ADS1115_DATA_RATES))
    return encode(Config(idle=start, mux=mux, pga=pga, single_shot=True,
                         data_rate_code=ADS1115_DATA_RATES.index(data_rate), comp_que=COMP_QUE_DISABLE))


def conversion_ready(word: int) -> bool:
    """Whether a config word read back says the conversion is done (OS = 1)."""
    return bool(word & OS)


def conversion_seconds(data_rate: int) -> float:
    """Nominal time of one conversion: conversions settle in one cycle, so 1 / DR (SBAS444D §9.3.6)."""
    return 1.0 / data_rate


def lsb_volts(pga: float) -> float:
    """Size of one code step: FSR / 2^15 for the 16-bit two's complement output (SBAS444D §9.3.3, Table 3)."""
    return pga / 32768


def code_to_volts(code: int, pga: float) -> float:
    """Input voltage of a conversion code (signed, or the raw 16-bit word) at ``pga`` full scale.

    >>> [round(code_to_volts(1, pga) * 1e6, 4) for pga in (6.144, 2.048, 0.256)]
    [187.5, 62.5, 7.8125]
    """
    return signed16(code & 0xFFFF) * pga / 32768


def is_full_scale(code: int) -> bool:
    """Whether a conversion code is clipped at 7FFF or 8000: the input is at or beyond full scale."""
    return code & 0xFFFF in (0x7FFF, 0x8000)


def signed16(word: int) -> int:
    """Two's complement of a 16-bit word.

    >>> signed16(0xFFFF), signed16(0x7FFF), signed16(0x8000)
    (-1, 32767, -32768)
    """
    return word - 0x10000 if word & 0x8000 else word


def swap16(word: int) -> int:
    """Exchange the two bytes of a 16-bit word (SMBus words are little-endian, the ADS1115 is big-endian).

    >>> hex(swap16(0x8583))
    '0x8385'
    """
    return (word & 0xFF) << 8 | word >> 8


def identify(probes: list[tuple[int, int]]) -> str | None:
    """Which chip answered, from ``(written, read back)`` pairs of Lo_thresh (:data:`THRESHOLD_PROBES`).

    >>> identify([(0x800F, 0x800F), (0x8A55, 0x8A55)]), identify([(0x800F, 0x8000), (0x8A55, 0x8A50)])
    ('ADS1115', 'ADS1015')
    >>> identify([(0x800F, 0x8000), (0x8A55, 0x8000)]) is None     # a chip that always says 0x8000
    True
    """
    if all(read == written for written, read in probes):
        return "ADS1115"
    if all(read == written & 0xFFF0 for written, read in probes):
        return "ADS1015"
    return None
