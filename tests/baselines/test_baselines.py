"""The peers: exact weight-space view, equivariance of every layer, invariance of every model, training."""

import pytest
import torch
from torch import nn

from tests.models import randomize
from wslgraph import GraphTemplate, collate, to_graph
from wslgraph.baselines import (
    BASELINES,
    NFN,
    DWSNet,
    FlatMLP,
    StatNN,
    WeightSpaceLinear,
    statnn_features,
)
from wslgraph.baselines.equivariant import from_canonical, to_canonical, weight_space_slots
from wslgraph.errors import InvalidGraphError, ShapeMismatchError, UnsupportedModuleError
from wslgraph.weightspace import (
    from_weight_space,
    hidden_permutations,
    permute_state_dict,
    to_weight_space,
    weight_space_spec,
)
from wslgraph.zoo import BasicBlock, siren, small_cnn
from wslgraph.zoo.data import load_images
from wslgraph.zoo.inr import fit_inrs

ARCHITECTURES = {"mlp": lambda: siren(hidden=(6, 5)), "cnn": lambda: small_cnn(channels=4, num_layers=2)}


def _zoo(name: str, count: int = 3, seed: int = 0) -> tuple[GraphTemplate, torch.Tensor]:
    template = GraphTemplate.from_module(ARCHITECTURES[name]())
    return template, torch.randn(count, template.num_params, generator=torch.Generator().manual_seed(seed))


def _permute_rows(template: GraphTemplate, params: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    rows = [template.flatten(permute_state_dict(template.layout, template.unflatten(row), perms)) for row in params]
    return torch.stack(rows)


def _permute_features(features, slots, perms_by_label):
    out = []
    for feature, slot in zip(features, slots):
        for axis, label in enumerate(slot.permutable, start=1):
            feature = feature.index_select(axis, perms_by_label[label])
        out.append(feature)
    return out


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_weight_space_view_round_trips_exactly(name) -> None:
    template, params = _zoo(name)
    spec = weight_space_spec(template.layout)
    weights, biases = to_weight_space(params, spec)
    assert torch.equal(from_weight_space(weights, biases, spec), params)
    state = template.unflatten(params[1])
    assert torch.equal(weights[0][1, 0], state["0.weight"]) and torch.equal(biases[-1][1, 0], state[
        list(state)[-1]])
    if name == "cnn":
        assert weights[0].shape == (3, 1, 4, 1, 3, 3) and weights[-1].shape == (3, 1, 10, 4)


def test_weight_space_view_rejects_what_it_cannot_represent() -> None:
    for model in (BasicBlock(3, 4, 2), nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)),
                  nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1))):
        with pytest.raises(UnsupportedModuleError, match="chain of Linear/Conv layers"):
            weight_space_spec(GraphTemplate.from_module(model, input_shape=(1, 4, 4) if isinstance(
                model[0] if isinstance(model, nn.Sequential) else model, nn.Conv2d) else None).layout)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("permute_io", [False, True])
def test_every_layer_is_equivariant_to_hidden_permutations(name, permute_io) -> None:
    torch.manual_seed(0)
    template, params = _zoo(name)
    spec = weight_space_spec(template.layout)
    slots = weight_space_slots(spec, permute_io)
    layer = WeightSpaceLinear(spec, 1, 3, permute_io)
    for bias in layer.bias:
        nn.init.normal_(bias)
    for trial in range(3):
        perms = hidden_permutations(template.layout, torch.Generator().manual_seed(trial))
        moved = _permute_rows(template, params, perms)
        out = layer(to_canonical(*to_weight_space(params, spec), slots))
        out_moved = layer(to_canonical(*to_weight_space(moved, spec), slots))
        for got, want in zip(out_moved, _permute_features(out, slots, dict(enumerate(perms)))):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _io_permuted(template, params, generator):
    """Permute the input and output neurons of MLPs (columns of the first weight, rows of the last layer)."""
    groups = template.layout.groups
    perms = [torch.arange(g.size) for g in groups]
    perms[0] = torch.randperm(groups[0].size, generator=generator)
    perms[-1] = torch.randperm(groups[-1].size, generator=generator)
    return perms


