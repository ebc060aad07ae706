"""What the reliability diagrams draw (issue 21): the matplotlib figure's panels, points,
titles and legends, the SVG fallback's geometry, and the SVG canvas itself."""
import struct
import xml.etree.ElementTree as ET

import matplotlib.colors as mcolors
import pytest
import torch

from dspark_ext import calibration as cal
from dspark_ext import plotting

NS = "{http://www.w3.org/2000/svg}"
TEMPS = [0.5, 1.25, 2.0, 1.0, 3.5]


@pytest.fixture(scope="module")
def report():
    """Five positions (two rows of four panels): the last is never verified (no diagram),
    with four bins so some of them are empty."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(60, 5, generator=g, dtype=torch.float64) * 2
    y = torch.cumprod((torch.rand(60, 5, generator=g) < torch.sigmoid(z)).long(), 1).bool()
    m = torch.ones(60, 5, dtype=torch.bool)
    m[:, 4] = False
    return cal.calibration_report(z, y, m, TEMPS, bins=4)


def _points(metrics):
    rel = metrics["reliability"]
    return [(x, o) for x, o in zip(rel["mean_pred"], rel["observed"]) if x is not None]


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_matplotlib_figure(report, tmp_path, monkeypatch):
    plt = plotting.pyplot()
    assert plt is not None and plt.get_backend().lower() == "agg"
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)  # keep the figure to look at it
    out = plotting.plot_reliability(report, str(tmp_path / "rel"))
    assert out == str(tmp_path / "rel") + ".png"
    assert _png_size(out) == (round(3.2 * 4 * 110), round(3.0 * 2 * 110))  # 4 x 2 panels, dpi 110
    (fig,) = figs
    try:
        axes = fig.axes
        assert len(axes) == 8
        assert [ax.axison for ax in axes] == [True] * 5 + [False] * 3
        assert fig._supxlabel.get_text() == "predicted prefix survival"
        assert fig._supylabel.get_text() == "observed"
        for k, ax in enumerate(axes[:5]):
            assert ax.get_title() == f"position {k} (T={TEMPS[k]:.2f})"
            assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
            diag, *curves = ax.get_lines()
            assert list(diag.get_xdata()) == [0, 1] and list(diag.get_ydata()) == [0, 1]
            assert diag.get_linestyle() == "--"
            assert mcolors.to_hex(diag.get_color()) == mcolors.to_hex("grey")
            if k == 4:
                assert curves == []
                continue
            assert len(curves) == 2  # before and after
            labels = []
            for line, m, name, colour in zip(curves, (report["before"][k], report["after"][k]),
                                             ("before", "after"), ("tab:red", "tab:blue")):
                xs, ys = zip(*_points(m))
                assert list(line.get_xdata()) == list(xs) and list(line.get_ydata()) == list(ys)
                assert line.get_marker() == "o"  # a single populated bin is still visible
                assert mcolors.to_hex(line.get_color()) == mcolors.to_hex(colour)
                labels.append(f"{name} ECE {m['ece'] * 100:.1f}%")
            assert [c.get_label() for c in curves] == labels
            assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    finally:
        plt.close(fig)


@pytest.mark.parametrize("panels, grid", [(1, (1, 1)), (4, (1, 4))])
def test_matplotlib_grid(report, tmp_path, monkeypatch, panels, grid):
    plt = plotting.pyplot()
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    part = dict(report, before=report["before"][:panels], after=report["after"][:panels])
    out = plotting.plot_reliability(part, str(tmp_path / "rel"))
    (fig,) = figs
    try:
        assert len(fig.axes) == grid[0] * grid[1] and all(ax.axison for ax in fig.axes)
        assert _png_size(out) == (round(3.2 * grid[1] * 110), round(3.0 * grid[0] * 110))
    finally:
        plt.close(fig)


def _svg(report, tmp_path, monkeypatch):
    monkeypatch.setattr(plotting, "pyplot", lambda: None)
    out = plotting.plot_reliability(report, str(tmp_path / "rel"))
    assert out == str(tmp_path / "rel") + ".svg"
    return ET.parse(out).getroot()


def test_svg_fallback_geometry(report, tmp_path, monkeypatch):
    root = _svg(report, tmp_path, monkeypatch)
    assert (root.get("width"), root.get("height")) == ("950", "520")  # 4 x 2 panels of 200 + pad
    rects = root.findall(NS + "rect")
    assert rects[0].attrib == {"width": "950", "height": "520", "fill": "white"}
    lines, polys = root.findall(NS + "line"), root.findall(NS + "polyline")
    texts = [(t.get("x"), t.get("y"), t.get("fill"), t.text) for t in root.findall(NS + "text")]
    assert len(rects) == 6 and len(lines) == 5 and len(polys) == 8
    want_texts = []
    for k in range(5):
        x0, y0 = 30 + (k % 4) * 230, 45 + (k // 4) * 245
        assert rects[k + 1].attrib == {"x": f"{x0:.1f}", "y": f"{y0:.1f}", "width": "200.0",
                                       "height": "200.0", "fill": "none", "stroke": "black"}
        assert lines[k].attrib == {"x1": f"{x0:.1f}", "y1": f"{y0 + 200:.1f}",
                                   "x2": f"{x0 + 200:.1f}", "y2": f"{y0:.1f}",
                                   "stroke": "grey", "stroke-dasharray": "4"}
        want_texts.append((f"{x0:.1f}", f"{y0 - 4:.1f}", "black",
                           f"position {k} T={TEMPS[k]:.2f}"))
        if k == 4:
            continue
        for j, (m, colour, dy) in enumerate(((report["before"][k], "red", 12),
                                             (report["after"][k], "blue", 24))):
            poly = polys[2 * k + j]
            assert poly.get("stroke") == colour and poly.get("fill") == "none"
            assert poly.get("stroke-width") == "1"
            assert poly.get("points") == " ".join(
                f"{x0 + x * 200:.1f},{y0 + 200 - o * 200:.1f}" for x, o in _points(m))
            want_texts.append((f"{x0 + 4:.1f}", f"{y0 + dy:.1f}", colour,
                               f"ECE {m['ece'] * 100:.1f}%"))
    assert texts == want_texts


@pytest.mark.parametrize("panels, size", [(1, ("260", "275")), (3, ("720", "275"))])
def test_svg_panel_grid(report, tmp_path, monkeypatch, panels, size):
    part = dict(report, before=report["before"][:panels], after=report["after"][:panels])
    root = _svg(part, tmp_path, monkeypatch)
    assert (root.get("width"), root.get("height")) == size  # one row of `panels` columns


def test_svg_canvas(tmp_path):
    svg = plotting.Svg(120.4, 80.6, font_size=12)
    svg.rect(1, 2.25, 3, 4, fill="red", stroke="blue")
    svg.line(0, 1, 2, 3)
    svg.line(0, 1, 2, 3, stroke="green", dash="2,1")
    svg.polyline([])
    svg.polyline([(0, 1), (2.04, 3.06)], stroke="red", width=2)
    svg.polyline([(1, 1)])
    svg.text(5, 6, "a<b & c>d")
    svg.text(5, 6, "t", fill="red", size=8, rotate=-90, anchor="middle")
    path = str(tmp_path / "c.svg")
    assert svg.save(path) == path
    with open(path) as f:
        text = f.read()
    assert text.split("\n") == [
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="81" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="120" height="81" fill="white"/>',
        '<rect x="1.0" y="2.2" width="3.0" height="4.0" fill="red" stroke="blue"/>',
        '<line x1="0.0" y1="1.0" x2="2.0" y2="3.0" stroke="black"/>',
        '<line x1="0.0" y1="1.0" x2="2.0" y2="3.0" stroke="green" stroke-dasharray="2,1"/>',
        '<polyline points="0.0,1.0 2.0,3.1" fill="none" stroke="red" stroke-width="2"/>',
        '<polyline points="1.0,1.0" fill="none" stroke="black" stroke-width="1"/>',
        '<text x="5.0" y="6.0" fill="black">a&lt;b &amp; c&gt;d</text>',
        '<text x="5.0" y="6.0" fill="red" font-size="8" transform="rotate(-90 5.0 6.0)" '
        'text-anchor="middle">t</text>',
        '</svg>']
    ET.parse(path)  # well-formed
    default = plotting.Svg(10, 10)
    default.rect(0, 0, 1, 1)
    assert default._parts[0].endswith('font-size="10">')
    assert default._parts[-1].endswith('fill="none" stroke="none"/>')
