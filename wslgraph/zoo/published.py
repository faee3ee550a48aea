"""Loaders for the published zoo formats, from local files (nothing is downloaded).

* :func:`load_dws_inrs`: DWSNets' INR zoos: one ``.pth`` state dict per INR and a
  splits JSON ``{"train" | "val" | "test": {"path": [...], "label": [...]}}``.
* :func:`load_nfn_sirens`: NFN's SIREN folders ``{prefix}_{label}s/net{index}.pth``,
  split by index (train below ``split_points[0]``, val below ``split_points[1]``).
* :func:`load_small_cnn_zoo`: the Small CNN Zoo (Unterthiner et al. 2020):
  ``weights.npy`` (models x 4,970, TensorFlow layout), ``metrics.csv.gz`` and
  ``layout.csv`` (``varname, start_idx, end_idx, shape``).

Each returns a :class:`~wslgraph.zoo.storage.ZooArrays` in wslgraph's own
parameter order; :func:`~wslgraph.zoo.storage.write_zoo` stores it as a zoo
folder that :class:`~wslgraph.zoo.ZooDataset` reads. ``.pth`` files are
read with ``torch.load(weights_only=True)``; anything that is not a plain state
dict of tensors is refused. ``weights.npy`` is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import pickle
import random
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import UnsafeFileError, ZooError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import Activation, NodeType
from wslgraph.zoo.architectures import siren, small_cnn
from wslgraph.zoo.storage import SPLIT_CODES, ZooArrays

__all__ = ["load_dws_inrs", "load_nfn_sirens", "load_small_cnn_zoo", "load_state_dict_file", "mlp_state_to_params"]


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A ``.pth`` state dict, loaded with ``weights_only=True``; other content raises :class:`UnsafeFileError`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as error:
        raise UnsafeFileError(f"{path} is not a plain state dict of tensors (torch.load(weights_only=True) "
                              f"refused it: {str(error).splitlines()[0]})") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ZooError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def mlp_state_to_params(state: Mapping[str, Tensor], in_features: int = 2) -> tuple[list[Tensor], tuple[int, ...]]:
    """Order an MLP's ``(weight, bias)`` pairs by their shapes (not key order) and return them with the widths.

    Pairs are matched by key prefix (``x.weight`` with ``x.bias``) and chained
    from the layer with ``in_features`` inputs, each reading the previous
    one's outputs (layer names, in natural order, break ties between equal
    shapes), so files whose keys are named or ordered differently
    (``seq.0.weight``, ``net.0.linear.weight``, ...) load the same way.
    """
    if not state:
        raise ZooError("the state dict is empty: no Linear layers to read")
    layers = {}
    for key, value in state.items():
        stem, _, kind = key.rpartition(".")
        if kind in ("weight", "bias"):
            layers.setdefault(stem, {})[kind] = value
    if any(set(v) != {"weight", "bias"} for v in layers.values()) or any(
            v["weight"].dim() != 2 or v["bias"].shape != v["weight"].shape[:1] for v in layers.values()):
        raise ZooError(f"not an MLP state dict with a bias per Linear: keys {list(state)}")
    stems = sorted(layers, key=_natural)
    ordered = _chain([(layers[k]["weight"], layers[k]["bias"]) for k in stems], in_features)
    if ordered is None:
        raise ZooError(f"cannot chain the layers of {list(state)} into an MLP from {in_features} inputs; "
                       "give the network's true input size (--in-features / in_features)")
    widths = tuple(w.shape[0] for w, _ in ordered)
    return [t for pair in ordered for t in pair], widths


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _chain(pairs: list[tuple[Tensor, Tensor]], width: int) -> list[tuple[Tensor, Tensor]] | None:
    """An order of all ``pairs`` in which each layer reads the previous one's outputs (names break ties)."""
    if not pairs:
        return []
    for i, pair in enumerate(pairs):
        if pair[0].shape[1] == width:
            rest = _chain(pairs[:i] + pairs[i + 1:], pair[0].shape[0])
            if rest is not None:
                return [pair, *rest]
    return None


def _siren_arrays(states: list[dict[str, Tensor]], columns: dict[str, Tensor], description: dict) -> ZooArrays:
    flat, widths = [], None
    for state in states:
        params, shape = mlp_state_to_params(state)
        if widths is not None and shape != widths:
            raise ZooError(f"INRs of different architectures ({widths} and {shape}) in one zoo")
        widths = shape
        flat.append(torch.cat([p.detach().float().flatten() for p in params]))
    if widths is None:
        raise ZooError("no INRs found")
    layout = GraphTemplate.from_module(siren(2, widths[:-1], widths[-1])).layout
    return ZooArrays(torch.stack(flat), columns, layout, "inr", description, {"split": list(SPLIT_CODES)})


