"""Hyper-representations: the objective, invariance, learning, exact resume, files and probes."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from wslgraph import GraphTemplate
from wslgraph.baselines.models import statnn_features
from wslgraph.errors import ManifestError, ZooError
from wslgraph.represent import (
    RepresentOptions,
    build_representation,
    contrastive_losses,
    embed_zoo,
    load_embeddings,
    load_representation,
    nt_xent,
    probe,
    probe_table,
    save_embeddings,
    sorted_squared_error,
    training_rows,
)
from wslgraph.tasks import TrainConfig, train_representation
from wslgraph.weightspace import BatchedModule
from wslgraph.weightspace.augment import RandomHiddenPermutation
from wslgraph.zoo.data import load_images
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import model_zoo_job
from wslgraph.zoo.storage import generate_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("represent") / "zoo"
    generate_zoo(root, model_zoo_job("mnist5k", count=20, epochs=2, steps_per_epoch=8, train_images=300,
                                     test_images=100, eval_images=100, models_per_shard=20), progress=False)
    return root


def _config(**changes) -> TrainConfig:
    return TrainConfig(**({"task": "represent", "epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
                           "progress": False, "patience": 0} | changes))


def test_nt_xent_is_simclr_loss() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    z = F.normalize(torch.cat([a, b]), dim=1)
    expected = []
    for i in range(10):
        others = [j for j in range(10) if j != i]
        positive = (i + 5) % 10
        logits = torch.stack([z[i] @ z[j] / 0.5 for j in others])
        expected.append(-(logits[others.index(positive)] - torch.logsumexp(logits, 0)))
    expected = torch.stack(expected)
    assert torch.allclose(nt_xent(a, b, 0.5), (expected[:5] + expected[5:]) / 2, atol=1e-6)
    assert float(nt_xent(a, a + 1e-3).mean()) < float(nt_xent(a, b).mean())  # matching views score lower


def test_model_positives_are_the_supervised_contrastive_loss() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(nt_xent(a, b, 0.5, torch.arange(5) * 3), nt_xent(a, b, 0.5), atol=1e-6)  # distinct
    groups = torch.tensor([4, 4, 1, 1, 7])
    labels = torch.cat([groups, groups])
    z = F.normalize(torch.cat([a, b]), dim=1)
    expected = []
    for i in range(10):  # by hand: the mean over every other row of the same model of its cross-entropy
        others = [j for j in range(10) if j != i]
        logits = torch.stack([z[i] @ z[j] / 0.5 for j in others])
        log_p = logits - torch.logsumexp(logits, 0)
        expected.append(-torch.stack([log_p[k] for k, j in enumerate(others) if labels[j] == labels[i]]).mean())
    expected = torch.stack(expected)
    got = nt_xent(a, b, 0.5, groups)
    assert torch.allclose(got, (expected[:5] + expected[5:]) / 2, atol=1e-6)
    alike_a, alike_b = a.clone(), b.clone()
    alike_a[1] = alike_b[0] = alike_b[1] = a[0]  # both checkpoints of model 4 alike in both views: lower loss
    assert bool((nt_xent(alike_a, alike_b, 0.5, groups)[:2] < got[:2]).all())
    assert torch.allclose(contrastive_losses(a, b, 0.5, groups=groups), got)


def test_grouped_batches_put_checkpoints_of_one_model_side_by_side(zoo) -> None:
    dataset = ZooDataset(zoo, "train")
    grouped = dataset.grouped("model_index", 2)
    models = dataset.arrays.columns["model_index"][dataset.indices_]
    per_model = torch.bincount(models).max()
    assert per_model == 3  # epochs 0, 1 and 2 of each model: runs of 2 and 1
    orders = []
    for seed in (0, 1):
        batches = list(grouped.batches(4, shuffle=True, generator=torch.Generator().manual_seed(seed)))
        order = torch.cat([batch.model_index for batch in batches])
        epochs = torch.cat([batch.epoch for batch in batches])
        assert sorted(zip(order.tolist(), epochs.tolist())) == sorted(zip(models.tolist(), dataset.arrays.columns[
            "epoch"][dataset.indices_].tolist()))  # every checkpoint once
        neighbours = order[1:] == order[:-1]  # every model has two checkpoints next to each other (a run of 2)
        assert set(order[1:][neighbours].tolist()) == set(models.tolist())
        runs = torch.unique_consecutive(order, return_counts=True)[1]
        assert int(runs.max()) <= 3 and len(runs) <= 2 * len(models.unique())  # a run of 2 and 1 per model
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])
    assert torch.equal(torch.cat([b.model_index for b in grouped.batches(4)]), models)  # unshuffled: split order
    with pytest.raises(ZooError, match="no 'seed_of_nothing' column"):
        dataset.grouped("seed_of_nothing", 2)


def test_model_positives_train_and_need_model_indices(zoo, tmp_path) -> None:
    from wslgraph.errors import OptionError

    options = RepresentOptions(positives="model", per_model=3, latent=8)
    train_representation(zoo, tmp_path / "run", options, _config(epochs=1))
    loaded = load_representation(tmp_path / "run", ZooDataset(zoo, None).arrays.layout)
    assert loaded.positives == "model"
    dataset = ZooDataset(zoo, "train")
    with torch.no_grad():
        assert bool(torch.isfinite(loaded(dataset.batch(range(6)))).all())
        with pytest.raises(ZooError, match="model_index"):
            loaded(GraphTemplate(dataset.arrays.layout).batch(dataset.params(range(6))))  # a batch without columns
    with pytest.raises(OptionError, match="per_model"):
        RepresentOptions(positives="model", per_model=1)
    with pytest.raises(OptionError, match="graph encoder"):
        RepresentOptions(encoder="sane", positives="model")


def test_sorted_error_is_the_wasserstein_distance_of_each_tensor_and_ignores_reordering() -> None:
    torch.manual_seed(0)
    decoded, target = torch.randn(3, 9), torch.randn(3, 9)
    spans = [slice(0, 4), slice(4, 8)]  # the last value is a one-number tensor, compared as it is
    expected = torch.zeros(3)
    for row in range(3):
        for span in spans:  # hand-written 1-D Wasserstein-2: match the i-th smallest values
            a, b = sorted(decoded[row, span].tolist()), sorted(target[row, span].tolist())
            expected[row] += sum((x - y) ** 2 for x, y in zip(a, b))
        expected[row] += float(decoded[row, 8] - target[row, 8]) ** 2
    got = sorted_squared_error(decoded, target, spans)
    assert torch.allclose(got, expected / 9, atol=1e-6)
    assert bool((got <= (decoded - target).square().mean(1) + 1e-7).all())  # at most the plain MSE
    shuffled = target.clone()
    shuffled[:, 0:4] = target[:, torch.tensor([2, 0, 3, 1])]
    shuffled[:, 4:8] = target[:, torch.tensor([7, 6, 4, 5])]
    assert torch.allclose(sorted_squared_error(decoded, shuffled, spans), got)
    moved = target.clone()
    moved[:, 8] = moved[:, 8] + 1.0  # the single value is not sorted away
    assert not torch.allclose(sorted_squared_error(decoded, moved, spans), got)


def test_sorted_error_with_tails_weighs_positions_by_their_normal_score_spacing(zoo) -> None:
    import math
    from statistics import NormalDist

    from wslgraph.errors import OptionError
    from wslgraph.represent import tail_weights

    weights = [1 / NormalDist().pdf(NormalDist().inv_cdf((i + 0.5) / 4)) for i in range(4)]  # by hand
    assert torch.allclose(tail_weights(4, torch.float64),
                          torch.tensor(weights, dtype=torch.float64) / (sum(weights) / 4), atol=1e-9)
    assert math.isclose(float(tail_weights(1000).mean()), 1.0, rel_tol=1e-5)
    torch.manual_seed(0)
    decoded, target = torch.randn(2, 9), torch.randn(2, 9)
    spans = [slice(0, 4), slice(4, 8)]
    expected = torch.zeros(2)
    w = tail_weights(4)
    for row in range(2):
        for span in spans:
            a, b = sorted(decoded[row, span].tolist()), sorted(target[row, span].tolist())
            expected[row] += sum(float(w[i]) * (x - y) ** 2 for i, (x, y) in enumerate(zip(a, b)))
        expected[row] += float(decoded[row, 8] - target[row, 8]) ** 2
    assert torch.allclose(sorted_squared_error(decoded, target, spans, tails=True), expected / 9, atol=1e-6)
    # an error at a tensor's extreme costs more than the same error in its middle; without tails they cost the same
    base = torch.arange(8.0)[None]
    extreme, middle = base.clone(), base.clone()
    extreme[0, 7] += 0.5
    middle[0, 3] += 0.5
    one = [slice(0, 8)]
    assert float(sorted_squared_error(extreme, base, one, tails=True)) > 2 * float(
        sorted_squared_error(middle, base, one, tails=True))
    assert torch.allclose(sorted_squared_error(extreme, base, one), sorted_squared_error(middle, base, one))
    dataset = ZooDataset(zoo, "train")  # the option reaches the loss
    model = build_representation(dataset.arrays.layout, RepresentOptions(sorted_weight=1.0, sorted_tails=True),
                                 seed=0)
    model.fit_statistics([dataset.batch(range(16))]).eval()
    with torch.no_grad():
        batch = dataset.batch(range(4))
        decoded = model.decoder(model.embed(batch))
        target = (dataset.params(range(4)) - model.param_mean) / model.param_std
        tailed = sorted_squared_error(decoded, target, model._spans, tails=True)
        assert torch.allclose(model.reconstruction_error(batch, sorted_weight=1.0), tailed, atol=1e-6)
        assert not torch.allclose(tailed, sorted_squared_error(decoded, target, model._spans))
    with pytest.raises(OptionError, match="sorted_tails"):
        RepresentOptions(sorted_tails=True)  # no sorted MSE to weigh


def test_sorted_weight_mixes_the_reconstruction_terms(zoo) -> None:
    from wslgraph.errors import OptionError

    dataset = ZooDataset(zoo, "train")
    layout = dataset.arrays.layout
    model = build_representation(layout, RepresentOptions(sorted_weight=0.25), seed=0)
    model.fit_statistics([dataset.batch(range(16))]).eval()
    batch = dataset.batch(range(6))
    with torch.no_grad():
        latent = model.embed(batch)
        decoded = model.decoder(latent)
        target = (dataset.params(range(6)) - model.param_mean) / model.param_std
        spans = [layout.span(entry.key) for entry in layout.state if entry.numel > 1]
        exact, ordered = (decoded - target).square().mean(1), sorted_squared_error(decoded, target, spans)
        assert bool((ordered < exact).all())
        assert torch.allclose(model.reconstruction_error(batch), exact, atol=1e-6)
        mixed = 0.75 * exact + 0.25 * ordered
        assert torch.allclose(model.reconstruction_error(batch, sorted_weight=model.sorted_weight), mixed, atol=1e-6)
        projected = model.projector(latent)  # eval mode: both views are the model itself
        contrast = contrastive_losses(projected, projected, model.temperature, gather=False)
        assert torch.allclose(model(batch), 0.5 * contrast + 0.5 * mixed, atol=1e-5)
    with pytest.raises(OptionError, match="sorted_weight"):
        RepresentOptions(sorted_weight=1.5)
    with pytest.raises(OptionError, match="graph encoder"):
        RepresentOptions(encoder="sane", sorted_weight=0.5)


def test_statistics_source_model_reads_the_unaugmented_models_statistics_in_both_views(zoo, monkeypatch) -> None:
    import wslgraph.represent.model as module
    from wslgraph.errors import OptionError

    dataset = ZooDataset(zoo, "train")
    layout = dataset.arrays.layout
    rows, batch = dataset.params(range(6)), dataset.batch(range(6))
    read, computed = {}, []
    inner = module.statnn_features
    monkeypatch.setattr(module, "statnn_features", lambda r, layout: computed.append(len(r)) or inner(r, layout))
    for source in ("views", "model"):
        model = build_representation(layout, RepresentOptions(statistics=True, statistics_source=source, latent=8,
                                                              statistics_weight=1.0), seed=0)
        model.fit_statistics([dataset.batch(range(16))])
        seen = []  # what the statistics branch reads
        model.statistics_net.register_forward_pre_hook(lambda _, args, seen=seen: seen.append(args[0].clone()))
        computed.clear()
        model.train()(batch)
        # s(W) of the models themselves once (branch and read-out), and with views each view's own too
        assert computed == [6] * (1 if source == "model" else 3)
        read[source] = seen
        with torch.no_grad():  # eval: the model itself, whichever the source
            model.eval()(batch)
        own = model.standard_statistics(rows)
    assert len(read["model"]) == len(read["views"]) == 3  # two training views, then one evaluation
    assert all(torch.equal(r, own) for r in read["model"])
    assert not any(torch.allclose(r, own) for r in read["views"][:2]) and torch.equal(read["views"][2], own)
    assert not torch.allclose(read["views"][0], read["views"][1])  # the views differ, and so did what they read
    with pytest.raises(OptionError, match="statistics_source"):
        RepresentOptions(statistics=True, statistics_source="clean")
    with pytest.raises(OptionError, match="--statistics"):
        RepresentOptions(statistics_source="model")
    with pytest.raises(OptionError, match="statistics_merge"):
        RepresentOptions(statistics=True, statistics_merge="sum")
    from wslgraph.nn import GNNEncoder
    from wslgraph.represent import HyperRepresentation

    whole = HyperRepresentation(layout, GNNEncoder(8, hidden=8, num_layers=1), 8, statistics=True,
                                statistics_merge="concat")  # an encoder built for the whole latent, not half
    whole.fit_statistics([dataset.batch(range(16))])
    with pytest.raises(ValueError, match="out_dim=4"):
        whole.embed(batch)
    with pytest.raises(OptionError, match="beside the encoder"):
        RepresentOptions(statistics_merge="concat")  # no statistics branch to put beside the encoder
    with pytest.raises(OptionError, match="beside the encoder"):
        RepresentOptions(statistics=True, statistics_merge="concat", latent=1)


def test_statistics_weight_adds_a_linear_read_out_of_the_statistics(zoo) -> None:
    from wslgraph.errors import OptionError
    from wslgraph.represent import kept_rows

    dataset = ZooDataset(zoo, "train")
    layout = dataset.arrays.layout
    dataset = dataset.where(kept_rows(dataset.arrays.params, RepresentOptions().max_weight))  # what it trains on
    model = build_representation(layout, RepresentOptions(statistics_weight=0.5, latent=8), seed=0)
    model.fit_statistics([dataset.batch(range(dataset.len()))]).eval()
    rows = dataset.params(range(6))
    batch = dataset.batch(range(6))
    with torch.no_grad():
        raw = statnn_features(rows, layout)
        standard = (torch.asinh(raw / model.stat_scale) - model.stat_mean) / model.stat_std  # by hand
        assert torch.allclose(model.standard_statistics(rows), standard, atol=1e-6)
        latent = model.embed(batch)  # no statistics branch: the latent is the encoder's alone
        assert torch.allclose(latent, model.encoder(batch), atol=1e-6)
        projected = model.projector(latent)
        contrast = contrastive_losses(projected, projected, model.temperature, gather=False)
        read = (model.statistics_head(latent) - standard).square().mean(1)
        expected = 0.5 * contrast + 0.5 * (model.reconstruction_error(batch) + 0.5 * read)
        assert torch.allclose(model(batch), expected, atol=1e-5)
    # that the read-out learns is tested with the reconstruction (test_representation_learns_to_reconstruct_its_zoo)
    with pytest.raises(OptionError, match="statistics_weight"):
        RepresentOptions(statistics_weight=-1.0)
    with pytest.raises(OptionError, match="graph encoder"):
        RepresentOptions(encoder="sane", statistics_weight=1.0)


def test_normal_scores_are_scikit_learns_quantile_transform() -> None:
    from sklearn.preprocessing import QuantileTransformer

    from wslgraph.represent.model import RANK_LEVELS, normal_scores

    generator = torch.Generator().manual_seed(0)
    spread = torch.tensor([1.0, 1e-4, 1e3], dtype=torch.float64)  # s(W) spans orders of magnitude
    for count in (300, 4000):  # fewer fitting rows than levels (the rows themselves) and more
        fit = torch.randn(count, 3, generator=generator, dtype=torch.float64) * spread
        fit[:, 2] = (fit[:, 2] / 1e3).exp() * 1e3  # skewed
        fresh = torch.randn(200, 3, generator=generator, dtype=torch.float64) * spread * 1.5  # also outside
        used = min(RANK_LEVELS, count)
        quantiles = torch.quantile(fit, torch.linspace(0, 1, used, dtype=torch.float64), dim=0)
        reference = QuantileTransformer(n_quantiles=used, output_distribution="normal").fit(fit.numpy())
        for rows in (fit, fresh):
            assert torch.allclose(normal_scores(rows, quantiles), torch.from_numpy(reference.transform(rows.numpy())),
                                  atol=1e-6)
    ties = torch.tensor([[0.0], [0.0], [0.0], [1.0], [2.0]], dtype=torch.float64)  # a value at several levels
    scores = normal_scores(torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64), ties)
    assert torch.allclose(scores[:2, 0], torch.tensor([-0.6745, 0.6745], dtype=torch.float64), atol=1e-4)  # u 1/4, 3/4
    assert float(scores[2, 0]) > 5.1  # past the last quantile: the upper bound, 1 - 1e-7
    assert torch.equal(normal_scores(torch.randn(4, 3), torch.randn(1, 3)), torch.zeros(4, 3))  # one fitting row


@pytest.mark.parametrize("units", ["rank", "both"])
def test_statistics_read_out_in_rank_units(zoo, units) -> None:
    from wslgraph.errors import OptionError
    from wslgraph.represent import kept_rows
    from wslgraph.represent.model import normal_scores

    dataset = ZooDataset(zoo, "train")
    layout = dataset.arrays.layout
    dataset = dataset.where(kept_rows(dataset.arrays.params, RepresentOptions().max_weight))
    model = build_representation(layout, RepresentOptions(statistics_weight=0.5, latent=8, statistics_units=units),
                                 seed=0)
    everything = dataset.params()
    model.fit_statistics([dataset.batch(range(dataset.len()))]).eval()
    assert int(model.stat_levels) == min(1000, dataset.len())
    with torch.no_grad():
        raw = statnn_features(everything, layout)
        # the fitting rows' quantiles, by hand; their own normal scores are then spread about 0 with unit variance
        levels = torch.linspace(0, 1, int(model.stat_levels), dtype=torch.float64)
        scores = normal_scores(raw, torch.quantile(raw.double(), levels, dim=0))
        target = model.statistics_targets(everything)
        standard = model.standard_statistics(everything)
        expected = scores.float() if units == "rank" else torch.cat([standard, scores.float()], 1)
        assert target.shape == (dataset.len(), (1 if units == "rank" else 2) * 7 * len(layout.state))
        assert torch.allclose(target, expected, atol=1e-5)
        ordered = scores.gather(0, raw.double().argsort(0))  # ranks kept: non-decreasing in each statistic
        assert bool((ordered.diff(dim=0) >= -1e-9).all()) and float(scores.mean().abs()) < 0.05
        batch = dataset.batch(range(6))
        latent = model.embed(batch)
        projected = model.projector(latent)
        contrast = contrastive_losses(projected, projected, model.temperature, gather=False)
        read = (model.statistics_head(latent) - target[:6]).square().mean(1) * (2 if units == "both" else 1)
        expected = 0.5 * contrast + 0.5 * (model.reconstruction_error(batch) + 0.5 * read)
        assert torch.allclose(model(batch), expected, atol=1e-5)
    # the read-out learns in these units: a few hundred steps of the head alone on the fixed latents
    head = torch.nn.Linear(8, target.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    with torch.no_grad():
        latents = model.embed(dataset.batch(range(dataset.len())))
    for _ in range(300):
        optimizer.zero_grad()
        loss = (head(latents) - target).square().mean()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.9 * float(target.square().mean())
    with pytest.raises(OptionError, match="statistics_units"):
        RepresentOptions(statistics_units="rank")  # no read-out to put in those units
    with pytest.raises(OptionError, match="statistics_units"):
        RepresentOptions(statistics_weight=1.0, statistics_units="quantile")


@pytest.mark.parametrize(("encoder", "statistics", "merge"),
                         [("gnn", False, "add"), ("transformer", False, "add"), ("gnn", True, "add"),
                          ("transformer", True, "concat")])
def test_embeddings_and_reconstructions_are_invariant_to_hidden_permutations(zoo, encoder, statistics,
                                                                             merge) -> None:
    dataset = ZooDataset(zoo, "train")
    options = RepresentOptions(encoder=encoder, statistics=statistics, sorted_weight=0.5 if statistics else 0.0,
                               statistics_merge=merge)
    model = build_representation(dataset.arrays.layout, options, seed=0)
    model.fit_statistics([dataset.batch(range(16))]).eval()
    rows = dataset.params(range(16))
    permuted = RandomHiddenPermutation(dataset.arrays.layout, seed=3)(rows)
    assert not torch.equal(permuted, rows)
    with torch.no_grad():
        original = model.embed(dataset.template.batch(rows))
        moved = model.embed(dataset.template.batch(permuted))
        assert torch.allclose(original, moved, atol=1e-5)
        assert torch.allclose(model.decode(original), model.decode(moved), atol=1e-5)
        if statistics:  # the statistics branch reads the weights: a change beyond the symmetry moves the latent
            alone = model.statistics_net((torch.asinh(statnn_features(rows, dataset.arrays.layout)
                                                      / model.stat_scale) - model.stat_mean) / model.stat_std)
            encoded = model.encoder(dataset.template.batch(rows))
            if merge == "add":
                assert torch.allclose(original, encoded + alone, atol=1e-5)
                scaled = model.embed(dataset.template.batch(rows * 2)) - model.encoder(dataset.template.batch(rows * 2))
            else:  # side by side: 32 - 32 // 2 features of the encoder, then the branch's 16
                assert encoded.shape[1] == 16 and alone.shape[1] == 16
                assert torch.allclose(original, torch.cat([encoded, alone], dim=1), atol=1e-5)
                scaled = model.embed(dataset.template.batch(rows * 2))[:, 16:]
            assert (scaled - alone).abs().max() > 0.1
    loss = model.train()(dataset.batch(range(8)))  # the training objective runs and back-propagates
    assert loss.shape == (8,) and bool(torch.isfinite(loss).all())
    loss.mean().backward()
    assert model.decoder[0].weight.grad is not None and int(model.draws) == 1


def test_precise_batch_norm_reads_the_models_not_the_augmented_views(zoo) -> None:
    import copy

    from wslgraph.nn import GraphBatchNorm, recompute_batch_norm

    dataset = ZooDataset(zoo, "train")
    model = build_representation(dataset.arrays.layout, RepresentOptions(), seed=0)
    model.fit_statistics([dataset.batch(range(16))]).eval()
    batches = [dataset.batch(range(i, i + 8)) for i in (0, 8)]
    inputs: list[torch.Tensor] = []  # by hand: what reaches the norm as the clean models are embedded, training mode
    norm = next(m for m in model.modules() if isinstance(m, GraphBatchNorm))
    handle = norm.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach()))
    with torch.no_grad():
        model.train()
        for batch in batches:
            model.embed(batch)
        handle.remove()
        views = copy.deepcopy(model)
        model.eval()
        assert recompute_batch_norm(model, batches) == 2
    torch.testing.assert_close(norm.running_mean, torch.stack([x.mean(0) for x in inputs]).mean(0))
    torch.testing.assert_close(norm.running_var, torch.stack([x.var(0) for x in inputs]).mean(0))
    assert int(model.draws) == 0 and not model.training  # no views drawn: the augmentation stream is untouched
    # the training views (noise, erasing) give other statistics: these are not what evaluation should use
    view_norm = next(m for m in views.modules() if isinstance(m, GraphBatchNorm))
    with torch.no_grad():
        for number, batch in enumerate(batches):
            view_norm.momentum = 1.0 / (number + 1)
            views(batch)
    assert int(views.draws) == 2
    assert not torch.allclose(view_norm.running_var, norm.running_var, rtol=1e-3)


def test_representation_learns_to_reconstruct_its_zoo(zoo, tmp_path) -> None:
    from wslgraph.errors import OptionError
    from wslgraph.represent import kept_rows

    dataset = ZooDataset(zoo, "train")
    keep = kept_rows(dataset.arrays.params, RepresentOptions().max_weight)
    assert 0 < int(keep.sum()) < len(keep)  # the grid's uniform/normal inits diverge in some models
    dataset = dataset.where(keep)
    assert dataset.len() == int(keep[ZooDataset(zoo, "train").indices_].sum())
    with pytest.raises(ZooError, match="boolean mask"):
        dataset.where(torch.ones(3))
    # one training run for two claims: it learns to reconstruct, and (with the linear read-out of the statistics
    # on, statistics_weight) to read its models' standardised statistics off the latent
    options = RepresentOptions(statistics_weight=1.0)
    everything = dataset.batch(range(dataset.len()))

    def errors(model: object) -> tuple[float, float]:
        with torch.no_grad():
            read = model.statistics_head(model.embed(everything)) - model.standard_statistics(dataset.params())
            return float(model.reconstruction_error(everything).mean()), float(read.square().mean())

    before = build_representation(dataset.arrays.layout, options, seed=0)
    start, start_read = errors(before.fit_statistics([everything]).eval())
    # the last epoch's weights, not the best by validation loss on 2 models' checkpoints: on this zoo that choice
    # fell on epoch 8 of 30 in one run (error 0.45 of the start against 0.22 for the last weights); measured at 30
    # epochs: 0.154 of the start, and a read-out error of 0.217 against 0.997
    train_representation(zoo, tmp_path / "run", options, _config(epochs=30))
    after = load_representation(tmp_path / "run", dataset.arrays.layout, weights="last")
    with pytest.raises(OptionError, match="weights="):
        load_representation(tmp_path / "run", weights="first")
    error, read = errors(after)
    with torch.no_grad():
        decoded = after.reconstruct(dataset.batch(range(4)))
    assert start > 0.5 and error < 0.25 * start  # standardised units: 1.0 is predicting each layer's mean
    assert read < 0.5 * start_read and read < 0.5  # 1.0: predicting each statistic's mean
    assert decoded.shape == (4, dataset.arrays.layout.num_params)


def test_an_interrupted_run_resumes_to_the_same_result(zoo, tmp_path, monkeypatch) -> None:
    from wslgraph.tasks import loop

    train_representation(zoo, tmp_path / "whole", RepresentOptions(), _config(epochs=3))
    evaluate, calls = loop.evaluate, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after training epoch 2 (its views drawn), before its checkpoint
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_representation(zoo, tmp_path / "split", RepresentOptions(), _config(epochs=3))
    monkeypatch.setattr(loop, "evaluate", evaluate)
    manifest = tmp_path / "split" / "represent.json"  # as written before the option train_on existed
    saved = json.loads(manifest.read_text())
    del saved["options"]["train_on"]
    manifest.write_text(json.dumps(saved))
    train_representation(zoo, tmp_path / "split", RepresentOptions(), _config(epochs=3))
    whole, split = (load_file(tmp_path / run / "checkpoint.safetensors") for run in ("whole", "split"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
    assert int(whole["model.draws"]) > 0  # the views' counter travels with the checkpoint
    with pytest.raises(ManifestError, match="other options"):
        train_representation(zoo, tmp_path / "whole", RepresentOptions(latent=8), _config(epochs=3))


def test_files_refuse_what_is_not_theirs(zoo, tmp_path) -> None:
    with pytest.raises(ManifestError, match="not a finished representation run"):
        load_representation(tmp_path)
    train_representation(zoo, tmp_path / "run", RepresentOptions(latent=8), _config(epochs=1))
    other = tmp_path / "other"
    generate_zoo(other, model_zoo_job("mnist5k", count=10, epochs=1, steps_per_epoch=2, train_images=100,
                                      test_images=50, eval_images=50), progress=False)
    dataset, other_set = ZooDataset(zoo, None), ZooDataset(other, None)
    model = load_representation(tmp_path / "run", dataset.arrays.layout)
    save_embeddings(tmp_path / "e.safetensors", embed_zoo(model, dataset), dataset, tmp_path / "run")
    assert load_embeddings(tmp_path / "e.safetensors", dataset).shape == (len(dataset), 8)
    with pytest.raises(ZooError, match="another zoo"):
        load_embeddings(tmp_path / "e.safetensors", other_set)
    from wslgraph import GraphTemplate
    from wslgraph.zoo import small_cnn
    with pytest.raises(ManifestError, match="another architecture"):
        load_representation(tmp_path / "run", GraphTemplate.from_module(small_cnn()).layout)
    with pytest.raises(ZooError, match="rows"):
        probe_table({"x": torch.zeros(3, 2)}, dataset.arrays.columns)


def test_probes_recover_what_the_features_hold() -> None:
    generator = torch.Generator().manual_seed(0)
    groups = torch.arange(200).repeat_interleave(3)
    features = torch.randn(600, 6, generator=generator)
    linear = features @ torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 0.0])
    assert probe(features.numpy(), linear.numpy(), groups.numpy(), "regression") > 0.99
    noise = torch.randn(600, generator=generator)
    assert probe(features.numpy(), noise.numpy(), groups.numpy(), "regression") < 0.05
    labels = (features[:, 0] > 0).long()
    assert probe(features.numpy(), labels.numpy(), groups.numpy(), "classification") > 0.95
    # a property of each model that its features do not hold, the features near-copies within a model (the
    # checkpoints of one run): a ridge penalty chosen by leave-one-row-out memorises the models (R² -0.38 on
    # this draw, -0.17 to -0.33 on four others); grouped inner folds choose a large one and predict about the mean
    per_model = torch.randn(200, 40, generator=generator)
    models = torch.arange(200).repeat_interleave(10)
    copies = per_model[models] + 0.05 * torch.randn(2000, 40, generator=generator)
    unrelated = torch.randn(200, generator=generator)[models]
    assert -0.1 < probe(copies.numpy(), unrelated.numpy(), models.numpy(), "regression") < 0.05
    with pytest.raises(ZooError, match="at least 5 models"):
        probe(features[:9].numpy(), linear[:9].numpy(), groups[:9].numpy(), "regression")
    with pytest.raises(ZooError, match="none of the probed properties"):
        probe_table({"x": features}, {"model_index": groups, "label": labels})


def test_probe_units_and_their_choice_by_inner_folds() -> None:
    generator = torch.Generator().manual_seed(0)
    groups = torch.arange(150).repeat_interleave(2).numpy()
    features = torch.randn(300, 4, generator=generator).exp() ** 2  # heavy-tailed, as raw weight statistics
    raw = features[:, 0] + 0.5 * features[:, 1]  # linear in the raw values: standardised units read it
    ranks = torch.erfinv(2 * (torch.argsort(torch.argsort(features[:, 0])) + 0.5) / 300 - 1)  # linear in ranks
    for target, best_units in ((raw, "standard"), (ranks, "rank")):
        scores = {units: probe(features.numpy(), target.numpy(), groups, "regression", scaling=units)
                  for units in ("rank", "asinh", "standard", "auto")}
        assert scores[best_units] > 0.95 and min(scores.values()) < scores[best_units] - 0.05, scores
        # each fold chose its units by its inner folds: as good as the best units, better than the worst
        assert scores["auto"] > scores[best_units] - 0.01, scores
    with pytest.raises(ValueError, match="'auto'"):
        probe(features.numpy(), raw.numpy(), groups, "regression", scaling="log")


def test_cli_represent_embed_probe(zoo, tmp_path, capsys) -> None:
    from wslgraph.cli import main

    run = tmp_path / "run"
    assert main(["represent", str(zoo), "--out", str(run), "--epochs", "1", "--batch-size", "8", "--latent", "8",
                 "--supervised", "transformer", "--supervised-epochs", "1", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| test_accuracy | R2 |" in table and "hyper-representation" in table and "s(W)" in table
    assert "| both |" in table and "| supervised transformer |" in table  # the embedding and s(W) together
    rows = json.loads((run / "probes.json").read_text())
    assert {row["target"] for row in rows} >= {"test_accuracy", "init"}
    assert all(-10 < row["supervised transformer"] <= 1 for row in rows)
    assert (run / "embeddings.png").stat().st_size > 1000
    assert main(["embed", str(run), str(zoo), "--out", str(tmp_path / "e.safetensors"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["probe", str(zoo), "--embeddings", str(tmp_path / "e.safetensors"), "--supervised", "gnn",
                 "--supervised-epochs", "1", "--json", str(tmp_path / "probes.json"), "--statistics-asinh",
                 "--units", "standard", "--quiet"]) == 0
    assert "| supervised gnn |" in capsys.readouterr().out
    written = json.loads((tmp_path / "probes.json").read_text())
    assert all(-10 < row["supervised gnn"] <= 1 for row in written) and len(written) >= 5
    assert all(-10 < row["s(W), asinh"] <= 1 for row in written)  # s(W) in the read-out's units, beside
    assert any(row["s(W), asinh"] != row["s(W)"] for row in written)  # ... beside s(W) standardised only
    # --units: every other feature set in other units than represent's own probes (ranks) of the same embeddings
    assert [row["target"] for row in written] == [row["target"] for row in rows]
    for name in ("s(W)", "hyper-representation"):
        assert any(row[name] != ranked[name] for row, ranked in zip(written, rows))
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit
        main(["probe", str(zoo), "--embeddings", str(tmp_path / "e.safetensors"), "--supervised", "mlp"])
    assert stopped.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["embed", str(run), str(zoo), "--split", "test", "--out", str(tmp_path / "t.safetensors"),
                 "--quiet"]) == 0
    assert main(["probe", str(zoo), "--embeddings", str(tmp_path / "t.safetensors")]) == 2  # not every row
    assert "another zoo or split" in capsys.readouterr().err
    assert main(["sample", str(run), "--out", str(tmp_path / "s"), "--count", "2", "--top-k", "4",
                 "--finetune-epochs", "1"]) == 0
    assert "| sampled |" in capsys.readouterr().out and (tmp_path / "s" / "sample-001.safetensors").exists()
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "s2")]) == 2  # not a run folder
    stats = tmp_path / "stats"  # the statistics branch and the sorted loss go through represent.json and back
    assert main(["represent", str(zoo), "--out", str(stats), "--epochs", "1", "--batch-size", "8", "--latent", "8",
                 "--statistics", "--sorted-weight", "0.5", "--positives", "model", "--per-model", "2",
                 "--statistics-weight", "0.5", "--statistics-source", "model", "--statistics-merge", "concat",
                 "--train-on", "all", "--no-probe", "--quiet"]) == 0
    loaded = load_representation(stats, ZooDataset(zoo, None).arrays.layout)
    assert loaded.statistics and loaded.sorted_weight == 0.5 and float(loaded.stat_scale.min()) > 0
    assert loaded.statistics_weight == 0.5 and loaded.statistics_head.out_features == 7 * len(loaded.layout.state)
    assert loaded.positives == "model" and loaded.statistics_source == "model"
    assert loaded.statistics_merge == "concat" and loaded.statistics_net[-1].out_features == 4  # latent 8 // 2
    assert json.loads((stats / "represent.json").read_text())["options"]["per_model"] == 2
    assert json.loads((stats / "represent.json").read_text())["options"]["train_on"] == "all"
    assert main(["embed", str(stats), str(zoo), "--out", str(tmp_path / "s.safetensors"), "--quiet"]) == 0


def test_density_samples_stay_near_the_embeddings() -> None:
    from wslgraph.represent.sample import sample_embeddings

    generator = torch.Generator().manual_seed(0)
    points = torch.randn(40, 4, generator=generator) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + 3
    for method in ("kde", "subsample", "bootstrap"):
        draws = sample_embeddings(points, 400, method=method, seed=1)
        assert draws.shape == (400, 4)
        assert torch.allclose(draws.mean(0), points.mean(0), atol=0.35 * float(points.std(0).max()))
        assert torch.allclose(draws.std(0), points.std(0), rtol=0.5)
    assert torch.equal(sample_embeddings(points, 5, seed=2), sample_embeddings(points, 5, seed=2))
    with pytest.raises(ValueError, match="method"):
        sample_embeddings(points, 5, method="gan")
    with pytest.raises(ValueError, match="bandwidth"):
        sample_embeddings(points, 5, bandwidth=-1.0)


def test_density_samples_stay_in_the_span_of_their_anchors() -> None:
    """A latent of many coordinates around few anchors: draws are anchors plus a fraction of the anchors' own
    spread, in their affine span (an isotropic kernel would leave it in every coordinate)."""
    from wslgraph.represent.sample import sample_embeddings

    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 500, generator=generator, dtype=torch.float64)
    anchors = (torch.randn(10, 3, generator=generator, dtype=torch.float64) @ basis + 2).float()
    centre = anchors.double().mean(0)
    for bandwidth in (None, 0.5, "scott"):
        draws = sample_embeddings(anchors, 50, bandwidth=bandwidth, seed=3).double()
        offsets = draws - centre
        residual = offsets - offsets @ torch.linalg.pinv(basis) @ basis  # what lies outside the anchors' span
        assert float(residual.norm() / offsets.norm()) < 1e-5
    exact = sample_embeddings(anchors, 20, bandwidth=0.0, seed=4)
    assert bool((torch.cdist(exact, anchors).min(1).values < 1e-4).all())  # bandwidth 0: the anchors themselves
    near = sample_embeddings(anchors, 200, seed=5)
    spread = float((anchors - anchors.mean(0)).norm(dim=1).mean())
    distance = torch.cdist(near, anchors).min(1).values
    assert 0.05 * spread < float(distance.median()) < 0.4 * spread  # new points, close to their anchors


def test_sequential_generation_conditions_each_window_on_the_ones_before() -> None:
    """Window by window: with a narrow kernel each window comes from an anchor that agrees with the window before
    it, so two anchors that share their first window can each supply the second, and anchors that differ there
    never mix; bandwidth 0 gives anchors' own windows."""
    from wslgraph.represent.sample import sample_models, sample_sequences

    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(3, 2, 4, generator=generator) * 10, torch.randn(4, 2, 4, generator=generator) * 10
    # anchors 0 and 1 share first window 0; anchors 2, 3 have their own first windows 1, 2
    anchors = torch.stack([torch.cat([first[a], second[b]]) for a, b in ((0, 0), (0, 1), (1, 2), (2, 3))])
    windows = [slice(0, 2), slice(2, 4)]
    drawn = sample_sequences(anchors, 400, windows, bandwidth=0.0, seed=1)
    assert drawn.shape == (400, 4, 4)

    def which(parts: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        return torch.cdist(parts.flatten(1), pool.flatten(1)).argmin(1)

    heads, tails = which(drawn[:, :2], first), which(drawn[:, 2:], second)
    assert torch.allclose(drawn[:, :2], first[heads]) and torch.allclose(drawn[:, 2:], second[tails])
    pairs = {(int(h), int(t)) for h, t in zip(heads, tails)}
    assert pairs == {(0, 0), (0, 1), (1, 2), (2, 3)}  # both continuations of the shared start, no other mixing
    narrow = sample_sequences(anchors, 200, windows, bandwidth=0.01, seed=2)
    assert {(int(h), int(t)) for h, t in zip(which(narrow[:, :2], first), which(narrow[:, 2:], second))} <= pairs
    with pytest.raises(ValueError, match=r"\[k, T, latent\]"):
        sample_sequences(anchors.flatten(1), 3, windows)
    from wslgraph.represent.model import HyperRepresentation

    with pytest.raises(ValueError, match="token representation"):
        sample_models(HyperRepresentation.__new__(HyperRepresentation), anchors.flatten(1), 2, method="sequential")


def test_training_rows_select_a_population_for_generation(zoo, tmp_path) -> None:
    from wslgraph.represent import kept_rows
    from wslgraph.tasks.represent import novelty

    arrays = ZooDataset(zoo, None).arrays
    columns, vocab = arrays.columns, arrays.vocab["activation"]
    relu = columns["activation"] == vocab.index("relu")
    threshold = 0.1  # the tiny zoo's ReLU models have rows at or above it in every split
    rows = training_rows(arrays, RepresentOptions(activation="relu", min_accuracy=threshold))
    expected = kept_rows(arrays.params, 10.0) & relu & (columns["test_accuracy"] >= threshold)
    assert torch.equal(rows, expected) and 0 < int(rows.sum()) < len(rows)
    assert torch.equal(training_rows(arrays, RepresentOptions()), kept_rows(arrays.params, 10.0))
    with pytest.raises(ZooError, match="'swish' is not in this zoo"):
        training_rows(arrays, RepresentOptions(activation="swish"))
    with pytest.raises(ZooError, match="loosen the selection"):
        training_rows(arrays, RepresentOptions(min_accuracy=1.0))
    with pytest.raises(ValueError, match="between 0 and 1"):
        RepresentOptions(min_accuracy=3.0)
    from wslgraph.tasks import sample_zoo

    options = RepresentOptions(latent=8, activation="relu", min_accuracy=threshold)
    train_representation(zoo, tmp_path / "run", options, _config(epochs=1))
    report = sample_zoo(tmp_path / "run", tmp_path / "samples", count=2, top_k=50, evaluate=False)
    top = torch.tensor(report["top_rows"])
    train = torch.zeros(len(rows), dtype=torch.bool)
    train[ZooDataset(zoo, "train").indices_] = True
    assert report["activation"] == "relu" and bool((rows & train)[top].all())  # anchors: rows the decoder learned
    assert len(top) == int((rows & train).sum())
    with pytest.raises(ZooError, match="trained on relu models only"):
        sample_zoo(tmp_path / "run", tmp_path / "other", activation="tanh", evaluate=False)
    with pytest.raises(ZooError, match="no rows of the train split"):
        train_representation(zoo, tmp_path / "empty", RepresentOptions(activation="tanh", min_accuracy=0.1))
    assert not (tmp_path / "other").exists()
    anchors = arrays.params[:4]
    assert novelty(anchors, anchors)["sample_to_anchor"] == 0.0
    from wslgraph import GraphTemplate

    batch_norm = GraphTemplate.from_module(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)))
    rows = torch.stack([batch_norm.flatten(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
                                           .state_dict())] * 2)
    counter = batch_norm.layout.span("1.num_batches_tracked")
    rows[:, counter] = 160.0  # 160 steps: a counter, not a diverged weight
    rows[:, batch_norm.layout.span("1.running_var")] = 40.0  # a running statistic, not a weight either
    rows[1, 0] = 11.0
    assert kept_rows(rows, 10.0, batch_norm.layout).tolist() == [True, False]
    assert kept_rows(rows, 10.0).tolist() == [False, False]
    assert novelty(anchors + 1.0, anchors)["sample_to_anchor"] > 0