def test_np_without_io_embeddings_is_equivariant_to_io_permutations_and_hnp_is_not() -> None:
    torch.manual_seed(0)
    template = GraphTemplate.from_module(siren(in_features=3, hidden=(6, 5), out_features=4))
    params = torch.randn(2, template.num_params)
    spec = weight_space_spec(template.layout)
    perms = _io_permuted(template, params, torch.Generator().manual_seed(1))
    moved = _permute_rows(template, params, perms)
    np_slots, hnp_slots = weight_space_slots(spec, True), weight_space_slots(spec, False)
    np_layer, hnp_layer = WeightSpaceLinear(spec, 1, 2, True), WeightSpaceLinear(spec, 1, 2, False)
    out = np_layer(to_canonical(*to_weight_space(params, spec), np_slots))
    out_moved = np_layer(to_canonical(*to_weight_space(moved, spec), np_slots))
    for got, want in zip(out_moved, _permute_features(out, np_slots, dict(enumerate(perms)))):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # HNP keeps input/output neurons fixed: permuting them changes its (pooled) output
    pooled = [hnp_layer(to_canonical(*to_weight_space(p, spec), hnp_slots))[-1] for p in (params, moved)]
    assert (pooled[0] - pooled[1]).abs().max() > 1e-3
    # and the NP model without IO embeddings is invariant to them; with embeddings it is not
    bare, embedded = NFN(3, mode="np", io_embeddings=False), NFN(3, mode="np")
    graphs = [template.batch(p) for p in (params, moved)]
    torch.testing.assert_close(bare(graphs[0]), bare(graphs[1]), atol=1e-5, rtol=1e-5)
    assert (embedded(graphs[0]) - embedded(graphs[1])).abs().max() > 1e-4


@pytest.mark.parametrize("baseline, name", [(b, n) for b in BASELINES for n in ARCHITECTURES
                                            if (b, n) != ("dwsnet", "cnn")])  # DWSNet is MLP-only (tested below)
def test_models_are_invariant_to_hidden_permutations(baseline, name) -> None:
    torch.manual_seed(0)
    template, params = _zoo(name, count=4)
    model = BASELINES[baseline](5).eval()
    out = model(template.batch(params))
    moved = _permute_rows(template, params, hidden_permutations(template.layout, torch.Generator().manual_seed(3)))
    moved_out = model(template.batch(moved))
    if baseline.startswith("mlp") or baseline == "sane":  # flat MLPs and tokens are not invariant: they learn it
        assert (out - moved_out).abs().max() > 1e-4
    else:
        torch.testing.assert_close(moved_out, out, atol=1e-4, rtol=1e-4)


def test_statnn_features_by_hand() -> None:
    template = GraphTemplate.from_module(nn.Sequential(nn.Linear(2, 2)))
    params = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0, 20.0]])  # weight [[1, 2], [3, 4]], bias [10, 20]
    features = statnn_features(params, template.layout)
    assert features.tolist() == [[2.5, 1.25, 1.0, 1.75, 2.5, 3.25, 4.0, 15.0, 25.0, 10.0, 12.5, 15.0, 17.5, 20.0]]


@pytest.fixture(scope="module")
def tiny_zoo():
    images = load_images("mnist5k", "train")
    images = images.evenly_spaced(24)
    fit = fit_inrs(images, "dws", steps=60, progress=False)
    return fit.template.batch(fit.params), fit.labels


