#!/usr/bin/env python
"""Render HTML reports in headless Chromium and check their layout; optionally save a screenshot.

    python scripts/check_report_layout.py docs/results/report.html runs/default/report.html --width 1400
    python scripts/check_report_layout.py docs/results/report.html --screenshot docs/img/results_report.png

Needs Debian's ``chromium`` (``apt-get install -y chromium``) or Chrome on PATH. For each page and width it
injects a small script, lets the browser lay the page out, and reads back (``--dump-dom``):

* overlaps (with every ``<details>`` opened): any two block elements (headings, paragraphs, figures, table boxes, code blocks) whose boxes
  intersect without one containing the other (the old report's tables drew over each other);
* overflow: an element wider than the page (a table that pushes the page sideways instead of scrolling
  in its own box);
* legibility: every figure image drawn at least ``--min-figure-px`` wide and not blown up past 1.6x its
  pixels (so ticks and legends keep the size matplotlib gave them), and one plot per image (``data-axes``).

Exit status 0 when every page passes at every width, 1 otherwise (the problems are printed).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
<script>
window.addEventListener('load', () => {
  document.querySelectorAll('details').forEach(d => d.open = true);  // check what a click would reveal too
  const blocks = [...document.querySelectorAll('h1,h2,h3,h4,p,figure,div.table,pre,nav,summary')]
    .filter(e => e.getClientRects().length && e.getBoundingClientRect().height > 0);
  const box = e => { const r = e.getBoundingClientRect(); return {l: r.left + scrollX, t: r.top + scrollY,
                                                                   r: r.right + scrollX, b: r.bottom + scrollY}; };
  const name = e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ': ' +
                    (e.textContent || e.getAttribute('alt') || '').trim().slice(0, 60);
  const problems = [];
  const boxes = blocks.map(box);
  for (let i = 0; i < blocks.length; i++) for (let j = i + 1; j < blocks.length; j++) {
    const a = blocks[i], b = blocks[j];
    if (a.contains(b) || b.contains(a)) continue;
    const p = boxes[i], q = boxes[j];
    const w = Math.min(p.r, q.r) - Math.max(p.l, q.l), h = Math.min(p.b, q.b) - Math.max(p.t, q.t);
    if (w > 1 && h > 1) problems.push('overlap: [' + name(a) + '] and [' + name(b) + ']');
  }
  const width = document.documentElement.clientWidth;
  for (const e of blocks) if (box(e).r > width + 1) problems.push('wider than the page: [' + name(e) + ']');
  if (document.documentElement.scrollWidth > width + 1) problems.push('the page scrolls sideways');
  const images = [...document.querySelectorAll('figure img')];
  for (const img of images) {
    const shown = img.getBoundingClientRect().width;
    if (shown < MIN_FIGURE_PX) problems.push('figure drawn ' + Math.round(shown) + ' px wide: [' + img.alt + ']');
    if (shown > 1.6 * img.naturalWidth) problems.push('figure blown up ' + (shown / img.naturalWidth).toFixed(1) + 'x: [' + img.alt + ']');
    const axes = img.closest('figure').dataset.axes;
    if (axes !== undefined && axes !== '1') problems.push(axes + ' plots in one image: [' + img.alt + ']');
  }
  const out = document.createElement('pre');
  out.id = 'layout-result';
  out.textContent = JSON.stringify({problems: problems, blocks: blocks.length, figures: images.length,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float = 120.0) -> str:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return result.stdout


def check_page(page: Path, width: int, min_figure_px: int = 500, browser: str | None = None) -> dict:
    """Lay ``page`` out at ``width`` px in headless Chromium; returns ``{problems, blocks, figures, height}``."""
    browser = browser or find_chromium()
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")
    text = page.read_text(encoding="utf-8")
    probe = PROBE.replace("MIN_FIGURE_PX", str(min_figure_px))
    # The probed copy sits next to the page so that relative links (images, styles) resolve as they do for a reader.
    with tempfile.NamedTemporaryFile("w", suffix=".html", prefix=".layout-", dir=page.resolve().parent,
                                     encoding="utf-8", delete=False) as probed_file:
        probed_file.write(text.replace("</body>", probe + "</body>") if "</body>" in text else text + probe)
    probed = Path(probed_file.name)
    try:
        dom = _run(browser, [f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom",
                             probed.as_uri()])
    finally:
        probed.unlink(missing_ok=True)
    match = re.search(r"<pre id=\"layout-result\">(.*?)</pre>", dom, re.S)
    if not match:
        return {"problems": ["the page did not finish loading in the browser"], "blocks": 0, "figures": 0, "height": 0}
    import html

    return json.loads(html.unescape(match.group(1)))


def screenshot(page: Path, out_png: Path, width: int, height: int, shrink_to: int | None = None,
               browser: str | None = None) -> Path:
    """The top ``height`` px of ``page`` at ``width`` px, optionally shrunk to ``shrink_to`` px wide (small PNG)."""
    browser = browser or find_chromium()
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _run(browser, [f"--window-size={width},{height}", "--virtual-time-budget=10000",
                   f"--screenshot={out_png.resolve()}", page.resolve().as_uri()])
    if shrink_to:
        from PIL import Image

        with Image.open(out_png) as image:
            small = image.convert("RGB").resize((shrink_to, round(image.height * shrink_to / image.width)),
                                                Image.Resampling.LANCZOS)
        small.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out_png, optimize=True)
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="HTML files to check")
    parser.add_argument("--width", type=int, action="append", help="viewport widths in px (default 1280, 1400, 1920)")
    parser.add_argument("--min-figure-px", type=int, default=500, help="narrowest acceptable figure width")
    parser.add_argument("--screenshot", type=Path, action="append", default=[],
                        help="also save a screenshot of each page (one path per page, in order), at the first width")
    parser.add_argument("--screenshot-height", type=int, default=2200, help="px of the page the screenshot shows")
    parser.add_argument("--shrink-to", type=int, default=None, help="resize screenshots to this width (px)")
    args = parser.parse_args(argv)
    widths = args.width or [1280, 1400, 1920]
    failed = False
    for page in args.pages:
        for width in widths:
            result = check_page(page, width, args.min_figure_px)
            status = "ok" if not result["problems"] else "FAIL"
            print(f"{status:4s} {page} at {width} px: {result['blocks']} blocks, {result['figures']} figures, "
                  f"{result['height']} px tall")
            for problem in result["problems"]:
                print(f"     {problem}")
            failed |= bool(result["problems"])
    for page, out_png in zip(args.pages, args.screenshot):
        print(f"screenshot: {screenshot(page, out_png, widths[0], args.screenshot_height, args.shrink_to)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