def test_train_on_all_learns_every_split_and_samples_around_all_of_it(zoo, tmp_path) -> None:
    from wslgraph.errors import OptionError
    from wslgraph.tasks import sample_zoo
    from wslgraph.tasks.represent import representation_splits

    arrays = ZooDataset(zoo, None).arrays
    split = {name: set(ZooDataset(zoo, name).indices_.tolist()) for name in ("train", "val", "test")}
    kept = set(training_rows(arrays, RepresentOptions()).nonzero().flatten().tolist())
    default, every = representation_splits(zoo, RepresentOptions()), representation_splits(
        zoo, RepresentOptions(train_on="all"))
    assert set(default["train"].indices_.tolist()) == split["train"] & kept
    assert set(every["train"].indices_.tolist()) == kept and len(kept - split["train"]) > 0  # val and test too
    for name in ("val", "test"):
        assert set(every[name].indices_.tolist()) == set(default[name].indices_.tolist()) == split[name] & kept
    # the samples' anchors are the rows the decoder learned: with train_on="all", those of every split
    options = RepresentOptions(latent=8, activation="relu", min_accuracy=0.1, train_on="all")
    rows = set(training_rows(arrays, options).nonzero().flatten().tolist())
    train_representation(zoo, tmp_path / "run", options, _config(epochs=1))
    report = sample_zoo(tmp_path / "run", tmp_path / "samples", count=2, top_k=len(arrays), evaluate=False)
    assert set(report["top_rows"]) == rows and len(rows - split["train"]) > 0
    with pytest.raises(OptionError, match="train_on"):
        RepresentOptions(train_on="val")


