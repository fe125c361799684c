"""The after-action report as people read it: an HTML document, a PDF a duty chief prints and signs,
and the console's page, all from one template (``pages/review/``).

Charts: in the console, plotly.js draws them in the browser from the report's JSON, as the live page
does; in the PDF they are SVG drawn by matplotlib, which needs no browser (plotly's own static
export needs kaleido and a Chrome). The PDF is set by WeasyPrint from the same HTML, in a font with
Chinese characters: ``BROADCAST_REPORT_FONT``, or the first such font the system has (Debian's
``fonts-wqy-zenhei``, ``fonts-noto-cjk`` …). Without one the PDF is refused, naming the package to
install, rather than printed as empty boxes.
"""

from __future__ import annotations

import io
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from broadcast.core.settings import Settings
from broadcast.web.pages import environment
from broadcast.web.pages.display import Display, display

CJK_SAMPLE = "预警确认率值班长签字"  # characters every page of the report uses
FONT_PACKAGES = "fonts-wqy-zenhei (apt-get install fonts-wqy-zenhei) or fonts-noto-cjk"
# Where Debian, Ubuntu, Fedora and Alpine put the CJK fonts their packages install, looked at first.
KNOWN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


class ReportUnavailable(Exception):
    """The PDF cannot be made on this machine (no CJK font, no Pango); says what to install."""


def _covers(path: Path, sample: str) -> bool:
    """True when the font at ``path`` (its first face) has a glyph for every character of ``sample``."""
    from fontTools.ttLib import TTCollection, TTFont, TTLibError

    try:
        if path.suffix.lower() == ".ttc":
            with TTCollection(str(path), lazy=True) as collection:
                cmap = collection.fonts[0].getBestCmap() or {}
        else:
            with TTFont(str(path), lazy=True) as font:
                cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, IndexError, AssertionError):
        return False
    return all(ord(ch) in cmap for ch in sample)


@lru_cache(maxsize=4)
def cjk_font(configured: Path | None) -> Path:
    """A font file with Chinese characters: the configured one, else the first the system has."""
    if configured is not None:
        if not configured.is_file():
            raise ReportUnavailable(f"BROADCAST_REPORT_FONT={configured} is not a file")
        if not _covers(configured, CJK_SAMPLE):
            raise ReportUnavailable(f"BROADCAST_REPORT_FONT={configured} has no Chinese characters")
        return configured
    candidates = [Path(p) for p in KNOWN_FONTS]
    from matplotlib import font_manager

    candidates += sorted(Path(p) for p in font_manager.findSystemFonts() if Path(p) not in candidates)
    for path in candidates:
        if path.is_file() and path.suffix.lower() in (".ttf", ".ttc", ".otf") and _covers(path, CJK_SAMPLE):
            return path
    raise ReportUnavailable(
        f"no font with Chinese characters on this machine: install {FONT_PACKAGES}, "
        "or set BROADCAST_REPORT_FONT to a .ttf/.ttc/.otf file that has them"
    )


def _context(review: dict[str, Any], settings: Settings) -> dict[str, Any]:
    show = display(settings, review["names"] | {c["code"]: c["name"] for c in review["committees"]})
    return {"r": review, "show": show, "committees_shown": len(review["committees"]) <= COMMITTEES_IN_FULL}


COMMITTEES_IN_FULL = 300  # a larger alert's committees are in the JSON; the document lists its streets


def review_html(review: dict[str, Any], settings: Settings, charts: dict[str, str] | None = None) -> str:
    """The report as a standalone HTML document (charts as inline SVG when given)."""
    return (
        environment()
        .get_template("review/document.html")
        .render(**_context(review, settings), charts=charts or {}, font_url="", lang="zh")
    )


def review_pdf(review: dict[str, Any], settings: Settings) -> bytes:
    """The report as a PDF, Chinese set in a CJK font, with its charts drawn by matplotlib."""
    font = cjk_font(settings.report_font)
    try:
        from weasyprint import HTML
    except OSError as exc:  # WeasyPrint's Pango is a system library
        raise ReportUnavailable(
            f"the PDF needs Pango ({exc}); install libpango-1.0-0 and libpangoft2-1.0-0 (Debian)"
        ) from None
    show = display(settings)
    charts = draw_charts(review, font, show)
    html = (
        environment()
        .get_template("review/document.html")
        .render(**_context(review, settings), charts=charts, font_url=font.resolve().as_uri(), lang="zh")
    )
    return bytes(HTML(string=html, base_url=str(font.parent)).write_pdf())


# ---- charts for the PDF

PALETTE = ("#1565c0", "#2e7d32", "#c45100", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64", "#827717", "#283593")


def draw_charts(review: dict[str, Any], font: Path, show: Display) -> dict[str, str]:
    """The report's charts as SVG (text drawn as outlines, so the PDF needs no font for them)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib.figure import Figure

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    font_manager.fontManager.addfont(str(font))
    family = font_manager.FontProperties(fname=str(font)).get_name()
    matplotlib.rcParams.update({"font.family": [family], "svg.fonttype": "path", "axes.unicode_minus": False})

    def svg(figure: Any) -> str:
        out = io.StringIO()
        figure.savefig(out, format="svg", bbox_inches="tight")
        text = out.getvalue()
        return text[text.index("<svg") :]

    curve = review["curve"]
    charts: dict[str, str] = {}
    figure = Figure(figsize=(7.2, 3.0))
    ax = figure.add_subplot()
    for name, label, colour in (
        ("sent", "已发送 Sent", "#1565c0"),
        ("delivered", "已送达 Delivered", "#6d4c41"),
        ("confirmed", "已确认 Confirmed", "#2e7d32"),
    ):
        ax.plot(curve["minutes"], curve[name], label=label, color=colour, linewidth=2)
    ax.set_xlabel("签发后分钟 Minutes since issue")
    ax.set_ylabel("人数 People")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    charts["curve"] = svg(figure)

    streets = {row["code"]: row for row in review["streets"]}
    if streets:
        figure = Figure(figsize=(7.2, 3.0))
        ax = figure.add_subplot()
        for i, (code, series) in enumerate(list(curve["street"].items())[:10]):
            targeted = streets.get(code, {}).get("targeted") or 1
            ax.plot(
                curve["minutes"],
                [100 * v / targeted for v in series],
                label=review["names"].get(code, code),
                color=PALETTE[i % len(PALETTE)],
                linewidth=1.6,
            )
        ax.set_xlabel("签发后分钟 Minutes since issue")
        ax.set_ylabel("确认率 Confirmed %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        charts["streets"] = svg(figure)

    lowest = review["lowest"]
    if lowest:
        figure = Figure(figsize=(7.2, 0.35 * len(lowest) + 0.8))
        ax = figure.add_subplot()
        names = [c["name"] for c in lowest][::-1]
        ax.barh(names, [100 * c["rate"] for c in lowest][::-1], color="#b71c1c")
        ax.set_xlim(0, 100)
        ax.set_xlabel("确认率 Confirmed %")
        ax.grid(axis="x", alpha=0.3)
        charts["lowest"] = svg(figure)
    return charts
