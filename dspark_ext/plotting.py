"""Plotting for reports and benchmarks, in one place: matplotlib when it is installed (an
optional extra), else a small hand-written SVG canvas, so every report still gets a figure.

* :func:`pyplot` -- matplotlib.pyplot on the Agg backend, or None;
* :class:`Svg` -- the fallback canvas (rectangles, lines, polylines, text);
* :func:`plot_reliability` -- the calibration report's reliability diagrams (design §5).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

__all__ = ["Svg", "plot_reliability", "pyplot"]


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def _esc(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Svg:
    """A white canvas of ``width`` x ``height`` pixels; ``save(path)`` writes the document."""

    def __init__(self, width: float, height: float, font_size: int = 10):
        self.width, self.height = width, height
        self._parts: List[str] = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'font-family="sans-serif" font-size="{font_size}">',
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']

    def rect(self, x: float, y: float, w: float, h: float, fill: str = "none",
             stroke: str = "none") -> None:
        self._parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                           f'fill="{fill}" stroke="{stroke}"/>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "black",
             dash: str = "") -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self._parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                           f'stroke="{stroke}"{extra}/>')

    def polyline(self, points: Sequence[Tuple[float, float]], stroke: str = "black",
                 width: float = 1) -> None:
        if points:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            self._parts.append(f'<polyline points="{coords}" fill="none" stroke="{stroke}" '
                               f'stroke-width="{width}"/>')

    def text(self, x: float, y: float, s: str, fill: str = "black", size: int = 0,
             rotate: float = 0, anchor: str = "start") -> None:
        attrs = f' font-size="{size}"' if size else ""
        if rotate:
            attrs += f' transform="rotate({rotate} {x:.1f} {y:.1f})"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        self._parts.append(f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}"{attrs}>{_esc(s)}</text>')

    def save(self, path: str) -> str:
        with open(path, "w") as f:
            f.write("\n".join(self._parts + ["</svg>"]))
        return path


def plot_reliability(report: Dict, path_stem: str) -> str:
    """Reliability diagrams (one panel per position, before and after STS) of a
    :func:`calibration_report`. Writes ``path_stem + '.png'`` with matplotlib when it is
    installed, else a hand-written ``path_stem + '.svg'``; returns the file written."""
    panels = [(b, a) for b, a in zip(report["before"], report["after"])]
    plt = pyplot()
    if plt is None:
        return _reliability_svg(panels, report["temperatures"], path_stem + ".svg")
    cols = min(4, max(1, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for i, (b, a) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for m, name, color in ((b, "before", "tab:red"), (a, "after", "tab:blue")):
            if m["reliability"] is None:
                continue
            pts = [(x, o) for x, o in zip(m["reliability"]["mean_pred"],
                                          m["reliability"]["observed"]) if x is not None]
            if pts:
                xs, ys = zip(*pts)
                ece_v = m["ece"]
                ax.plot(xs, ys, marker="o", ms=3, color=color,
                        label=f"{name} ECE {ece_v * 100:.1f}%")
        ax.set_title(f"position {b['position']} (T={report['temperatures'][i]:.2f})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.supxlabel("predicted prefix survival")
    fig.supylabel("observed")
    fig.tight_layout()
    out = path_stem + ".png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _reliability_svg(panels, temps, path: str) -> str:
    size, pad, cols = 200, 30, min(4, max(1, len(panels)))
    rows = (len(panels) + cols - 1) // cols
    svg = Svg(cols * (size + pad) + pad, rows * (size + pad + 15) + pad)
    for i, (b, a) in enumerate(panels):
        x0 = pad + (i % cols) * (size + pad)
        y0 = pad + 15 + (i // cols) * (size + pad + 15)
        svg.rect(x0, y0, size, size, stroke="black")
        svg.line(x0, y0 + size, x0 + size, y0, stroke="grey", dash="4")
        svg.text(x0, y0 - 4, f"position {b['position']} T={temps[i]:.2f}")
        for m, color, dy in ((b, "red", 12), (a, "blue", 24)):
            if m["reliability"] is None:
                continue
            pts = [(x0 + x * size, y0 + size - o * size)
                   for x, o in zip(m["reliability"]["mean_pred"], m["reliability"]["observed"])
                   if x is not None]
            svg.polyline(pts, stroke=color)
            svg.text(x0 + 4, y0 + dy, f"ECE {m['ece'] * 100:.1f}%", fill=color)
    return svg.save(path)
