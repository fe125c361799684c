"""What an SMS costs, at the edges where one more character means one more part."""

from __future__ import annotations

import pytest

from broadcast.core.segments import sms_cost

HAN = "风"  # any Chinese character: one UTF-16 unit, not GSM-7
EMOJI = "🌀"  # outside the Basic Multilingual Plane: two UTF-16 units (a surrogate pair)

CASES = [
    # label, text, encoding, units, parts
    ("69 Chinese characters", HAN * 69, "UCS-2", 69, 1),
    ("70 Chinese characters fill one message", HAN * 70, "UCS-2", 70, 1),
    ("71 Chinese characters need two parts of 67", HAN * 71, "UCS-2", 71, 2),
    ("134 Chinese characters fill two parts", HAN * 134, "UCS-2", 134, 2),
    ("135 Chinese characters need a third part", HAN * 135, "UCS-2", 135, 3),
    ("160 GSM-7 characters fill one message", "a" * 160, "GSM-7", 160, 1),
    ("161 GSM-7 characters need two parts of 153", "a" * 161, "GSM-7", 161, 2),
    ("306 GSM-7 characters fill two parts", "a" * 306, "GSM-7", 306, 2),
    ("307 GSM-7 characters need a third part", "a" * 307, "GSM-7", 307, 3),
    ("an extension character (€) counts two septets", "a" * 159 + "€", "GSM-7", 161, 2),
    ("an escape pair is not split across parts", "a" * 152 + "€" + "a" * 153, "GSM-7", 307, 3),
    ("one emoji turns English into UCS-2", "Stay indoors " + EMOJI, "UCS-2", 15, 1),
    ("one emoji in 160 English characters: three parts", "a" * 159 + EMOJI, "UCS-2", 161, 3),
    ("an emoji is never split across parts", HAN * 66 + EMOJI + HAN * 66, "UCS-2", 134, 3),
    ("mixed Chinese and Latin is UCS-2", "Shelter: 梅园一村社区活动中心", "UCS-2", 19, 1),
    ("mixed, 71 units", "Shelter " + HAN * 63, "UCS-2", 71, 2),
    ("GSM-7 accented letters stay GSM-7", "café à Zürich", "GSM-7", 13, 1),
    ("the ideographic full stop is not GSM-7", "Stay indoors。", "UCS-2", 13, 1),
]


@pytest.mark.parametrize(("label", "text", "encoding", "units", "parts"), CASES, ids=[c[0] for c in CASES])
def test_cost_at_the_edges(label: str, text: str, encoding: str, units: int, parts: int) -> None:
    cost = sms_cost(text)
    assert (cost.encoding, cost.units, cost.parts) == (encoding, units, parts), label
