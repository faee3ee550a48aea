"""How much of one training hyperparameter is in a Model Zoos CNN's weights at all, next to minibatch noise.

A probe (or any representation) can only read a hyperparameter from weights if changing it moves the weights
further than training's own noise does. For ``--configs`` points of the Model Zoos grid this trains, from one
initialisation per point, ``--repeats`` models with each of the two ``--values`` of ``--hyperparameter`` (every
model draws its own minibatches and dropout masks, as in a zoo), all at once with the zoo's trainer, and
measures at the last epoch:

- ``noise``: the root mean square distance between the final weights of two models with the *same* value
  (minibatch order alone), ``sqrt(E d_same^2)``;
- ``effect``: the distance the hyperparameter itself adds, ``sqrt(max(0, E d_cross^2 - E d_same^2))`` (with
  independent noise ``E d_cross^2 = |delta|^2 + E d_same^2``), and ``effect / noise``;
- ``norm_ratio``: the mean weight norm with the first value over the mean with the second.

``effect / noise`` near 0 means the hyperparameter is buried in minibatch noise: no representation of the
weights can read it. The reference is the grid's other hyperparameters measured the same way.

    python benchmarks/hyperparameter_signal.py --source mnist5k --steps-per-epoch 40 --json wd.json
    python benchmarks/hyperparameter_signal.py --hyperparameter learning_rate --steps-per-epoch 40
    python benchmarks/hyperparameter_signal.py --quick

Reference: ``benchmarks/reference/hyperparameter_signal_*.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wslgraph.zoo.data import load_images  # noqa: E402
from wslgraph.zoo.modelzoos import GRID, grid_hyperparameters, train_model_zoo  # noqa: E402


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def measure(train: object, test: object, hyperparameter: str, values: tuple, configs: int, repeats: int,
            epochs: int, steps_per_epoch: int, seed: int = 0) -> list[dict]:
    """One row per grid point: its hyperparameters (``hyperparameter`` left out), ``noise``, ``effect``,
    ``effect_over_noise``, ``norm_ratio`` and the models' mean test accuracy per value."""
    points, index = [], 0
    while len(points) < configs:  # the grid's distinct points once the hyperparameter is left out, in its order
        point = {k: v for k, v in grid_hyperparameters(seed, index).items() if k not in (hyperparameter, "repetition")}
        if point not in points:
            points.append(point)
        index += 1
    per_point = 2 * repeats
    hps = [point | {hyperparameter: values[(j // repeats) % 2]} for point in points for j in range(per_point)]
    # one initialisation per point: the epoch-0 draw of the point's first model (the init depends on its hp)
    first = train_model_zoo(train, test, configs, epochs=0, hyperparameters=hps[::per_point], eval_images=10,
                            progress=False, seed=seed)
    initial = first.params.repeat_interleave(per_point, dim=0)
    result = train_model_zoo(train, test, len(hps), epochs=epochs, steps_per_epoch=steps_per_epoch,
                             hyperparameters=hps, initial=initial, eval_images=10, checkpoints=(epochs,),
                             progress=False, seed=seed + 1)
    weights = result.params.view(configs, 2, repeats, -1).double()
    accuracy = result.columns["test_accuracy"].view(configs, 2, repeats).double()
    rows = []
    for index, point in enumerate(points):
        w = weights[index]
        cross = torch.cdist(w[0], w[1]).square().mean()
        same = torch.cat([torch.pdist(w[side]).square() for side in (0, 1)]).mean()
        noise, effect = same.sqrt().item(), (cross - same).clamp_min(0).sqrt().item()
        norms = w.norm(dim=2).mean(dim=1)
        rows.append(point | {"noise": noise, "effect": effect, "effect_over_noise": effect / max(noise, 1e-12),
                             "norm_ratio": (norms[0] / norms[1]).item(),
                             "test_accuracy": [accuracy[index, 0].mean().item(), accuracy[index, 1].mean().item()]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="mnist5k", help="an image source of wslgraph zoo cnn (mnist5k, "
                        "fashion-mnist, ...)")
    parser.add_argument("--hyperparameter", default="weight_decay", choices=sorted(set(GRID) - {"init"}),
                        help="init is what each point holds fixed")
    parser.add_argument("--values", type=_value, nargs=2, default=None, help="default: the grid's two values")
    parser.add_argument("--configs", type=int, default=16, help="grid points (the grid's first distinct ones, in "
                        "its order)")
    parser.add_argument("--repeats", type=int, default=3, help="models per value and point (>= 2)")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="the README's grid zoos train 40")
    parser.add_argument("--train-images", type=int, default=None, help="N training images, spread evenly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 points, 2 repeats, 2 epochs of 5 steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.configs, args.repeats, args.epochs, args.steps_per_epoch, args.train_images = 2, 2, 2, 5, 500
    values = tuple(args.values) if args.values else tuple(GRID[args.hyperparameter][:2])
    distinct = math.prod(len(values) for name, values in GRID.items() if name != args.hyperparameter)
    if args.repeats < 2 or not 1 <= args.configs <= distinct or args.epochs < 1 or args.steps_per_epoch < 1:
        parser.error(f"need --repeats >= 2, --configs from 1 to {distinct} (the grid's points without "
                     f"{args.hyperparameter}) and --epochs, --steps-per-epoch >= 1")
    if any(value not in GRID[args.hyperparameter] for value in values) and args.hyperparameter in (
            "activation", "init", "optimizer"):
        parser.error(f"--values of {args.hyperparameter} must be among {GRID[args.hyperparameter]}")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    train, test = load_images(args.source, "train"), load_images(args.source, "test")
    if args.train_images:
        train = train.evenly_spaced(args.train_images)
    rows = measure(train, test, args.hyperparameter, values, args.configs, args.repeats, args.epochs,
                   args.steps_per_epoch, args.seed)
    print(f"{args.hyperparameter} {values[0]} against {values[1]}, {args.source} ({len(train)} training images), "
          f"{args.epochs} epochs of {args.steps_per_epoch} steps at batch size 10, {args.repeats} models per value")
    others = [name for name in GRID if name != args.hyperparameter]
    for row in rows:
        point = " ".join(str(row[name]) for name in others)
        print(f"{point:45s} noise {row['noise']:8.3f} effect {row['effect']:8.3f} effect/noise "
              f"{row['effect_over_noise']:6.2f} norm ratio {row['norm_ratio']:.3f} accuracy "
              f"{row['test_accuracy'][0]:.3f} / {row['test_accuracy'][1]:.3f}")
    ratios = torch.tensor([row["effect_over_noise"] for row in rows])
    print(f"effect/noise: median {ratios.median().item():.2f}, below 0.5 in {int((ratios < 0.5).sum())} of "
          f"{len(rows)} points")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "source": args.source, "hyperparameter": args.hyperparameter, "values": list(values),
            "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "repeats": args.repeats,
            "train_images": len(train), "median_effect_over_noise": ratios.median().item(), "rows": rows},
            indent=2))


if __name__ == "__main__":
    main()