def test_sampled_checkpoints_load_run_and_are_evaluated(zoo, tmp_path) -> None:
    from safetensors.torch import load_file as load_state

    from wslgraph.represent.sample import format_sampling_table
    from wslgraph.tasks import sample_zoo
    from wslgraph.zoo.modelzoos import ModelZooCNN

    train_representation(zoo, tmp_path / "run", RepresentOptions(latent=8), _config(epochs=2))
    report = sample_zoo(tmp_path / "run", tmp_path / "samples", count=3, top_k=6, finetune_epochs=1,
                        transfer="fashion-mnist")
    assert sorted(p.name for p in (tmp_path / "samples").glob("sample-*")) == [f"sample-00{i}.safetensors"
                                                                                for i in range(3)]
    description = ZooDataset(zoo, None).arrays.description
    train = load_images("mnist5k", "train")
    test = load_images("mnist5k", "test").evenly_spaced(description["test_images"])
    mean, std = train.images.mean(), train.images.std()
    for index in range(3):
        module = ModelZooCNN(activation=report["activation"])
        module.load_state_dict(load_state(tmp_path / "samples" / f"sample-00{index}.safetensors"))  # strict
        with torch.no_grad():
            predicted = module.eval()((test.images - mean) / std).argmax(1)
        accuracy = float((predicted == test.labels).float().mean())
        assert accuracy == pytest.approx(report["finetune"]["sampled"]["per_model"][index][0], abs=1e-6)
    assert set(report["finetune"]) == {"sampled", "random init", "zoo's top models"}
    assert set(report["transfer"]["curves"]) == {"sampled", "random init"}
    assert len(report["top_rows"]) == 6 and report["top_accuracy"] == sorted(report["top_accuracy"], reverse=True)
    table = format_sampling_table(report)
    assert "| sampled | " in table and "→ fashion-mnist" in table
    assert (tmp_path / "samples" / "sampling.png").stat().st_size > 1000
    assert json.loads((tmp_path / "samples" / "samples.json").read_text())["count"] == 3


