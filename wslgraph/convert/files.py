"""Parameter graphs on disk, and networks from the command line's ``module:factory`` and checkpoint files.

A saved graph is one safetensors file: the graph's state dict (the exact
inverse of the conversion, so the file is as small as the network) plus its
:class:`~wslgraph.graph.GraphLayout` as JSON metadata. Loading rebuilds the
same graph bit for bit. No pickle is involved.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from wslgraph.convert.features import graph_from_state_dict, state_dict_from_graph
from wslgraph.errors import CorruptShardError, FactoryError, InvalidGraphError, ShapeMismatchError, UnsafeFileError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.param_graph import ParamGraph
from wslgraph.io import atomic_write_bytes

__all__ = ["save_graph", "load_graph", "is_graph_file", "load_factory", "load_checkpoint", "load_model"]

_KEY = "wslgraph.layout"
_FORMAT = "wslgraph.graph/1"


def save_graph(graph: ParamGraph, path: str | os.PathLike[str]) -> Path:
    """Write one parameter graph to a safetensors file (atomically); :func:`load_graph` reads it back exactly.

    The metadata holds the layout and a SHA-256 of the layout and the tensor bytes, so that a damaged or edited
    file is refused on loading instead of giving another graph.
    """
    layout = graph.layout
    if not isinstance(layout, GraphLayout):
        raise InvalidGraphError("save_graph needs a single graph with a layout; save batch.get_example(i) for a batch")
    state = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict_from_graph(graph).items()}
    metadata = {_KEY: json.dumps(layout.to_dict(), sort_keys=True), "format": _FORMAT}
    digest = _digest(metadata[_KEY], save_safetensors(state, metadata=metadata))  # tensor bytes: the same below
    return atomic_write_bytes(path, save_safetensors(state, metadata={**metadata, "sha256": digest}))


def _digest(layout_json: str, data: bytes) -> str:
    """SHA-256 of a graph file's layout JSON and its tensor bytes (what follows the safetensors header)."""
    return hashlib.sha256(layout_json.encode() + data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()


def load_graph(path: str | os.PathLike[str]) -> ParamGraph:
    """Read a graph written by :func:`save_graph`.

    Raises:
        CorruptShardError: The file is not a safetensors file, lacks the layout, its layout does not fit its
            tensors, or its bytes do not match the SHA-256 stored when it was written.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        state = load_safetensors(data)
        metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    except (SafetensorError, ValueError, AttributeError) as error:  # ValueError: JSON and UTF-8 errors too
        raise CorruptShardError(f"{path} is not a safetensors file written by save_graph ({error})") from error
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT or not isinstance(metadata.get(_KEY), str):
        raise CorruptShardError(f"{path} is a safetensors file but not a wslgraph graph (no {_KEY!r} metadata); "
                                "write graphs with wslgraph.save_graph")
    try:
        layout = GraphLayout.from_dict(json.loads(metadata[_KEY]))
    except (InvalidGraphError, json.JSONDecodeError) as error:
        raise CorruptShardError(f"{path}: its layout cannot be read ({error})") from error
    ordered = {entry.key: state[entry.key] for entry in layout.state if entry.key in state}
    if len(ordered) != len(layout.state):
        missing = [e.key for e in layout.state if e.key not in state]
        raise CorruptShardError(f"{path} lacks tensors its layout names: {missing}")
    _check_layout_against_tensors(path, layout, ordered)
    if "sha256" in metadata and metadata["sha256"] != _digest(metadata[_KEY], data):  # files before it: no digest
        raise CorruptShardError(f"{path} does not match the SHA-256 stored when it was written: the file was "
                                "damaged or edited; save the graph again")
    return graph_from_state_dict(layout, ordered)


def _check_layout_against_tensors(path: Path, layout: GraphLayout, state: dict[str, Tensor]) -> None:
    """The layout JSON of a file must describe the tensors stored beside it (shapes, dtypes, feature dtype)."""
    problems = [f"'{e.key}' is {tuple(state[e.key].shape)} {state[e.key].dtype}, the layout says {e.shape} {e.dtype}"
                for e in layout.state if tuple(state[e.key].shape) != e.shape or state[e.key].dtype != e.dtype]
    problems += [f"edge block '{b.key}' has weight_shape {b.weight_shape}, its tensor {layout.entries[b.key].shape}"
                 for b in layout.edge_blocks if b.key is not None and b.key in layout.entries
                 and tuple(b.weight_shape) != layout.entries[b.key].shape]
    floating = [t.dtype for t in state.values() if t.is_floating_point()]
    expected = functools.reduce(torch.promote_types, floating, floating[0]) if floating else torch.float32
    if layout.dtype != expected:
        problems.append(f"the layout's feature dtype is {layout.dtype}, its tensors make {expected}")
    if problems:
        listed = "; ".join(problems[:3])
        raise CorruptShardError(f"{path}: the layout stored in the file does not fit its tensors ({listed}); the "
                                "file was edited or damaged: save the graph again")


def is_graph_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a graph written by :func:`save_graph` (reads only the file's header)."""
    try:
        with safe_open(Path(path), framework="pt") as file:
            return (file.metadata() or {}).get("format") == _FORMAT
    except (SafetensorError, ValueError, OSError):
        return False


def load_factory(spec: str, kwargs: dict | None = None) -> nn.Module:
    """A network from ``"package.module:factory"`` or ``"path/to/file.py:factory"`` (called with ``kwargs``).

    ``factory`` may be a function or an ``nn.Module`` class; dotted names
    (``module:Class.build``) are followed.

    Raises:
        FactoryError: ``spec`` has no ``:``, the module or name does not exist,
            or the factory does not return an ``nn.Module``.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise FactoryError(f"expected MODULE:FACTORY (e.g. wslgraph.zoo:small_cnn or models.py:build), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise FactoryError(f"no such file {file}")
            loader_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise FactoryError(f"cannot import {module_name!r}: {error}") from error
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise FactoryError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise FactoryError(f"{spec} is not callable")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise FactoryError(f"{spec}: keyword arguments must be a JSON object such as {{\"width\": 8}}, got "
                           f"{type(kwargs).__name__}")
    try:
        model = target(**(kwargs or {}))
    except Exception as error:  # noqa: BLE001 - the user's factory may raise anything; name it and the call
        raise FactoryError(f"{spec}({', '.join(f'{k}={v!r}' for k, v in (kwargs or {}).items())}) raised "
                           f"{type(error).__name__}: {error}; fix the factory or its keyword arguments") from error
    if not isinstance(model, nn.Module):
        raise FactoryError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a ``.pt``/``.pth`` file (``torch.load(weights_only=True)``).

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper (as written by
    common training scripts) is unwrapped.

    Raises:
        UnsafeFileError: The file holds pickled objects beyond tensors.
        CorruptShardError: The file is not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return dict(load_safetensors(path.read_bytes()))
        except SafetensorError as error:
            raise CorruptShardError(f"{path} is not a valid safetensors file ({error})") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for refused or broken files
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split(". ")[0].strip() or type(error).__name__
        raise UnsafeFileError(f"{path} could not be loaded with torch.load(weights_only=True) ({reason}); save a "
                              "state dict (model.state_dict()) rather than a pickled module") from error
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CorruptShardError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_model(factory: str, checkpoint: str | os.PathLike[str] | None = None, kwargs: dict | None = None) -> nn.Module:
    """``load_factory(factory, kwargs)`` with the weights of ``checkpoint`` loaded strictly.

    Raises:
        ShapeMismatchError: The checkpoint's keys or shapes do not fit the network.
    """
    model = load_factory(factory, kwargs)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ShapeMismatchError(f"{checkpoint} does not fit {factory}: "
                                     f"{' '.join(str(error).split())[:600]}") from error
    return model
