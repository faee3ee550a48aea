"""Building and loading hyper-representations, and embedding a zoo with a trained one.

A run folder (:func:`wslgraph.tasks.train_representation`) holds what
:func:`~wslgraph.tasks.train` writes (resumable checkpoints, ``best.safetensors``,
``metrics.jsonl``/``.csv``) and ``represent.json``: the zoo, the encoder and its
options, the representation's options and the zoo's layout, so that
:func:`load_representation` rebuilds exactly the trained model and refuses a zoo
of another architecture.
Embeddings are written as safetensors (``embeddings`` ``[N, latent]``) with the
zoo's manifest digest in the metadata, so probes refuse embeddings of another zoo.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from wslgraph.errors import CorruptShardError, ManifestError, OptionError, ZooError, check_options
from wslgraph.graph.vocab import NodeFeature
from wslgraph.io import atomic_write_bytes
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.represent.model import HyperRepresentation, TokenRepresentation, statistics_width
from wslgraph.tokens.model import TokenTransformer

if TYPE_CHECKING:
    from wslgraph.zoo.dataset import ZooDataset

__all__ = ["RepresentOptions", "ENCODERS", "kept_rows", "training_rows", "build_representation",
           "load_representation", "embed_zoo", "save_embeddings", "load_embeddings", "zoo_digest"]

ENCODERS = {"gnn": GNNEncoder, "transformer": TransformerEncoder, "sane": TokenTransformer}


@dataclass
class RepresentOptions:
    """The representation's settings (see :class:`~wslgraph.represent.HyperRepresentation`).

    ``encoder_options`` go to the encoder (default: ``hidden=64, num_layers=3``
    for the GNN, ``hidden=64, num_layers=2`` for the transformer and SANE). With
    ``encoder="sane"`` the representation is SANE's token autoencoder
    (:class:`~wslgraph.represent.TokenRepresentation`): ``latent`` is then each
    token's latent width and ``decoder_hidden`` is not used. Models with a
    weight of magnitude above ``max_weight`` (diverged runs; ``None``: keep all)
    are left out of training and probing, as the published Model Zoos loader's
    ``weight_threshold`` does: in a 128-model grid zoo 6 % of the checkpoints
    had weights above 15 (most above 100) and, standardised, dominated the
    reconstruction loss by three orders of magnitude.

    ``activation`` and ``min_accuracy`` narrow the training rows further to the
    models of one activation (a zoo's ``activation`` column) whose test accuracy
    is at least ``min_accuracy``: a representation *for generation*, as the
    generative hyper-representations are trained on zoos of one configuration.
    Its reconstruction is then measured in the units of that population, whose
    per-tensor spread is 2-5x smaller than the whole grid's, so the same
    standardised error is a 2-5x smaller error in the weights (see
    :func:`training_rows`).

    ``positives="model"`` makes the other checkpoints of a model positives of
    the contrastive term (:class:`~wslgraph.represent.HyperRepresentation`),
    with training batches of ``per_model`` checkpoints of each model side by
    side (:meth:`~wslgraph.zoo.ZooDataset.grouped`; the zoo needs a
    ``model_index`` column).

    ``statistics_weight`` adds a linear read-out of the standardised weight
    statistics to the reconstruction term, and ``statistics_source="model"``
    makes the statistics branch read the unaugmented model's s(W) in both
    training views; ``statistics_units`` sets the read-out's units (see
    :class:`~wslgraph.represent.HyperRepresentation`).

    ``train_on="all"`` trains on the models of every split, not the train
    split only: no labels are read, so a representation of a zoo for
    probes that cross-validate over all of its models (``wslgraph probe``) can
    learn every model it will embed, as s(W) needs no training. The
    validation loss is then measured on models it trained on.
    """

    encoder: str = "gnn"
    latent: int = 32
    gamma: float = 0.5
    temperature: float = 0.1
    noise: float = 0.05
    erase: float = 0.05
    permute: bool = False
    decoder_hidden: int = 256
    max_weight: float | None = 10.0
    encoder_options: dict = field(default_factory=dict)
    activation: str | None = None
    min_accuracy: float | None = None
    sorted_weight: float = 0.0
    statistics: bool = False
    positives: str = "views"
    per_model: int = 4
    statistics_weight: float = 0.0
    statistics_source: str = "views"
    statistics_merge: str = "add"
    sorted_tails: bool = False
    statistics_units: str = "asinh"
    train_on: str = "train"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {self.encoder!r}")
        if self.max_weight is not None and not self.max_weight > 0:
            raise ValueError(f"max_weight must be > 0 or None, got {self.max_weight}")
        if self.latent < 1 or self.decoder_hidden < 1:
            raise ValueError(f"latent and decoder_hidden must be >= 1, got {self.latent}, {self.decoder_hidden}")
        if not (0 <= self.gamma <= 1 and self.temperature > 0 and self.noise >= 0 and 0 <= self.erase < 1):
            raise OptionError(f"need 0 <= gamma <= 1, temperature > 0, noise >= 0 and 0 <= erase < 1; got gamma="
                              f"{self.gamma}, temperature={self.temperature}, noise={self.noise}, erase={self.erase}")
        if not 0 <= self.sorted_weight <= 1:
            raise OptionError(f"sorted_weight is a share of the reconstruction term between 0 and 1, got "
                              f"{self.sorted_weight}")
        if self.sorted_tails and not self.sorted_weight:
            raise OptionError("sorted_tails weighs the sorted MSE's positions; give the sorted MSE a share "
                              "(sorted_weight > 0, --sorted-weight) or leave sorted_tails off")
        if self.sorted_weight and self.encoder == "sane":
            raise OptionError("sorted_weight needs a graph encoder (gnn or transformer); SANE's token autoencoder "
                              "reconstructs tokens exactly")
        if self.positives not in ("views", "model") or self.per_model < 2:
            raise OptionError(f"positives is 'views' or 'model' and per_model (checkpoints of a model per batch) at "
                              f"least 2; got {self.positives!r}, {self.per_model}")
        if not self.statistics_weight >= 0:
            raise OptionError(f"statistics_weight weighs a loss term and must be >= 0, got {self.statistics_weight}")
        if self.statistics_weight and self.encoder == "sane":
            raise OptionError("statistics_weight needs a graph encoder (gnn or transformer); SANE's token "
                              "autoencoder has one latent per token")
        if self.statistics_units not in ("asinh", "rank", "both"):
            raise OptionError(f"statistics_units is 'asinh', 'rank' or 'both' (the units the statistics read-out "
                              f"predicts), got {self.statistics_units!r}")
        if self.statistics_units != "asinh" and not self.statistics_weight:
            raise OptionError(f"statistics_units={self.statistics_units!r} says what the statistics read-out "
                              "predicts; give it a weight (statistics_weight > 0, --statistics-weight) or leave "
                              "statistics_units at 'asinh'")
        if self.train_on not in ("train", "all"):
            raise OptionError(f"train_on is 'train' (the zoo's train split) or 'all' (every split: self-supervised "
                              f"on the whole zoo, no labels), got {self.train_on!r}")
        if self.statistics_source not in ("views", "model"):
            raise OptionError(f"statistics_source is 'views' (each training view's own s(W)) or 'model' (the "
                              f"unaugmented model's), got {self.statistics_source!r}")
        if self.statistics_merge not in ("add", "concat"):
            raise OptionError(f"statistics_merge is 'add' (the statistics branch added to the encoder's latent) or "
                              f"'concat' (side by side), got {self.statistics_merge!r}")
        if self.statistics_merge == "concat" and (not self.statistics or self.latent < 2):
            raise OptionError("statistics_merge='concat' puts the statistics branch beside the encoder's features: "
                              f"it needs statistics=True (--statistics) and a latent of at least 2, got statistics="
                              f"{self.statistics}, latent {self.latent}")
        if self.statistics_source == "model" and not self.statistics:
            raise OptionError("statistics_source='model' says what the statistics branch reads; add statistics=True "
                              "(--statistics) or leave statistics_source at 'views'")
        if self.positives == "model" and self.encoder == "sane":
            raise OptionError("positives='model' needs a graph encoder (gnn or transformer); SANE's token "
                              "autoencoder contrasts windows of one model")
        if self.statistics and self.encoder == "sane":
            raise OptionError("statistics needs a graph encoder (gnn or transformer); SANE's token autoencoder "
                              "embeds windows of tokens")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise OptionError(f"min_accuracy is a test accuracy between 0 and 1, got {self.min_accuracy}")
        if not isinstance(self.encoder_options, dict):
            raise OptionError(f"encoder_options must be a JSON object such as {{\"hidden\": 32}}, got "
                              f"{self.encoder_options!r}")
        factory = TokenTransformer.__init__ if self.encoder == "sane" else ENCODERS[self.encoder]
        check_options(f"the {self.encoder} encoder", factory, self.encoder_options)


def kept_rows(params: Tensor, max_weight: float | None, layout: object | None = None) -> Tensor:
    """Boolean mask of the rows whose weights are finite and at most ``max_weight`` in magnitude; with the zoo's
    ``layout``, batch norm's buffers (running means and variances, step counters) do not count as weights: a
    healthy ResNet's running variances pass 10."""
    finite = torch.isfinite(params).all(dim=1)
    if max_weight is None:
        return finite
    weights = torch.ones(params.shape[1], dtype=torch.bool)
    if layout is not None:
        buffers = layout.statistic_keys(NodeFeature.RUNNING_MEAN, NodeFeature.RUNNING_VAR)
        for entry in layout.state:
            if not entry.dtype.is_floating_point or entry.key in buffers:
                weights[layout.span(entry.key)] = False
    return finite & (params[:, weights].abs().amax(dim=1) <= max_weight)


