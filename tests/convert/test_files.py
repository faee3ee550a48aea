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


def _edit_layout(path, edit) -> None:
    """Rewrite a saved graph's layout JSON (its tensors unchanged), as a hand edit or damage would."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, "pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    layout = json.loads(metadata["wslgraph.layout"])
    edit(layout)
    save_file(tensors, path, metadata={**metadata, "wslgraph.layout": json.dumps(layout)})


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["edge_blocks"][0].update(weight_shape=[16, 2]), "weight_shape"),
    (lambda d: d.update(dtype="float64"), "feature dtype is torch.float64"),
    (lambda d: d["state"][0].update(shape=[2, 32]), "the layout says"),
    (lambda d: d["edge_blocks"][0].update(src=99), "its layout cannot be read"),
    # a bogus offset would be harmless (offsets are derived), but any edit breaks the file's SHA-256
    (lambda d: d["edge_blocks"][0].update(offset=10**12), "does not match the SHA-256"),
    (lambda d: None, None),  # rewritten unchanged: loads
])
def test_a_saved_graph_whose_layout_does_not_fit_its_tensors_is_refused(tmp_path, edit, message) -> None:
    graph = to_graph(siren())
    path = tmp_path / "graph.safetensors"
    save_graph(graph, path)
    _edit_layout(path, edit)
    if message is None:
        loaded = load_graph(path).validate()
        assert torch.equal(loaded.edge_attr, graph.edge_attr) and loaded.layout == graph.layout
        return
    with pytest.raises(CorruptShardError, match=message):
        load_graph(path)
