"""Does an encoder keep graphs apart while it trains? Loss, accuracy and graph-to-graph spread, step by step.

Replays ``wslgraph bench``'s training settings (AdamW, weight decay 1e-2,
linear warm-up, gradient clip 1, batch 32) on a zoo's training split and,
every ``--every`` steps, prints the mean training loss and batch accuracy of
the last steps, and, on a fixed batch of 64 graphs, the *spread* of the
encoder's node states: for hidden nodes, the standard deviation across graphs
of their per-graph mean (``between``) and the standard deviation within a
graph (``within``), after the input encoding and after the last layer. An
encoder that "collapses" makes every graph look the same: ``between`` falls
towards 0 while the loss stays at ln(classes).

``--no-head-norm`` replaces the head's :class:`~wslgraph.nn.GraphBatchNorm`
by the identity (and gives the linear layer before it a bias), which is the
head wslgraph had before it stopped the collapse.

    .venv/bin/python benchmarks/collapse.py --zoo ZOO [--model gnn|transformer] [--lr 2e-3] [--steps 200]
        [--seed 0] [--option KEY=VALUE ...] [--no-head-norm] [--json PATH]
    .venv/bin/python benchmarks/collapse.py --quick   # a small MNIST-5k zoo, 20 steps (for tests)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import Linear

from wslgraph.io import atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.nn.encoders import GraphEncoderBase, batch_vector
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo

ENCODERS = {"gnn": GNNEncoder, "transformer": TransformerEncoder}


def spread(h: Tensor, batch: object) -> dict[str, float]:
    """Between-graph and within-graph standard deviation of hidden-node states (channel means)."""
    _, num_graphs = batch_vector(batch)
    hidden = batch.node_type == 1
    states = h[hidden].view(num_graphs, -1, h.shape[-1])
    return {"between": float(states.mean(1).std(0).mean()), "within": float(states.std(1).mean())}


@torch.no_grad()
def measure(model: GraphEncoderBase, batch: object) -> dict[str, dict[str, float]]:
    model.eval()
    h0, _ = model.input_states(batch)
    h, _ = model.encode(batch)
    model.train()
    return {"input": spread(h0, batch), "final": spread(h, batch)}


def run(zoo: Path, args: argparse.Namespace) -> dict:
    train_set = ZooDataset(zoo, "train")
    classes = int(train_set.arrays.columns[train_set.target].max()) + 1
    torch.manual_seed(args.seed)
    options = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.option)}
    model = ENCODERS[args.model](classes, **options)
    if args.no_head_norm:
        model.head[0], model.head[1] = Linear(-1, model.hidden), nn.Identity()
    probe = next(train_set.batches(64))
    model.eval()
    with torch.no_grad():
        model(probe)  # lazy initialisation
    model.train()
    model.fit_statistics(list(itertools.islice(train_set.batches(32), 20)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.warmup))
    generator = torch.Generator().manual_seed(args.seed)
    rows, losses, hits, step, started = [], [], [], 0, time.perf_counter()
    print(f"{args.model} on {zoo}: {len(train_set)} training models, {classes} classes, lr {args.lr}, seed "
          f"{args.seed}, head norm {'off' if args.no_head_norm else 'on'}; chance loss ln {classes} = "
          f"{math.log(classes):.3f}")
    start = measure(model, probe)
    print(f"step     0  input spread between {start['input']['between']:.3f} within {start['input']['within']:.3f}  "
          f"final between {start['final']['between']:.4f} within {start['final']['within']:.3f}")
    while step < args.steps:
        for batch in train_set.batches(32, shuffle=True, generator=generator):
            out = model(batch)
            loss = F.cross_entropy(out, batch.y.long())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            hits.append(float((out.argmax(-1) == batch.y).float().mean()))
            if step % args.every == 0 or step == args.steps:
                state = measure(model, probe)
                row = {"step": step, "loss": sum(losses) / len(losses), "accuracy": sum(hits) / len(hits), **state,
                       "seconds": time.perf_counter() - started}
                rows.append(row)
                losses, hits = [], []
                print(f"step {step:5d}  loss {row['loss']:.3f}  batch accuracy {row['accuracy']:.3f}  final spread "
                      f"between {state['final']['between']:.4f} within {state['final']['within']:.3f}", flush=True)
            if step >= args.steps:
                break
    return {"benchmark": "collapse", "zoo": str(zoo), "model": args.model, "options": options, "lr": args.lr,
            "seed": args.seed, "head_norm": not args.no_head_norm, "classes": classes, "start": start, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", type=Path, default=None)
    parser.add_argument("--model", choices=sorted(ENCODERS), default="gnn")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor option, VALUE as JSON (repeatable)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-head-norm", action="store_true", help="the head without its batch norm (the old head)")
    parser.add_argument("--quick", action="store_true", help="a small MNIST-5k zoo and 20 steps (for tests)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/collapse.json"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.every = 20, 10
        with tempfile.TemporaryDirectory(prefix="wslgraph-collapse-") as folder:
            zoo = Path(folder) / "zoo"
            generate_zoo(zoo, inr_zoo_job("mnist5k", train_images=96, test_images=8, shard_size=128, steps=20),
                         progress=False)
            report = run(zoo, args)
    elif args.zoo is None:
        parser.error("--zoo is required unless --quick")
    else:
        report = run(args.zoo, args)
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