@pytest.mark.parametrize("baseline", list(BASELINES))
def test_a_few_training_steps_reduce_the_loss(baseline, tiny_zoo) -> None:
    torch.manual_seed(0)
    batch, labels = tiny_zoo
    model = BASELINES[baseline](10)
    model.fit_statistics(batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def eval_loss() -> float:  # without the flat MLP's training-time augmentation
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model.eval()(batch), labels))

    before = eval_loss()
    for _ in range(40):
        loss = nn.functional.cross_entropy(model.train()(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < 0.9 * before


def test_typed_errors_and_laziness() -> None:
    cnn_template, cnn_params = _zoo("cnn")
    with pytest.raises(UnsupportedModuleError, match="DWSNet handles MLPs only"):
        DWSNet(3)(cnn_template.batch(cnn_params))
    mixed = collate([to_graph(randomize(siren(), 0)), to_graph(randomize(small_cnn(), 0))])
    with pytest.raises(InvalidGraphError, match="one architecture"):
        NFN(3)(mixed)
    with pytest.raises(InvalidGraphError, match="layout="):
        StatNN(3)(cnn_params)
    model = FlatMLP(3)
    assert "lazy" in repr(model) and not list(model.parameters())
    model(cnn_template.batch(cnn_params))
    assert list(model.parameters())
    with pytest.raises(ShapeMismatchError, match="one model serves one architecture"):
        model(_zoo("mlp")[0].batch(_zoo("mlp")[1]))
    direct = NFN(3, layout=cnn_template.layout)
    assert direct(cnn_params).shape == (3, 3)
    with pytest.raises(ValueError, match="mode"):
        NFN(3, mode="full")


def test_statnn_with_gradient_boosting_predicts_cnn_accuracy() -> None:
    from wslgraph.baselines import fit_statnn_regressor
    from wslgraph.zoo.cnn import CNNZooSpec, train_cnn_zoo

    train, test = load_images("digits", "train"), load_images("digits", "test")
    zoo = train_cnn_zoo(train, test, 24, spec=CNNZooSpec(stride=1, channels=4), epochs=1, checkpoints=(1,),
                        steps_per_epoch=30, progress=False)
    regressor = fit_statnn_regressor(zoo.params[:16], zoo.test_accuracy[:16], zoo.template.layout, max_iter=50,
                                     min_samples_leaf=2)
    predicted = torch.from_numpy(regressor.predict(statnn_features(zoo.params.double(), zoo.template.layout)
                                                   .numpy()))
    train_error = (predicted[:16] - zoo.test_accuracy[:16].double()).abs().mean()
    spread = (zoo.test_accuracy[:16] - zoo.test_accuracy[:16].mean()).abs().mean()
    assert float(train_error) < 0.5 * float(spread)  # it fits the accuracies from weight statistics


@pytest.mark.parametrize("permute_io", [False, True])
@pytest.mark.parametrize("factory", [siren, small_cnn])
def test_grouped_forward_equals_the_per_term_definition(factory, permute_io) -> None:
    """forward() shares pooled means and one product per (target, kept axes); forward_per_term() is the definition."""
    template = GraphTemplate.from_module(factory())
    spec = weight_space_spec(template.layout)
    torch.manual_seed(0)
    layer = WeightSpaceLinear(spec, 3, 5, permute_io=permute_io)
    assert len(layer._groups) < len(layer.terms)
    features = [torch.randn(4, *[spec.sizes[x] for x in slot.permutable], 3 * slot.fixed_size, requires_grad=True)
                for slot in layer.slots]
    grouped, reference = layer(features), layer.forward_per_term(features)
    for a, b in zip(grouped, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    weights = [torch.randn_like(out) for out in reference]
    grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), [*features, *layer.parameters()])
             for outs in (grouped, reference)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _orbit_count(layout, spec, permute_io: bool) -> int:
    """Orbits of the neuron permutations on (output entry, input entry) pairs of a one-channel weight space: the
    dimension of the space of equivariant linear maps (for permutation representations)."""
    size = spec.num_params
    index = torch.arange(size, dtype=torch.float64)
    state = {e.key: index[layout.span(e.key)].view(e.shape) for e in layout.state}
    groups = range(len(layout.groups)) if permute_io else range(1, len(layout.groups) - 1)
    generators = []
    for g in groups:
        n = layout.groups[g].size
        for perm in ([1, 0, *range(2, n)], [*range(1, n), 0]) if n > 1 else ():
            perms = [torch.arange(group.size) for group in layout.groups]
            perms[g] = torch.tensor(perm)
            moved = permute_state_dict(layout, state, perms)
            generators.append(torch.cat([moved[e.key].reshape(-1) for e in layout.state]).long())
    parent = list(range(size * size))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for image in generators:  # entry image[k] moves to position k
        target = torch.empty(size, dtype=torch.long)
        target[image] = torch.arange(size)  # where each entry goes
        for a in range(size):
            for b in range(size):
                parent[find(a * size + b)] = find(int(target[a]) * size + int(target[b]))
    return len({find(i) for i in range(size * size)})


@pytest.mark.parametrize("permute_io", [False, True])
@pytest.mark.parametrize("model", [nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(),
                                                 nn.Linear(3, 2)),
                                   small_cnn(channels=2, num_layers=2, kernel_size=2, num_classes=2)],
                         ids=["mlp", "cnn"])
