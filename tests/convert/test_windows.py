"""Layer windows: every weight in exactly one window, each window an exact slice of the network."""

import torch

from tests.models import randomize
from wslgraph import GraphTemplate, to_state_dict
from wslgraph.convert import LayerWindows
from wslgraph.graph import NodeType
from wslgraph.zoo import resnet


def test_windows_partition_the_weights_and_hold_exact_slices() -> None:
    model = randomize(resnet(50, width=2, num_classes=10))  # bottlenecks, downsampling skips
    template = GraphTemplate.from_module(model, input_shape=(3, 32, 32))
    layout = template.layout
    windows = LayerWindows(template, size=3)
    depth = max(g.layer for g in layout.groups)
    assert len(windows) == -(-depth // 3)
    owned = [g for groups in windows.owned for g in groups]
    assert sorted(owned) == list(range(1, len(layout.groups)))  # every non-input group owned once
    blocks = [(b.key, b.kind) for sub in windows.layouts for b in sub.edge_blocks]
    assert sorted(map(str, blocks)) == sorted(str((b.key, b.kind)) for b in layout.edge_blocks)
    assert sum(sub.num_edges for sub in windows.layouts) == layout.num_edges
    rows = template.flatten(model.state_dict()).unsqueeze(0)
    state = model.state_dict()
    for index, sub in enumerate(windows.layouts):
        assert sub.kernel_grid == layout.kernel_grid  # one edge feature width for every window
        for key, value in to_state_dict(windows.batch(rows, index)[0]).items():
            assert torch.equal(value, state[key].to(value.dtype)), key  # bit-exact slices
        hidden = [g for g in sub.groups if g.node_type == NodeType.HIDDEN]
        assert all(g.layer >= 1 for g in hidden)  # the network's depths are kept
        owned = {layout.groups[g].name for g in windows.owned[index]}
        assert {sub.groups[b.dst].name for b in sub.edge_blocks} <= owned  # a window's edges feed its own groups
