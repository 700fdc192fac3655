"""Byte-level damage for the decoder fuzz tests: a strategy of mutations and their application."""

from __future__ import annotations

from hypothesis import strategies as st


def mutations(max_position: int, max_count: int):
    """Lists of ``(action, position, byte)``: set, delete or insert a byte, truncate, or extend with a byte."""
    return st.lists(st.tuples(st.sampled_from(["set", "delete", "insert", "truncate", "extend"]),
                              st.integers(0, max_position), st.integers(0, 255)), min_size=1, max_size=max_count)


def mutate(data: bytes, damage: list[tuple[str, int, int]]) -> bytes:
    """``data`` with ``damage`` applied in turn (positions wrap around the current length)."""
    out = bytearray(data)
    for action, where, byte in damage:
        at = where % len(out) if out else 0
        if action == "set" and out:
            out[at] = byte
        elif action == "delete" and out:
            del out[at]
        elif action == "insert":
            out.insert(at, byte)
        elif action == "truncate":
            del out[at:]
        elif action == "extend":
            out += bytes([byte]) * (1 + where % 8)
    return bytes(out)
