"""Self-contained HTML pages: one stylesheet, figures embedded as PNG, small Markdown-ish tables.

Layout rules (checked by ``scripts/check_report_layout.py`` in a real browser and by
``tests/reporting``): every figure is one plot in its own ``<figure>``, images never exceed their
column (``max-width: 100%``), figures flow in a responsive grid (two columns from about 1300 px,
one below), tables scroll inside their own box instead of spilling over a neighbour.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any, Iterable

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1em 2em;max-width:1800px;
     line-height:1.45;color:#222}
h1{font-size:1.7em;margin:.3em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin-top:1.2em}
.finding{font-size:1.08em;background:#f4f7fb;border-left:4px solid #3b6ea5;padding:.6em 1em;max-width:1200px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:1.2em 2em;align-items:start}
figure{margin:0;min-width:0}figure img{width:100%;max-width:100%;height:auto;display:block}
figcaption{font-size:.9em;color:#555;margin-top:.2em}
.table{overflow-x:auto;max-width:100%;margin:.6em 0 1.2em}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
     vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;max-width:100%;font-size:12.5px}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}
details summary{cursor:pointer;font-weight:600;margin:.5em 0}
"""


def inline(text: str) -> str:
    """Escape ``text`` and turn Markdown's `code` and **bold** into HTML (no literal backticks on the page)."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def figure(png: Path, caption: str, axes: int = 1) -> str:
    """A ``<figure>`` with the PNG embedded; ``data-axes`` records how many plots the image holds (1 by rule)."""
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return (f"<figure data-axes='{axes}'><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{inline(caption)}</figcaption></figure>")


def figures(items: list[str]) -> str:
    return "<div class='figs'>" + "".join(items) + "</div>" if items else ""


def table(rows: list[list[Any]], header: list[str], numeric: bool = True) -> str:
    """An HTML table in a scrolling box; cells are escaped (with `code`), numbers right-aligned."""
    def cell(value: Any, tag: str) -> str:
        text = str(value)
        cls = " class='num'" if numeric and tag == "td" and re.fullmatch(r"[-+0-9.,±/ ()%a-z;]*", text) and \
            re.search(r"\d", text) else ""
        return f"<{tag}{cls}>{inline(text)}</{tag}>"

    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in rows)
    return f"<div class='table'><table>{head}{body}</table></div>"


def page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def set_unit_limits(ax: Any, drawn: Iterable[float], axis: str = "y") -> None:
    """The ``axis`` ("y" or "x") of a metric that lives in [0, 1] (a rate, Mean@k): from 0, up to just above the data.

    Always from 0, so a gap between two curves is never magnified by a cut axis; the top follows the largest
    finite value in ``drawn`` (every value plotted, band tops included; 15% headroom, at most 1) so that
    accuracies of 0.06-0.10 are not a flat line at the bottom of [0, 1]. Nothing finite drawn: the whole [0, 1].
    """
    highest = max((v for v in drawn if math.isfinite(v)), default=math.nan)
    top = min(1.0, max(0.05, 1.15 * highest)) if math.isfinite(highest) else 1.0
    (ax.set_ylim if axis == "y" else ax.set_xlim)(-0.02 * top, top + 0.02 * top)


FIGSIZE = (7.2, 3.9)
"""Inches of every single-plot figure; at DPI that is 792 x 429 px, shown at about 600-860 px wide."""
DPI = 110


def save(fig: Any, out_png: Path) -> Path:
    """``tight_layout``, write at :data:`DPI`, close; then a 128-colour palette (a third of the bytes, same look)."""
    fig.tight_layout()
    fig.savefig(out_png, dpi=DPI)
    pyplot().close(fig)
    try:
        from PIL import Image
    except ImportError:  # pillow comes with matplotlib; without it the full-colour PNG stays
        return out_png
    with Image.open(out_png) as image:
        palette = image.convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE)
    palette.save(out_png, optimize=True)
    return out_png