def test_sane_token_representation_learns_embeds_and_samples(zoo, tmp_path) -> None:
    """SANE's token autoencoder trains with the same loop, reconstructs its zoo, embeds models as mean token
    latents and samples whole latent sequences that decode to the zoo's architecture."""
    from wslgraph.represent import TokenRepresentation, kept_rows
    from wslgraph.represent.sample import sample_models

    options = RepresentOptions(encoder="sane", encoder_options={"window": 32})
    dataset = ZooDataset(zoo, "train")
    dataset = dataset.where(kept_rows(dataset.arrays.params, options.max_weight))
    every = dataset.batch(range(dataset.len()))
    before = build_representation(dataset.arrays.layout, options, seed=0)
    assert isinstance(before, TokenRepresentation) and before.backbone.tokens.num_tokens > 32  # several windows
    before.fit_statistics([every]).eval()
    with torch.no_grad():
        start = float(before.reconstruction_error(every).mean())
    train_representation(zoo, tmp_path / "run", options, _config(epochs=100))
    after = load_representation(tmp_path / "run", dataset.arrays.layout)
    with torch.no_grad():
        error = float(after.reconstruction_error(every).mean())
        assert start > 0.5 and error < 0.4 * start  # standardised units
        embeddings = embed_zoo(after, dataset)
        sequences = embed_zoo(after, dataset, for_sampling=True)
    assert embeddings.shape == (dataset.len(), 32)
    assert sequences.shape == (dataset.len(), after.backbone.tokens.num_tokens * 32)
    rows = sample_models(after, sequences[:6], 3, seed=0)
    assert rows.shape == (3, dataset.arrays.layout.num_params) and bool(torch.isfinite(rows).all())
    windowed = sample_models(after, sequences[:6], 3, method="sequential", bandwidth=0.0, seed=0)
    decoded = after.decode(sequences[:6])
    assert torch.cdist(windowed, decoded).min(1).values.max() < 1e-4 * decoded.norm(dim=1).min()


