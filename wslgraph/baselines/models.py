"""The peers as models with wslgraph's encoder interface: ``model(batch) -> Tensor[num_graphs, out_dim]``.

Every model takes a batch of parameter graphs of one architecture (from
:class:`~wslgraph.GraphTemplate`, :class:`~wslgraph.zoo.ZooDataset` or
:func:`~wslgraph.collate`) or flat parameters ``[N, P]`` together with a
``layout``. Parts that depend on the architecture are built on the first
batch (PyG's lazy convention: run one batch before creating the optimizer),
or at construction when ``layout=`` is given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wslgraph.baselines.equivariant import WeightSpaceLinear, invariant_pool, to_canonical, weight_space_slots
from wslgraph.convert.template import column_moments
from wslgraph.errors import InvalidGraphError, NonFiniteError, ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout
from wslgraph.weightspace import WeightSpaceSpec, batch_params, statnn_features, to_weight_space, weight_space_spec
from wslgraph.weightspace.augment import RandomHiddenPermutation

__all__ = ["WeightSpaceModel", "EquivariantStack", "DWSNet", "NFN", "FlatMLP", "StatNN", "statnn_features",
           "fit_statnn_regressor", "BASELINES"]


def _mlp(widths: list[int], out_dim: int) -> nn.Sequential:
    """``Linear + ReLU`` through ``widths``, then a linear map to ``out_dim``."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_dim))


