"""Dependency-free SVG figures: line plots, image grids and drawings of parameter graphs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

__all__ = ["line_plot", "image_grid", "draw_graph"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def _svg(width: int, height: int, body: list[str]) -> str:
    return "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                      f'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>',
                      *body, "</svg>"])


def line_plot(series: dict[str, Sequence[float]], title: str, xlabel: str = "", ylabel: str = "",
              log_y: bool = False, width: int = 640, height: int = 400) -> str:
    """One line per named series (x = index), with a legend; ``log_y`` plots ``log10 |y|``."""
    def transform(value: float) -> float:
        return math.log10(max(abs(value), 1e-30)) if log_y else value

    values = [transform(v) for s in series.values() for v in s if math.isfinite(v)] or [0.0]
    low, high = min(values), max(values)
    high = high if high > low else low + 1
    left, top, plot_w, plot_h = 70, 40, width - 230, height - 90
    longest = max((len(s) for s in series.values()), default=1)
    body = [f'<text x="{left}" y="20" font-size="14">{title}</text>',
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>',
            f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">{xlabel}</text>',
            f'<text x="15" y="{top + plot_h / 2}" transform="rotate(-90 15 {top + plot_h / 2})" '
            f'text-anchor="middle">{ylabel}</text>']
    ticks = range(math.floor(low), math.ceil(high) + 1) if log_y else [low + (high - low) * i / 4 for i in range(5)]
    for tick in ticks:
        y = top + plot_h * (1 - (tick - low) / (high - low))
        if top - 1 <= y <= top + plot_h + 1:
            label = f"1e{tick}" if log_y else f"{tick:.3g}"
            body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for index, (name, ys) in enumerate(series.items()):
        points = " ".join(f"{left + plot_w * (i / max(longest - 1, 1)):.1f},"
                          f"{top + plot_h * (1 - (transform(v) - low) / (high - low)):.1f}"
                          for i, v in enumerate(ys) if math.isfinite(v))
        color = COLORS[index % len(COLORS)]
        body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        body.append(f'<text x="{left + plot_w + 10}" y="{top + 16 * index + 10}" fill="{color}">{name}</text>')
    return _svg(width, height, body)


def image_grid(rows: dict[str, Tensor], title: str, cell: int = 4) -> str:
    """Named rows of grey images ``[N, 1, H, W]`` in ``[0, 1]`` as pixel rectangles."""
    body, y = [f'<text x="10" y="20" font-size="14">{title}</text>'], 35
    width = 120
    for name, images in rows.items():
        images = images.detach().clamp(0, 1).cpu()
        count, _, height, img_w = images.shape
        body.append(f'<text x="10" y="{y + height * cell / 2 + 4}">{name}</text>')
        for n in range(count):
            x0 = 110 + n * (img_w * cell + 6)
            for r in range(height):
                for c in range(img_w):
                    grey = int(255 * (1 - float(images[n, 0, r, c])))
                    body.append(f'<rect x="{x0 + c * cell}" y="{y + r * cell}" width="{cell}" height="{cell}" '
                                f'fill="rgb({grey},{grey},{grey})"/>')
            width = max(width, x0 + img_w * cell + 10)
        y += height * cell + 12
    return _svg(width, y + 10, body)


def draw_graph(graph: object, title: str, max_nodes_per_group: int = 12) -> str:
    """A parameter graph drawn by node group (columns), edges coloured by the sign of their weight.

    Groups larger than ``max_nodes_per_group`` show their first nodes only.
    """
    layout = graph.layout
    columns = len(layout.groups)
    width, height = 160 * columns + 40, 60 + 30 * min(max(g.size for g in layout.groups), max_nodes_per_group)
    position = {}
    body = [f'<text x="10" y="20" font-size="14">{title}</text>']
    for column, group in enumerate(layout.groups):
        shown = min(group.size, max_nodes_per_group)
        for i in range(shown):
            position[group.offset + i] = (40 + 160 * column, 50 + (height - 70) * (i + 0.5) / shown)
        body.append(f'<text x="{40 + 160 * column}" y="{height - 5}" text-anchor="middle">{group.name} '
                    f'({group.size})</text>')
    source, target = graph.edge_index
    weight = graph.edge_attr.mean(dim=-1)
    scale = float(weight.abs().max()) or 1.0
    for s, t, w in zip(source.tolist(), target.tolist(), weight.tolist()):
        if s in position and t in position:
            (x1, y1), (x2, y2) = position[s], position[t]
            color = "#d62728" if w > 0 else "#1f77b4"
            body.append(f'<line x1="{x1}" y1="{y1:.1f}" x2="{x2}" y2="{y2:.1f}" stroke="{color}" '
                        f'stroke-opacity="{0.15 + 0.85 * abs(w) / scale:.2f}" stroke-width="1"/>')
    for x, y in position.values():
        body.append(f'<circle cx="{x}" cy="{y:.1f}" r="5" fill="white" stroke="black"/>')
    return _svg(width, height, body)
