"""The ``wslgraph`` command line."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from wslgraph.errors import CorruptShardError, ManifestError, WSLGraphError, ZooError
from wslgraph.runtime import tune_cpu_allocator
from wslgraph.weightspace.augment import AUGMENT_PRESETS
from wslgraph.zoo.architectures import ACTIVATIONS
from wslgraph.zoo.data import SOURCES

__all__ = ["main"]


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: use a whole number >= {minimum}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number above ``minimum`` (or equal to it where ``inclusive``)."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} is not allowed: use a finite number {bound}")
        return value
    parse.__name__ = f"number {bound}"
    return parse


def _device(text: str) -> str:
    """An argparse type: ``cpu`` or ``cuda[:N]`` that this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: wslgraph runs on cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device (torch {torch.__version__}); "
                                         "use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text


POSITIVE, COUNT = _whole(1), _whole(0)
RATE, NONNEGATIVE = _finite(0.0, inclusive=False), _finite(0.0, inclusive=True)


def FRACTION(text: str) -> float:  # noqa: N802 (an argparse type, named like the others)
    """An argparse type: a number in (0, 1]."""
    value = RATE(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: use a fraction in (0, 1]")
    return value


def JSON_OBJECT(text: str) -> dict:  # noqa: N802 (an argparse type, named like the others)
    """An argparse type: a JSON object, e.g. ``{"hidden": 32}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error}); e.g. '{{\"hidden\": 32}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is a JSON {type(value).__name__}, not an object of "
                                         "name: value pairs; e.g. '{\"hidden\": 32}'")
    return value


def _run_name(key: str, options: dict) -> str:
    """A demo run's folder: the model and a digest of its options, so a demo with other options starts afresh
    beside an earlier one instead of refusing its checkpoints."""
    return f"{key}-{hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]}"


def _demo(args: argparse.Namespace) -> int:
    """Conversion round trips, an INR zoo from real digits, three models trained on it, a table and figures."""
    from wslgraph.convert import to_graph, to_state_dict
    from wslgraph.plotting import draw_graph, image_grid, line_plot, save_figure
    from wslgraph.tasks import TrainConfig, build_model, train
    from wslgraph.zoo import BasicBlock, siren, small_cnn
    from wslgraph.zoo.dataset import ZooDataset
    from wslgraph.zoo.inr import render_inrs
    from wslgraph.zoo.jobs import inr_zoo_job
    from wslgraph.zoo.storage import generate_zoo

    torch.manual_seed(args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before any work: a demo must not fit a zoo only to fail at its figures
        raise OSError(errno.ENOTDIR, "--out is a file, not a folder", str(out))
    print("== 1. Conversion: nn.Module -> parameter graph -> state dict, exactly")
    for title, model in (("SIREN INR 2-32-32-1", siren()), ("Small-CNN-Zoo CNN", small_cnn()),
                         ("ResNet basic block", BasicBlock(8, 16, stride=2))):
        graph = to_graph(model).validate()
        state = to_state_dict(graph)
        exact = all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
        print(f"   {title:<22} {graph.num_nodes:>4} nodes {graph.num_edges:>6} edges; round trip exact: {exact}")
        if not exact:
            return 1
    quick = args.quick
    size = "quick" if quick else "full"
    train_images, test_images, steps = (60, 20, 40) if quick else (1200, 300, 500)
    zoo = Path(args.cache) / f"demo-mnist5k-{size}"
    print(f"\n== 2. An INR zoo: {train_images + test_images} SIRENs fitted to MNIST-5k digits (DWS recipe, {steps} "
          f"steps), cached in {zoo}")
    job = inr_zoo_job("mnist5k", recipe="dws", train_images=train_images, test_images=test_images, steps=steps,
                      shard_size=train_images + test_images, chunk_size=64, compile=not quick)
    started = time.perf_counter()
    generate_zoo(zoo, job, progress=not args.quiet)
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    psnr = splits["train"].arrays.columns["psnr"]
    print(f"   {len(splits['train'])} train / {len(splits['val'])} val / {len(splits['test'])} test INRs, median PSNR "
          f"{psnr.median():.1f} dB ({time.perf_counter() - started:.0f} s, 0 s when cached)")
    epochs = 1 if quick else 25
    print(f"\n== 3. Classifying the digit an INR draws from its weights ({epochs} epochs each, same data and seed)")
    models = {"GNNEncoder": ("gnn", {"hidden": 32, "num_layers": 3, "symmetry": "sign"}), "DWSNet": ("dwsnet", {}),
              "NFN-HNP": ("nfn-hnp", {})}
    rows, curves, trained = [], {}, {}
    for name, (key, options) in models.items():
        torch.manual_seed(args.seed)
        config = TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, warmup_steps=10, patience=0, seed=args.seed,
                             progress=not args.quiet)
        trained[name] = build_model(key, 10, **options)
        result = train(trained[name], splits["train"], splits["val"], config, test_set=splits["test"],
                       out_dir=out / "runs" / _run_name(key, options))
        curves[name] = [r["val_accuracy"] for r in result["history"]]
        rows.append((name, result["parameters"], result["test"]["accuracy"], result["seconds_per_epoch"]))
    print(f"   {'model':<11} {'parameters':>10} {'test accuracy':>14} {'s/epoch':>8}")
    for name, parameters, accuracy, seconds in rows:
        print(f"   {name:<11} {parameters:>10,} {100 * accuracy:>13.1f}% {seconds:>8.1f}")
    test = splits["test"]
    shown = torch.linspace(0, len(test) - 1, min(16, len(test))).long()
    images = render_inrs(test.params(shown), "dws", (1, 28, 28))
    encoder = trained["GNNEncoder"].eval()
    with torch.no_grad():
        batch = test.batch(shown)
        predicted = encoder(batch).argmax(dim=-1).tolist()
    captions = [f"true {t} / GNN {p}" for t, p in zip(batch.y.tolist(), predicted)]
    figures = {
        "learning_curves": line_plot(curves, "Validation accuracy while training (INR zoo, MNIST-5k)", "epoch",
                                     "validation accuracy"),
        "reconstructions": image_grid(images, f"{len(shown)} test INRs rendered, with the digit and the "
                                              "GNNEncoder's prediction", captions),
        "network": draw_graph(test[0], "One SIREN of the zoo as a parameter graph"),
    }
    written = [save_figure(figure, out / f"{name}.{fmt}") for name, figure in figures.items() for fmt in ("png", "svg")]
    print(f"\n== 4. Figures (PNG and SVG): {', '.join(str(p) for p in written[::2])}")
    print("   (runs, checkpoints and metrics in", out / "runs", ")")
    return 0


def _rank_and_world(args: argparse.Namespace) -> tuple[int, int]:
    """``--rank/--world-size``, else torchrun's ``RANK``/``WORLD_SIZE``, else a single process."""
    try:
        rank = args.rank if args.rank is not None else int(os.environ.get("RANK", 0))
        world = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        args.parser.error(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not "
                          "whole numbers")
    if world < 1 or not 0 <= rank < world:
        args.parser.error(f"rank {rank} does not fit world size {world}: use 0 <= rank < world size")
    return rank, world


def _fit_options(args: argparse.Namespace, **fields: object) -> object:
    """The INR fitting options of ``zoo inr`` and ``reproduce`` (one object, passed down unchanged)."""
    from wslgraph.zoo.inr import FitOptions

    return FitOptions(chunk_size=args.chunk_size or 64, device=args.device, compile=not args.no_compile, progress=False,
                      **fields)


def _zoo_inr(args: argparse.Namespace) -> int:
    from wslgraph.zoo.jobs import inr_zoo_job, mesh_zoo_job, shapes3d_zoo_job
    from wslgraph.zoo.shapes3d import SHAPE_RECIPES
    from wslgraph.zoo.storage import generate_zoo

    overrides = {k: v for k, v in {"steps": args.steps, "lr": args.lr,
                                   "hidden": tuple(args.hidden) if args.hidden else None}.items() if v is not None}
    if args.source in ("shapes3d", "mesh", "kicad"):
        images_only = [name for name, value in (("--train-images", args.train_images),
                                                ("--test-images", args.test_images), ("--views", args.views != 1),
                                                ("--data-root", args.data_root and args.source == "shapes3d"),
                                                (f"--recipe {args.recipe}", args.recipe in ("dws", "nfn"))) if value]
        if images_only:
            args.parser.error(f"{', '.join(images_only)} apply to image sources; {args.source} takes --per-class"
                              + (" and --data-root" if args.source != "shapes3d" else "")
                              + f" and --recipe {' or '.join(SHAPE_RECIPES)}")
        recipe = SHAPE_RECIPES[args.recipe or "occupancy"]
        if args.source == "shapes3d":
            job = shapes3d_zoo_job(args.per_class or 100, recipe=recipe, seed=args.seed, shard_size=args.shard_size,
                                   chunk_size=args.chunk_size, device=args.device, **overrides)
        elif args.data_root is None and args.source == "mesh":
            args.parser.error("--source mesh needs --data-root ROOT, a folder with one subfolder of meshes per class")
        else:
            job = mesh_zoo_job(args.data_root, source=args.source, per_class=args.per_class, recipe=recipe,
                               seed=args.seed, shard_size=args.shard_size, chunk_size=args.chunk_size,
                               device=args.device, **overrides)
    else:
        if args.per_class is not None:
            args.parser.error("--per-class applies to --source shapes3d, mesh and kicad")
        if args.recipe in SHAPE_RECIPES:
            args.parser.error(f"--recipe {args.recipe} applies to 3D sources (shapes3d, mesh, kicad); images take "
                              f"dws or nfn")
        args.recipe = args.recipe or "dws"
        options = _fit_options(args, seed=args.seed, views=args.views)
        job = inr_zoo_job(args.source, recipe=args.recipe, options=options, train_images=args.train_images,
                          test_images=args.test_images, shard_size=args.shard_size, data_root=args.data_root,
                          **overrides)
    rank, world = _rank_and_world(args)
    generate_zoo(args.out, job, rank=rank, world_size=world, progress=not args.quiet)
    _report(args.out, args.quiet)
    return 0


def _zoo_cnn(args: argparse.Namespace) -> int:
    from wslgraph.zoo.cnn import ZooSchedule
    from wslgraph.zoo.jobs import cnn_zoo_job, model_zoo_job, resnet_zoo_job
    from wslgraph.zoo.storage import generate_zoo

    defaults = {"small-cnn-zoo": (2, 32, 32, "digits"), "model-zoos": (25, 10, 128, "mnist5k"),
                "resnet": (10, 32, 32, "fashion-mnist")}[args.grid]  # epochs, batch size, models per shard, source
    try:
        schedule = ZooSchedule(epochs=args.epochs or defaults[0],
                               checkpoints=tuple(args.checkpoints) if args.checkpoints else None,
                               batch_size=args.batch_size or defaults[1], steps_per_epoch=args.steps_per_epoch,
                               device=args.device, progress=False)
        common = dict(count=args.count, seed=args.seed, schedule=schedule, train_images=args.train_images,
                      test_images=args.test_images, data_root=args.data_root,
                      models_per_shard=args.models_per_shard or defaults[2])
        source = args.source or defaults[3]
        if args.grid == "model-zoos":
            job = model_zoo_job(source, **common)
        elif args.grid == "resnet":
            job = resnet_zoo_job(source, depth=args.depth, width=args.width, **common)
        else:
            job = cnn_zoo_job(source, **common)
    except ValueError as error:  # settings the job refuses (checkpoints past the last epoch, wrong image size)
        args.parser.error(str(error))
    rank, world = _rank_and_world(args)
    generate_zoo(args.out, job, rank=rank, world_size=world, progress=not args.quiet)
    _report(args.out, args.quiet)
    return 0


def _train(args: argparse.Namespace) -> int:
    from wslgraph.io import atomic_write_json
    from wslgraph.tasks import TrainConfig, train
    from wslgraph.tasks.compare import default_options, make_model
    from wslgraph.tasks.loop import init_distributed
    from wslgraph.tasks.task import task_for
    from wslgraph.zoo.dataset import ZooDataset

    rank, _ = init_distributed(args.device)
    splits = {s: ZooDataset(args.zoo, s, target=args.target) for s in ("train", "val", "test")}
    chosen = task_for(splits["train"], args.task)
    task, out_dim = chosen.name, chosen.out_dim(splits["train"])
    try:
        options = default_options(args.model, args.options, splits["train"].arrays.kind, task)
        config = TrainConfig(task=task, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                             device=args.device, progress=not args.quiet, augment=args.augment)
        torch.manual_seed(args.seed)
        model = make_model(args.model, out_dim, options, splits["train"], task)
    except (ValueError, TypeError) as error:  # an unknown model or option, a bad setting
        args.parser.error(f"{args.model}: {error}")
    result = train(model, splits["train"], splits["val"], config, test_set=splits["test"], out_dir=args.out)
    if rank == 0:
        atomic_write_json(Path(args.out) / "run.json", {"zoo": str(args.zoo), "model": args.model, "options": options,
                                                        "out_dim": out_dim, "task": task, "target": args.target,
                                                        "layout": splits["train"].arrays.layout.to_dict(),
                                                        "result": {k: v for k, v in result.items() if k != "history"}})
        if not args.quiet:
            print(json.dumps({"best_epoch": result["best_epoch"], "test": result["test"],
                              "parameters": result["parameters"]}, indent=2))
    return 0


def _represent(args: argparse.Namespace) -> int:
    from wslgraph.represent import (
        RepresentOptions,
        embed_zoo,
        load_representation,
        save_embeddings,
    )
    from wslgraph.tasks import TrainConfig, train_representation
    from wslgraph.zoo.dataset import ZooDataset

    try:
        options = RepresentOptions(encoder=args.encoder, latent=args.latent, gamma=args.gamma,
                                   temperature=args.temperature, noise=args.noise, erase=args.erase,
                                   permute=args.permute, max_weight=args.max_weight,
                                   encoder_options=args.encoder_options, activation=args.activation,
                                   min_accuracy=args.min_accuracy, sorted_weight=args.sorted_weight,
                                   statistics=args.statistics, positives=args.positives,
                                   per_model=args.per_model, statistics_weight=args.statistics_weight,
                                   statistics_source=args.statistics_source,
                                   statistics_merge=args.statistics_merge, sorted_tails=args.sorted_tails,
                                   statistics_units=args.statistics_units, train_on=args.train_on)
        config = TrainConfig(task="represent", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                             device=args.device, progress=not args.quiet)
    except (ValueError, TypeError) as error:
        args.parser.error(str(error))
    result = train_representation(args.zoo, args.out, options, config)
    everything = ZooDataset(args.zoo, None)
    embeddings = embed_zoo(load_representation(args.out, everything.arrays.layout), everything, device=args.device)
    save_embeddings(Path(args.out) / "embeddings.safetensors", embeddings, everything, args.out)
    if not args.quiet:
        print(json.dumps({"best_epoch": result["best_epoch"], "test_loss": result.get("test", {}).get("loss"),
                          "parameters": result["parameters"]}, indent=2))
    if not args.no_probe:
        _print_probes(everything, embeddings, args, Path(args.out) / "probes.json", Path(args.out) / "embeddings.png")
    return 0


def _print_probes(dataset: object, embeddings: torch.Tensor, args: argparse.Namespace, json_path: Path | None,
                  figure: Path | None) -> None:
    """The probe table of ``embeddings``, s(W) and both (plus ``args.supervised`` encoders' out-of-fold scores on
    the same rows and folds), printed and written to ``json_path``."""
    from wslgraph.baselines.models import statnn_features
    from wslgraph.io import atomic_write_json
    from wslgraph.represent import format_probe_table, kept_rows, probe_table
    from wslgraph.represent.sample import plot_embeddings
    from wslgraph.tasks import supervised_scores

    arrays = dataset.arrays
    max_weight = args.max_weight
    keep = kept_rows(arrays.params, max_weight, arrays.layout)
    embeddings, statistics = embeddings[keep], statnn_features(arrays.params[keep], arrays.layout)
    # the third set asks what the embedding knows beyond s(W): a probe on both at once
    features = {"hyper-representation": embeddings, "s(W)": statistics,
                "both": torch.cat([embeddings.double(), statistics.double()], dim=1)}
    units = getattr(args, "units", "rank")
    scalings = dict.fromkeys(features, units)
    if getattr(args, "statistics_asinh", False):  # s(W) in the statistics branch's units: stronger on some rows
        features["s(W), asinh"], scalings["s(W), asinh"] = statistics, "asinh"
    columns = {name: column[keep] for name, column in arrays.columns.items()}
    scores = {f"supervised {name}": supervised_scores(dataset, keep, encoder=name, epochs=args.supervised_epochs,
                                                      device=args.device, progress=not args.quiet)
              for name in args.supervised}
    rows = probe_table(features, columns, scores=scores, scalings=scalings)
    print(f"{int(keep.sum())} of {len(keep)} rows (weights within {max_weight}); folds grouped by model")
    print(format_probe_table(rows))
    if json_path is not None:
        atomic_write_json(json_path, rows)
    if figure is not None:
        plot_embeddings(embeddings, columns, figure)


def _embed(args: argparse.Namespace) -> int:
    from wslgraph.represent import embed_zoo, load_representation, save_embeddings
    from wslgraph.zoo.dataset import ZooDataset

    dataset = ZooDataset(args.zoo, args.split)
    embeddings = embed_zoo(load_representation(args.run, dataset.arrays.layout), dataset, device=args.device)
    save_embeddings(args.out, embeddings, dataset, args.run)
    if not args.quiet:
        print(f"wrote {args.out}: {embeddings.shape[0]} x {embeddings.shape[1]} embeddings")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from wslgraph.represent import load_embeddings
    from wslgraph.zoo.dataset import ZooDataset

    dataset = ZooDataset(args.zoo, None)
    _print_probes(dataset, load_embeddings(args.embeddings, dataset), args, args.json, None)
    return 0


def _bandwidth(text: str) -> float | str:
    """An argparse type: ``scott`` or a number >= 0."""
    return text if text == "scott" else NONNEGATIVE(text)


def _sample(args: argparse.Namespace) -> int:
    from wslgraph.represent.sample import format_sampling_table
    from wslgraph.tasks import sample_zoo

    report = sample_zoo(args.run, args.out, zoo=args.zoo, count=args.count, top_k=args.top_k, method=args.method,
                        bandwidth=args.bandwidth, activation=args.activation, finetune_epochs=args.finetune_epochs,
                        transfer=args.transfer, recalibrate=args.recalibrate, deeper=args.deeper,
                        new_blocks=args.new_blocks,
                        data_root=args.data_root, evaluate=not args.no_eval, seed=args.seed, device=args.device)
    if not args.quiet:
        print(format_sampling_table(report) if "finetune" in report else
              f"wrote {args.count} sampled checkpoints to {args.out} (evaluation runs on Model Zoos and ResNet zoos "
              "only)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from wslgraph.tasks import TrainConfig, evaluate
    from wslgraph.tasks.compare import make_model
    from wslgraph.zoo.dataset import ZooDataset

    run = _read_run(Path(args.run))
    dataset = ZooDataset(args.zoo or run["zoo"], args.split, target=run["target"])
    trained_on = run.get("layout")
    if trained_on is not None and trained_on != dataset.arrays.layout.to_dict():
        raise ManifestError(f"{args.run} was trained on another architecture than the zoo {args.zoo or run['zoo']} "
                            "holds; evaluate it on a zoo of the architecture it was trained on")
    model = make_model(run["model"], run["out_dim"], run["options"], dataset, run["task"])
    config = TrainConfig(task=run["task"], batch_size=args.batch_size, device=args.device, progress=False)
    with torch.no_grad():
        model(next(dataset.batches(2)))  # lazy initialisation
    best = Path(args.run) / "best.safetensors"
    try:
        state = load_file(best)
        model.load_state_dict({k[len("model."):]: v for k, v in state.items()})
    except FileNotFoundError:
        raise ManifestError(f"{best} does not exist: the run has not finished an epoch; train it further with "
                            "`wslgraph train` or evaluate another run") from None
    except (SafetensorError, RuntimeError) as error:
        raise CorruptShardError(f"{best} is corrupt or holds another model's weights ({error}); retrain the "
                                "run") from None
    print(json.dumps(evaluate(model.to(args.device), dataset, config), indent=2))
    return 0


def _read_run(run: Path) -> dict:
    """``run.json`` of a folder written by ``wslgraph train``, with the fields ``eval`` needs."""
    path = run / "run.json"
    if not path.is_file():
        raise ManifestError(f"{run} has no run.json; it must be a folder written by `wslgraph train`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not valid JSON ({error}); the file is corrupt") from None
    missing = [k for k in ("zoo", "model", "options", "out_dim", "task", "target")
               if not isinstance(data, dict) or k not in data]
    if missing:
        raise ManifestError(f"{path} lacks {missing}; it was not written by `wslgraph train` or was edited")
    return data


def _zoo_merge(args: argparse.Namespace) -> int:
    from wslgraph.zoo.storage import finalize_zoo

    finalize_zoo(args.root)
    _report(args.root, args.quiet)
    return 0


def _zoo_info(args: argparse.Namespace) -> int:
    from wslgraph.zoo.storage import read_manifest, read_shard

    manifest = read_manifest(args.root)  # a clear error where there is no finished zoo
    if args.no_verify:
        _report(args.root, False)
        print(f"{len(manifest['shards'])} shards, not verified (--no-verify)")
        return 0
    for entry in manifest["shards"]:  # a summary only of a zoo whose every shard is what the manifest says
        read_shard(args.root, entry, fingerprint=manifest.get("fingerprint"))
    _report(args.root, False)
    print(f"all {len(manifest['shards'])} shards match their SHA-256")
    return 0


def _zoo_render(args: argparse.Namespace) -> int:
    from wslgraph.plotting import FORMATS, save_figure
    from wslgraph.zoo.shapes3d import zoo_figure
    from wslgraph.zoo.storage import load_zoo_arrays

    if Path(args.out).suffix.lower().lstrip(".") not in FORMATS:
        args.parser.error(f"--out {args.out}: use a .png, .svg or .pdf file name")
    if args.resolution < 8:
        args.parser.error(f"--resolution {args.resolution}: marching cubes needs a grid of at least 8 per axis")
    figure = zoo_figure(load_zoo_arrays(args.root), args.count, views=args.views, resolution=args.resolution,
                        data_root=args.data_root, split=args.split)
    save_figure(figure, args.out)
    print(f"wrote {args.out}")
    return 0


def _report(root: str, quiet: bool) -> None:
    from wslgraph.zoo.storage import read_manifest

    if quiet or not (Path(root) / "manifest.json").exists():
        return
    manifest = read_manifest(root)
    print(f"{root}: {manifest['kind']} zoo, {manifest['num_models']} models in {len(manifest['shards'])} shards, "
          f"{sum(s['bytes'] for s in manifest['shards']) / 2**20:.1f} MiB; columns: {', '.join(manifest['columns'])}")


def _mlp_from_checkpoint(path: Path, activation: str, in_features: int, w0: float) -> torch.nn.Module:
    """An MLP rebuilt from a bare state dict: widths from the shapes, the activation as told."""
    from wslgraph.convert import load_checkpoint
    from wslgraph.zoo import mlp
    from wslgraph.zoo.published import mlp_state_to_params

    try:
        params, widths = mlp_state_to_params(load_checkpoint(path), in_features)
    except ZooError as error:
        raise ZooError(f"{path} as a bare MLP checkpoint: {error}. For any other network give its builder and the "
                       "weights: wslgraph convert MODULE:FACTORY --checkpoint FILE") from None
    model = mlp(in_features, widths[:-1], widths[-1], activation, w0)
    with torch.no_grad():
        for parameter, value in zip(model.parameters(), params, strict=True):
            parameter.copy_(value)
    return model


def _convert(args: argparse.Namespace) -> int:
    """A network (module:factory [+ checkpoint], a bare MLP checkpoint, or a saved graph) as a parameter graph."""
    from wslgraph.convert import is_graph_file, load_graph, load_model, save_graph, to_graph, to_state_dict
    from wslgraph.plotting import FORMATS, draw_graph, save_figure

    if args.picture and Path(args.picture).suffix.lower().lstrip(".") not in FORMATS:
        args.parser.error(f"--picture {args.picture}: use a .png, .svg or .pdf file name")
    source = Path(args.model)
    model = None
    if ":" not in args.model and not source.is_file():
        args.parser.error(f"{args.model}: no such file; give a checkpoint file, a saved graph or MODULE:FACTORY "
                          "(e.g. wslgraph.zoo:small_cnn)")
    if source.is_file() and args.checkpoint is None and not args.model.endswith(".py"):
        if source.suffix == ".safetensors" and is_graph_file(source):
            graph = load_graph(source)
            title = f"{source.name} (saved graph)"
        else:
            model = _mlp_from_checkpoint(source, args.activation, args.in_features, args.w0)
            title = f"{source.name} (MLP, {args.activation})"
    else:
        model = load_model(args.model, args.checkpoint, args.kwargs)
        title = args.model + (f" + {Path(args.checkpoint).name}" if args.checkpoint else "")
    if model is not None:
        graph = to_graph(model, input_shape=args.input_shape)
        state = to_state_dict(graph)
        exact = all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
    else:
        exact = None
    graph.validate()
    if not args.quiet:
        print(graph.summary())
        if exact is not None:
            print(f"round trip to the state dict exact: {exact}")
    if args.picture:
        save_figure(draw_graph(graph, title), args.picture)
        if not args.quiet:
            print(f"wrote {args.picture}")
    if args.save:
        save_graph(graph, args.save)
        if not args.quiet:
            print(f"wrote {args.save} (wslgraph.load_graph reads it back)")
    return 0 if exact in (None, True) else 1


def _bench(args: argparse.Namespace) -> int:
    """The comparison harness (wslgraph.tasks.compare): check the options, then train and tabulate."""
    from wslgraph.tasks.compare import compare, compare_quick

    bench = _bench_options(args, task=args.task, json=Path(args.json), markdown=args.markdown and Path(args.markdown),
                           quick=args.quick, runs=args.runs)
    if args.quick:
        compare_quick(bench)
    elif args.zoo is None:
        args.parser.error("--zoo is required unless --quick")
    else:
        compare(args.zoo, bench)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """``wslgraph demo``."""
    demo = sub.add_parser("demo", help="convert models, build an INR zoo from MNIST-5k, train GNNEncoder, DWSNet and "
                                       "NFN on it, print a table, save figures",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--seed", type=COUNT, default=0)
    demo.add_argument("--quick", action="store_true", help="a tiny zoo and one epoch (seconds), for tests")
    demo.add_argument("--out", default="demo-output", help="figures and training runs")
    demo.add_argument("--cache", default=".wslgraph-cache", help="where the demo zoo is kept between runs")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    """``wslgraph convert``."""
    convert = sub.add_parser("convert", help="convert a network to a parameter graph: summary, picture, saved graph",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    convert.add_argument("model", help="MODULE:FACTORY (e.g. wslgraph.zoo:small_cnn or models.py:build), a bare MLP "
                                       "state dict (.pt/.pth/.safetensors), or a graph saved with --save")
    convert.add_argument("--checkpoint", default=None,
                         help="state dict loaded into the factory's network (.pt/.pth, weights only, or .safetensors)")
    convert.add_argument("--kwargs", type=JSON_OBJECT, default={}, help="factory keyword arguments as JSON")
    convert.add_argument("--input-shape", type=POSITIVE, nargs="+", default=None,
                         help="one input's shape, e.g. 1 28 28 (only where a Linear reads a flattened feature map)")
    convert.add_argument("--activation", default="relu", choices=["sine", *ACTIVATIONS],
                         help="activation of a bare MLP checkpoint (sine: a SIREN)")
    convert.add_argument("--in-features", type=POSITIVE, default=2, help="inputs of a bare MLP checkpoint")
    convert.add_argument("--w0", type=RATE, default=30.0, help="SIREN frequency of a bare MLP checkpoint")
    convert.add_argument("--picture", default=None, help="write a drawing of the graph here (.png, .svg or .pdf)")
    convert.add_argument("--save", default=None, help="write the graph here (safetensors; wslgraph.load_graph)")
    convert.add_argument("--quiet", action="store_true", help="print nothing but errors")
    convert.set_defaults(handler=_convert)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """``wslgraph bench`` (``benchmarks/compare.py`` runs the same command)."""
    from wslgraph.tasks.compare import DEFAULT_MODELS
    from wslgraph.tasks.task import TASKS

    bench = sub.add_parser("bench", help="train wslgraph's encoders and the peers on one zoo with one budget; "
                                         "markdown table + JSON",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_argument("--quick", action="store_true", help="a tiny zoo, one epoch, one seed (seconds), for tests")
    bench.add_argument("--zoo", type=Path, default=None, help="zoo folder (wslgraph zoo inr/cnn)")
    _add_harness_options(bench, DEFAULT_MODELS)
    bench.add_argument("--task", default="auto", choices=["auto", *TASKS],
                       help="auto: classification for INR zoos, regression (Kendall's tau) for CNN zoos; editing: "
                            "per-weight deltas that make each INR render its 3x3 dilation (pixel MSE)")
    bench.add_argument("--json", type=Path, default=Path("benchmarks/results/compare.json"))
    bench.add_argument("--markdown", type=Path, default=None, help="default: the JSON path with .md")
    bench.add_argument("--runs", type=Path, default=None,
                       help="keep each (model, seed) run's checkpoints and result in RUNS/MODEL/seedN; an "
                            "interrupted bench resumes there")
    bench.set_defaults(handler=_bench, parser=bench)


def _add_harness_options(command: argparse.ArgumentParser, models: Sequence[str]) -> None:
    """The comparison harness's options (``bench`` and ``reproduce``): models, their options, seeds and training."""
    command.add_argument("--models", nargs="+", default=list(models), help=f"default: {' '.join(models)}")
    command.add_argument("--option", action="append", default=[], metavar="NAME:KEY=VALUE",
                         help="a model's constructor or training option, VALUE as JSON (repeatable), e.g. "
                              "gnn-probe:symmetry=sign")
    command.add_argument("--seeds", type=POSITIVE, default=3)
    command.add_argument("--epochs", type=POSITIVE, default=30)
    command.add_argument("--batch-size", type=POSITIVE, default=32)
    command.add_argument("--lr", type=RATE, default=2e-3)
    command.add_argument("--device", type=_device, default="cpu", help="cpu or cuda")
    command.add_argument("--augment", default="none", choices=AUGMENT_PRESETS,
                         help="training-time augmentation for every model: none (default), auto (inr for INR "
                              "classification, else none), permutation, inr")


def _bench_options(args: argparse.Namespace, **fields: object) -> object:
    """:class:`~wslgraph.tasks.compare.BenchOptions` from the harness options (a bad one: exit code 2)."""
    from wslgraph.tasks.compare import BenchOptions, check_models, parse_options

    try:
        options = parse_options(args.option)
        check_models(args.models)
    except ValueError as error:
        args.parser.error(str(error))
    return BenchOptions(models=tuple(args.models), options=options, seeds=args.seeds, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, device=args.device, augment=args.augment, **fields)


def _reproduce(args: argparse.Namespace) -> int:
    """Published-scale INR classification (wslgraph.tasks.reproduce)."""
    from wslgraph.tasks.reproduce import reproduce

    bench = _bench_options(args)
    reproduce(args.benchmark, args.out or f"reproduce-{args.benchmark}", bench, scale=args.scale,
              data_root=args.data_root, fit=_fit_options(args), progress=not args.quiet)
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    """``wslgraph reproduce``."""
    from wslgraph.tasks.reproduce import REPRODUCE_MODELS, REPRODUCTIONS

    command = sub.add_parser("reproduce", help="the published INR classification benchmarks (70,000 DWS INRs, split "
                                               "55k/5k/10k) or a fraction of them, beside the published numbers; "
                                               "resumable",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_argument("benchmark", choices=sorted(REPRODUCTIONS))
    command.add_argument("--out", default=None, help="folder for the zoo, runs and results (default: "
                                                     "reproduce-BENCHMARK; an interrupted run resumes there)")
    command.add_argument("--scale", type=FRACTION, default=1.0,
                         help="fraction of the images to fit (0.1: 6,000 train and 1,000 test images)")
    command.add_argument("--data-root", default=None, help="folder with MNIST's IDX files (dws-mnist; without it "
                                                           "MNIST-5k, enough for --scale up to 0.066)")
    command.add_argument("--chunk-size", type=POSITIVE, default=64, help="INRs fitted together")
    command.add_argument("--no-compile", action="store_true", help="fit eagerly (no torch.compile)")
    command.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_harness_options(command, REPRODUCE_MODELS)
    command.set_defaults(handler=_reproduce, parser=command)


def _add_zoo(sub: argparse._SubParsersAction) -> None:
    """``wslgraph zoo inr|cnn|merge|info``."""
    zoo = sub.add_parser("zoo", help="generate, merge and inspect model zoos")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    inr = zoo_sub.add_parser("inr", help="fit SIRENs to images (resumable; sharded across processes)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    inr.add_argument("out", help="zoo folder (created; an interrupted run resumes there)")
    inr.add_argument("--source", default="mnist5k", choices=[*sorted(SOURCES), "shapes3d", "mesh", "kicad"],
                     help="image source; shapes3d: occupancy SIRENs (3 -> hidden -> 1) of ten classes of "
                          "procedural 3D shapes; mesh: the same of the meshes under --data-root (ROOT/<class>/...); "
                          "kicad: ten component classes of Debian's kicad-packages3d (--data-root: its 3dmodels "
                          "folder, default /usr/share/kicad/3dmodels)")
    inr.add_argument("--per-class", type=POSITIVE, default=None,
                     help="shapes per class (shapes3d: default 100; mesh: N evenly spaced per class, default all; "
                          "kicad: default 60)")
    inr.add_argument("--data-root", default=None,
                     help="folder of user-supplied data (mnist, cifar10; mesh: ROOT/<class>/*.off|obj|stl|ply)")
    inr.add_argument("--recipe", default=None, choices=["dws", "nfn", "occupancy", "sdf"],
                     help="images: dws (default) or nfn; 3D sources: occupancy (default; BCE on occupancy logits) "
                          "or sdf (clamped L1 on signed distances)")
    inr.add_argument("--train-images", type=POSITIVE, default=None, help="use this many train images (evenly spaced)")
    inr.add_argument("--test-images", type=POSITIVE, default=None, help="use this many test images (evenly spaced)")
    inr.add_argument("--views", type=POSITIVE, default=1, help="INRs per image (new random inits)")
    inr.add_argument("--steps", type=POSITIVE, default=None, help="override the recipe's Adam steps")
    inr.add_argument("--lr", type=RATE, default=None, help="override the recipe's learning rate")
    inr.add_argument("--hidden", type=POSITIVE, nargs="+", default=None, help="override the hidden widths")
    inr.add_argument("--seed", type=COUNT, default=0)
    inr.add_argument("--shard-size", type=POSITIVE, default=512, help="models per shard")
    inr.add_argument("--chunk-size", type=POSITIVE, default=None,
                     help="INRs fitted together (default: 64 for images; for 3D sources as many as keep a layer's "
                          "activations near 4 MB on CPU, 8 at 4,096 points, and 256 on a GPU)")
    inr.add_argument("--device", type=_device, default="cpu")
    inr.add_argument("--no-compile", action="store_true", help="fit eagerly (no torch.compile)")
    cnn = zoo_sub.add_parser("cnn", help="train CNNs with sampled hyperparameters (resumable; sharded)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cnn.add_argument("out", help="zoo folder (created; an interrupted run resumes there)")
    cnn.add_argument("--grid", default="small-cnn-zoo", choices=["small-cnn-zoo", "model-zoos", "resnet"],
                     help="small-cnn-zoo: Unterthiner et al.'s CNN and sampled hyperparameters; model-zoos: "
                          "Schuerholt et al.'s CNN and hyperparameter grid, a checkpoint every epoch; resnet: "
                          "small ResNets (--depth, --width) over optimizer, learning rate and weight decay")
    cnn.add_argument("--depth", type=int, default=8, choices=[8, 10, 14, 18], help="ResNet depth (--grid resnet; 18 "
                     "with --width 64 is torchvision's ResNet-18 with a 3x3 stem)")
    cnn.add_argument("--width", type=POSITIVE, default=16, help="ResNet stem channels (--grid resnet)")
    cnn.add_argument("--source", default=None, choices=sorted(SOURCES),
                     help="image source (default: digits; mnist5k for model-zoos; fashion-mnist for resnet)")
    cnn.add_argument("--data-root", default=None, help="folder of user-supplied data (mnist, cifar10)")
    cnn.add_argument("--count", type=POSITIVE, default=64, help="models")
    cnn.add_argument("--epochs", type=POSITIVE, default=None, help="default: 2; 25 for model-zoos; 10 for resnet")
    cnn.add_argument("--checkpoints", type=COUNT, nargs="+", default=None,
                     help="epochs to record (default: 0 and last; every epoch for model-zoos and resnet)")
    cnn.add_argument("--batch-size", type=POSITIVE, default=None, help="minibatch per model (default: 32; 10 for "
                     "model-zoos)")
    cnn.add_argument("--steps-per-epoch", type=POSITIVE, default=None, help="default: train images // batch size")
    cnn.add_argument("--models-per-shard", type=POSITIVE, default=None,
                     help="models trained together, one shard (default: 32; 128 for model-zoos)")
    cnn.add_argument("--train-images", type=POSITIVE, default=None, help="use this many train images (evenly spaced)")
    cnn.add_argument("--test-images", type=POSITIVE, default=None, help="use this many test images (evenly spaced)")
    cnn.add_argument("--seed", type=COUNT, default=0)
    cnn.add_argument("--device", type=_device, default="cpu")
    for command in (inr, cnn):
        command.add_argument("--rank", type=COUNT, default=None, help="this process's rank (default: $RANK or 0)")
        command.add_argument("--world-size", type=POSITIVE, default=None, help="processes (default: $WORLD_SIZE or 1)")
        command.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    inr.set_defaults(handler=_zoo_inr, parser=inr)
    cnn.set_defaults(handler=_zoo_cnn)
    merge = zoo_sub.add_parser("merge", help="write manifest.json once every shard of a sharded run exists")
    merge.add_argument("root")
    merge.add_argument("--quiet", action="store_true")
    merge.set_defaults(handler=_zoo_merge)
    info = zoo_sub.add_parser("info", help="summarise a zoo folder after checking every shard against the manifest")
    info.add_argument("root")
    info.add_argument("--no-verify", action="store_true", help="summarise the manifest without reading the shards")
    info.set_defaults(handler=_zoo_info)
    render = zoo_sub.add_parser("render", help="draw a 3D zoo's shapes and their INRs' marching-cubes surfaces",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    render.add_argument("root", help="a zoo made with --source shapes3d, mesh or kicad")
    render.add_argument("--out", required=True, help="figure file (.png, .svg or .pdf)")
    render.add_argument("--count", type=POSITIVE, default=10, help="models drawn: the first of each class")
    render.add_argument("--views", type=POSITIVE, default=1, help="azimuths, a quarter turn apart")
    render.add_argument("--resolution", type=POSITIVE, default=64, help="marching-cubes grid per axis")
    render.add_argument("--split", default="test", choices=["train", "val", "test"])
    render.add_argument("--data-root", default=None, help="where a mesh zoo's files are now (default: recorded)")
    render.set_defaults(handler=_zoo_render)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``wslgraph train``."""
    trainer = sub.add_parser("train", help="train an encoder or a peer on a zoo (resumable; runs under torchrun)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    trainer.add_argument("zoo", help="zoo folder (wslgraph zoo inr/cnn)")
    trainer.add_argument("--model", default="gnn",
                         help="gnn, gnn-probe, transformer, transformer-probe, gnn-windows, dwsnet, nfn-hnp, "
                              "nfn-np, mlp, mlp-aug, statnn, sane")
    trainer.add_argument("--options", type=JSON_OBJECT, default={},
                         help='model options as JSON, e.g. \'{"hidden": 32}\'')
    trainer.add_argument("--out", required=True, help="run folder: checkpoints, metrics, run.json")
    trainer.add_argument("--task", default="auto", choices=["auto", "classification", "regression", "editing"],
                         help="auto: classification for INR zoos, regression for CNN zoos; editing: INR dilation "
                              "(wslgraph.tasks.INREditor around the model)")
    trainer.add_argument("--target", default=None, help="column to predict (default: label / test_accuracy)")
    trainer.add_argument("--epochs", type=POSITIVE, default=20)
    trainer.add_argument("--batch-size", type=POSITIVE, default=64)
    trainer.add_argument("--lr", type=RATE, default=1e-3)
    trainer.add_argument("--weight-decay", type=NONNEGATIVE, default=1e-2)
    trainer.add_argument("--patience", type=COUNT, default=10)
    trainer.add_argument("--seed", type=COUNT, default=0)
    trainer.add_argument("--augment", default="none", choices=AUGMENT_PRESETS,
                         help="training-time augmentation: none (default), auto (inr for INR classification, else "
                              "none), permutation, inr (permutations, sign flips, rotations/translations, dropout, "
                              "noise)")
    trainer.add_argument("--device", type=_device, default="cpu")
    trainer.add_argument("--quiet", action="store_true")
    trainer.set_defaults(handler=_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    """``wslgraph eval``."""
    evaluator = sub.add_parser("eval", help="evaluate a trained run's best weights on a zoo split")
    evaluator.add_argument("run", help="run folder written by wslgraph train")
    evaluator.add_argument("--zoo", default=None, help="zoo folder (default: the run's)")
    evaluator.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluator.add_argument("--batch-size", type=POSITIVE, default=64)
    evaluator.add_argument("--device", type=_device, default="cpu")
    evaluator.set_defaults(handler=_eval)


def _add_supervised(command: argparse.ArgumentParser) -> None:
    """``--supervised`` and ``--supervised-epochs``: encoders trained on the labels beside the probes."""
    command.add_argument("--supervised", nargs="+", default=[], choices=["gnn", "transformer"], metavar="MODEL",
                         help="also score each property with these graph encoders trained on the labels (gnn, "
                         "transformer; the harness's defaults), on the probes' rows and folds")
    command.add_argument("--supervised-epochs", type=POSITIVE, default=5,
                         help="epochs of each fold's supervised encoder")


def _add_represent(sub: argparse._SubParsersAction) -> None:
    """``wslgraph represent``, ``embed`` and ``probe``."""
    command = sub.add_parser("represent", help="train a self-supervised hyper-representation of a zoo (resumable), "
                                               "embed every model, print what the embeddings know",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    command.add_argument("zoo", help="zoo folder (wslgraph zoo cnn --grid model-zoos, or any zoo)")
    command.add_argument("--out", required=True, help="run folder: checkpoints, represent.json, embeddings")
    command.add_argument("--encoder", default="gnn", choices=["gnn", "transformer", "sane"],
                         help="sane: SANE's token autoencoder (windows of tokens; --latent is per token)")
    command.add_argument("--encoder-options", type=JSON_OBJECT, default={}, help="encoder options as JSON")
    command.add_argument("--latent", type=POSITIVE, default=32, help="embedding size")
    command.add_argument("--gamma", type=NONNEGATIVE, default=0.5, help="weight of the contrastive loss (0..1)")
    command.add_argument("--temperature", type=RATE, default=0.1)
    command.add_argument("--noise", type=NONNEGATIVE, default=0.05, help="Gaussian noise per view (x tensor std)")
    command.add_argument("--erase", type=NONNEGATIVE, default=0.05, help="probability of erasing a weight per view")
    command.add_argument("--permute", action="store_true", help="also permute hidden neurons per view")
    command.add_argument("--sorted-weight", type=NONNEGATIVE, default=0.0, help="share of the reconstruction loss "
                         "that compares each tensor's sorted values (0..1; invariant to any reordering, for probes)")
    command.add_argument("--sorted-tails", action="store_true", help="weigh the sorted loss's positions by their "
                         "spacing in normal scores, so each tensor's extremes count")
    command.add_argument("--statistics", action="store_true", help="the latent also reads each model's weight "
                         "statistics s(W) through an MLP (graph encoders)")
    command.add_argument("--statistics-weight", type=float, default=0.0,
                         help="weight of a linear read-out of the weight statistics s(W) from the latent in the "
                         "reconstruction loss (>= 0; makes s(W) linearly readable for probes)")
    command.add_argument("--statistics-units", choices=("asinh", "rank", "both"), default="asinh",
                         help="with --statistics-weight: the read-out predicts s(W) as standardised asinh values, "
                         "as normal scores of their ranks among the training models (the probes' units), or both")
    command.add_argument("--train-on", choices=("train", "all"), default="train",
                         help="train on the zoo's train split, or on every split (self-supervised: no labels are "
                         "read; for probes that cross-validate over the whole zoo)")
    command.add_argument("--statistics-source", choices=("views", "model"), default="views",
                         help="with --statistics: in training the branch reads each augmented view's s(W), or the "
                         "unaugmented model's in both views")
    command.add_argument("--statistics-merge", choices=("add", "concat"), default="add",
                         help="with --statistics: add the branch's output to the encoder's latent, or put the two "
                         "side by side (half the latent each)")
    command.add_argument("--positives", choices=("views", "model"), default="views",
                         help="contrastive positives: the two views of a checkpoint, or also the other checkpoints "
                         "of its model in the batch (needs a model_index column)")
    command.add_argument("--per-model", type=int, default=4,
                         help="with --positives model: checkpoints of each model side by side in a batch")
    command.add_argument("--max-weight", type=RATE, default=10.0, help="leave out models with a larger |weight| "
                         "(diverged runs) from training and probes")
    command.add_argument("--activation", default=None, help="train only on models of this activation (a "
                         "representation for generation, e.g. tanh)")
    command.add_argument("--min-accuracy", type=NONNEGATIVE, default=None, help="train only on checkpoints with at "
                         "least this test accuracy (0..1; a representation for generation)")
    command.add_argument("--epochs", type=POSITIVE, default=30)
    command.add_argument("--batch-size", type=POSITIVE, default=64)
    command.add_argument("--lr", type=RATE, default=1e-3)
    command.add_argument("--weight-decay", type=NONNEGATIVE, default=1e-2)
    command.add_argument("--patience", type=COUNT, default=10)
    command.add_argument("--seed", type=COUNT, default=0)
    command.add_argument("--device", type=_device, default="cpu")
    command.add_argument("--no-probe", action="store_true", help="skip the probe table")
    _add_supervised(command)
    command.add_argument("--quiet", action="store_true")
    command.set_defaults(handler=_represent)
    embed = sub.add_parser("embed", help="embed every model of a zoo with a trained representation (safetensors)")
    embed.add_argument("run", help="run folder written by wslgraph represent")
    embed.add_argument("zoo", help="zoo folder of the same architecture")
    embed.add_argument("--out", required=True, help="embeddings file (.safetensors)")
    embed.add_argument("--split", default=None, choices=["train", "val", "test"], help="default: every row")
    embed.add_argument("--device", type=_device, default="cpu")
    embed.add_argument("--quiet", action="store_true")
    embed.set_defaults(handler=_embed)
    probe = sub.add_parser("probe", help="cross-validated linear probes of a zoo's properties from embeddings and "
                                         "from weight statistics s(W)")
    probe.add_argument("zoo", help="zoo folder")
    probe.add_argument("--embeddings", required=True, help="file written by wslgraph embed (every row of the zoo)")
    probe.add_argument("--max-weight", type=RATE, default=10.0, help="leave out models with a larger |weight|")
    probe.add_argument("--json", type=Path, default=None, help="also write the table's rows to this JSON file")
    probe.add_argument("--statistics-asinh", action="store_true", help="also probe s(W) scaled by asinh instead of "
                       "by ranks (column 's(W), asinh'): it reads some properties better (benchmarks/probe_units.py)")
    probe.add_argument("--units", default="rank", choices=["rank", "asinh", "standard", "auto"],
                       help="how every feature set is scaled before standardising: normal scores of ranks, asinh, "
                       "none, or chosen per fold by the grouped inner folds (auto; three times the time)")
    _add_supervised(probe)
    probe.add_argument("--device", type=_device, default="cpu", help="where the supervised encoders train")
    probe.add_argument("--quiet", action="store_true", help="no progress bars")
    probe.set_defaults(handler=_probe)

    sample = sub.add_parser("sample", help="sample new models from a representation's embedding space, write "
                                           "checkpoints, evaluate them with and without fine-tuning",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("run", help="run folder written by wslgraph represent")
    sample.add_argument("--zoo", default=None, help="zoo folder (default: the run's)")
    sample.add_argument("--out", required=True, help="folder for sample-NNN.safetensors, samples.json, sampling.png")
    sample.add_argument("--count", type=POSITIVE, default=10, help="models to sample")
    sample.add_argument("--top-k", type=POSITIVE, default=30, help="fit the density to the best k rows")
    sample.add_argument("--method", default="kde", choices=["kde", "subsample", "bootstrap", "sequential"],
                        help="sequential: window by window, each window conditioned on the ones before (--encoder "
                             "sane runs)")
    sample.add_argument("--bandwidth", type=_bandwidth, default=None, help="kernel size as a fraction of the top "
                        "embeddings' spread (default 0.2), or scott")
    sample.add_argument("--activation", default=None, help="sample models of this activation (default: the best "
                                                           "model's)")
    sample.add_argument("--finetune-epochs", type=COUNT, default=2)
    sample.add_argument("--transfer", default=None, choices=sorted(SOURCES),
                        help="also fine-tune samples and fresh models on this image source")
    sample.add_argument("--data-root", default=None, help="folder of user-supplied data (mnist)")
    sample.add_argument("--recalibrate", type=COUNT, default=1024, metavar="IMAGES",
                        help="recompute the samples' batch-norm statistics on this many of the zoo's training images "
                             "(ResNet zoos; 0 keeps the decoded statistics)")
    sample.add_argument("--deeper", type=POSITIVE, default=None, metavar="DEPTH",
                        help="also generate ResNet-DEPTH models from the samples, deeper than the zoo's with its "
                             "stages and widths (ResNet-8 zoos: 14; ResNet-10 zoos: 18), and fine-tune them beside "
                             "fresh ones")
    sample.add_argument("--new-blocks", default="copy", choices=["copy", "identity"],
                        help="--deeper's extra blocks: copies of their stage's last block, or such copies that add "
                             "nothing (their last batch norm zeroed: the deeper model computes the sample's function)")
    sample.add_argument("--no-eval", action="store_true", help="only write the sampled checkpoints")
    sample.add_argument("--seed", type=COUNT, default=0)
    sample.add_argument("--device", type=_device, default="cpu")
    sample.add_argument("--quiet", action="store_true")
    sample.set_defaults(handler=_sample)


def build_parser() -> argparse.ArgumentParser:
    """The ``wslgraph`` command line: one sub-command per ``_add_*`` function."""
    parser = argparse.ArgumentParser(prog="wslgraph", description="Weight-space learning on parameter graphs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_convert, _add_bench, _add_reproduce, _add_zoo, _add_train, _add_eval,
                _add_represent):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "parser", None) is None:
        args.parser = parser  # where a handler reports a bad option (exit code 2)
    tune_cpu_allocator()  # our own process: reuse freed memory (see wslgraph.runtime)
    try:
        return args.handler(args)
    except WSLGraphError as error:
        print(f"wslgraph: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path that is a file, a read-only folder, a full disk: the machine's, not ours
        print(f"wslgraph: error: {error.strerror or error}"
              f"{f': {error.filename}' if error.filename else ''} (check the path, its permissions and free space)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