def _resolve(path: str, base: Path) -> Path:
    """A path from a peer's splits file: as written, under ``base``, or under ``base`` without leading folders."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    parts = candidate.parts
    for start in range(len(parts)):
        found = base.joinpath(*parts[start:])
        if found.exists():
            return found
    raise FileNotFoundError(f"INR file {path} not found as written or under {base}")


def load_dws_inrs(splits_file: str | Path, root: str | Path | None = None) -> ZooArrays:
    """A DWSNets INR zoo from its splits JSON (paths resolved as written, or under ``root``).

    The INRs compute ``f(x) + 0.5`` (the DWS recipe); the offset is not a
    parameter and is recorded as ``output_offset`` in the description.
    """
    splits_file = Path(splits_file)
    try:
        splits = json.loads(splits_file.read_text())
    except json.JSONDecodeError as error:
        raise ZooError(f"{splits_file} is not valid JSON: {error}") from error
    base = Path(root) if root is not None else splits_file.parent
    states, labels, codes = [], [], []
    for split in ("train", "val", "test"):
        entry = splits.get(split)
        if entry is None:
            continue
        if not isinstance(entry, dict) or len(entry.get("path", [])) != len(entry.get("label", [None])):
            raise ZooError(f"{splits_file}: {split!r} needs equally long 'path' and 'label' lists")
        for path, label in zip(entry["path"], entry["label"]):
            states.append(load_state_dict_file(_resolve(path, base)))
            labels.append(int(label))
            codes.append(SPLIT_CODES[split])
    columns = {"label": torch.tensor(labels), "split": torch.tensor(codes, dtype=torch.uint8)}
    return _siren_arrays(states, columns, {"format": "dws", "source": str(splits_file), "output_offset": 0.5})


def load_nfn_sirens(root: str | Path, prefix: str = "randinit_smaller",
                    split_points: tuple[int, int] = (45_000, 50_000)) -> ZooArrays:
    """NFN's SIREN folders ``root/{prefix}_{label}s/net{index}.pth``, ordered and split by ``index``."""
    root = Path(root)
    folder_pattern = re.compile(rf"^{re.escape(prefix)}_(\d)s$")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        match = folder_pattern.match(folder.name)
        if match is None:
            continue
        for path in folder.glob("net*.pth"):
            index = re.fullmatch(r"net(\d+)\.pth", path.name)
            if index is not None:
                found[int(index.group(1))] = (path, int(match.group(1)))
    if not found:
        raise FileNotFoundError(f"no {prefix}_<label>s/net<index>.pth files under {root}")
    indices = sorted(found)
    val_point, test_point = split_points
    codes = [SPLIT_CODES["train" if i < val_point else "val" if i < test_point else "test"] for i in indices]
    states = [load_state_dict_file(found[i][0]) for i in indices]
    columns = {"label": torch.tensor([found[i][1] for i in indices]), "index": torch.tensor(indices),
               "split": torch.tensor(codes, dtype=torch.uint8)}
    return _siren_arrays(states, columns, {"format": "nfn", "source": str(root), "prefix": prefix,
                                           "split_points": list(split_points), "output_offset": 0.0})


