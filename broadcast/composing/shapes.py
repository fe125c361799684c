"""Channel shapes: how the paragraphs a layout renders become what each channel sends.

- sms: the paragraphs run together, with the cost of the text (parts, encoding) and the
  confirmation link at the end;
- voice: words only, for speech (no symbols or brackets; ranges and units spelled out), and the
  language the voice speaks;
- push: the first paragraph is the title, the rest the body, plus a small data payload; the whole
  notification stays within the push services' 4 KB;
- screen: the paragraphs paged for the screen grid, with the level's colour.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from broadcast.composing.screen import DEFAULT_COLUMNS, DEFAULT_LINES, clusters, screen_pages
from broadcast.core.models import Language
from broadcast.core.segments import sms_cost

PUSH_LIMIT_BYTES = 4096  # FCM and APNs both refuse a larger payload
PUSH_ENVELOPE_BYTES = 512  # kept free for the device token and platform options the channel adds
VOICE_LANGUAGES = {Language.zh: "zh-CN", Language.en: "en-US"}
_JOINERS = {Language.zh: "", Language.en: " "}


@dataclass(frozen=True)
class Rendered:
    """One message as a channel sends it; ``extra`` holds the channel's own shapes."""

    text: str
    parts: int = 1
    encoding: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def sms(paragraphs: list[str], language: Language, link: str) -> Rendered:
    """One text; its cost is counted with the link in place, so a same-length link keeps it true."""
    text = _JOINERS[language].join(paragraphs)
    cost = sms_cost(text)
    return Rendered(text, cost.parts, cost.encoding, {"link": link} if link and link in text else {})


# Speech: what a text-to-speech voice would misread, rewritten, then every symbol dropped.
_RANGE = re.compile(r"(\d)\s*[-~～–—]\s*(\d)")
_NEGATIVE = re.compile(r"(?<![0-9A-Za-z.])-(\d)")
_SPOKEN: dict[Language, list[tuple[re.Pattern[str], str]]] = {
    Language.zh: [
        (_RANGE, r"\1到\2"),
        (_NEGATIVE, r"零下\1"),
        (re.compile(r"\s*℃"), "摄氏度"),
        (re.compile(r"(\d+(?:\.\d+)?)\s*%"), r"百分之\1"),
    ],
    Language.en: [
        (_RANGE, r"\1 to \2"),
        (_NEGATIVE, r"minus \1"),
        (re.compile(r"\bNo\.\s*(\d)"), r"number \1"),
        (re.compile(r"(\d)\s*mm\b"), r"\1 millimetres"),
        (re.compile(r"(\d)\s*m\b"), r"\1 metres"),
        (re.compile(r"\s*(°C|℃)"), " degrees"),
        (re.compile(r"\s*%"), " percent"),
        (re.compile(r"\s*&\s*"), " and "),
    ],
}
_BRACKETS_AND_QUOTES = frozenset("【】[]()（）《》〈〉「」『』“”‘’\"'<>{}")


def _unspoken(ch: str) -> bool:
    return ch in _BRACKETS_AND_QUOTES or ch in "#*_\\|/@" or unicodedata.category(ch).startswith("S")


def unspeakable(text: str) -> set[str]:
    """Characters a voice should not be given: brackets, quotes and symbols (℃, #, emoji …)."""
    return {ch for ch in text if _unspoken(ch)}


def speakable(text: str, language: Language) -> str:
    """``text`` as words a voice can say: ranges, units and signs spelled out, symbols dropped."""
    for pattern, spoken in _SPOKEN[language]:
        text = pattern.sub(spoken, text)
    text = "".join(_JOINERS[language] if _unspoken(ch) else ch for ch in text)
    return re.sub(r" {2,}", " ", text).strip()


def voice(paragraphs: list[str], language: Language) -> Rendered:
    """The words to say once (saying them twice is the channel's work) and the voice's language."""
    return Rendered(
        speakable(_JOINERS[language].join(paragraphs), language), extra={"language": VOICE_LANGUAGES[language]}
    )


def push_bytes(title: str, body: str, data: Mapping[str, Any]) -> int:
    """The size of the notification as the push services count it (UTF-8 JSON)."""
    return len(json.dumps({"title": title, "body": body, "data": data}, ensure_ascii=False).encode())


def push(paragraphs: list[str], data: Mapping[str, Any]) -> Rendered:
    """Title, body and data; a body too long for the limit loses its end, never half a character."""
    title, body = paragraphs[0], "\n".join(paragraphs[1:])
    budget = PUSH_LIMIT_BYTES - PUSH_ENVELOPE_BYTES
    if push_bytes(title, body, data) > budget:
        pieces = clusters(body)
        low, high = 0, len(pieces)  # the most clusters that fit, with an ellipsis after them
        while low < high:
            mid = (low + high + 1) // 2
            if push_bytes(title, "".join(pieces[:mid]) + "…", data) <= budget:
                low = mid
            else:
                high = mid - 1
        body = "".join(pieces[:low]).rstrip() + "…"
    return Rendered(body, extra={"title": title, "data": dict(data)})


def screen(paragraphs: list[str], colour: str) -> Rendered:
    """The text paged for the default screen grid; other sizes call ``screen_pages`` themselves."""
    text = "\n".join(paragraphs)
    return Rendered(text, extra={"pages": screen_pages(text, DEFAULT_COLUMNS, DEFAULT_LINES), "colour": colour})