def training_rows(arrays: object, options: RepresentOptions) -> Tensor:
    """Boolean mask of the zoo rows a representation with ``options`` trains on (every split; the training loop
    takes the train split of them): weights within ``max_weight``, and the ``activation`` and ``min_accuracy``
    selections where given. Raises :class:`~wslgraph.errors.ZooError` for a selection the zoo cannot make (no such
    column or activation) or one that leaves no rows."""
    keep = kept_rows(arrays.params, options.max_weight, arrays.layout)
    columns = arrays.columns
    if options.activation is not None:
        vocab = arrays.vocab.get("activation") if "activation" in columns else None
        if vocab is None:
            raise ZooError("this zoo has no activation column to select rows by; leave out --activation")
        if options.activation not in vocab:
            raise ZooError(f"activation {options.activation!r} is not in this zoo; it has {list(vocab)}")
        keep &= columns["activation"] == vocab.index(options.activation)
    if options.min_accuracy is not None:
        if "test_accuracy" not in columns:
            raise ZooError("this zoo has no test_accuracy column to select rows by; leave out --min-accuracy")
        keep &= columns["test_accuracy"] >= options.min_accuracy
    if not bool(keep.any()):
        raise ZooError(f"no row of the zoo has weights within {options.max_weight}, activation "
                       f"{options.activation or 'any'} and test accuracy >= {options.min_accuracy or 0}; "
                       "loosen the selection")
    return keep


