"""Saved graphs: exact round trips through safetensors for every kind of layer."""

import pytest
import torch

from wslgraph import load_graph, save_graph, to_graph, to_state_dict
from wslgraph.errors import CorruptShardError, InvalidGraphError
from wslgraph.graph import collate
from wslgraph.zoo import siren, small_cnn, tiny_resnet


@pytest.mark.parametrize("factory", [siren, small_cnn, tiny_resnet])
def test_saved_graph_loads_back_bit_for_bit(tmp_path, factory) -> None:
    torch.manual_seed(0)
    model = factory()
    graph = to_graph(model)
    save_graph(graph, tmp_path / "g.safetensors")
    loaded = load_graph(tmp_path / "g.safetensors")
    assert loaded.layout == graph.layout
    for key in ("x", "x_mask", "edge_index", "edge_attr", "node_type", "layer", "io_position", "edge_type"):
        assert torch.equal(loaded[key], graph[key]), key
    state = to_state_dict(loaded)
    assert list(state) == list(model.state_dict())
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())


def test_save_and_load_refuse_what_they_cannot_handle(tmp_path) -> None:
    with pytest.raises(InvalidGraphError, match="get_example"):
        save_graph(collate([to_graph(siren()), to_graph(siren())]), tmp_path / "batch.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CorruptShardError, match="not a wslgraph graph"):
        load_graph(tmp_path / "plain.safetensors")
    assert not (tmp_path / "batch.safetensors").exists()
