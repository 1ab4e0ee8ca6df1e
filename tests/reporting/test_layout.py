"""Report layout: cheap structural rules always; the real-browser check when Chromium is installed."""

import importlib.util
from pathlib import Path

import pytest

from ead.reporting import html

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_report_layout.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_report_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blank_png(path, width=792, height=429):
    from PIL import Image

    Image.new("RGB", (width, height), (255, 255, 255)).save(path)
    return path


def test_css_keeps_figures_inside_their_column_and_tables_in_their_box():
    css = html.CSS.replace(" ", "").replace("\n", "")
    assert "figureimg{width:100%;max-width:100%" in css
    assert ".table{overflow-x:auto;max-width:100%" in css
    assert "grid-template-columns:repeat(auto-fill,minmax(min(100%," in css


def test_inline_turns_markdown_code_into_html_and_escapes():
    assert html.inline("a `b<c>` **d**") == "a <code>b&lt;c&gt;</code> <strong>d</strong>"


chromium = load_script().find_chromium()


@pytest.mark.skipif(chromium is None, reason="no chromium on PATH (apt-get install -y chromium)")
def test_layout_check_passes_a_good_page_and_catches_overlap_overflow_and_strips(tmp_path):
    check = load_script()
    png = blank_png(tmp_path / "f.png")
    rows = [[f"group-{i}", "0.123 ± 0.045", "0.9"] for i in range(6)]
    good = html.page("good", "<h1>t</h1><section class='finding'><p>finding</p></section>"
                     + html.figures([html.figure(png, f"figure {i}") for i in range(4)])
                     + html.table(rows, ["group", "a", "b"]) + html.table(rows, ["group", "a", "b"]))
    (tmp_path / "good.html").write_text(good)
    result = check.check_page(tmp_path / "good.html", 1400)
    assert result["problems"] == [] and result["figures"] == 4
    bad = html.page("bad", "<div style='position:relative'>"
                    "<div class='table' style='position:absolute;top:0;left:0'>" + html.table(rows, ["g", "a", "b"])[19:]
                    + "<div class='table' style='position:absolute;top:10px;left:40px'>" + html.table(rows, ["g", "a", "b"])[19:]
                    + "</div><div style='height:400px'></div>"
                    + "<figure data-axes='8'><img alt='strip' src='" + png.name + "'></figure>"
                    + "<table style='width:3000px'><tr><td>a table wider than the page, outside its box</td></tr></table>")
    (tmp_path / "bad.html").write_text(bad)
    problems = " | ".join(check.check_page(tmp_path / "bad.html", 1400)["problems"])
    assert "overlap: [div.table" in problems
    assert "8 plots in one image: [strip]" in problems
    assert "the page scrolls sideways" in problems


def test_a_unit_range_axis_starts_at_zero_and_follows_low_accuracies():
    """Mean@16 of 0.06-0.10 fills the panel (top 1.15 x 0.10) instead of a flat line at the bottom of [0, 1]."""
    from ead.reporting import html as page_html

    plt = page_html.pyplot()
    fig, ax = plt.subplots()
    page_html.set_unit_limits(ax, [0.06, 0.08, 0.10])
    bottom, top = ax.get_ylim()
    assert bottom == pytest.approx(-0.02 * 0.115) and top == pytest.approx(1.02 * 0.115)  # 0 is always shown
    page_html.set_unit_limits(ax, [0.5, 0.97])  # near 1: capped at the whole range, never above it
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    page_html.set_unit_limits(ax, [float("nan")])  # nothing finite drawn (a band of one seed): the whole range
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    page_html.set_unit_limits(ax, [0.0, 0.0], axis="y")  # all zeros (Worst@16 here): a floor of 0.05, not a flat axis
    assert ax.get_ylim()[1] == pytest.approx(1.02 * 0.05)
    plt.close(fig)
    fig, ax = plt.subplots()
    page_html.set_unit_limits(ax, [0.2, float("nan"), 0.5], axis="x")  # the final-value dot plots put the metric on x
    assert ax.get_xlim() == pytest.approx((-0.02 * 0.575, 1.02 * 0.575))
    plt.close(fig)