def build_representation(layout: object, options: RepresentOptions,
                         seed: int = 0) -> HyperRepresentation | TokenRepresentation:
    """A fresh representation for ``layout`` (seeded: the same options and seed give the same model)."""
    torch.manual_seed(seed)
    defaults = {"hidden": 64, "num_layers": 3 if options.encoder == "gnn" else 2}
    if options.encoder == "sane":
        backbone = TokenTransformer(layout, latent=options.latent, **(defaults | options.encoder_options))
        return TokenRepresentation(layout, backbone, gamma=options.gamma, temperature=options.temperature,
                                   noise=options.noise, erase=options.erase, permute=options.permute, seed=seed)
    width = options.latent  # side by side, the encoder gives what the statistics branch leaves of the latent
    if options.statistics and options.statistics_merge == "concat":
        width -= statistics_width(options.latent, options.statistics_merge)
    encoder = ENCODERS[options.encoder](width, **(defaults | options.encoder_options))
    return HyperRepresentation(layout, encoder, options.latent, gamma=options.gamma,
                               temperature=options.temperature, noise=options.noise, erase=options.erase,
                               permute=options.permute, decoder_hidden=options.decoder_hidden, seed=seed,
                               sorted_weight=options.sorted_weight, statistics=options.statistics,
                               positives=options.positives, statistics_weight=options.statistics_weight,
                               statistics_source=options.statistics_source,
                               statistics_merge=options.statistics_merge, sorted_tails=options.sorted_tails,
                               statistics_units=options.statistics_units)