def test_the_layer_spans_every_equivariant_map(model, permute_io) -> None:
    """Completeness: the maps WeightSpaceLinear can express (one channel, no bias) span a space whose dimension is
    the number of orbits of the permutations on (output, input) entry pairs, i.e. all equivariant linear maps, and
    its weights are a basis of it. The CNN's single input channel is a one-neuron axis under NP."""
    layout = GraphTemplate.from_module(model).layout
    spec = weight_space_spec(layout)
    layer = WeightSpaceLinear(spec, 1, 1, permute_io=permute_io).double()
    basis = torch.eye(spec.num_params, dtype=torch.float64)  # every input entry at once, one per batch row
    features = to_canonical(*to_weight_space(basis, spec), layer.slots)
    columns = []
    with torch.no_grad():
        for linear in layer.maps:
            for weight in layer.maps:
                weight.weight.zero_()
            for j in range(linear.weight.numel()):
                linear.weight.view(-1).zero_()
                linear.weight.view(-1)[j] = 1.0
                weights, biases = from_canonical(layer(features), layer.slots, spec, 1)
                columns.append(from_weight_space(weights, biases, spec).reshape(-1))
    rank = int(torch.linalg.matrix_rank(torch.stack(columns, dim=1)))
    # a basis: as many weights as dimensions (no duplicate term, e.g. keep and pool of a one-neuron axis)
    assert rank == _orbit_count(layout, spec, permute_io) == len(columns)


def test_np_with_sinusoidal_io_encodings_is_fixed_breaks_io_symmetry_and_keeps_hidden_invariance() -> None:
    torch.manual_seed(0)
    template = GraphTemplate.from_module(siren(in_features=3, hidden=(6, 5), out_features=4))
    params = torch.randn(2, template.num_params)
    learned, fixed = NFN(3, mode="np", io_embeddings="learned"), NFN(3, mode="np")  # sinusoidal: NP's default
    graphs = [template.batch(p) for p in (params, _permute_rows(template, params, _io_permuted(
        template, params, torch.Generator().manual_seed(1))))]
    out = fixed(graphs[0])
    assert (out - fixed(graphs[1])).abs().max() > 1e-4  # input/output neurons are told apart
    hidden = _permute_rows(template, params, hidden_permutations(template.layout, torch.Generator().manual_seed(2)))
    torch.testing.assert_close(fixed(template.batch(hidden)), out, atol=1e-5, rtol=1e-5)
    # the same model less the learned tables: no parameters of its own, and buffers that follow .to()/state_dict
    learned(graphs[0])  # built lazily on its first batch
    tables = {name: p for name, p in learned.named_parameters() if name.startswith("io_embedding")}
    assert sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in fixed.parameters()) == sum(
        p.numel() for p in tables.values()) > 0
    buffers = {name: b for name, b in fixed.named_buffers() if name.startswith("io_encoding")}
    assert [n.removeprefix("io_encoding") for n in buffers] == [n.removeprefix("io_embedding") for n in tables]
    assert all(b.abs().max() <= 0.2 + 1e-6 for b in buffers.values())
    # distinct positions get distinct codes, on the input axis of the first weight (3 neurons)
    first = buffers[min(buffers)].reshape(-1, buffers[min(buffers)].shape[-1])
    assert torch.cdist(first, first).add(torch.eye(len(first))).min() > 1e-3
    with pytest.raises(ValueError, match="io_embeddings must be"):
        NFN(3, mode="np", io_embeddings="rotary")
    with pytest.raises(ValueError, match="apply to mode='np'"):
        NFN(3, mode="hnp", io_embeddings="sinusoidal")