def test_resnet_zoo_samples_generate_window_by_window_load_and_fine_tune(tmp_path) -> None:
    """A token representation of a ResNet zoo: sequential samples are loadable state dicts (batch-norm buffers
    included) and the report fine-tunes them beside fresh and zoo models, scoring what the files hold."""
    from safetensors.torch import load_file as load_state

    from wslgraph.tasks import sample_zoo
    from wslgraph.zoo import resnet_zoo_job
    from wslgraph.zoo.resnets import resnet_zoo_model

    job = resnet_zoo_job("digits", count=10, width=4, epochs=1, steps_per_epoch=3, models_per_shard=10,
                         train_images=100, test_images=40, eval_images=40)
    generate_zoo(tmp_path / "zoo", job, progress=False)
    options = RepresentOptions(encoder="sane", latent=8, encoder_options={"window": 16, "hidden": 32})
    train_representation(tmp_path / "zoo", tmp_path / "run", options, _config(epochs=2))
    report = sample_zoo(tmp_path / "run", tmp_path / "samples", count=2, top_k=5, method="sequential",
                        finetune_epochs=1, deeper=14)
    assert report["activation"] is None and report["recalibrated_images"] == 100  # the zoo's 100 training images
    assert set(report["finetune"]) == {"sampled", "random init", "zoo's top models", "sampled, decoded statistics"}
    # the written samples are the decoded ones with batch-norm statistics recomputed on the zoo's training images
    decoded = sample_zoo(tmp_path / "run", tmp_path / "decoded", count=2, top_k=5, method="sequential",
                         recalibrate=0, evaluate=False)
    assert decoded["recalibrated_images"] == 0
    zoo_train = load_images("digits", "train").evenly_spaced(100)
    template = GraphTemplate.from_module(resnet_zoo_model(8, 4, 1), input_shape=(1, 8, 8))
    files = [[template.flatten(load_state(tmp_path / folder / f"sample-00{i}.safetensors")) for i in range(2)]
             for folder in ("samples", "decoded")]
    written, raw = torch.stack(files[0]), torch.stack(files[1])
    expected = BatchedModule(resnet_zoo_model(8, 4, 1), template).recalibrate(
        raw, (zoo_train.images - zoo_train.images.mean()) / zoo_train.images.std())
    assert torch.allclose(written, expected, atol=1e-5) and not torch.allclose(written, raw, atol=1e-3)
    train, test = load_images("digits", "train"), load_images("digits", "test").evenly_spaced(40)
    images = (test.images - train.images.mean()) / train.images.std()
    for index in range(2):
        model = resnet_zoo_model(8, 4, 1)
        model.load_state_dict(load_state(tmp_path / "samples" / f"sample-00{index}.safetensors"))  # strict
        with torch.no_grad():
            accuracy = float((model.eval()(images).argmax(1) == test.labels).float().mean())
        assert accuracy == pytest.approx(report["finetune"]["sampled"]["per_model"][index][0], abs=1e-6)
        deep = resnet_zoo_model(14, 4, 1)  # the ResNet-14 grown from it: strict load, the score the report gives
        deep.load_state_dict(load_state(tmp_path / "samples" / f"deeper-00{index}.safetensors"))
        with torch.no_grad():
            accuracy = float((deep.eval()(images).argmax(1) == test.labels).float().mean())
        assert accuracy == pytest.approx(report["deeper"]["curves"]["sampled"]["per_model"][index][0], abs=1e-6)
    assert report["deeper"]["depth"] == 14 and set(report["deeper"]["curves"]) == {"sampled", "random init"}
    from wslgraph.represent.sample import format_sampling_table

    table = format_sampling_table(report)
    assert "zoo models sampled (sequential)" in table and "| random init, ResNet-14 |" in table
    with pytest.raises(ZooError, match="ResNet-10"):  # another stage count: no place for the fourth stage
        sample_zoo(tmp_path / "run", tmp_path / "bad", count=2, top_k=5, deeper=10, evaluate=False)


