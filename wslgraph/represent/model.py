"""A hyper-representation: an encoder of parameter graphs, a decoder back to the zoo's parameters, and the
self-supervised objective that trains both (Schürholt et al., NeurIPS 2021/2022).

The encoder is any wslgraph graph encoder whose graph-level output is the
latent vector (``GNNEncoder``, ``TransformerEncoder``); with the
permutation-invariant encoders the embedding is exactly invariant to hidden
neuron permutations, which the token-based originals only learn from
augmentations. The decoder is an MLP from the latent to the zoo's flat
parameter vector, in per-layer standardised units.

Loss per model: ``gamma * NT-Xent(view 1, view 2) + (1 - gamma) * MSE`` of
both views' reconstructions of the original model, with each layer's values
standardised by the training zoo's per-layer mean and std (so every layer
counts by its size, not its scale). Views: Gaussian noise, random erasing of
weights and (optionally) hidden permutations, drawn from a counter kept in the
state dict, so a resumed run draws what an uninterrupted one draws.

With ``sorted_weight`` (``alpha``) the reconstruction term is
``(1 - alpha) * MSE + alpha * sorted MSE``, where the sorted MSE compares each
tensor's values sorted (a 1-D Wasserstein-2 distance between the decoded and the
original tensor's value distributions). An invariant encoder cannot know which of
a model's permuted copies it was given, so the exact MSE asks it for something it
cannot tell unseen models apart by and it memorises the training models instead;
the sorted MSE is invariant to every reordering of a tensor's values (at most the
exact MSE, by the rearrangement inequality), and asks for what the weight
statistics s(W) hold and more: each tensor's whole value distribution.

With ``statistics`` the latent also reads each model's weight statistics s(W)
(:func:`~wslgraph.weightspace.statnn_features`, per tensor mean, variance and
five quantiles; invariant to every permutation, as NFN's ``StatFeaturizer``
pools them): ``latent = encoder(graph) + MLP(asinh(s(W) / scale))``, with the
scale and standardisation fitted on the training models (the statistics span
ten orders of magnitude in grid zoos). With ``statistics_source="model"`` the
branch reads, in training, the statistics of the model itself in both views (the
graph encoder still reads the views): the views' noise and erased weights shift
s(W)'s quantiles and variances, so with each view's own statistics the
contrastive term teaches the branch to discount the fine shape of the value
distributions, where inits and regularisers differ. Outside training both
sources read the model itself.
With ``statistics_merge="concat"`` the latent is the encoder's output and the
branch's side by side (``[encoder(graph), MLP(...)]``, ``latent // 2`` features
from the branch), as NFN's ``StatFeaturizer`` sits beside its equivariant layers,
instead of their sum: a sum overlays the two in every feature, and a linear probe
then reads the statistics through whatever else the encoder's features vary with.

With ``statistics_weight`` (``delta``) the reconstruction term also asks a
linear head to read the model's standardised statistics ``asinh(s(W) / scale)``
off the latent (``+ delta * MSE``, the statistics computed from the weights:
still self-supervised). The sorted MSE already asks for each tensor's value
distribution, from which s(W) follows, but through the decoder's MLP; this
term makes the statistics *linearly* readable, which is what a linear probe
needs. Probes of such a latent start from s(W)'s: what they gain over s(W) is
what the rest of the latent adds. ``statistics_units`` says in which units the
head reads them: ``"asinh"`` (above), ``"rank"`` (each statistic's normal score,
``Phi^-1`` of its rank among the training models' by their quantiles,
:func:`normal_scores`: the units the probes map every feature to) or ``"both"``
(two heads' worth of outputs, each term weighted ``delta``). The units decide
what a linear map can read: on s(W) itself the same grouped logistic probe read
a grid zoo's activation at 0.575 in rank units and 0.541 in asinh units, and
its optimizer at 0.811 and 0.859.

With ``positives="model"`` the contrastive term also counts the other
checkpoints of the same model in the batch as positives (train on
:meth:`ZooDataset.grouped <wslgraph.zoo.ZooDataset.grouped>` batches, several
checkpoints of each model side by side): what a model's whole trajectory shares
(its hyperparameters) is pulled together, and the reconstruction keeps what
tells its checkpoints apart. The model of each checkpoint is the zoo's
``model_index`` column: metadata of the zoo, not a label of any probed property.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ZooError
from wslgraph.graph.layout import GraphLayout
from wslgraph.tokens.model import TokenTransformer
from wslgraph.weightspace.augment import Compose, GaussianNoise, RandomHiddenPermutation, WeightDropout
from wslgraph.weightspace.views import batch_params, statnn_features

__all__ = ["HyperRepresentation", "TokenRepresentation", "contrastive_losses", "normal_scores", "nt_xent",
           "sorted_squared_error", "tail_weights", "weight_views"]

RANK_LEVELS = 1000  # quantile levels kept per statistic for its normal scores (scikit-learn's QuantileTransformer's)


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1, groups: Tensor | None = None) -> Tensor:
    """SimCLR's NT-Xent per pair ``[B]``: row ``i`` of ``a`` and of ``b`` are two views of one model, every other
    row of both is a negative; each pair's loss is the mean of its two anchors' cross-entropies.

    With ``groups`` ``[B]`` (e.g. each checkpoint's model), every row of the same group is a positive as well
    (the supervised-contrastive form of Khosla et al., 2020: an anchor's loss is the mean over its positives of
    their cross-entropy); with all groups distinct this is exactly NT-Xent."""
    count = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=-1)
    logits = z @ z.T / temperature
    itself = torch.eye(2 * count, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(itself, float("-inf"))
    if groups is None:
        target = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(z.device)
        losses = F.cross_entropy(logits, target, reduction="none")
    else:
        labels = torch.cat([groups, groups]).to(z.device)
        positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~itself
        log_p = logits.log_softmax(dim=1).masked_fill(~positive, 0.0)
        losses = -log_p.sum(dim=1) / positive.sum(dim=1)
    return (losses[:count] + losses[count:]) / 2


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


def _gathered(x: Tensor, sizes: list[int]) -> Tensor:
    """Every process's rows of ``x`` in rank order (shares of ``sizes`` rows, padded for the collective); gradients
    flow back to each process's own rows (:func:`torch.distributed.nn.functional.all_gather`)."""
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(F.pad(x, (0, 0, 0, max(sizes) - x.shape[0])))
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def contrastive_losses(a: Tensor, b: Tensor, temperature: float, *, gather: bool = True,
                       groups: Tensor | None = None) -> Tensor | None:
    """:func:`nt_xent` of this process's pairs ``[B]`` against every other model of the global batch: under
    ``torch.distributed`` (with ``gather``, as in training) every process's projections (and ``groups``) are
    gathered, so that the negatives are those one process would see with the whole batch, and gradients reach
    each process's own rows. ``None`` where the (global) batch holds fewer than two models."""
    if not gather or not _distributed():
        return nt_xent(a, b, temperature, groups) if a.shape[0] >= 2 else None
    counts = [torch.zeros(1, dtype=torch.long, device=a.device) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(counts, torch.tensor([a.shape[0]], device=a.device))
    sizes = [int(count) for count in counts]
    if sum(sizes) < 2:
        return None
    start = sum(sizes[:torch.distributed.get_rank()])
    if groups is not None:  # exact in float64 for any model index below 2**53
        groups = _gathered(groups.to(torch.float64).unsqueeze(1), sizes).squeeze(1).long()
    return nt_xent(_gathered(a, sizes), _gathered(b, sizes), temperature, groups)[start:start + a.shape[0]]


def _fit_tensor_statistics(model: nn.Module, rows: Tensor) -> None:
    """Set ``model.param_mean``/``param_std`` ``[P]`` to each state-dict tensor's mean and std over ``rows``."""
    for entry in model.layout.state:
        span = model.layout.span(entry.key)
        values = rows[:, span].float()
        model.param_mean[span] = values.mean()
        model.param_std[span] = values.std().clamp_min(1e-8) if values.numel() > 1 else 1.0


def normal_scores(values: Tensor, quantiles: Tensor) -> Tensor:
    """Each column's normal scores ``[B, d]``: ``Phi^-1(u)`` where ``u`` is the value's position among that column's
    ``quantiles`` ``[Q, d]`` (levels ``0, 1/(Q-1), ..., 1``), linearly interpolated between them, the middle of the
    tied levels where a value equals several, clipped to ``[1e-7, 1 - 1e-7]``. With the quantiles of fitting rows
    it is scikit-learn's ``QuantileTransformer(output_distribution="normal")`` (tested), in torch and batched.
    With one quantile (one fitting row) every score is 0."""
    levels = quantiles.shape[0]
    if levels < 2:  # fitted on one row: no ranks to place a value among
        return torch.zeros_like(values)
    table, x = quantiles.T.double().contiguous(), values.T.double().contiguous()  # [d, Q], [d, B]
    below = torch.searchsorted(table, x, side="left")  # quantiles below each value
    upto = torch.searchsorted(table, x, side="right")  # ... at or below it
    upper = below.clamp(1, levels - 1)
    low, high = table.gather(1, upper - 1), table.gather(1, upper)
    fraction = ((x - low) / (high - low).clamp_min(1e-300)).clamp(0, 1)
    position = torch.where(upto > below, (below + upto - 1) / 2, upper - 1 + fraction)
    u = (position / (levels - 1)).clamp(1e-7, 1 - 1e-7)
    return (2 ** 0.5 * torch.erfinv(2 * u - 1)).T.to(values.dtype)


def sorted_squared_error(decoded: Tensor, target: Tensor, spans: list[slice], *, tails: bool = False) -> Tensor:
    """Per row ``[B]``: the mean squared difference of ``decoded`` and ``target`` ``[B, P]`` with the values of each
    span sorted on both sides (their 1-D Wasserstein-2 distance, squared, summed over the spans and divided by
    ``P``); values outside the spans (single numbers) are compared as they are. Invariant to any reordering of
    the values within a span, and (without ``tails``) at most the plain MSE.

    With ``tails`` each sorted position ``i`` of a span of ``n`` values counts ``1 / phi(Phi^-1((i + 0.5) / n))``,
    scaled to a mean of 1 per span (:func:`tail_weights`): the squared distance of the two quantile functions
    over normal scores instead of over probabilities, so a tensor's extremes (where a uniform and a normal
    initialisation of one variance differ) count as much as its middle."""
    total = torch.zeros(decoded.shape[0], dtype=decoded.dtype, device=decoded.device)
    covered = torch.ones(decoded.shape[1], dtype=torch.bool, device=decoded.device)
    for span in spans:
        covered[span] = False
        squared = (decoded[:, span].sort(dim=1).values - target[:, span].sort(dim=1).values).square()
        if tails:
            squared = squared * tail_weights(squared.shape[1], squared.dtype, squared.device)
        total = total + squared.sum(1)
    total = total + (decoded[:, covered] - target[:, covered]).square().sum(dim=1)
    return total / decoded.shape[1]


def tail_weights(count: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Tensor:
    """``[count]`` weights of sorted positions for :func:`sorted_squared_error` with ``tails``: ``1 / phi(z_i)`` at
    the normal scores ``z_i = Phi^-1((i + 0.5) / count)`` (the spacing of the quantile function in normal scores),
    divided by their mean."""
    return _tail_weights(count).to(dtype=dtype, device=device, copy=True)


@functools.lru_cache(maxsize=256)
def _tail_weights(count: int) -> Tensor:
    """:func:`tail_weights` in float64 on the CPU, computed once per tensor size (the loss asks for them on every
    step; callers get a copy)."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    normal = torch.distributions.Normal(0.0, 1.0)
    weights = 1 / normal.log_prob(normal.icdf(levels)).exp()
    return weights / weights.mean()


def weight_views(layout: GraphLayout, rows: Tensor, seed: int, *, noise: float, erase: float,
                 permute: bool) -> Tensor:
    """One augmented view of flat rows: Gaussian noise (``noise`` x each tensor's std), random erasing of
    weights (probability ``erase``) and, with ``permute``, random hidden permutations, drawn from ``seed``."""
    parts = [GaussianNoise(layout, noise, seed)] if noise else []
    if erase:
        parts.append(WeightDropout(layout, erase, seed + 1))
    if permute:
        parts.append(RandomHiddenPermutation(layout, seed + 2))
    return Compose(parts)(rows) if parts else rows


def statistics_width(latent: int, merge: str) -> int:
    """Features of the statistics branch's output: the whole ``latent`` where it is added to the encoder's, half
    of it (``latent // 2``) where the two sit side by side (``merge="concat"``)."""
    return latent if merge == "add" else latent // 2


class HyperRepresentation(nn.Module):
    """Encoder + decoder of one architecture's parameters (see the module docstring).

    Args:
        layout: The zoo's architecture (``ZooDataset.arrays.layout``).
        encoder: A graph encoder whose ``forward(batch)`` gives ``[B, latent]``
            (build it with ``out_dim=latent``).
        latent: Its output size.
        gamma: Weight of the contrastive term (the rest is reconstruction).
        temperature: NT-Xent temperature.
        noise: Gaussian noise per view, in units of each tensor's std.
        erase: Probability of zeroing each weight in a view.
        permute: Also permute hidden neurons in each view (no effect on an
            invariant encoder's latent; for encoders that are not invariant).
        decoder_hidden: Width of the decoder's two hidden layers.
        projection: Width of the contrastive projection head.
        seed: Seed of the views.
        sorted_weight: Share ``alpha`` of the reconstruction term given to the sorted MSE (each tensor's values
            sorted; see the module docstring). 0: the exact MSE only. At 1 the decoder learns value
            distributions, not loadable models: sample with a representation trained below 1.
        statistics: Add an MLP of the model's weight statistics to the encoder's latent (module docstring).
        positives: ``"views"`` (the two views of a checkpoint) or ``"model"`` (also every other checkpoint of
            its model in the batch, by the batch's ``model_index``; module docstring).
        statistics_weight: Weight ``delta`` of the linear read-out of the standardised weight statistics in the
            reconstruction term (module docstring; 0: none).
        statistics_source: With ``statistics``, whose s(W) the branch reads in training: ``"views"`` (each
            augmented view's own) or ``"model"`` (the unaugmented model's, in both views; module docstring).
        sorted_tails: Weigh the sorted MSE's positions by their spacing in normal scores, so that each tensor's
            extremes count (:func:`sorted_squared_error`).
        statistics_merge: With ``statistics``, ``"add"`` (the branch's output added to the encoder's) or
            ``"concat"`` (side by side: the branch gives ``latent // 2`` features, and the encoder must give the
            other ``latent - latent // 2``; module docstring).
        statistics_units: With ``statistics_weight``, the units the linear head reads the statistics in:
            ``"asinh"`` (standardised ``asinh(s(W) / scale)``), ``"rank"`` (normal scores by the training models'
            quantiles) or ``"both"`` (module docstring).
    """

    # the contrastive head takes no part in a step at gamma 0, or where the global batch is a single model
    may_leave_parameters_unused = True

    def __init__(self, layout: GraphLayout, encoder: nn.Module, latent: int, *, gamma: float = 0.5,
                 temperature: float = 0.1, noise: float = 0.05, erase: float = 0.05, permute: bool = False,
                 decoder_hidden: int = 256, projection: int = 64, seed: int = 0, sorted_weight: float = 0.0,
                 statistics: bool = False, positives: str = "views", statistics_weight: float = 0.0,
                 statistics_source: str = "views", statistics_merge: str = "add", sorted_tails: bool = False,
                 statistics_units: str = "asinh") -> None:
        super().__init__()
        if statistics_units not in ("asinh", "rank", "both"):
            raise ValueError(f"statistics_units must be 'asinh', 'rank' or 'both', got {statistics_units!r}")
        self.statistics_units = statistics_units
        self.sorted_tails = sorted_tails
        if statistics_merge not in ("add", "concat") or (statistics_merge == "concat" and latent < 2):
            raise ValueError(f"statistics_merge must be 'add' or 'concat' (with latent >= 2), got "
                             f"{statistics_merge!r} with latent {latent}")
        self.statistics_merge = statistics_merge
        if statistics_source not in ("views", "model"):
            raise ValueError(f"statistics_source must be 'views' or 'model', got {statistics_source!r}")
        self.statistics_source = statistics_source
        if not statistics_weight >= 0:
            raise ValueError(f"statistics_weight must be >= 0, got {statistics_weight}")
        if positives not in ("views", "model"):
            raise ValueError(f"positives must be 'views' or 'model', got {positives!r}")
        self.positives = positives
        if not 0 <= gamma <= 1 or temperature <= 0 or noise < 0 or not 0 <= erase < 1 or not 0 <= sorted_weight <= 1:
            raise ValueError(f"need 0 <= gamma <= 1, temperature > 0, noise >= 0, 0 <= erase < 1 and 0 <= "
                             f"sorted_weight <= 1; got gamma={gamma}, temperature={temperature}, noise={noise}, "
                             f"erase={erase}, sorted_weight={sorted_weight}")
        self.sorted_weight, self.statistics, self.statistics_weight = sorted_weight, statistics, statistics_weight
        count = 7 * len(layout.state)
        if statistics:
            self.statistics_net = nn.Sequential(nn.Linear(count, decoder_hidden), nn.GELU(),
                                                nn.Linear(decoder_hidden, statistics_width(latent, statistics_merge)))
        if statistics_weight:
            self.statistics_head = nn.Linear(latent, count * (2 if statistics_units == "both" else 1))
            if statistics_units != "asinh":  # each statistic's quantiles over the training models
                # the first stat_levels rows are in use: min(RANK_LEVELS, fitting rows), as scikit-learn's
                self.register_buffer("stat_quantiles", torch.linspace(-1, 1, RANK_LEVELS)[:, None].repeat(1, count))
                self.register_buffer("stat_levels", torch.tensor(RANK_LEVELS))
        if statistics or statistics_weight:
            for name, value in (("stat_scale", 1.0), ("stat_mean", 0.0), ("stat_std", 1.0)):
                self.register_buffer(name, torch.full((count,), value))
        self._spans = [layout.span(entry.key) for entry in layout.state if entry.numel > 1]
        self.layout, self.encoder, self.latent = layout, encoder, latent
        self.gamma, self.temperature, self.noise, self.erase, self.permute = gamma, temperature, noise, erase, permute
        self.seed = seed
        num_params = layout.num_params
        self.decoder = nn.Sequential(nn.Linear(latent, decoder_hidden), nn.GELU(),
                                     nn.Linear(decoder_hidden, decoder_hidden), nn.GELU(),
                                     nn.Linear(decoder_hidden, num_params))
        self.projector = nn.Sequential(nn.Linear(latent, projection), nn.GELU(), nn.Linear(projection, projection))
        self.register_buffer("param_mean", torch.zeros(num_params))
        self.register_buffer("param_std", torch.ones(num_params))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._template = GraphTemplate(layout)

    # --- statistics -------------------------------------------------------------------------------------------------
    def fit_statistics(self, batches: object) -> HyperRepresentation:
        """Per-layer mean and std of the training parameters (the reconstruction's units), the statistics branch's
        scale and standardisation (with ``statistics``) and the encoder's own statistics, from a few training
        batches."""
        batches = list(batches)
        rows = torch.cat([batch_params(b)[0] for b in batches])
        _fit_tensor_statistics(self, rows)
        if self.statistics or self.statistics_weight:
            raw = statnn_features(rows.float(), self.layout)
            self.stat_scale.copy_(raw.abs().median(dim=0).values.clamp_min(1e-8))
            mapped = torch.asinh(raw / self.stat_scale)
            self.stat_mean.copy_(mapped.mean(dim=0))
            self.stat_std.copy_(mapped.std(dim=0).nan_to_num(1.0).clamp_min(1e-6))
            if hasattr(self, "stat_quantiles"):
                used = min(RANK_LEVELS, raw.shape[0])
                levels = torch.linspace(0, 1, used, dtype=torch.float64)
                self.stat_quantiles.copy_(torch.quantile(raw.double(), levels, dim=0)[
                    torch.arange(RANK_LEVELS).clamp_max(used - 1)])  # the rows past `used` repeat the last
                self.stat_levels.fill_(used)
        if hasattr(self.encoder, "fit_statistics"):
            self.encoder.fit_statistics(batches)
        return self

    # --- the maps ---------------------------------------------------------------------------------------------------
    def embed(self, batch: object, *, standard: Tensor | None = None) -> Tensor:
        """Latent vectors ``[B, latent]`` of a batch of parameter graphs; the statistics branch reads ``standard``
        (:meth:`standard_statistics` of rows ``[B, P]``, such as the unaugmented models') where given, else the
        batch's own."""
        latent = self.encoder(batch)
        if not self.statistics:
            return latent
        if standard is None:
            standard = self.standard_statistics(batch_params(batch)[0])
        branch = self.statistics_net(standard)
        if self.statistics_merge == "add":
            return latent + branch
        if latent.shape[1] + branch.shape[1] != self.latent:
            raise ValueError(f"with statistics_merge='concat' the encoder must give {self.latent - branch.shape[1]} "
                             f"features (latent {self.latent} less the statistics branch's {branch.shape[1]}), "
                             f"got {latent.shape[1]}; build it with out_dim={self.latent - branch.shape[1]}")
        return torch.cat([latent, branch], dim=1)

    def standard_statistics(self, rows: Tensor) -> Tensor:
        """``(asinh(s(W) / scale) - mean) / std`` ``[B, 7 * tensors]`` of flat rows: the weight statistics in the
        units the statistics branch reads and the statistics head predicts (fitted by :meth:`fit_statistics`)."""
        return self._asinh_units(statnn_features(rows.to(self.stat_scale.dtype), self.layout))

    def _asinh_units(self, raw: Tensor) -> Tensor:
        return (torch.asinh(raw / self.stat_scale) - self.stat_mean) / self.stat_std

    def statistics_targets(self, rows: Tensor, raw: Tensor | None = None) -> Tensor:
        """What the linear statistics head reads off the latent ``[B, count]`` (``[B, 2 * count]`` for ``"both"``):
        the standardised statistics (:meth:`standard_statistics`), their normal scores by the training models'
        quantiles (:func:`normal_scores`), or both side by side (``statistics_units``). ``raw``: the rows' s(W)
        where computed already."""
        if raw is None:
            raw = statnn_features(rows.to(self.stat_scale.dtype), self.layout)
        if self.statistics_units == "asinh":
            return self._asinh_units(raw)
        scores = normal_scores(raw, self.stat_quantiles[: int(self.stat_levels)])
        return scores if self.statistics_units == "rank" else torch.cat([self._asinh_units(raw), scores], 1)

    def decode(self, latent: Tensor) -> Tensor:
        """Flat parameters ``[B, P]`` (the zoo's order and units) from latent vectors."""
        return self.decoder(latent) * self.param_std + self.param_mean

    def reconstruct(self, batch: object) -> Tensor:
        """``decode(embed(batch))``."""
        return self.decode(self.embed(batch))

    def _view(self, rows: Tensor, seed: int) -> Tensor:
        return weight_views(self.layout, rows, seed, noise=self.noise, erase=self.erase, permute=self.permute)

    def sampling_latents(self, batch: object) -> Tensor:
        """What a density is fitted to for sampling (:func:`~wslgraph.represent.sample_models`): the latents."""
        return self.embed(batch)

    def batch_norm_forward(self, batch: object) -> Tensor:
        """The pass :func:`~wslgraph.nn.recompute_batch_norm` runs: the models themselves, not the training views
        (no augmentation drawn)."""
        return self.embed(batch)

    def forward(self, batch: object) -> Tensor:
        """Each model's loss ``[B]``: two fresh views in training mode; in eval mode both views are the models
        themselves (a deterministic validation loss)."""
        rows = batch_params(batch)[0]
        # the models' own s(W), computed once where the branch (both views, or eval) and the read-out need it
        own = (statnn_features(rows.to(self.stat_scale.dtype), self.layout) if self.statistics and (
            self.statistics_weight or self.statistics_source == "model" or not self.training) else None)
        if self.training:
            base = self.seed * 1_000_003 + 4 * int(self.draws)
            self.draws += 1
            views = [self._view(rows, base), self._view(rows, base + 3)]
            graphs = [self._template.batch(v.to(rows.device)) for v in views]
            standard = self._asinh_units(own) if self.statistics_source == "model" and own is not None else None
            latents = [self.embed(g, standard=standard) for g in graphs]
        else:  # one view: the model itself, decoded and projected once
            latents = [self.embed(batch, standard=None if own is None else self._asinh_units(own))]
        recon = sum(self._errors(z, rows) for z in latents) / len(latents)
        if self.statistics_weight:
            target = self.statistics_targets(rows, own)
            parts = 2 if self.statistics_units == "both" else 1  # each set of units weighs delta
            recon = recon + self.statistics_weight * parts * sum(
                (self.statistics_head(z) - target).square().mean(dim=1) for z in latents) / len(latents)
        if self.gamma == 0:
            return recon
        projected = [self.projector(z) for z in latents]
        contrast = contrastive_losses(projected[0], projected[-1], self.temperature, gather=self.training,
                                      groups=self._groups(batch))
        return recon if contrast is None else self.gamma * contrast + (1 - self.gamma) * recon

    def _groups(self, batch: object) -> Tensor | None:
        """Each checkpoint's model (``positives="model"``), or ``None``."""
        if self.positives == "views":
            return None
        groups = getattr(batch, "model_index", None)
        if groups is None:
            raise ZooError("positives='model' needs each checkpoint's model: batches of a zoo with a model_index "
                           "column (ZooDataset), or use positives='views'")
        return groups

    def _errors(self, latent: Tensor, rows: Tensor, alpha: float | None = None) -> Tensor:
        """Per model: the reconstruction term of the decoded ``latent`` against ``rows`` in per-layer
        standardised units: ``(1 - alpha) * MSE + alpha * sorted MSE`` (``alpha``: ``sorted_weight``)."""
        alpha = self.sorted_weight if alpha is None else alpha
        decoded, target = self.decoder(latent), (rows - self.param_mean) / self.param_std
        exact = ((decoded - target) ** 2).mean(dim=1) if alpha < 1 else 0
        if alpha == 0:
            return exact
        return (1 - alpha) * exact + alpha * sorted_squared_error(decoded, target, self._spans,
                                                                  tails=self.sorted_tails)

    def reconstruction_error(self, batch: object, *, sorted_weight: float = 0.0) -> Tensor:
        """Per model: the decoder's MSE in per-layer standardised units; with ``sorted_weight`` the loss's mix of
        exact and sorted MSE (pass ``self.sorted_weight`` for the loss's own reconstruction term)."""
        return self._errors(self.embed(batch), batch_params(batch)[0], sorted_weight)

    def extra_repr(self) -> str:
        return (f"latent={self.latent}, gamma={self.gamma}, temperature={self.temperature}, noise={self.noise}, "
                f"erase={self.erase}, permute={self.permute}, sorted_weight={self.sorted_weight}, "
                f"statistics={self.statistics}, positives={self.positives!r}, "
                f"statistics_weight={self.statistics_weight}, statistics_source={self.statistics_source!r}, "
                f"statistics_merge={self.statistics_merge!r}, sorted_tails={self.sorted_tails}, "
                f"statistics_units={self.statistics_units!r}, "
                f"params={self.layout.num_params}")


class TokenRepresentation(nn.Module):
    """SANE's self-supervised autoencoder over windows of tokens (Schürholt et al., ICML 2024).

    The backbone (:class:`~wslgraph.tokens.TokenTransformer`) encodes each window of a model's tokens, in
    per-tensor standardised units, into one latent per token and decodes them back. In training, each batch takes
    a random window (the same for all its models) of two augmented views (:func:`weight_views`); the loss per
    model is ``gamma * NT-Xent`` of the views' mean token latents (through a projection head) plus
    ``(1 - gamma)`` times the MSE of both views' decoded tokens against the original model's tokens (real values
    only). In eval mode the loss is the reconstruction of the whole sequence, window by window.

    :meth:`embed` (for probes) is the mean of the token latents; :meth:`sampling_latents` is the whole sequence of
    token latents, flattened ``[B, T * latent]``, which :meth:`decode` maps back to parameters: sampling draws
    whole latent sequences, as SANE does.

    Args:
        layout: The zoo's architecture.
        backbone: A :class:`~wslgraph.tokens.TokenTransformer` built for ``layout``.
        gamma, temperature, noise, erase, permute, projection, seed: As for :class:`HyperRepresentation`.
    """

    # the contrastive head takes no part in a step at gamma 0, or where the global batch is a single model
    may_leave_parameters_unused = True

    def __init__(self, layout: GraphLayout, backbone: TokenTransformer, *, gamma: float = 0.5,
                 temperature: float = 0.1, noise: float = 0.05, erase: float = 0.05, permute: bool = False,
                 projection: int = 64, seed: int = 0) -> None:
        super().__init__()
        if not 0 <= gamma <= 1 or temperature <= 0 or noise < 0 or not 0 <= erase < 1:
            raise ValueError(f"need 0 <= gamma <= 1, temperature > 0, noise >= 0 and 0 <= erase < 1; got gamma="
                             f"{gamma}, temperature={temperature}, noise={noise}, erase={erase}")
        if backbone.tokens.layout != layout:
            raise ValueError("build the TokenTransformer for the zoo's layout")
        self.layout, self.backbone, self.latent = layout, backbone, backbone.latent
        self.gamma, self.temperature, self.noise, self.erase, self.permute = gamma, temperature, noise, erase, permute
        self.seed = seed
        self.projector = nn.Sequential(nn.Linear(self.latent, projection), nn.GELU(),
                                       nn.Linear(projection, projection))
        self.register_buffer("param_mean", torch.zeros(layout.num_params))
        self.register_buffer("param_std", torch.ones(layout.num_params))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    def fit_statistics(self, batches: object) -> TokenRepresentation:
        """Per-tensor mean and std of the training parameters (the tokens' units)."""
        _fit_tensor_statistics(self, torch.cat([batch_params(b)[0] for b in batches]))
        return self

    def _standard(self, rows: Tensor) -> Tensor:
        return (rows.to(self.param_mean.dtype) - self.param_mean) / self.param_std

    def embed(self, batch: object) -> Tensor:
        """The mean token latent ``[B, latent]`` of each model."""
        return self.backbone.embedding(self._standard(batch_params(batch)[0]))

    def sampling_latents(self, batch: object) -> Tensor:
        """Every token's latent, flattened: ``[B, T * latent]``."""
        return self.backbone.token_latents(self._standard(batch_params(batch)[0])).flatten(1)

    def decode(self, latents: Tensor) -> Tensor:
        """Flat parameters ``[B, P]`` (the zoo's order and units) from token latent sequences ``[B, T * latent]``."""
        sequence = latents.view(latents.shape[0], self.backbone.tokens.num_tokens, self.latent)
        return self.backbone.decode(sequence) * self.param_std + self.param_mean

    def _window(self) -> slice:
        count, window = self.backbone.tokens.num_tokens, self.backbone.window
        if count <= window:
            return slice(0, count)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 4 * int(self.draws) + 7)
        start = int(torch.randint(0, count - window + 1, (), generator=generator))
        return slice(start, start + window)

    def _squared(self, latents: Tensor, target: Tensor, part: slice) -> Tensor:
        """Per model: the sum of squared errors of the window's decoded tokens over its real values."""
        mask = self.backbone.tokens.mask[part].to(target.device)
        return ((self.backbone.decode_window(latents, part) - target).square() * mask).sum(dim=(1, 2))

    def forward(self, batch: object) -> Tensor:
        """Each model's loss ``[B]`` (see the class docstring)."""
        rows = batch_params(batch)[0]
        backbone, tokens = self.backbone, self.backbone.tokens
        target = tokens.tokenize(self._standard(rows)).tokens
        if not self.training:
            total = sum(self._squared(backbone.encode_window(target[:, part], part), target[:, part], part)
                        for part in backbone.windows())
            return total / tokens.mask.sum()
        part = self._window()
        base = self.seed * 1_000_003 + 4 * int(self.draws)
        self.draws += 1
        views = [weight_views(self.layout, rows, seed, noise=self.noise, erase=self.erase, permute=self.permute)
                 for seed in (base, base + 3)]
        latents = [backbone.encode_window(tokens.tokenize(self._standard(v)).tokens[:, part], part) for v in views]
        recon = sum(self._squared(z, target[:, part], part) for z in latents) / (2 * tokens.mask[part].sum())
        if self.gamma == 0:
            return recon
        projected = [self.projector(z.mean(dim=1)) for z in latents]
        contrast = contrastive_losses(projected[0], projected[1], self.temperature)
        return recon if contrast is None else self.gamma * contrast + (1 - self.gamma) * recon

    def reconstruction_error(self, batch: object) -> Tensor:
        """Per model: the whole sequence's token MSE in standardised units (the eval-mode loss)."""
        was = self.training
        self.eval()
        try:
            return self(batch)
        finally:
            self.train(was)

    def extra_repr(self) -> str:
        return (f"latent={self.latent}, gamma={self.gamma}, temperature={self.temperature}, noise={self.noise}, "
                f"erase={self.erase}, permute={self.permute}, tokens={self.backbone.tokens.num_tokens}")
