"""How many SMS parts a text costs: GSM-7 when every character allows it, UCS-2 otherwise.

GSM-7 carries 160 septets in one message, 153 per part when split; characters of the extension
table (``^{}\\[~]|€`` and form feed) take two. UCS-2 carries 70 UTF-16 code units in one message,
67 per part; a character outside the Basic Multilingual Plane (most emoji) takes two units, and a
part never splits such a pair.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsCost:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_cost(text: str) -> SmsCost:
    """The encoding, size and number of parts of ``text`` as one SMS."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        parts = 1 if units <= 160 else _parts([2 if ch in GSM7_EXTENSION else 1 for ch in text], 153)
        return SmsCost("GSM-7", units, parts)
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    units = sum(sizes)
    parts = 1 if units <= 70 else _parts(sizes, 67)
    return SmsCost("UCS-2", units, parts)


def _parts(sizes: list[int], per_part: int) -> int:
    """Parts needed when no character (escape pair or surrogate pair) is split across parts."""
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts += 1
            used = 0
        used += size
    return parts
