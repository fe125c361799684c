"""Building screens: text wrapped to the grid and paged, never cutting a character or a word."""

from __future__ import annotations

import pytest

from broadcast.composing.screen import half_columns, screen_pages

HAN = "风"

CASES = [
    # label, text, columns, lines, expected pages
    ("16 Chinese characters fill one line", HAN * 16, 16, 4, [[HAN * 16]]),
    ("the 17th goes to the next line", HAN * 17, 16, 4, [[HAN * 16, HAN]]),
    ("64 characters fill one page", HAN * 64, 16, 4, [[HAN * 16] * 4]),
    ("the 65th starts a second page", HAN * 65, 16, 4, [[HAN * 16] * 4, [HAN]]),
    ("an ASCII character is half a column", "a" * 32 + "b", 16, 4, [["a" * 32, "b"]]),
    ("mixed widths: 15 Chinese and 2 ASCII fill 16 columns", HAN * 15 + "10", 16, 4, [[HAN * 15 + "10"]]),
    ("a wide character does not squeeze into half a column", HAN * 15 + "1" + HAN, 16, 4, [[HAN * 15 + "1", HAN]]),
    (
        "a closing mark never starts a line: the character before it moves down",
        HAN * 16 + "，" + HAN,
        16,
        4,
        [[HAN * 15, HAN + "，" + HAN]],
    ),
    ("an opening mark never ends a line", HAN * 15 + "“烟花”", 16, 4, [[HAN * 15, "“烟花”"]]),
    (
        "English breaks at spaces, never inside a word",
        "Stop all outdoor activity now and stay inside",
        5,
        4,
        [["Stop all", "outdoor", "activity", "now and"], ["stay", "inside"]],
    ),
    ("a word wider than the line is cut, as it must be", "a" * 20, 8, 4, [["a" * 16, "a" * 4]]),
    (
        "one line of English holds 32 ASCII characters",
        "Stop all outdoor activity now an",
        16,
        4,
        [["Stop all outdoor activity now an"]],
    ),
    ("a newline starts a new line", "台风红色预警\n请留在室内", 16, 4, [["台风红色预警", "请留在室内"]]),
    ("a family emoji stays whole", HAN * 15 + "👨‍👩‍👧" + HAN, 16, 4, [[HAN * 15, "👨‍👩‍👧" + HAN]]),
    ("a small screen: 8 columns by 2 lines", HAN * 20, 8, 2, [[HAN * 8, HAN * 8], [HAN * 4]]),
    ("a wide screen: 20 columns by 3 lines", HAN * 20 + "请", 20, 3, [[HAN * 20, "请"]]),
]


@pytest.mark.parametrize(("label", "text", "columns", "lines", "pages"), CASES, ids=[c[0] for c in CASES])
def test_paging(label: str, text: str, columns: int, lines: int, pages: list[list[str]]) -> None:
    result = screen_pages(text, columns, lines)
    assert result == pages, label
    for page in result:
        assert len(page) <= lines
        assert all(half_columns(line) <= columns * 2 for line in page)
    assert "".join("".join(page) for page in result).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_a_screen_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        screen_pages("台风", 0, 4)
