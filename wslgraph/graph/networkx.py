"""Export parameter graphs to networkx for inspection."""

from __future__ import annotations

import networkx as nx

from wslgraph.graph.param_graph import ParamGraph

__all__ = ["to_networkx"]


def to_networkx(graph: ParamGraph) -> nx.MultiDiGraph:
    """A :class:`networkx.MultiDiGraph` with every node and edge attribute.

    Node attributes: ``x`` and ``x_mask`` (lists), ``node_type``, ``layer``,
    ``io_position``, ``activation``; edge attributes: ``edge_attr`` (list),
    ``edge_type``. A multigraph, since a residual edge can run parallel to a
    weight edge. The graph's ``layout`` is kept in ``G.graph["layout"]``.
    """
    result = nx.MultiDiGraph(layout=getattr(graph, "layout", None))
    columns = {key: graph[key].tolist() for key in ("x", "x_mask", "node_type", "layer", "io_position", "activation")}
    result.add_nodes_from((i, {key: values[i] for key, values in columns.items()}) for i in range(graph.num_nodes))
    sources, targets = graph.edge_index.tolist()
    attrs, types = graph.edge_attr.tolist(), graph.edge_type.tolist()
    result.add_edges_from((s, t, {"edge_attr": a, "edge_type": k})
                          for s, t, a, k in zip(sources, targets, attrs, types))
    return result