def _columns(dataset: ZooDataset) -> dict:
    from wslgraph.represent import kept_rows

    keep = kept_rows(dataset.arrays.params, RepresentOptions().max_weight, dataset.arrays.layout)
    return keep, {name: column[keep] for name, column in dataset.arrays.columns.items()}


def test_property_model_loss_and_predictions_are_each_propertys_own(zoo) -> None:
    from wslgraph.nn import GNNEncoder
    from wslgraph.represent import probe_targets
    from wslgraph.tasks import PropertyModel
    from wslgraph.zoo.dataset import batch_column

    dataset = ZooDataset(zoo, None, target="model_index")
    keep, columns = _columns(dataset)
    targets = probe_targets(columns)
    assert {"test_accuracy", "epoch", "activation", "init"} <= {name for name, _, _ in targets}
    properties = [(name, kind, torch.stack([values.mean(), values.std()]) if kind == "regression"
                   else torch.unique(columns[name].double())) for name, kind, values in targets]
    widths = [1 if kind == "regression" else len(levels) for _, kind, levels in properties]
    torch.manual_seed(0)
    model = PropertyModel(GNNEncoder(sum(widths), hidden=16, num_layers=2), properties).eval()
    batch = dataset.where(keep).batch(range(8))
    with torch.no_grad():
        model(batch)  # lazy parameters
        parts = model.encoder(batch).split(widths, dim=1)
        expected, predictions = [], model.predict(batch)
        for (name, kind, levels), output in zip(properties, parts):
            raw = batch_column(batch, name).double()
            if kind == "regression":  # by hand: standardised units in, the column's units out
                expected.append((output[:, 0] - ((raw - levels[0]) / levels[1]).float()).square())
                assert torch.allclose(predictions[name], output[:, 0].double() * levels[1] + levels[0])
            else:
                index = torch.tensor([levels.tolist().index(v) for v in raw.tolist()])
                expected.append(F.cross_entropy(output, index, reduction="none"))
                assert torch.equal(predictions[name], output.argmax(1))
        assert torch.allclose(model(batch), torch.stack(expected).mean(0), atol=1e-6)
    # the activation hyperparameter is the zoo's column, not the graphs' per-node activation field
    assert batch_column(batch, "activation").shape == (8,)
    with pytest.raises(ZooError, match="no 'depth' column"):
        batch_column(batch, "depth")


