"""Helpers for testing conversions: :func:`permute_hidden` (kept for older imports; it lives in
:mod:`wslgraph.weightspace`), and :func:`torchvision_models`, torchvision's classification networks where the
package itself does not import."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path

from torch import nn

from wslgraph.weightspace.symmetry import permute_hidden

__all__ = ["permute_hidden", "torchvision_models", "TORCHVISION_FAMILIES"]

#: builder names by module of ``torchvision.models`` (one or two per family)
TORCHVISION_FAMILIES = {
    "resnet": ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"), "vgg": ("vgg11",),
    "alexnet": ("alexnet",), "mnasnet": ("mnasnet0_5",), "mobilenetv2": ("mobilenet_v2",),
    "mobilenetv3": ("mobilenet_v3_small", "mobilenet_v3_large"), "squeezenet": ("squeezenet1_1",),
    "densenet": ("densenet121",), "googlenet": ("googlenet",), "efficientnet": ("efficientnet_b0",),
    "regnet": ("regnet_y_400mf",), "convnext": ("convnext_tiny",), "shufflenetv2": ("shufflenet_v2_x0_5",),
}


def torchvision_models() -> dict[str, Callable[..., nn.Module]] | None:
    """torchvision's CNN builders (``name -> builder(num_classes=...)``), or ``None`` without torchvision.

    With the CPU wheel of torch, ``import torchvision`` fails here (its compiled operators do not load), but its
    model definitions are plain Python: they are imported from the installed package without running the
    package's ``__init__`` (which loads the operators). Only what the classification models need is provided:
    ``torchvision.ops.misc``, ``torchvision.ops.stochastic_depth`` and the ``InterpolationMode`` names of their
    weight presets. Where ``import torchvision`` works, the package is used as it is.
    """
    try:
        import torchvision.models as models  # noqa: F401 - the real package, where it loads
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - its compiled operators do not load: fall back to the plain-Python files
        models = _plain_python_models()
        if models is None:
            return None
    else:
        models = {name: importlib.import_module(f"torchvision.models.{name}") for name in TORCHVISION_FAMILIES}
    return {builder: getattr(module, builder) for name, module in models.items()
            for builder in TORCHVISION_FAMILIES[name]}


def _plain_python_models() -> dict[str, types.ModuleType] | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]  # a half-imported package from the failed import
    for name, folder in (("torchvision", root), ("torchvision.models", root / "models"),
                         ("torchvision.ops", root / "ops"), ("torchvision.transforms", root / "transforms")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package

    class InterpolationMode(enum.Enum):  # the names the weight presets refer to
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    sys.modules["torchvision.transforms"].InterpolationMode = InterpolationMode
    ops = sys.modules["torchvision.ops"]
    for sub in ("misc", "stochastic_depth"):
        module = importlib.import_module(f"torchvision.ops.{sub}")
        for key in getattr(module, "__all__", [k for k in vars(module) if not k.startswith("_")]):
            setattr(ops, key, getattr(module, key))
    return {name: importlib.import_module(f"torchvision.models.{name}") for name in TORCHVISION_FAMILIES}
