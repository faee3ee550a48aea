"""Figures with matplotlib: learning curves, image grids with labels, parameter graphs (drawn with networkx),
spectra.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, no display
needed); :func:`save_figure` writes it atomically as PNG, SVG or PDF, chosen by the file's suffix. Matplotlib is
the optional ``plot`` extra (``pip install 'wslgraph[plot]'``; ``make demo`` and ``make test`` install it).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from wslgraph.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["line_plot", "scatter_panels", "image_grid", "mesh_grid", "draw_graph", "save_figure", "FORMATS"]

FORMATS = ("png", "svg", "pdf")


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - the dev and plot extras install it
        raise ImportError("wslgraph's figures need matplotlib: pip install 'wslgraph[plot]'") from error
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``path`` (``.png``, ``.svg`` or ``.pdf``) atomically; a bad suffix raises ``ValueError``
    before anything is written."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot write a figure as {path.name!r}: use a .png, .svg or .pdf file name")
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (searchable, smaller)
        figure.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return atomic_write_bytes(path, buffer.getvalue())


def scatter_panels(points: Tensor, colours: dict[str, Tensor], title: str, xlabel: str = "",
                   ylabel: str = "") -> Figure:
    """One panel per named colouring of the same 2-D ``points`` ``[N, 2]``, each with a colour bar."""
    figure = _figure(5.0 * len(colours), 4.2)
    figure.suptitle(title)
    for index, (name, values) in enumerate(colours.items(), 1):
        axes = figure.add_subplot(1, len(colours), index)
        drawn = axes.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=values.float().numpy(), s=4,
                             cmap="viridis", alpha=0.8, linewidths=0)
        figure.colorbar(drawn, ax=axes, label=name)
        axes.set(xlabel=xlabel, ylabel=ylabel)
    return figure


def line_plot(series: dict[str, Sequence[float]], title: str, xlabel: str = "", ylabel: str = "",
              log_y: bool = False, x: Sequence[float] | None = None) -> Figure:
    """One line per named series against ``x`` (default: 1, 2, ...), with a legend; ``log_y`` for a log axis of
    ``|y|``."""
    figure = _figure(6.4, 4.0)
    axes = figure.add_subplot()
    for name, ys in series.items():
        ys = [abs(v) if log_y else v for v in ys]
        xs = list(x) if x is not None else list(range(1, len(ys) + 1))
        axes.plot(xs[:len(ys)], ys, marker="o" if len(ys) <= 30 else None, markersize=3, label=name)
    if log_y:
        axes.set_yscale("log")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    if series:
        axes.legend()
    return figure


def image_grid(images: Tensor, title: str, captions: Sequence[str] | None = None, columns: int = 8,
               cmap: str = "gray") -> Figure:
    """Images ``[N, C, H, W]`` in ``[0, 1]`` (C = 1 or 3) in a grid, each with its caption (e.g. ``"true 3 /
    pred 8"``)."""
    images = images.detach().float().clamp(0, 1).cpu()
    count = images.shape[0]
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = _figure(1.3 * columns, 1.45 * rows + 0.4)
    figure.suptitle(title)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if index >= count:
            continue
        image = images[index]
        if image.shape[0] == 1:
            axes.imshow(image[0].numpy(), cmap=cmap, vmin=0, vmax=1)
        else:
            axes.imshow(image.permute(1, 2, 0).numpy())
        if captions is not None:
            axes.set_title(captions[index], fontsize=8)
    return figure


def mesh_grid(meshes: Sequence[tuple[Tensor, Tensor]], title: str, captions: Sequence[str] | None = None,
              columns: int = 5, elevation: float = 25.0, azimuths: Sequence[float] | float = 35.0) -> Figure:
    """Triangle meshes ``(vertices [V, 3], faces [F, 3])`` in ``[-1, 1]^3``, one 3-D panel each (seen from
    ``elevation`` and its ``azimuths`` entry, or one azimuth for all), shaded by the faces' orientation to a light;
    an empty mesh leaves its panel blank (with its caption)."""
    import torch
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    count = len(meshes)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = _figure(2.2 * columns, 2.3 * rows + 0.4)
    figure.suptitle(title)
    light = torch.tensor([0.4, -0.4, 0.8], dtype=torch.float64)
    light = light / light.norm()
    for index, (vertices, faces) in enumerate(meshes):
        axes = figure.add_subplot(rows, columns, index + 1, projection="3d")
        axes.set_axis_off()
        axes.set(xlim=(-0.9, 0.9), ylim=(-0.9, 0.9), zlim=(-0.9, 0.9))
        axes.set_box_aspect((1, 1, 1))
        axes.view_init(elev=elevation, azim=azimuths if isinstance(azimuths, (int, float)) else azimuths[index])
        if captions is not None:
            axes.set_title(captions[index], fontsize=8)
        if len(faces) == 0:
            continue
        triangles = vertices.double()[faces]
        normals = (triangles[:, 1] - triangles[:, 0]).cross(triangles[:, 2] - triangles[:, 0], dim=-1)
        shade = 0.35 + 0.65 * (normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12) @ light).abs()
        colours = [(0.25 * s, 0.5 * s, 0.85 * s) for s in shade.tolist()]
        axes.add_collection3d(Poly3DCollection(triangles.numpy(), facecolors=colours, linewidths=0))
    return figure


def draw_graph(graph: object, title: str, max_nodes_per_group: int = 12) -> Figure:
    """A parameter graph drawn with networkx: node groups as columns (input to output), edges coloured by the sign
    of their weight (red positive, blue negative) and shaded by its size; groups larger than
    ``max_nodes_per_group`` show their first nodes."""
    import networkx as nx

    layout = graph.layout
    tallest = min(max(g.size for g in layout.groups), max_nodes_per_group)
    figure = _figure(max(4.0, 1.6 * len(layout.groups)), max(3.0, 0.3 * tallest + 1.2))
    axes = figure.add_subplot()
    axes.set_title(title)
    positions, shown = {}, nx.DiGraph()
    for column, group in enumerate(layout.groups):
        count = min(group.size, max_nodes_per_group)
        for i in range(count):
            positions[group.offset + i] = (column, -(i - (count - 1) / 2))
        label = f"{group.name}\n({group.size}{', first ' + str(count) if count < group.size else ''})"
        axes.text(column, -(tallest / 2 + 0.9), label, ha="center", va="top", fontsize=8)
    shown.add_nodes_from(positions)
    weight = graph.edge_attr.mean(dim=-1)
    scale = float(weight.abs().max()) or 1.0
    for (s, t), w in zip(graph.edge_index.t().tolist(), weight.tolist()):
        if s in positions and t in positions:
            shown.add_edge(s, t, weight=w)
    edges = list(shown.edges(data="weight"))
    colors = [(0.84, 0.15, 0.16, 0.15 + 0.85 * abs(w) / scale) if w > 0 else (0.12, 0.47, 0.71,
                                                                              0.15 + 0.85 * abs(w) / scale)
              for _, _, w in edges]
    nx.draw_networkx_edges(shown, positions, edgelist=[(s, t) for s, t, _ in edges], edge_color=colors, ax=axes,
                           arrows=False, width=0.8)
    nx.draw_networkx_nodes(shown, positions, node_size=40, node_color="white", edgecolors="black", ax=axes)
    axes.set_ylim(-(tallest / 2 + 2.2), tallest / 2 + 0.5)
    axes.set_axis_off()
    return figure