def test_supervised_scores_keep_the_probes_folds_and_hold_out_whole_networks(zoo, monkeypatch) -> None:
    import numpy as np
    from sklearn.model_selection import GroupKFold

    import wslgraph.tasks.supervised as tasks_supervised
    from wslgraph.errors import OptionError
    from wslgraph.represent import probe_targets
    from wslgraph.tasks import supervised_scores

    dataset = ZooDataset(zoo, None)
    keep, columns = _columns(dataset)
    seen = []

    def fake_train(model, train_set, val_set, config, **kwargs):  # record what each fold trains on
        with torch.no_grad():
            model(next(train_set.batches(4)))  # lazy parameters
        seen.append((set(train_set.indices_.tolist()), set(val_set.indices_.tolist()), config.epochs))
        return {}

    monkeypatch.setattr(tasks_supervised, "train", fake_train)
    scores = supervised_scores(zoo, keep, epochs=3, options={"hidden": 8})
    assert set(scores) == {name for name, _, _ in probe_targets(columns)}
    model_of = dataset.arrays.columns["model_index"]
    rows = keep.nonzero().flatten()
    group = columns["model_index"].numpy()
    folds = list(GroupKFold(n_splits=5).split(np.zeros(len(rows)), groups=group))
    assert len(seen) == 5
    for (fit, held), (trained, validated, epochs) in zip(folds, seen):
        assert epochs == 3 and trained and validated and not trained & validated
        assert trained | validated == set(rows[fit].tolist())  # the probe's training fold, nothing else
        networks = {int(model_of[i]) for i in trained}
        assert networks.isdisjoint(int(model_of[i]) for i in validated)  # validation networks are unseen ones
        assert networks.isdisjoint(int(model_of[i]) for i in rows[held])
    # an opened dataset of every row gives the same folds and shares its arrays (the CLI's probe passes one)
    by_path, arrays_seen = list(seen), []
    seen.clear()
    real_where = ZooDataset.where
    monkeypatch.setattr(ZooDataset, "where", lambda self, rows: arrays_seen.append(self.arrays) or
                        real_where(self, rows))
    assert supervised_scores(dataset, keep, epochs=3, options={"hidden": 8}).keys() == scores.keys()
    assert seen == by_path and arrays_seen and all(a is dataset.arrays for a in arrays_seen)
    with pytest.raises(ZooError, match="split=None"):
        supervised_scores(ZooDataset(zoo, "train"), keep, epochs=1)
    with pytest.raises(OptionError, match="epochs"):
        supervised_scores(zoo, keep, epochs=0)
    with pytest.raises(ZooError, match="boolean mask"):
        supervised_scores(zoo, keep[:5], epochs=1)


