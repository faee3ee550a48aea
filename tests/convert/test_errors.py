"""Every error path names what was wrong and how to fix it."""

import pytest
import torch
from torch import Tensor, nn

from wslgraph import (
    ShapeInferenceError,
    ShapeMismatchError,
    TracingError,
    UnsupportedModuleError,
    to_graph,
    to_state_dict,
)
from wslgraph.convert import register
from wslgraph.graph import Activation
from wslgraph.zoo import small_cnn


def test_unsupported_layer_names_module_type_and_fix() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1))
    with pytest.raises(UnsupportedModuleError, match=r"'1' of type torch\.nn\.modules\.activation\.Softmax.*register"):
        to_graph(model)
    assert issubclass(UnsupportedModuleError, ValueError)


def test_untraceable_model_raises_tracing_error_with_fx_reason() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            if x.sum() > 0:
                return self.fc(x)
            return x

    with pytest.raises(TracingError, match="Branchy.*control flow"):
        to_graph(Branchy())


def test_unsupported_function_and_functional_parameter_use() -> None:
    class Softmaxed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return torch.softmax(self.fc(x), dim=1)

    with pytest.raises(UnsupportedModuleError, match="softmax"):
        to_graph(Softmaxed())

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2, 2))

        def forward(self, x: Tensor) -> Tensor:
            return nn.functional.linear(x, self.w)

    with pytest.raises(UnsupportedModuleError, match="'w' functionally"):
        to_graph(Functional())


def test_weight_sharing_and_unused_parameters_are_rejected() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(torch.relu(self.fc(x)))

    with pytest.raises(UnsupportedModuleError, match="weight sharing"):
        to_graph(Shared())

    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.spare = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x)

    with pytest.raises(UnsupportedModuleError, match=r"\['spare.weight', 'spare.bias'\]"):
        to_graph(Unused())


def test_flatten_of_unknown_map_needs_input_shape() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(ShapeInferenceError, match="input_shape"):
        to_graph(model)
    assert to_graph(model, input_shape=(1, 6, 6)).num_edges == 2 + 2 * 3
    with pytest.raises(ShapeInferenceError, match=r"input_shape=\(3, 6, 6\)"):
        to_graph(model, input_shape=(3, 6, 6))


def test_shape_mismatch_between_layers() -> None:
    class Wrong(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(4, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.b(self.a(x))

    with pytest.raises(ShapeMismatchError, match="'b' expects 4 .* provides 3"):
        to_graph(Wrong())


def test_to_state_dict_rejects_a_tampered_graph() -> None:
    graph = to_graph(small_cnn())
    graph.edge_attr = graph.edge_attr[:-1]
    with pytest.raises(ShapeMismatchError, match="edge_attr"):
        to_state_dict(graph)


def test_register_a_custom_layer() -> None:
    class Swish(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x * torch.sigmoid(x)

    model = nn.Sequential(nn.Linear(2, 3), Swish(), nn.Linear(3, 1))
    with pytest.raises(UnsupportedModuleError):  # fx traces into it and meets x * sigmoid(x)
        to_graph(model)
    register(Swish, lambda ctx, module, name, value: ctx.activation(value, Activation.SILU))
    graph = to_graph(model)
    assert graph.activation[2:5].tolist() == [Activation.SILU] * 3
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register(int, lambda *args: None)


def test_weights_computed_at_call_time_are_refused_with_how_to_bake_them_in() -> None:
    import warnings

    from torch.nn.utils import parametrizations, prune

    from wslgraph import to_graph
    from wslgraph.errors import UnsupportedModuleError

    def model() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    normed = model()
    parametrizations.weight_norm(normed[0])
    with pytest.raises(UnsupportedModuleError, match=r"'0' computes weight through a parametrization.*"
                                                     r"remove_parametrizations"):
        to_graph(normed)
    pruned = model()
    prune.l1_unstructured(pruned[2], "weight", amount=0.5)
    with pytest.raises(UnsupportedModuleError, match=r"'2' is pruned \(weight = .*prune.remove"):
        to_graph(pruned)
    prune.remove(pruned[2], "weight")  # baked in: converts, with the zeros
    assert int((to_graph(pruned).edge_attr == 0).sum()) >= 4
    hooked = model()
    hooked[0].register_forward_hook(lambda module, args, out: out * 2)
    with pytest.warns(UserWarning, match="'0' has forward hooks"):
        to_graph(hooked)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_graph(model())  # no hooks, no warning
