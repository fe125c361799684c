"""Building screens: text laid out in a fixed grid of columns × lines, and paged.

A screen's width is counted in full-width (Chinese) characters: one of them takes a column, an
ASCII character half of one. Lines break between Chinese characters and at the spaces between
Latin words, never inside a character (a combining mark or an emoji sequence stays whole) and
never inside a word unless the word alone is wider than a line. As Chinese typesetting does, a
closing mark (，。）…) never starts a line and an opening mark (（“《) never ends one.
"""

from __future__ import annotations

import unicodedata

DEFAULT_COLUMNS = 16
DEFAULT_LINES = 4
NO_LINE_START = frozenset("，。、；：！？）》」』〉】”’…·%,.;:!?)]}")
NO_LINE_END = frozenset("（《「『〈【“‘([{")
_ZERO_WIDTH = frozenset("\u200d\ufe0e\ufe0f")  # joiner and variation selectors belong to their neighbours


def char_half_columns(ch: str) -> int:
    """The width of one character in half columns: 2 full width, 1 half width, 0 combining."""
    if ch in _ZERO_WIDTH or unicodedata.combining(ch):
        return 0
    # Ambiguous characters (“ ” … °) are drawn full width on Chinese screens: count them so.
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F", "A") else 1


def half_columns(text: str) -> int:
    """The width of ``text`` in half columns (an ASCII character is 1, a Chinese character 2)."""
    return sum(char_half_columns(ch) for ch in text)


def clusters(text: str) -> list[str]:
    """``text`` split into what the eye sees as single characters (base plus marks, emoji sequences)."""
    out: list[str] = []
    for ch in text:
        if out and (char_half_columns(ch) == 0 or out[-1].endswith("\u200d")):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _tokens(paragraph: str) -> list[str]:
    """Units a line may break between: each wide character, each run of narrow ones, each space."""
    tokens: list[str] = []
    in_word = False
    for cluster in clusters(paragraph):
        if cluster.isspace():
            tokens.append(" ")
            in_word = False
            continue
        narrow = half_columns(cluster) <= 1
        if narrow and in_word:
            tokens[-1] += cluster
        else:
            tokens.append(cluster)
        in_word = narrow
    return tokens


def wrap(paragraph: str, columns: int) -> list[str]:
    """The lines of one paragraph on a screen ``columns`` full-width characters wide."""
    capacity = columns * 2
    lines: list[str] = []
    line: list[tuple[str, int]] = []  # (piece, its width in half columns)
    used = 0

    def start_new_line(piece: str, width: int) -> None:
        nonlocal line, used
        carry: list[tuple[str, int]] = []
        if piece[0] in NO_LINE_START and len(line) > 1 and not line[-1][0].isspace():
            carry.append(line.pop())
        while len(line) > 1 and line[-1][0][-1] in NO_LINE_END:
            carry.insert(0, line.pop())
        if sum(w for _, w in carry) + width > capacity:
            line += carry  # the mark cannot move without overflowing: leave the line as it was
            carry = []
        lines.append("".join(text for text, _ in line).rstrip())
        line, used = carry, sum(w for _, w in carry)

    for token in _tokens(paragraph):
        if token == " ":
            if line and used < capacity:
                line.append((token, 1))
                used += 1
            continue
        width = half_columns(token)
        pieces = [(token, width)] if width <= capacity else [(c, half_columns(c)) for c in clusters(token)]
        for piece, piece_width in pieces:
            if line and used + piece_width > capacity:
                start_new_line(piece, piece_width)
            line.append((piece, piece_width))
            used += piece_width
    if line:
        lines.append("".join(text for text, _ in line).rstrip())
    return [text for text in lines if text]


def screen_pages(text: str, columns: int = DEFAULT_COLUMNS, lines: int = DEFAULT_LINES) -> list[list[str]]:
    """``text`` as pages of at most ``lines`` lines, each fitting ``columns``; a newline starts a new line."""
    if columns < 1 or lines < 1:
        raise ValueError(f"a screen needs at least one column and one line, not {columns} × {lines}")
    all_lines = [row for paragraph in text.split("\n") for row in wrap(paragraph.strip(), columns)]
    return [all_lines[i : i + lines] for i in range(0, len(all_lines), lines)]