def test_a_supervised_encoder_learns_the_properties_of_its_training_rows(zoo) -> None:
    """The supervised reference must itself learn: trained on every kept row, it reads the init and the epoch of
    those rows far better than chance."""
    from wslgraph.represent import probe_targets
    from wslgraph.tasks import PropertyModel
    from wslgraph.tasks.loop import build_model, train

    dataset = ZooDataset(zoo, None, target="model_index")
    keep, columns = _columns(dataset)
    targets = [t for t in probe_targets(columns) if t[0] in ("epoch", "init")]
    properties = [(name, kind, torch.stack([values.mean(), values.std()]) if kind == "regression"
                   else torch.unique(columns[name].double())) for name, kind, values in targets]
    model = PropertyModel(build_model("gnn", 1 + len(properties[1][2]), hidden=32), properties)
    rows = dataset.where(keep)
    train(model, rows, rows, _config(epochs=20, batch_size=16))
    model.eval()
    predicted = model.predict(rows.batch(range(rows.len())))
    init = torch.unique(columns["init"], return_inverse=True)[1]
    chance = float(torch.bincount(init).max()) / len(init)
    assert float((predicted["init"] == init).double().mean()) > max(0.9, chance + 0.3)
    epoch = columns["epoch"].double()
    assert float((predicted["epoch"] - epoch).square().mean()) < 0.25 * float(epoch.var())
