"""Seeds derived from (seed, epoch, batch, ...): every random draw of a run is a function of them."""

from __future__ import annotations


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, batch, ...) by a hash combiner. Its
    constants define every batch and augmentation of every recorded run: never change them."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & (2**63 - 1)
    return value