def _as_batches(batches: object) -> list:
    """One batch or parameter tensor, or an iterable of them, as a list."""
    return [batches] if isinstance(batches, Tensor) or hasattr(batches, "edge_index") else list(batches)


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class WeightSpaceModel(nn.Module):
    """Shared plumbing: input handling, lazy construction per architecture, per-tensor input normalisation.

    Subclasses implement :meth:`build` (create the architecture-dependent
    modules) and :meth:`compute` (flat, normalised parameters ``[N, P]`` to
    outputs).
    """

    def __init__(self, out_dim: int, layout: GraphLayout | None = None) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        self.out_dim = out_dim
        self.layout: GraphLayout | None = None
        if layout is not None:
            self._setup(layout)

    def _setup(self, layout: GraphLayout) -> None:
        self.layout = layout
        counts = [e.numel for e in layout.state]
        self.register_buffer("_mean", torch.zeros(len(counts)))
        self.register_buffer("_std", torch.ones(len(counts)))
        self._counts = counts
        self.build(layout)

    def build(self, layout: GraphLayout) -> None:
        raise NotImplementedError

    def compute(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def _params(self, batch: object) -> Tensor:
        if isinstance(batch, Tensor):
            if self.layout is None:
                raise InvalidGraphError(f"{type(self).__name__} got a parameter tensor before knowing the "
                                        "architecture; pass layout= at construction or a batch of graphs")
            params, layout = batch, self.layout
        else:
            params, layout = batch_params(batch)
        if self.layout is None:
            self._setup(layout)
            self.to(params.device)
        elif layout != self.layout:
            raise ShapeMismatchError(f"{type(self).__name__} was built for {self.layout} and got a batch of "
                                     f"{layout}; one model serves one architecture")
        if params.dim() != 2 or params.shape[1] != self.layout.num_params:
            raise ShapeMismatchError(f"expected parameters [N, {self.layout.num_params}], got {tuple(params.shape)}")
        return params.to(self._mean.dtype)

    def normalize(self, params: Tensor) -> Tensor:
        """Per-tensor standardisation with the statistics of :meth:`fit_statistics` (identity before)."""
        counts = torch.tensor(self._counts, device=params.device)
        mean = self._mean.repeat_interleave(counts)
        std = self._std.repeat_interleave(counts)
        return (params - mean) / std

    @torch.no_grad()
    def fit_statistics(self, batches: object) -> WeightSpaceModel:
        """Fit the per-tensor mean and std on training batches (or one batch / parameter tensor)."""
        batches = _as_batches(batches)
        rows = torch.cat([self._params(b) for b in batches])
        _require_finite(rows, "weights")
        parts = rows.split(self._counts, dim=1)
        self._mean.copy_(torch.stack([p.mean() for p in parts]))
        self._std.copy_(torch.stack([p.std().clamp(min=1e-8) if p.numel() > 1 else torch.ones(()) for p in parts]))
        return self

    def forward(self, batch: object) -> Tensor:
        """Outputs ``[num_graphs, out_dim]``."""
        params = self._params(batch)
        return self.compute(self.normalize(params))

    def extra_repr(self) -> str:
        built = "lazy" if self.layout is None else f"{self.layout.num_params} params per input model"
        return f"out_dim={self.out_dim}, {built}"


class EquivariantStack(WeightSpaceModel):
    """Weight-space linear layers with ReLU in between, an invariant pool and an MLP head.

    With ``set_readout`` the pool is a DeepSets readout: a per-entry
    ``Linear + ReLU`` on every tensor before the mean.
    """

    def __init__(self, out_dim: int, hidden: int, num_layers: int, permute_io: bool, dropout: float,
                 layout: GraphLayout | None, set_readout: bool = False) -> None:
        self.hidden, self.num_layers, self.permute_io, self.dropout = hidden, num_layers, permute_io, dropout
        self.set_readout = set_readout
        super().__init__(out_dim, layout)

    def input_channels(self) -> int:
        return 1

    def check(self, spec: WeightSpaceSpec) -> None:
        """Reject architectures the method does not handle."""

    def build(self, layout: GraphLayout) -> None:
        self.spec = weight_space_spec(layout)
        self.check(self.spec)
        self.slots = weight_space_slots(self.spec, self.permute_io)
        widths = [self.input_channels()] + [self.hidden] * self.num_layers
        self.layers = nn.ModuleList(WeightSpaceLinear(self.spec, a, b, self.permute_io)
                                    for a, b in zip(widths[:-1], widths[1:]))
        pooled = sum(self.hidden * slot.fixed_size for slot in self.slots)
        self.readout = nn.ModuleList(nn.Sequential(nn.Linear(self.hidden * slot.fixed_size,
                                                             self.hidden * slot.fixed_size), nn.ReLU())
                                     for slot in self.slots) if self.set_readout else None
        self.head = _head(pooled, self.hidden, self.out_dim)

    def encode_inputs(self, features: list[Tensor]) -> list[Tensor]:
        return features

    def equivariant_features(self, params: Tensor) -> list[Tensor]:
        """The last equivariant layer's canonical features of normalised parameters (before any readout)."""
        weights, biases = to_weight_space(params, self.spec)
        features = self.encode_inputs(to_canonical(weights, biases, self.slots))
        for index, layer in enumerate(self.layers):
            features = layer(features)
            if index < len(self.layers) - 1:
                features = [nn.functional.dropout(torch.relu(f), self.dropout, self.training) for f in features]
        return features

    def compute(self, params: Tensor) -> Tensor:
        features = self.equivariant_features(params)
        if self.readout is not None:
            features = [phi(f) for phi, f in zip(self.readout, features)]
        return self.head(invariant_pool(features))


class DWSNet(EquivariantStack):
    r"""DWSNet (Navon et al., ICML 2023): equivariant layers between the weight and bias spaces of an MLP.

    Every affine map weight→weight, weight→bias, bias→weight and bias→bias
    that commutes with hidden-neuron permutations (:class:`WeightSpaceLinear`,
    input and output neurons fixed), ReLU and dropout between layers, then a
    set-based invariant readout (DeepSets: a per-entry layer, then the mean
    over the hidden neurons of every tensor) and an MLP head. Inputs are
    standardised per tensor (:meth:`fit_statistics`). MLPs only: CNNs raise
    :class:`UnsupportedModuleError`.

    Args:
        out_dim: Outputs per input network.
        hidden: Channels per weight and bias entry (default: ``32``).
        num_layers: Equivariant layers (default: ``4``).
        dropout: Dropout between them (default: ``0.0``).
        set_readout: DeepSets readout instead of a plain mean (default: ``True``).
        layout: Build for this architecture now instead of on the first batch.
    """

    def __init__(self, out_dim: int, hidden: int = 32, num_layers: int = 4, dropout: float = 0.0,
                 set_readout: bool = True, layout: GraphLayout | None = None) -> None:
        super().__init__(out_dim, hidden, num_layers, False, dropout, layout, set_readout)

    def check(self, spec: WeightSpaceSpec) -> None:
        if not spec.is_mlp:
            raise UnsupportedModuleError("DWSNet handles MLPs only (its layers act on weight matrices); this "
                                         "architecture has convolutions. Use NFN or wslgraph's GNNEncoder")


class NFN(EquivariantStack):
    r"""Neural functional networks (Zhou et al., NeurIPS 2023), NP or HNP, for MLPs and CNNs with global pooling.

    * ``mode="hnp"``: hidden neurons permutable; input and output neurons fixed
      (folded into channels, so the cost grows with ``n_0 + n_L``).
    * ``mode="np"``: every neuron permutable. Input/output positional
      encodings (``io_embeddings``, default on for NP) break the false
      input/output symmetry: fixed sinusoidal ones, as in NFN's paper
      configuration (the default), or learned ones (``io_embeddings="learned"``).
      Without them the model is also invariant to permuting input and output neurons.

    Conv kernels are channels. Inputs are encoded with Gaussian Fourier features
    (``fourier_features`` frequencies of std ``fourier_scale``). ReLU follows
    each layer; the readout is an invariant mean pool and an MLP head.

    Args:
        out_dim: Outputs per input network.
        mode: ``"hnp"`` or ``"np"`` (default: ``"hnp"``).
        hidden: Channels (default: ``32``; conv kernels multiply them by ``k*k`` inside).
        num_layers: NF-layers (default: ``3``).
        io_embeddings: Input/output positional embeddings: ``True`` or ``"learned"`` (learned, initialised
            at std 0.1), ``"sinusoidal"`` (fixed: sine and cosine of a neuron's position in (-1, 1) at
            frequencies pi * 2^k, k = 0..5, cycled over the channels, times 0.1), ``False`` (none)
            (default: ``"sinusoidal"`` for ``mode="np"``, none for HNP). On a 3,000-INR Fashion-MNIST zoo (3 seeds x 5
            epochs) the sinusoidal ones gave validation accuracy 0.285 ± 0.020, learned ones 0.255 ± 0.014, none
            0.277 ± 0.014 (README, "Sweeps").
        fourier_features: Frequencies of the input encoding, 0 for raw values (default: ``8``).
        fourier_scale: Their standard deviation (default: ``3.0``).
        layout: Build for this architecture now instead of on the first batch.
    """

    def __init__(self, out_dim: int, mode: str = "hnp", hidden: int = 32, num_layers: int = 3,
                 io_embeddings: bool | str | None = None, fourier_features: int = 8, fourier_scale: float = 3.0,
                 dropout: float = 0.0, layout: GraphLayout | None = None) -> None:
        if mode not in ("np", "hnp"):
            raise ValueError(f"mode must be 'np' or 'hnp', got {mode!r}")
        self.mode = mode
        if io_embeddings not in (None, True, False, "learned", "sinusoidal"):
            raise ValueError(f"io_embeddings must be True, False, 'learned' or 'sinusoidal', got {io_embeddings!r}")
        io_embeddings = ("sinusoidal" if mode == "np" else False) if io_embeddings is None else io_embeddings
        self.io_embeddings = "learned" if io_embeddings is True else io_embeddings
        if self.io_embeddings and mode != "np":
            raise ValueError("io_embeddings apply to mode='np' (HNP keeps input and output neurons fixed already)")
        self.fourier_features, self.fourier_scale = fourier_features, fourier_scale
        super().__init__(out_dim, hidden, num_layers, mode == "np", dropout, layout)

    def input_channels(self) -> int:
        return 2 * self.fourier_features if self.fourier_features else 1

    def build(self, layout: GraphLayout) -> None:
        super().build(layout)
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("frequencies", torch.randn(max(self.fourier_features, 1), generator=generator)
                             * self.fourier_scale)
        self._io_tables: list[tuple[int, str]] = []  # (slot index, attribute): a parameter or a fixed buffer
        if self.io_embeddings:
            last = self.spec.num_layers
            for index, slot in enumerate(self.slots):
                labels = [x for x in slot.permutable if x in (0, last)]
                if labels:
                    shape = [1] + [self.spec.sizes[x] if x in labels else 1 for x in slot.permutable]
                    channels = self.input_channels() * slot.fixed_size
                    if self.io_embeddings == "sinusoidal":
                        name = f"io_encoding{index}"
                        self.register_buffer(name, 0.1 * _sinusoidal_positions(shape, channels))
                    else:
                        name = f"io_embedding{index}"
                        self.register_parameter(name, nn.Parameter(torch.randn(*shape, channels) * 0.1))
                    self._io_tables.append((index, name))

    def encode_inputs(self, features: list[Tensor]) -> list[Tensor]:
        if self.fourier_features:
            encoded = []
            for feature in features:
                angles = 2 * math.pi * feature.unsqueeze(-1) * self.frequencies  # [..., C*fixed, F]
                pair = torch.cat([angles.sin(), angles.cos()], dim=-1)  # channel order: (entry, sin/cos x F)
                encoded.append(pair.reshape(*feature.shape[:-1], -1))
            features = encoded
        features = list(features)
        for index, name in self._io_tables:
            features[index] = features[index] + getattr(self, name)
        return features

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, io_embeddings={self.io_embeddings}, {super().extra_repr()}"


def _sinusoidal_positions(shape: list[int], channels: int) -> Tensor:
    """``[*shape, channels]``: for every axis longer than 1, sine and cosine of the index's cell centre in
    (-1, 1) at frequencies pi * 2^k, k = 0..5 cycled over the channels (sin k=0, cos k=0, sin k=1, ...), summed
    over such axes."""
    encoding = torch.zeros(*shape, channels)
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        position = (2 * torch.arange(size) + 1) / size - 1  # cell centres in (-1, 1)
        k = torch.arange(channels) // 2
        angles = math.pi * position[:, None] * 2.0 ** (k % 6).float()
        values = torch.where(torch.arange(channels) % 2 == 0, angles.sin(), angles.cos())  # [size, channels]
        view = [1] * len(shape) + [channels]
        view[axis] = size
        encoding = encoding + values.view(view)
    return encoding


class FlatMLP(WeightSpaceModel):
    """An MLP on the flattened (per-tensor normalised) parameters; not invariant by design.

    With ``permutation_augmentation`` every training batch is randomly
    re-permuted (hidden neurons), the usual remedy.

    Args:
        out_dim: Outputs per network.
        hidden: Width (default: ``256``).
        num_layers: Hidden layers (default: ``3``).
        permutation_augmentation: Randomly permute hidden neurons in training (default: ``False``).
        seed: Seed of that augmentation.
    """

    def __init__(self, out_dim: int, hidden: int = 256, num_layers: int = 3, permutation_augmentation: bool = False,
                 seed: int = 0, layout: GraphLayout | None = None) -> None:
        self.hidden, self.num_layers = hidden, num_layers
        self.permutation_augmentation, self.seed = permutation_augmentation, seed
        super().__init__(out_dim, layout)

    def build(self, layout: GraphLayout) -> None:
        widths = [layout.num_params] + [self.hidden] * self.num_layers
        self.mlp = _mlp(widths, self.out_dim)
        self.augment = RandomHiddenPermutation(layout, self.seed) if self.permutation_augmentation else None

    def forward(self, batch: object) -> Tensor:
        params = self._params(batch)
        if self.training and self.augment is not None:
            params = self.augment(params)
        return self.compute(self.normalize(params))

    def compute(self, params: Tensor) -> Tensor:
        return self.mlp(params)


def fit_statnn_regressor(params: Tensor, targets: Tensor, layout: GraphLayout, **options: object) -> object:
    """StatNN with a gradient-boosted regressor (scikit-learn's ``HistGradientBoostingRegressor``).

    Returns the fitted regressor; predict with
    ``regressor.predict(statnn_features(params, layout).numpy())``.
    """
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError as error:
        raise ImportError("the gradient-boosted StatNN needs scikit-learn: pip install scikit-learn") from error
    features = statnn_features(params.double(), layout).numpy()
    return HistGradientBoostingRegressor(**options).fit(features, targets.double().numpy())


class StatNN(WeightSpaceModel):
    """StatNN (Unterthiner et al., 2020): :func:`statnn_features` into an MLP (features standardised)."""

    def __init__(self, out_dim: int, hidden: int = 256, num_layers: int = 2, layout: GraphLayout | None = None) -> None:
        self.hidden, self.num_layers = hidden, num_layers
        super().__init__(out_dim, layout)

    def build(self, layout: GraphLayout) -> None:
        width = 7 * len(layout.state)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        widths = [width] + [self.hidden] * self.num_layers
        self.mlp = _mlp(widths, self.out_dim)

    @torch.no_grad()
    def fit_statistics(self, batches: object) -> StatNN:
        """Fit the standardisation of the statistics (raw parameters, not normalised)."""
        batches = _as_batches(batches)
        features = torch.cat([statnn_features(self._params(b), self.layout) for b in batches])
        _require_finite(features, "weight statistics")
        mean, std = column_moments(features)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)
        return self

    def forward(self, batch: object) -> Tensor:
        params = self._params(batch)
        return self.mlp((statnn_features(params, self.layout) - self.feature_mean) / self.feature_std)


def _require_finite(rows: Tensor, what: str) -> None:
    """:class:`NonFiniteError` naming the rows (models) of ``rows`` that hold NaN or infinite values."""
    bad = (~torch.isfinite(rows).all(dim=1)).nonzero().flatten()
    if bad.numel():
        raise NonFiniteError(f"fit_statistics was given {bad.numel()} models with NaN or infinite {what} (rows "
                             f"{bad[:5].tolist()}{' ...' if bad.numel() > 5 else ''}); leave them out (ZooDataset "
                             "refuses them) before fitting the normalisation")


BASELINES = {
    "dwsnet": DWSNet,
    "nfn-hnp": lambda out_dim, **kw: NFN(out_dim, mode="hnp", **kw),
    "nfn-np": lambda out_dim, **kw: NFN(out_dim, mode="np", **kw),
    "mlp": FlatMLP,
    "mlp-aug": lambda out_dim, **kw: FlatMLP(out_dim, permutation_augmentation=True, **kw),
    "statnn": StatNN,
}