def zoo_digest(dataset: ZooDataset) -> str:
    """SHA-256 of a zoo's manifest (its shards' digests and columns): the identity of the zoo's rows."""
    manifest = Path(dataset.root) / "manifest.json"
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


def load_representation(run: str | Path, layout: object | None = None,
                        weights: str = "best") -> HyperRepresentation:
    """The best weights of a run folder written by :func:`train_representation`, in eval mode; ``weights="last"``
    gives the last epoch's (the resumable checkpoint's) instead of those with the lowest validation loss.

    With ``layout``, refuse (:class:`~wslgraph.errors.ManifestError`) a run trained on another architecture.
    """
    if weights not in ("best", "last"):
        raise OptionError(f"weights={weights!r}: choose 'best' (lowest validation loss) or 'last' (the last epoch)")
    run = Path(run)
    if not (run / "represent.json").exists() or not (run / "best.safetensors").exists():
        raise ManifestError(f"{run} is not a finished representation run (represent.json and best.safetensors); "
                            "train one with `wslgraph represent ZOO --out RUN`")
    from safetensors import SafetensorError

    from wslgraph.graph.layout import GraphLayout

    try:
        meta = json.loads((run / "represent.json").read_text())
        trained = GraphLayout.from_dict(meta["layout"])
        options = RepresentOptions(**meta["options"])
        seed = int(meta["seed"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"{run / 'represent.json'} is corrupt or was edited ({type(error).__name__}: {error}); "
                            "train the representation again") from None
    if layout is not None and layout.to_dict() != meta["layout"]:
        raise ManifestError(f"{run} was trained on another architecture than this zoo's; embed and decode only "
                            "zoos of the architecture it was trained on")
    model = build_representation(trained, options, seed)
    with torch.no_grad():  # lazy parameters: build them on one graph of the architecture
        from wslgraph.convert.template import GraphTemplate

        model.embed(GraphTemplate(trained).batch(torch.zeros(2, trained.num_params)))
    path = run / ("best.safetensors" if weights == "best" else "checkpoint.safetensors")
    try:
        state = load_file(path)  # the checkpoint also holds the optimizer's state: only the model's is read
        model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    except (SafetensorError, RuntimeError, FileNotFoundError) as error:
        raise CorruptShardError(f"{path} is corrupt, missing or holds another model's weights ({error}); "
                                "train the representation again") from None
    return model.eval()


@torch.no_grad()
def embed_zoo(model: HyperRepresentation | TokenRepresentation, dataset: ZooDataset, batch_size: int = 256,
              device: str | torch.device = "cpu", *, for_sampling: bool = False) -> Tensor:
    """Embeddings ``[N, latent]`` of every row of ``dataset`` (in its order); with ``for_sampling`` what a density
    is fitted to for sampling (``model.sampling_latents``: the whole token latent sequence for SANE)."""
    model = model.to(device).eval()
    embed = model.sampling_latents if for_sampling else model.embed
    return torch.cat([embed(batch).cpu() for batch in dataset.batches(batch_size, device=device)])


def save_embeddings(path: str | Path, embeddings: Tensor, dataset: ZooDataset, run: str | Path) -> Path:
    """Write ``embeddings`` (safetensors, atomically) with the zoo's digest and the run's path as metadata."""
    metadata = {"zoo": str(dataset.root), "zoo_digest": zoo_digest(dataset), "run": str(run),
                "split": str(dataset.split)}
    return atomic_write_bytes(path, save({"embeddings": embeddings.contiguous()}, metadata))


def load_embeddings(path: str | Path, dataset: ZooDataset) -> Tensor:
    """Embeddings written by :func:`save_embeddings` for ``dataset``; embeddings of another zoo or split are
    refused with :class:`~wslgraph.errors.ZooError`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            embeddings = handle.get_tensor("embeddings")
    except (OSError, RuntimeError, KeyError, SafetensorError) as error:
        raise ZooError(f"{path} is not an embeddings file written by `wslgraph embed` ({error})") from error
    if metadata.get("zoo_digest") != zoo_digest(dataset) or metadata.get("split") != str(dataset.split):
        raise ZooError(f"{path} holds embeddings of another zoo or split ({metadata.get('zoo')}, split "
                       f"{metadata.get('split')}); embed this zoo with `wslgraph embed RUN ZOO --out FILE`")
    return embeddings