def load_small_cnn_zoo(root: str | Path, *, final_step: int | None = 86, activation: str | None = None,
                       order_file: str | Path | None = None) -> ZooArrays:
    """The Small CNN Zoo from ``root`` (``weights.npy``, ``metrics.csv.gz``, ``layout.csv``).

    TensorFlow kernels ``H x W x in x out`` become PyTorch ``out x in x H x W``
    and dense ``in x out`` becomes ``out x in``. Every metrics column is kept
    (numbers as floats, text as codes with a vocabulary). The split is NFN's:
    models (after ``order_file``'s shuffle, if given) with ``step ==
    final_step``; the second half is test, the first half 80/20 train/val
    (Python's ``random.Random(0)`` shuffle).

    Args:
        final_step: Keep only this checkpoint step (``None``: every checkpoint, no split).
        activation: Keep only models with this activation (``"relu"``,
            ``"tanh"``); with ``None`` a zoo mixing activations gets
            :attr:`Activation.OTHER` on hidden nodes (the per-model activation
            stays in its column).
        order_file: NFN's CSV of shuffled indices, applied first.
    """
    root = Path(root)
    for name in ("weights.npy", "metrics.csv.gz", "layout.csv"):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} is missing; the Small CNN Zoo folder holds weights.npy, "
                                    "metrics.csv.gz and layout.csv")
    try:
        weights = np.load(root / "weights.npy", allow_pickle=False)
    except ValueError as error:
        raise UnsafeFileError(f"{root / 'weights.npy'} is not a plain array (pickled objects are refused)") from error
    with gzip.open(root / "metrics.csv.gz", "rt") as file:
        metrics = list(csv.DictReader(file))
    with open(root / "layout.csv") as file:
        rows = list(csv.DictReader(file))
    if weights.ndim != 2 or len(metrics) != weights.shape[0]:
        raise ZooError(f"{root}: weights.npy is {weights.shape} but metrics.csv.gz has {len(metrics)} rows")
    order = np.arange(len(metrics))
    if order_file is not None:
        order = np.array([int(line.split(",")[0]) for line in Path(order_file).read_text().split()])
    weights, metrics = weights[order], [metrics[i] for i in order]
    keep = np.ones(len(metrics), dtype=bool)
    if final_step is not None:
        keep &= np.array([float(m.get("step", "nan")) == final_step for m in metrics])
    activation_key = next((k for k in (metrics[0] if metrics else {}) if k.endswith("activation")), None)
    if activation is not None:
        if activation_key is None:
            raise ZooError(f"{root}/metrics.csv.gz has no activation column to filter on")
        keep &= np.array([m[activation_key] == activation for m in metrics])
    weights, metrics = weights[keep], [m for m, k in zip(metrics, keep) if k]
    tensors = _tf_to_torch(weights, rows, root)
    module = _cnn_for(tensors, activation or "relu")
    template = GraphTemplate.from_module(module)
    if [tuple(t.shape[1:]) for t in tensors] != [e.shape for e in template.layout.state]:
        raise ZooError(f"{root}/layout.csv does not describe a Small-CNN-Zoo CNN: shapes "
                       f"{[tuple(t.shape[1:]) for t in tensors]}")
    params = torch.cat([t.flatten(1) for t in tensors], dim=1).float()
    layout = template.layout
    mixed = activation is None and activation_key is not None and len({m[activation_key] for m in metrics}) > 1
    if mixed:
        layout = _with_hidden_activation(layout, Activation.OTHER)
    columns, vocab = _metric_columns(metrics)
    if final_step is not None:
        columns["split"] = _nfn_split(len(metrics))
        vocab["split"] = list(SPLIT_CODES)
    return ZooArrays(params, columns, layout, "cnn", {"format": "small-cnn-zoo", "source": str(root),
                                                      "final_step": final_step, "activation": activation}, vocab)


def _tf_to_torch(weights: np.ndarray, rows: list[dict], root: Path) -> list[Tensor]:
    tensors = []
    for row in rows:
        try:
            shape = tuple(ast.literal_eval(row["shape"]))
            start, end = int(row["start_idx"]), int(row["end_idx"])
        except (KeyError, ValueError, SyntaxError) as error:
            raise ZooError(f"{root}/layout.csv: bad row {row} ({error})") from error
        array = torch.from_numpy(np.ascontiguousarray(weights[:, start:end])).reshape(-1, *shape)
        name = row["varname"]
        if name.endswith("kernel:0"):
            if array.dim() == 5:  # H, W, in, out -> out, in, H, W
                array = array.permute(0, 4, 3, 1, 2)
            elif array.dim() == 3:  # in, out -> out, in
                array = array.transpose(1, 2)
        elif not name.endswith("bias:0"):
            raise ZooError(f"{root}/layout.csv: variable {name!r} is neither a kernel nor a bias")
        tensors.append(array.contiguous())
    return tensors


def _cnn_for(tensors: list[Tensor], activation: str) -> torch.nn.Module:
    convs = [t for t in tensors if t.dim() == 5]
    if not convs or tensors[-2].dim() != 3:
        raise ZooError("expected convolution kernels followed by one dense layer")
    return small_cnn(in_channels=convs[0].shape[2], channels=convs[0].shape[1], num_layers=len(convs),
                     kernel_size=convs[0].shape[-1], num_classes=tensors[-2].shape[1], activation=activation)


def _with_hidden_activation(layout: GraphLayout, activation: Activation) -> GraphLayout:
    groups = tuple(replace(g, activation=activation) if g.node_type == NodeType.HIDDEN and
                   g.activation != Activation.IDENTITY else g for g in layout.groups)
    return replace(layout, groups=groups)


def _metric_columns(metrics: list[dict]) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    columns, vocab = {}, {}
    for key in metrics[0] if metrics else {}:
        values = [m[key] for m in metrics]
        try:
            columns[key] = torch.tensor([float(v) for v in values], dtype=torch.float32)
        except ValueError:
            words = sorted(set(values))
            vocab[key] = words
            columns[key] = torch.tensor([words.index(v) for v in values])
    return columns, vocab


def _nfn_split(count: int) -> Tensor:
    """NFN's split: test = second half; the first half shuffled with ``random.Random(0)``, 80 % train."""
    codes = torch.full((count,), SPLIT_CODES["test"], dtype=torch.uint8)
    first_half = list(range(int(0.5 * count)))
    random.Random(0).shuffle(first_half)
    cut = int(0.8 * len(first_half))
    codes[first_half[:cut]] = SPLIT_CODES["train"]
    codes[first_half[cut:]] = SPLIT_CODES["val"]
    return codes

